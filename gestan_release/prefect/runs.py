"""The few places where gestan-release talks to Prefect itself (imported only where needed)."""

from __future__ import annotations

import logging
import os
from typing import Any

from gestan_release.errors import FlowRunError, GestanReleaseError, GitError, ReleaseError
from gestan_release.settings import Settings

TAG_EVENT = "gestan.release.tagged"


class _ExpectedErrorFilter(logging.Filter):
    """Expected failures are explained in one line: keep Prefect from printing their traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, GestanReleaseError):
            record.exc_info = None
            record.exc_text = None
            if str(exc) not in record.getMessage():
                record.msg = f"{record.getMessage()}: {exc}"
                record.args = ()
        return True


class _DisplayHookFilter(logging.Filter):
    """Prefect logs two lines per task hook ("Running hook 'task_completed'…", "Hook … finished
    running successfully"); those of the display hooks say nothing about the release."""

    def filter(self, record: logging.LogRecord) -> bool:
        from gestan_release.core.progress import HOOK_NAMES

        msg = record.msg if isinstance(record.msg, str) else ""
        return not (
            msg.startswith(("Running hook '", "Hook '"))
            and any(f"'{name}'" in msg for name in HOOK_NAMES)
        )


def quiet_display_hooks() -> None:
    """Keep the display hooks' own log lines out of the run logs (idempotent)."""
    logger = logging.getLogger("prefect.task_runs")
    if not any(isinstance(f, _DisplayHookFilter) for f in logger.filters):
        logger.addFilter(_DisplayHookFilter())


def quiet_expected_errors() -> None:
    """One line per expected failure; and none of the temporary server's shutdown noise."""
    for name in ("prefect.task_runs", "prefect.flow_runs", "prefect.engine", "prefect"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _ExpectedErrorFilter) for f in logger.filters):
            logger.addFilter(_ExpectedErrorFilter())
    if not os.environ.get("PREFECT_API_URL"):
        # The temporary server runs in this process; its own errors while stopping (cancelled
        # database sessions) say nothing about the release.
        for name in ("prefect.server", "uvicorn.error", "prefect.server.services"):
            logging.getLogger(name).setLevel(logging.CRITICAL)


def flow_run_info(state: Any) -> dict[str, Any]:
    """Id, name and UI address (None without PREFECT_UI_URL) of the run that ended in `state`."""
    run_id = getattr(state.state_details, "flow_run_id", None)
    info: dict[str, Any] = {"id": str(run_id) if run_id else None, "name": None, "url": None}
    if run_id is None:
        return info
    try:
        from prefect.client.orchestration import get_client
        from prefect.utilities.urls import url_for

        with get_client(sync_client=True) as client:
            run = client.read_flow_run(run_id)
        info["name"] = run.name
        info["url"] = url_for(run)
    except Exception:  # the run is recorded; only its name and address are unknown here
        pass
    return info


def flow_result(state: Any, with_run: bool = True) -> dict[str, Any]:
    """The result of a finished flow run, with `flow_run` (id, name, url) added when asked; its
    expected error raised as it is; any other error raised as one FlowRunError line naming the
    run. A failure always names its run (one API call)."""
    if state.is_completed():
        result = dict(state.result())
        if with_run:
            result["flow_run"] = flow_run_info(state)
        return result
    run = flow_run_info(state)
    exc = state.result(raise_on_failure=False)
    if isinstance(exc, GestanReleaseError):
        exc.flow_run = run  # type: ignore[attr-defined]
        raise exc
    if not isinstance(exc, BaseException):
        exc = RuntimeError(f"the run ended {state.type.value}: {state.message}")
    first = (str(exc).strip().splitlines() or [""])[0]
    where = f"`prefect flow-run logs {run['id']}`"
    if run["url"]:
        where = f"{run['url']} or {where}"
    raise FlowRunError(
        f"unexpected error in flow run {run['name'] or run['id']!r}: "
        f"{type(exc).__name__}{': ' + first if first else ''}. This is a bug; the run's log "
        f"holds the traceback: {where}",
        flow_run=run,
    ) from exc


def emit_tag_event(settings: Settings, tag: str) -> dict[str, Any]:
    """Emit the event that the trigger of prefect.yaml turns into a release or hotfix run."""
    from gestan_release.history.git import toplevel as ensure_repo
    from gestan_release.history.gitops import tag_target
    from gestan_release.history.versions import Kind, parse_tag

    repo = ensure_repo(settings.repo)
    version = parse_tag(tag, settings.tag_prefix)
    if version.kind is Kind.NIGHTLY:
        raise ReleaseError(f"{tag} is a nightly: nightlies are not tagged, nothing to start")
    sha = tag_target(repo, tag)
    if sha is None:
        raise GitError(f"no tag {tag} in {repo}: create it first (`git tag -a {tag}`)")
    if not os.environ.get("PREFECT_API_URL"):
        raise ReleaseError(
            "on-tag needs a Prefect server: set PREFECT_API_URL (e.g. http://127.0.0.1:4200/api) "
            "to the server where the deployments of prefect.yaml live"
        )
    from prefect.events import emit_event

    deployment = "hotfix" if version.kind is Kind.U else "release"
    payload = {
        "repo": str(repo),
        "tag": tag,
        "version": str(version),
        "kind": str(version.kind),
        "branch": version.branch if version.kind is Kind.U else settings.main_branch,
        "commit": sha,
        "deployment": deployment,
    }
    event = emit_event(
        event=TAG_EVENT,
        resource={
            "prefect.resource.id": f"gestan.release.{version}",
            "prefect.resource.name": tag,
            "gestan.deployment": deployment,
        },
        payload=payload,
    )
    if event is None:
        raise ReleaseError("Prefect did not emit the event: is PREFECT_API_URL reachable?")
    return {"event": TAG_EVENT, "deployment": deployment, **payload}


# -- self-healing: the flow run that a resume finishes ---------------------------------------
LOST = "Lost"  # state name (type CRASHED) of a run that went silent; its event is not `Crashed`


def flow_run_id_of(reference: str) -> str:
    """A flow run id from itself or from an event resource id (`prefect.flow-run.<id>`)."""
    return reference.strip().removeprefix("prefect.flow-run.")


def flow_run_state(run_id: str) -> str | None:
    """The state type of a flow run (RUNNING, CRASHED, …), None if the API does not know it."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    try:
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(run_id)
    except (ObjectNotFound, ValueError):
        return None
    return run.state.type.value if run.state else None


def mark_lost(run_id: str, message: str) -> None:
    """Record that a silent flow run is gone (type CRASHED, name `Lost`): the UI tells the truth
    and its deployment's concurrency slot is freed. Named `Lost` so that the `Crashed` trigger
    of prefect.yaml does not start a second resume for it."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import State, StateType

    with get_client(sync_client=True) as client:
        client.set_flow_run_state(
            run_id, State(type=StateType.CRASHED, name=LOST, message=message), force=True
        )
