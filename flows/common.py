"""The runbook (`gestan_release.release.runbook`) as Prefect tasks, shared by the release, hotfix,
resume and nightly flows; what is decided and in which order lives in the runbook.

Each task wraps one plain function of the library; the retry policy is explicit. Transient
failures are retried; a permanent one (`DeliveryError(permanent=True)`, any other expected error)
is not. Channel failures are recorded in the ledger and do not stop the others.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prefect import Task, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.utilities.annotations import quote

from gestan_release.core import progress
from gestan_release.errors import DeliveryError, GestanReleaseError, ReleaseError
from gestan_release.prefect.runs import quiet_display_hooks
from gestan_release.release import plan as planning
from gestan_release.release import runbook
from gestan_release.release.delivery import StepResult
from gestan_release.release.notes import preview as notes_preview
from gestan_release.release.plan import Plan, allow_missing_overrides
from gestan_release.settings import SECRET_BLOCK_PREFIX, Secret, Settings, load


def _transient(task_: Any, task_run: Any, state: Any) -> bool:
    """Retry only what may work next time: not a usage error, not a permanent refusal."""
    try:
        state.result()
    except DeliveryError as exc:
        return not exc.permanent
    except GestanReleaseError:
        return False
    except Exception:
        return True
    return False


RETRY = {"retries": 2, "retry_delay_seconds": [2, 10], "retry_condition_fn": _transient}
# The hooks turn each task's end into a line of the terminal display (`progress.current()`),
# a no-op when nobody watches (a worker).
OPTS = {"cache_policy": NO_CACHE, "persist_result": False, **progress.TASK_HOOKS}
quiet_display_hooks()


def load_settings(repo: str | Path, **overrides: Any) -> Settings:
    """Settings of `repo`; secrets not in the environment come from Prefect Secret blocks
    named `gestan-release-<name>` (e.g. `gestan-release-x-bearer-token`) when a Prefect API is
    configured: looked up all at once, only for the secrets that the environment left unset."""
    settings = load(repo, **overrides)
    if not os.environ.get("PREFECT_API_URL"):
        return settings
    wanted = {
        SECRET_BLOCK_PREFIX + f.name.replace("_", "-"): f.name
        for f in dataclasses.fields(settings)
        if f.metadata.get("secret") and getattr(settings, f.name) is None
    }
    found = _secret_blocks(set(wanted))
    updates = {wanted[block]: Secret(value) for block, value in found.items() if value}
    return settings.replace(**updates) if updates else settings


@contextmanager
def workspace(repo: str) -> Iterator[Settings]:
    """The settings of the run, and its repository: with REPO_URL (stateless workers), the clone
    in this worker's cache, fetched now; REMOTE then defaults to it. Else `repo` as it is."""
    settings = load_settings(repo)
    if not settings.repo_url:
        yield settings
        return
    from gestan_release.history.repocache import checkout

    with checkout(settings.repo_url, settings.cache_dir, settings.main_branch) as path:
        get_run_logger().info(f"repository fetched from REPO_URL into {path}")
        yield load_settings(
            path,
            repo_url=settings.repo_url,
            cache_dir=settings.cache_dir,
            remote=settings.remote or "origin",
        )


def _secret_blocks(names: set[str]) -> dict[str, str]:
    """The values of the Secret blocks among `names` that exist, in one listing of the Secret
    blocks (one API call per page of 200) instead of one lookup per name."""
    if not names:
        return {}
    from prefect.blocks.system import Secret as SecretBlock
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError

    values: dict[str, str] = {}
    page = 200
    with get_client(sync_client=True) as client:
        offset = 0
        while True:
            try:
                documents = client.read_block_documents_by_type(
                    "secret", offset=offset, limit=page, include_secrets=True
                )
            except (ObjectNotFound, PrefectHTTPStatusError) as exc:
                if getattr(getattr(exc, "response", None), "status_code", 404) != 404:
                    raise
                return values  # no Secret block type registered yet: no block either
            for document in documents:
                if document.name in names:
                    values[document.name] = str(SecretBlock.model_validate(document.data).get())
            if len(documents) < page:
                return values
            offset += page


@task(name="preflight", **OPTS)
def preflight(settings: Settings, kind: str, ref: str | None) -> str:
    branch = planning.preflight(settings, kind, ref)
    if getattr(branch, "reason", None):
        get_run_logger().info(f"branch {branch}: {branch.reason}")
    return branch


@task(name="guard", **OPTS)
def guard(settings: Settings, plan: Plan) -> list[str]:
    warnings = planning.guard(settings, plan)
    logger = get_run_logger()
    for w in warnings:
        logger.warning(w)
    return warnings


@task(name="dry run", **OPTS)
def dry_run_task(settings: Settings, plan: Plan) -> str:
    text = notes_preview(settings, plan)
    create_markdown_artifact(
        text, key=_artifact_key(plan, "dry-run"), description=f"Dry run {plan.label}"
    )
    return text


class StepFailed(DeliveryError):
    """Some deliveries of a step failed; raised so that the task's retry policy applies."""

    def __init__(self, result: StepResult) -> None:
        super().__init__(result.line(), permanent=False)
        self.result = result


def _raise_transient(result: StepResult) -> StepResult:
    # Failed deliveries are in the ledger; retrying the task re-runs only those (done ones are
    # skipped), and only when one of them may go through (never again a 401 or a 550). The
    # last attempt returns the result instead so that the flow can go on.
    from prefect.context import TaskRunContext

    ctx = TaskRunContext.get()
    if result.retryable and ctx is not None and ctx.task_run.run_count <= ctx.task.retries:
        raise StepFailed(result)
    return result


def _progress() -> progress.Progress:
    """Milestones of the fan-outs (mails, forum replies): in the run log, on the terminal display
    if any, and as Prefect progress artifacts."""
    from gestan_release.prefect.cockpit import ArtifactProgress

    return ArtifactProgress(progress.logged(get_run_logger().info))


def _step_task(step: runbook.Step) -> Task:
    """`step` of the runbook as a Prefect task named after it, with its retry policy."""

    def run_step(release: runbook.Release) -> StepResult:
        result = step.run(release, _progress())
        return _raise_transient(result) if step.retry_failed else result

    # Each task its own key (Prefect derives it from the function's name and code).
    run_step.__name__ = run_step.__qualname__ = f"{step.name.replace(' ', '_').lower()}_step"
    return task(name=step.name, **OPTS, **(RETRY if step.retries else {}))(run_step)


STEP_TASKS: dict[str, Task] = {step.name: _step_task(step) for step in runbook.STEPS}


@task(name="plan", **OPTS)
def plan_step(
    settings: Settings,
    kind: str,
    branch: str,
    bump: str = "minor",
    allow_missing: dict[int, str] | None = None,
) -> Plan:
    """Version and tickets of the release; a release already in the ledger is resumed as planned."""
    return runbook.planned(settings, kind, branch, bump, allow_missing, get_run_logger().info)


def _artifact_key(plan: Plan, what: str) -> str:
    return f"{what}-{plan.version}".replace(".", "-").lower()


class PrefectRunner(runbook.Runner):
    """The runbook's steps as the tasks above; logs in the run, the summary as an artifact, the
    `published` event. Big arguments (settings, the ledger, a plan with hundreds of tickets, the
    senders) are passed quoted: Prefect then does not walk them looking for upstream task
    results, which cost more than the steps themselves on big releases."""

    def preflight(self, settings: Settings, kind: str, ref: str | None) -> str:
        return preflight(quote(settings), kind, ref)

    def plan(
        self, settings: Settings, kind: str, branch: str, bump: str, allow_missing: dict[int, str]
    ) -> Plan:
        return plan_step(quote(settings), kind, branch, bump, allow_missing)

    def guard(self, settings: Settings, plan: Plan) -> list[str]:
        return guard(quote(settings), quote(plan))

    def preview(self, settings: Settings, plan: Plan) -> str:
        return dry_run_task(quote(settings), quote(plan))

    def step(self, step: runbook.Step, release: runbook.Release) -> StepResult:
        return STEP_TASKS[step.name](quote(release))

    def log(self, text: str) -> None:
        get_run_logger().info(text)

    def report(self, plan: Plan, summary: str) -> None:
        create_markdown_artifact(
            summary, key=_artifact_key(plan, "release"), description=f"Release {plan.label}"
        )

    def ask_approval(self, settings: Settings, plan: Plan) -> str:
        from gestan_release.prefect.cockpit import ask_approval

        return ask_approval(settings, plan)

    def emit_published(self, plan: Plan) -> str:
        from gestan_release.prefect.cockpit import PUBLISHED_EVENT, emit_published

        event_id = emit_published(plan)
        self.log(f"{PUBLISHED_EVENT} emitted for {plan.label}")
        return event_id

    def flow_run_id(self) -> str | None:
        from prefect.runtime import flow_run

        run_id = flow_run.get_id()
        return str(run_id) if run_id else None


def cut(
    repo: str,
    kind: str,
    ref: str | None,
    *,
    bump: str = "minor",
    dry_run: bool = False,
    allow_missing: list[int] | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """The runbook's release (`runbook.cut`) with its steps as tasks."""
    overrides = allow_missing_overrides(allow_missing, reason)
    with workspace(repo) as settings:
        return runbook.cut(
            settings,
            kind,
            ref,
            bump=bump,
            dry_run=dry_run,
            allow_missing=overrides,
            runner=PrefectRunner(),
        )


def resume_release(
    repo: str, version: str | None, crashed_flow_run: str | None = None
) -> dict[str, Any]:
    """Finish what a release left undone, from the plan recorded in the ledger. Without a
    version, the release that the flow run `crashed_flow_run` was working on (the automation of
    prefect.yaml passes the id of a crashed run)."""
    if not version and not crashed_flow_run:
        raise ReleaseError("resume needs a VERSION (`gestan-release status` lists the releases)")
    with workspace(repo) as settings:
        if crashed_flow_run and not version:
            from gestan_release.prefect import runs as ps

            run_id = ps.flow_run_id_of(crashed_flow_run)
            return runbook.resume_crashed(
                settings,
                run_id,
                ps.flow_run_state(run_id),
                lambda why: ps.mark_lost(run_id, why),
                PrefectRunner(),
            )
        return runbook.resume(settings, version, PrefectRunner())
