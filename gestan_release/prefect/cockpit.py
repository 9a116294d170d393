"""The release manager's cockpit in Prefect: progress artifacts for long steps, the approval
gate (APPROVAL=required), and the `gestan.release.published` event.

Prefect is imported inside the functions that talk to it: the CLI's `approve`/`reject` load this
module, and read-only commands must stay fast.
"""

from __future__ import annotations

import getpass
import socket
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from gestan_release.errors import ReleaseError

PUBLISHED_EVENT = "gestan.release.published"
_NAMESPACE = uuid.UUID("6d0b3f0e-5d1c-4c53-9b7e-4f1d2c3a4b5e")  # deterministic event ids


# -- progress artifacts ----------------------------------------------------------------------
class ArtifactTracker:
    """One fan-out shown as a Prefect progress artifact (0-100 %), updated about every 5 % so
    that a release of hundreds of mails costs a few API calls, not one per mail."""

    def __init__(
        self,
        label: str,
        total: int | None,
        inner: Any = None,
        *,
        create: Callable[..., Any] | None = None,
        update: Callable[..., Any] | None = None,
    ) -> None:
        if create is None or update is None:
            from prefect.artifacts import create_progress_artifact, update_progress_artifact

            create, update = create_progress_artifact, update_progress_artifact
        self.label = label
        self.total = total
        self.done = 0
        self.failed = 0
        self._inner = inner
        self._update = update
        self._shown = 0.0
        self._id = create(progress=0.0, description=self._description()) if total else None

    def _description(self) -> str:
        failed = f", {self.failed} en échec" if self.failed else ""
        return f"{self.label} : {self.done}/{self.total}{failed}"

    def _percent(self) -> float:
        return 100.0 * self.done / self.total if self.total else 100.0

    def advance(self, n: int = 1, *, failed: bool = False) -> None:
        self.done += n
        if failed:
            self.failed += n
        if self._inner is not None:
            self._inner.advance(n, failed=failed)
        if self._id is not None and self._percent() - self._shown >= 5.0:
            self._show()

    def _show(self) -> None:
        self._shown = self._percent()
        self._update(
            artifact_id=self._id, progress=round(self._shown, 1), description=self._description()
        )

    def close(self) -> None:
        if self._id is not None and self._shown < self._percent():
            self._show()
        if self._inner is not None:
            self._inner.close()

    def __enter__(self) -> ArtifactTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ArtifactProgress:
    """A progress reporter (the `track`/`step`/`running`/`warn` interface of the terminal
    display) that also shows each fan-out as a Prefect progress artifact; every call is passed
    on to `inner` (the run log, the terminal)."""

    def __init__(self, inner: Any = None, **hooks: Any) -> None:
        self._inner = inner
        self._hooks = hooks

    def track(self, label: str, total: int | None) -> ArtifactTracker:
        inner = self._inner.track(label, total) if self._inner is not None else None
        return ArtifactTracker(label, total, inner, **self._hooks)

    def step(self, name: str, outcome: str, *, status: str = "ok") -> None:
        if self._inner is not None:
            self._inner.step(name, outcome, status=status)

    def running(self, name: str, attempt: int = 1) -> None:
        if self._inner is not None:
            self._inner.running(name, attempt)

    def warn(self, message: str) -> None:
        if self._inner is not None:
            self._inner.warn(message)


# -- the approval gate -------------------------------------------------------------------------
def approval_key(version: str) -> str:
    """The key of the approval request artifact: how `approve`/`reject` find the waiting run."""
    return "approval-" + version.replace(".", "-").replace("+", "-").lower()


def approval_request(settings: Any, plan: Any, deadline: datetime) -> str:
    """The markdown the release manager approves: version, changelog, X text, number of mails,
    and the tickets whose story is not plain."""
    from gestan_release.release.changelog import render as render_changelog
    from gestan_release.release.messages import _fence, release_messages
    from gestan_release.release.notes import release_notes
    from gestan_release.text.templating import render_template

    notes = release_notes(settings, plan)
    messages = release_messages(
        notes, category=settings.forum_category, mail_from=settings.mail_from
    )
    unusual = []
    for ticket_id, label in sorted(plan.already_in.items()):
        unusual.append(f"#{ticket_id} : déjà livré dans {label} (pas de second mail)")
    for ticket_id, reason in sorted(plan.allow_missing.items()):
        unusual.append(f"#{ticket_id} : correctif flash d'une version U laissé de côté ({reason})")
    for ticket_id in plan.changelog.get("unknown", []):
        unusual.append(f"#{ticket_id} : cité dans un commit mais absent des tickets (aucun mail)")
    for reverted in plan.changelog.get("reverted", []):
        ids = ", ".join(f"#{t}" for t in reverted["tickets"]) or "aucun ticket"
        unusual.append(f"commit `{reverted['sha'][:10]}` annulé ({ids})")
    for entry in notes.changelog.entries:
        if not entry.ticket.forum_tracked:
            unusual.append(f"#{entry.ticket.id} : hors forum (mail seul, pas de réponse)")
    return render_template(
        "approval_request.md.j2",
        label=plan.label,
        version=plan.version,
        branch=plan.branch,
        commit=plan.commit,
        previous=plan.previous,
        ticket_count=len(plan.ticket_ids),
        mail_count=len(messages.mails),
        comment_count=len(messages.comments),
        deadline=deadline.strftime("%d/%m/%Y à %H:%M"),
        unusual=unusual,
        warnings=list(plan.warnings),
        x_text=messages.post.text,
        changelog_md=render_changelog(notes.changelog, "markdown").strip(),
        fence=_fence,
    )


def approval_input() -> type:
    """The typed answer the paused flow waits for (the Prefect UI shows it as a form)."""
    from prefect.input import RunInput
    from pydantic import model_validator

    class ReleaseApproval(RunInput):
        """Approve the release, or reject it with a reason."""

        approve: bool
        reason: str = ""
        by: str = ""

        @model_validator(mode="after")
        def _reason_for_a_rejection(self) -> ReleaseApproval:
            if not self.approve and not self.reason.strip():
                raise ValueError("a rejection needs a reason")
            return self

    return ReleaseApproval


def ask_approval(settings: Any, plan: Any, *, now: Callable[[], datetime] | None = None) -> str:
    """Pause the flow run after the approval request artifact until someone answers; returns
    who approved. A rejection or no answer within APPROVAL_TIMEOUT raises ReleaseError: nothing
    was shipped."""
    from prefect import get_run_logger
    from prefect.artifacts import create_markdown_artifact
    from prefect.exceptions import FlowPauseTimeout
    from prefect.flow_runs import pause_flow_run

    timeout = int(settings.approval_timeout)
    deadline = (now or (lambda: datetime.now(UTC)))() + timedelta(seconds=timeout)
    create_markdown_artifact(
        approval_request(settings, plan, deadline),
        key=approval_key(plan.version),
        description=f"{plan.label}: approve or reject",
    )
    get_run_logger().warning(
        f"{plan.label} waits for approval: Resume in the Prefect UI, or "
        f"`gestan-release approve {plan.version}` / `reject {plan.version} --reason …`"
    )
    try:
        answer = pause_flow_run(
            wait_for_input=approval_input(),
            timeout=timeout,
            poll_interval=_poll_interval(timeout),
            key=approval_key(plan.version),
        )
    except FlowPauseTimeout:
        message = (
            f"{plan.label} was not approved within {timeout} s (APPROVAL_TIMEOUT): nothing was "
            f"shipped; run it again when someone can answer"
        )
        _fail_run_with(message)
        raise ReleaseError(message) from None
    who = answer.by.strip() or "the Prefect UI"
    if not answer.approve:
        raise ReleaseError(
            f"{plan.label} was rejected by {who}: {answer.reason.strip()}. Nothing was shipped"
        )
    return who


def _fail_run_with(message: str) -> None:
    """Prefect fails a run whose pause timed out with its own words ("never resumed"); say
    ours instead, so that the UI and the terminal tell what happened and what to do."""
    from prefect.client.orchestration import get_client
    from prefect.runtime import flow_run
    from prefect.states import Failed

    run_id = flow_run.get_id()
    if run_id:
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(run_id, Failed(message=message), force=True)


def _poll_interval(timeout: int) -> int:
    return max(1, min(10, timeout // 10))


def answer(version: str, approve: bool, reason: str = "", by: str | None = None) -> str:
    """Answer the release waiting at the gate for `version` (the terminal's approve/reject);
    returns the flow run's id. ReleaseError when nothing waits for it."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort
    from prefect.exceptions import FlowPauseTimeout
    from prefect.flow_runs import resume_flow_run

    if not approve and not reason.strip():
        raise ReleaseError("reject needs --reason: say why, it is shown to the release manager")
    by = by or f"{getpass.getuser()}@{socket.gethostname()}"
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[approval_key(version)])),
            sort=ArtifactSort.CREATED_DESC,
            limit=1,
        )
        run = client.read_flow_run(artifacts[0].flow_run_id) if artifacts else None
    if run is None or run.state is None or not run.state.is_paused():
        raise ReleaseError(
            f"no release of {version} is waiting for approval (is APPROVAL=required, and "
            f"PREFECT_API_URL the server of the run?)"
        )
    try:
        resume_flow_run(run.id, run_input={"approve": approve, "reason": reason, "by": by})
    except FlowPauseTimeout:
        raise ReleaseError(f"the approval of {version} timed out: nothing was shipped") from None
    return str(run.id)


# -- the published event -----------------------------------------------------------------------
def published_event_id(version: str) -> uuid.UUID:
    """The same id for every emission about one version: consumers can drop a repeat."""
    return uuid.uuid5(_NAMESPACE, f"{PUBLISHED_EVENT}:{version}")


def emit_published(plan: Any) -> str:
    """`gestan.release.published` for a released version (version, kind, ticket ids), so that
    other automations can react; returns the event id."""
    from prefect.events import emit_event

    event_id = published_event_id(plan.version)
    emit_event(
        event=PUBLISHED_EVENT,
        resource={
            "prefect.resource.id": f"gestan.release.{plan.version}",
            "prefect.resource.name": plan.label,
            "gestan.kind": plan.kind,
        },
        payload={
            "version": plan.version,
            "label": plan.label,
            "kind": plan.kind,
            "tag": plan.tag,
            "channel": plan.channel,
            "ticket_ids": list(plan.ticket_ids),
        },
        id=event_id,
    )
    return str(event_id)
