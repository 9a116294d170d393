"""THE ORDER of a release, in one place, and what happens when a step fails.

    preflight → plan → guard → (dry run: preview, stop) → approval → git → build →
    update endpoint → tickets released → X → forum → mail → summary

`cut`, `resume` and `resume_crashed` run it under the repository's lock; `ship` is its
side-effect half, the steps of `STEPS` top to bottom. The steps themselves are plain functions
(`plan`, `notes`, `steps`); a `Runner` says how each is called: directly (`Runner()`: the bench,
the tests) or as a Prefect task with its retry policy (`flows/common.py`). The policy, the same
on both paths:
- git or build fails: nothing can be published without its tag and build: the release stops,
  marked incomplete with its summary (`IncompleteRelease`);
- a channel fails: recorded in the ledger, the others go on; the release ends incomplete
  (`IncompleteRelease`) and `gestan-release resume VERSION` finishes it;
- the tickets are released once the update endpoint has the version, whatever the announcements
  after it do; a nightly stops after the update endpoint (no tag, no post, no mail);
- with a lock, each step first checks that it is still held (its lease renewed).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gestan_release.core.progress import NULL, Progress
from gestan_release.errors import GestanReleaseError, IncompleteRelease, ReleaseError
from gestan_release.history.versions import Kind
from gestan_release.release import outcome, steps
from gestan_release.release.delivery import StepResult, record_start
from gestan_release.release.lock import ReleaseLock
from gestan_release.release.plan import Plan, guard, plan_or_resume, preflight
from gestan_release.settings import Settings
from gestan_release.text.templating import render_template

if TYPE_CHECKING:
    from gestan_release.release.steps import Senders
    from gestan_release.store.ledger import Ledger

log = logging.getLogger("gestan_release.release.runbook")


@dataclass
class Release:
    """What the steps of one run share: the release, and what each step hands to the next."""

    settings: Settings
    ledger: Ledger
    plan: Plan
    senders: Senders | None = None  # opened before the first announcement, closed at the end
    commit: str = ""  # the released commit (after a VERSION_FILE bump)
    artifacts: list[dict] = field(default_factory=list)
    topic_url: str | None = None  # the changelog's forum topic, linked from the mails


def _git(r: Release, progress: Progress) -> StepResult:
    r.commit, result = steps.git_step(r.settings, r.ledger, r.plan)
    return result


def _build(r: Release, progress: Progress) -> StepResult:
    r.artifacts, result = steps.build_step(r.settings, r.ledger, r.plan, r.commit)
    return result


def _publish(r: Release, progress: Progress) -> StepResult:
    return steps.publish_step(r.settings, r.ledger, r.plan, r.artifacts, None)


def _tickets(r: Release, progress: Progress) -> StepResult:
    return steps.tickets_step(r.settings, r.ledger, r.plan)


def _x(r: Release, progress: Progress) -> StepResult:
    return steps.announce_step(r.settings, r.ledger, r.plan, r.senders or {})


def _forum(r: Release, progress: Progress) -> StepResult:
    r.topic_url, result = steps.forum_step(r.settings, r.ledger, r.plan, r.senders or {}, progress)
    return result


def _mail(r: Release, progress: Progress) -> StepResult:
    return steps.mail_step(r.settings, r.ledger, r.plan, r.senders or {}, r.topic_url, progress)


@dataclass(frozen=True)
class Step:
    name: str  # the Prefect task's name, the terminal's step line
    run: Callable[[Release, Progress], StepResult]
    stops_release: bool = False  # its failure leaves nothing to publish: stop there
    nightly: bool = True  # also part of a nightly
    needs_senders: bool = False  # announces: the channels' senders are open
    retries: bool = True  # a transient failure retries the step (Prefect task retries)
    retry_failed: bool = False  # retried while one of its failed deliveries may go through


# The side-effect half of a release, in order.
STEPS: tuple[Step, ...] = (
    Step("git", _git, stops_release=True),
    Step("build", _build, stops_release=True, retries=False),
    Step("update endpoint", _publish, retry_failed=True),
    # Installs can get the fixes once the update endpoint has the version: the tickets are
    # released then, whatever happens to the announcements below.
    Step("tickets released", _tickets, nightly=False),
    Step("X", _x, nightly=False, needs_senders=True, retry_failed=True),
    Step("forum", _forum, nightly=False, needs_senders=True, retry_failed=True),
    Step("mail", _mail, nightly=False, needs_senders=True, retry_failed=True),
)


class Runner:
    """How the runbook calls its steps and reports; this one calls the plain functions and logs.
    `flows/common.PrefectRunner` runs each as a Prefect task, logs to the run and makes
    artifacts."""

    def preflight(self, settings: Settings, kind: str, ref: str | None) -> str:
        return preflight(settings, kind, ref)

    def plan(
        self, settings: Settings, kind: str, branch: str, bump: str, allow_missing: dict[int, str]
    ) -> Plan:
        return planned(settings, kind, branch, bump, allow_missing, self.log)

    def guard(self, settings: Settings, plan: Plan) -> list[str]:
        return guard(settings, plan)

    def preview(self, settings: Settings, plan: Plan) -> str:
        from gestan_release.release.notes import preview

        return preview(settings, plan)

    def step(self, step: Step, release: Release) -> StepResult:
        return step.run(release, NULL)

    def log(self, text: str) -> None:
        log.info(text)

    def report(self, plan: Plan, summary: str) -> None:
        """The release's summary, once it is known (the flows make it an artifact)."""

    def ask_approval(self, settings: Settings, plan: Plan) -> str:
        """Who approved `plan` (APPROVAL=required); the flow pauses until someone answers."""
        raise ReleaseError(
            "APPROVAL=required pauses the flow run until someone answers: run it as a Prefect flow"
        )

    # Emits the `gestan.release.published` event of a plan and returns its id: a Prefect event,
    # so a runner without Prefect has none (and the ledger records none).
    emit_published: Callable[[Plan], str] | None = None

    def flow_run_id(self) -> str | None:
        return None


def planned(
    settings: Settings,
    kind: str,
    branch: str,
    bump: str = "minor",
    allow_missing: dict[int, str] | None = None,
    say: Callable[[str], None] = log.info,
) -> Plan:
    """Version and tickets of the release; a release already in the ledger is resumed as planned."""
    from gestan_release.store.ledger import Ledger

    ledger = Ledger.existing(settings.database_url)
    plan, known = plan_or_resume(
        settings, kind, branch, bump=bump, allow_missing=allow_missing, ledger=ledger
    )
    if known is not None:
        say(
            f"{known.label} is already in the ledger ({known.state}): resuming it, nothing done "
            f"before is done again"
        )
    return plan


def lock_name(settings: Settings) -> str:
    """One lock per Gestan repository: its REPO_URL when workers clone it (each worker's cache
    path differs), else its path."""
    return f"repo:{settings.repo_url or settings.repo}"


def release_lock(settings: Settings, wait: float | None = None) -> ReleaseLock:
    """The repository's release lock (LOCK_WAIT, LOCK_LEASE), to use as a context manager. Its
    table is in the ledger's database, migrated first: the first run on an empty database (a
    nightly before any `tickets import`) takes the lock like any other."""
    from gestan_release.store.db import engine_for, upgrade

    upgrade(settings.database_url)
    return ReleaseLock(
        engine_for(settings.database_url),
        lock_name(settings),
        wait=settings.lock_wait if wait is None else wait,
        lease=settings.lock_lease,
    )


def cut(
    settings: Settings,
    kind: str,
    ref: str | None,
    *,
    bump: str = "minor",
    dry_run: bool = False,
    allow_missing: dict[int, str] | None = None,
    runner: Runner | None = None,
) -> dict[str, Any]:
    """preflight → plan → guard → (dry run | ship), under the repository's lock."""
    from gestan_release.store.db import ensure_state_dir

    runner = runner or Runner()
    overrides = dict(allow_missing or {})
    branch = runner.preflight(settings, kind, ref)
    why = {"branch_reason": getattr(branch, "reason", None)}
    if dry_run:
        plan = runner.plan(settings, kind, branch, bump, overrides)
        warnings = runner.guard(settings, plan)
        preview = runner.preview(settings, plan)
        return outcome.of_dry_run(plan, preview, warnings) | why
    ensure_state_dir(settings)
    with release_lock(settings) as lock:
        plan = runner.plan(settings, kind, branch, bump, overrides)
        runner.guard(settings, plan)
        return ship(settings, plan, lock, runner) | why


def recorded_plan(settings: Settings, version: str | None) -> Plan:
    """The plan of `version` as the ledger recorded it; ReleaseError when there is none."""
    from gestan_release.store.db import display_url
    from gestan_release.store.ledger import Ledger

    ledger = Ledger.existing(settings.database_url)
    known = ledger.release(version) if ledger is not None and version else None
    if known is None:
        raise ReleaseError(
            f"no release {version} in the ledger ({display_url(settings.database_url)}): nothing "
            f"to resume; `gestan-release status` lists the releases"
        )
    return Plan.from_json(known.plan)


def resume(settings: Settings, version: str | None, runner: Runner | None = None) -> dict[str, Any]:
    """Finish what the release `version` left undone, from the plan recorded in the ledger."""
    runner = runner or Runner()
    plan = recorded_plan(settings, version)
    runner.log(f"resuming {plan.label}: what is done is skipped")
    with release_lock(settings) as lock:
        return ship(settings, plan, lock, runner)


def resume_crashed(
    settings: Settings,
    run_id: str,
    state: str | None,
    mark_lost: Callable[[str], None],
    runner: Runner | None = None,
) -> dict[str, Any]:
    """Finish the release of the flow run `run_id` that crashed or went silent (prefect.yaml's
    triggers); `state` is what Prefect says of it, `mark_lost(why)` tells Prefect it is gone.

    The release lock is the truth about whether that run is gone: its lease is renewed while its
    process lives. So take the lock first (waiting out one lease), and only then mark a silent
    run `Lost` and finish its release; a run still renewing the lock is left alone."""
    from gestan_release.store.db import ensure_state_dir
    from gestan_release.store.ledger import Ledger

    runner = runner or Runner()
    ensure_state_dir(settings)
    lock = release_lock(settings, wait=max(settings.lock_wait, settings.lock_lease * 1.5))
    try:
        lock.acquire()
    except ReleaseError:
        if state in ("RUNNING", "PAUSED"):
            return _nothing_to_resume(
                runner,
                f"Flow run {run_id} is {state.lower()} and still renews the release lock: it is "
                f"alive, nothing to resume.",
            )
        raise
    with lock:  # already taken: entering starts its heartbeat
        if state in ("RUNNING", "PAUSED", "PENDING"):
            mark_lost(
                f"no heartbeat and its release lock expired: finished by flow run "
                f"{runner.flow_run_id() or '(outside Prefect)'}"
            )
        known = Ledger(settings.database_url).release_of_flow_run(run_id)
        if known is None:
            return _nothing_to_resume(
                runner,
                f"Flow run {run_id} recorded no release before it stopped: nothing was done, "
                f"nothing to resume.",
            )
        runner.log(f"flow run {run_id} stopped during {known.label}: finishing it")
        return ship(settings, Plan.from_json(known.plan), lock, runner)


def _nothing_to_resume(runner: Runner, text: str) -> dict[str, Any]:
    runner.log(text)
    return {"version": None, "summary": text + "\n"}


def ship(
    settings: Settings, plan: Plan, lock: ReleaseLock | None = None, runner: Runner | None = None
) -> dict[str, Any]:
    """The side-effect half of a release: `STEPS` top to bottom, then the summary. Raises
    IncompleteRelease (with the outcome) when something is left to do."""
    from gestan_release.channels import close_all, senders_for
    from gestan_release.store.ledger import Ledger

    runner = runner or Runner()
    ledger = Ledger(settings.database_url)
    record_start(ledger, plan)
    # A crash from here on is resumed by the id of this flow run (prefect.yaml's automation).
    ledger.set_flow_run(plan.version, runner.flow_run_id())
    who = steps.approval(settings, ledger, plan, runner.ask_approval)
    if who:
        runner.log(f"{plan.label} approved by {who}")
    release = Release(settings, ledger, plan)
    results: list[StepResult] = []
    try:
        for step in STEPS:
            if plan.kind == Kind.NIGHTLY and not step.nightly:
                continue
            try:
                if lock is not None:
                    lock.ensure_held()
                if step.needs_senders and release.senders is None:
                    release.senders = senders_for(settings)
                results.append(runner.step(step, release))
            except GestanReleaseError as exc:
                if not step.stops_release:
                    raise
                raise _stopped(ledger, plan, results, exc, runner) from exc
    finally:
        if release.senders is not None:
            close_all(release.senders)
    for r in results:
        runner.log(r.line())
    complete, text = summary(ledger, plan, results)
    if complete and runner.emit_published is not None:
        steps.published_event(ledger, plan, runner.emit_published)
    ledger.finish_release(plan.version, complete)
    runner.report(plan, text)
    result = outcome.of_release(ledger, plan, results, complete, text)
    if not complete:
        raise IncompleteRelease(
            f"{plan.label} is incomplete: "
            + "; ".join(r.line() for r in results if not r.ok)
            + f". Run `gestan-release resume {plan.version}` to finish it.",
            result,
        )
    return result


def _stopped(
    ledger: Ledger, plan: Plan, results: list[StepResult], exc: Exception, runner: Runner
) -> IncompleteRelease:
    """Nothing can be published without its tag and build: stop, but leave the release marked
    incomplete with its summary, like a failing channel does."""
    ledger.finish_release(plan.version, False)
    _, text = summary(ledger, plan, results)
    runner.report(plan, text)
    return IncompleteRelease(
        f"{plan.label} stopped before publishing: {exc}. Fix it, then run "
        f"`gestan-release resume {plan.version}` to finish it.",
        outcome.of_release(ledger, plan, results, False, text),
    )


def summary(ledger: Ledger, plan: Plan, results: list[StepResult]) -> tuple[bool, str]:
    """(complete?, markdown summary with a table of every step and what is left)."""
    undone = ledger.deliveries(plan.version, undone=True)
    complete = not undone and all(r.ok for r in results)
    left = [
        {
            "key": d.key,
            "state": d.state,
            "attempts": d.attempts,
            "error": (d.last_error or "").replace("|", "\\|").replace("\n", " "),
        }
        for d in undone
    ]
    refused = sorted(
        d.key.split(":", 2)[2] for d in undone if d.channel == "mail" and d.state == "failed"
    )
    text = render_template(
        "release_summary.md.j2",
        plan=plan,
        complete=complete,
        results=results,
        left=left,
        refused=refused,
    )
    return complete, text
