"""Tasks shared by the release, hotfix and nightly flows, and the side-effect half of a release.

Each task wraps one plain function of `gestan_release.pipeline`; the retry policy is explicit.
Transient failures are retried; a permanent one (`DeliveryError(permanent=True)`, any other
expected error) is not. Channel failures are recorded in the ledger and do not stop the others.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.utilities.annotations import quote

from gestan_release import outcome, pipeline, progress
from gestan_release.errors import (
    DeliveryError,
    GestanReleaseError,
    IncompleteRelease,
    ReleaseError,
)
from gestan_release.pipeline import Plan, StepResult
from gestan_release.prefect_support import quiet_display_hooks
from gestan_release.settings import Secret, Settings, load

SECRET_BLOCK_PREFIX = "gestan-release-"


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
# Big arguments (settings, the ledger, a plan with hundreds of tickets, the senders) are passed
# quoted: Prefect then does not walk them looking for upstream task results, which cost more than
# the steps themselves on big releases.


def load_settings(repo: str | Path, **overrides: Any) -> Settings:
    """Settings of `repo`; secrets not in the environment come from Prefect Secret blocks
    named `gestan-release-<name>` (e.g. `gestan-release-x-bearer-token`) when a Prefect API is
    configured."""
    settings = load(repo, **overrides)
    if not os.environ.get("PREFECT_API_URL"):
        return settings
    updates: dict[str, Secret] = {}
    for f in dataclasses.fields(settings):
        if f.metadata.get("secret") and getattr(settings, f.name) is None:
            value = _secret_block(SECRET_BLOCK_PREFIX + f.name.replace("_", "-"))
            if value:
                updates[f.name] = Secret(value)
    return settings.replace(**updates) if updates else settings


@contextmanager
def workspace(repo: str) -> Iterator[Settings]:
    """The settings of the run, and its repository: with REPO_URL (stateless workers), the clone
    in this worker's cache, fetched now; REMOTE then defaults to it. Else `repo` as it is."""
    settings = load_settings(repo)
    if not settings.repo_url:
        yield settings
        return
    from gestan_release.repocache import checkout

    with checkout(settings.repo_url, settings.cache_dir, settings.main_branch) as path:
        get_run_logger().info(f"repository fetched from REPO_URL into {path}")
        yield load_settings(
            path,
            repo_url=settings.repo_url,
            cache_dir=settings.cache_dir,
            remote=settings.remote or "origin",
        )


def _secret_block(name: str) -> str | None:
    from prefect.blocks.system import Secret as SecretBlock

    try:
        return str(SecretBlock.load(name).get())
    except ValueError:
        return None  # no such block


@task(name="preflight", **OPTS)
def preflight(settings: Settings, kind: str, ref: str | None) -> str:
    branch = pipeline.preflight(settings, kind, ref)
    if getattr(branch, "reason", None):
        get_run_logger().info(f"branch {branch}: {branch.reason}")
    return branch


@task(name="guard", **OPTS)
def guard(settings: Settings, plan: Plan) -> list[str]:
    warnings = pipeline.guard(settings, plan)
    logger = get_run_logger()
    for w in warnings:
        logger.warning(w)
    return warnings


@task(name="dry run", **OPTS)
def dry_run_task(settings: Settings, plan: Plan) -> str:
    text = pipeline.preview(settings, plan)
    create_markdown_artifact(
        text, key=_artifact_key(plan, "dry-run"), description=f"Dry run {plan.label}"
    )
    return text


@task(name="git", **OPTS, **RETRY)
def git_step(settings: Settings, ledger: Any, plan: Plan) -> tuple[str, StepResult]:
    return pipeline.git_step(settings, ledger, plan)


@task(name="build", **OPTS)
def build_step(settings: Settings, ledger: Any, plan: Plan, commit: str) -> tuple[list, StepResult]:
    return pipeline.build_step(settings, ledger, plan, commit)


@task(name="update endpoint", **OPTS, **RETRY)
def publish_step(
    settings: Settings, ledger: Any, plan: Plan, artifacts: list, notes_url: str | None
) -> StepResult:
    return _raise_transient(pipeline.publish_step(settings, ledger, plan, artifacts, notes_url))


@task(name="X", **OPTS, **RETRY)
def announce_step(settings: Settings, ledger: Any, plan: Plan, senders: dict) -> StepResult:
    return _raise_transient(pipeline.announce_step(settings, ledger, plan, senders))


@task(name="forum", **OPTS, **RETRY)
def forum_step(
    settings: Settings, ledger: Any, plan: Plan, senders: dict
) -> tuple[str | None, StepResult]:
    url, result = pipeline.forum_step(settings, ledger, plan, senders, _progress())
    return url, _raise_transient(result)


@task(name="mail", **OPTS, **RETRY)
def mail_step(
    settings: Settings, ledger: Any, plan: Plan, senders: dict, topic_url: str | None
) -> StepResult:
    return _raise_transient(
        pipeline.mail_step(settings, ledger, plan, senders, topic_url, _progress())
    )


@task(name="tickets released", **OPTS, **RETRY)
def tickets_step(settings: Settings, ledger: Any, plan: Plan) -> StepResult:
    return pipeline.tickets_step(settings, ledger, plan)


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
    from gestan_release.cockpit import ArtifactProgress

    return ArtifactProgress(progress.logged(get_run_logger().info))


def _approval_gate(settings: Settings, ledger: Any, plan: Plan) -> None:
    """APPROVAL=required: nothing ships before someone approves (once per release, recorded in
    the ledger, so a resumed release is not asked again, and one never approved always is). A
    rejection or a timeout ends the run with nothing shipped, and the release is forgotten so
    that the next run plans it afresh."""
    from gestan_release.cockpit import ask_approval

    key = f"approval:{plan.version}"
    known = ledger.delivery(key)
    if known is not None and known.finished:
        return
    try:
        who = ask_approval(settings, plan)
    except ReleaseError:
        ledger.forget_release(plan.version)
        raise
    ledger.mark_sending(key, plan.version, "approval")
    ledger.mark_done(key, f"approved by {who}")
    get_run_logger().info(f"{plan.label} approved by {who}")


def _published(ledger: Any, plan: Plan) -> None:
    """One `gestan.release.published` event per released version (recorded in the ledger; a
    repeat after a crash carries the same event id)."""
    from gestan_release.cockpit import PUBLISHED_EVENT, emit_published

    key = f"event:{plan.version}"
    known = ledger.delivery(key)
    if known is not None and known.finished:
        return
    ledger.mark_sending(key, plan.version, "event")
    ledger.mark_done(key, emit_published(plan))
    get_run_logger().info(f"{PUBLISHED_EVENT} emitted for {plan.label}")


def _artifact_key(plan: Plan, what: str) -> str:
    return f"{what}-{plan.version}".replace(".", "-").lower()


def lock_name(settings: Settings) -> str:
    """One lock per Gestan repository: its REPO_URL when workers clone it (each worker's cache
    path differs), else its path."""
    return f"repo:{settings.repo_url or settings.repo}"


def _flow_run_id() -> str | None:
    from prefect.runtime import flow_run

    run_id = flow_run.get_id()
    return str(run_id) if run_id else None


def ship(settings: Settings, plan: Plan, lock: Any = None) -> dict[str, Any]:
    """The side-effect half of a release, top to bottom like the runbook. Ends with a summary
    artifact; raises ReleaseError (the flow ends Failed) when something is left to do. With
    `lock`, each step first checks that the lock is still held (its lease renewed)."""
    from gestan_release.channels import close_all, senders_for
    from gestan_release.ledger import Ledger

    def held() -> None:
        if lock is not None:
            lock.ensure_held()

    logger = get_run_logger()
    ledger = Ledger(settings.database_url)
    pipeline.record_start(ledger, plan)
    # A crash from here on is resumed by the id of this flow run (prefect.yaml's automation).
    ledger.set_flow_run(plan.version, _flow_run_id())
    if settings.approval == "required" and plan.kind != "nightly":
        _approval_gate(settings, ledger, plan)
    results: list[StepResult] = []
    try:
        held()
        commit, git_result = git_step(quote(settings), quote(ledger), quote(plan))
        results.append(git_result)
        artifacts, build_result = build_step(quote(settings), quote(ledger), quote(plan), commit)
        results.append(build_result)
    except GestanReleaseError as exc:
        # Nothing can be published without its tag and build: stop, but leave the release
        # marked incomplete with its summary, like a failing channel does.
        ledger.finish_release(plan.version, False)
        _, text = pipeline.summary(ledger, plan, results)
        create_markdown_artifact(
            text, key=_artifact_key(plan, "release"), description=f"Release {plan.label}"
        )
        raise IncompleteRelease(
            f"{plan.label} stopped before publishing: {exc}. Fix it, then run "
            f"`gestan-release resume {plan.version}` to finish it.",
            outcome.of_release(ledger, plan, results, False, text),
        ) from exc
    held()
    results.append(
        publish_step(quote(settings), quote(ledger), quote(plan), quote(artifacts), None)
    )
    if plan.kind != "nightly":
        # Installs can get the fixes once the update endpoint has the version: the tickets are
        # released then, whatever happens to the announcements below.
        held()
        results.append(tickets_step(quote(settings), quote(ledger), quote(plan)))
        senders = senders_for(settings)
        try:
            held()
            results.append(
                announce_step(quote(settings), quote(ledger), quote(plan), quote(senders))
            )
            held()
            topic_url, forum_result = forum_step(
                quote(settings), quote(ledger), quote(plan), quote(senders)
            )
            results.append(forum_result)
            held()
            results.append(
                mail_step(quote(settings), quote(ledger), quote(plan), quote(senders), topic_url)
            )
        finally:
            close_all(senders)
    for r in results:
        logger.info(r.line())
    complete, text = pipeline.summary(ledger, plan, results)
    if complete:
        _published(ledger, plan)
    ledger.finish_release(plan.version, complete)
    create_markdown_artifact(
        text, key=_artifact_key(plan, "release"), description=f"Release {plan.label}"
    )
    result = outcome.of_release(ledger, plan, results, complete, text)
    if not complete:
        raise IncompleteRelease(
            f"{plan.label} is incomplete: "
            + "; ".join(r.line() for r in results if not r.ok)
            + f". Run `gestan-release resume {plan.version}` to finish it.",
            result,
        )
    return result


@task(name="plan", **OPTS)
def plan_step(
    settings: Settings,
    kind: str,
    branch: str,
    bump: str = "minor",
    allow_missing: dict[int, str] | None = None,
) -> Plan:
    """Version and tickets of the release; a release already in the ledger is resumed as planned."""
    from gestan_release.ledger import Ledger

    ledger = Ledger.existing(settings.database_url)
    nightlies = []
    if kind == "nightly" and ledger is not None:
        from gestan_release.versions import Version

        nightlies = [Version.parse(v) for v in ledger.nightly_versions()]
    plan = pipeline.plan_release(
        settings, kind, branch, bump=bump, allow_missing=allow_missing, nightlies=nightlies
    )
    if ledger is not None and (known := ledger.release(plan.version)) is not None:
        get_run_logger().info(
            f"{plan.label} is already in the ledger ({known.state}): resuming it, nothing done "
            f"before is done again"
        )
        return Plan.from_json(known.plan)
    return plan


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
    """preflight → plan → guard → (dry run | ship), under the repository's lock."""
    if allow_missing and not reason:
        raise ReleaseError("--allow-missing needs --reason: say why the fix may be left out")
    overrides = {int(t): reason or "" for t in allow_missing or ()}
    with workspace(repo) as settings:
        return _cut(settings, kind, ref, bump, dry_run, overrides)


def _cut(
    settings: Settings,
    kind: str,
    ref: str | None,
    bump: str,
    dry_run: bool,
    overrides: dict[int, str],
) -> dict[str, Any]:
    from gestan_release.ledger import Ledger

    branch = preflight(quote(settings), kind, ref)
    if dry_run:
        plan = plan_step(quote(settings), kind, branch, bump, overrides)
        warnings = guard(quote(settings), quote(plan))
        preview = dry_run_task(quote(settings), quote(plan))
        return outcome.of_dry_run(plan, preview, warnings) | _why(branch)
    from gestan_release.db import ensure_state_dir

    ensure_state_dir(settings)
    ledger = Ledger(settings.database_url)
    with ledger.lock(
        lock_name(settings), wait=settings.lock_wait, lease=settings.lock_lease
    ) as lock:
        plan = plan_step(quote(settings), kind, branch, bump, overrides)
        guard(quote(settings), quote(plan))
        return ship(settings, plan, lock) | _why(branch)


def _why(branch: str) -> dict[str, Any]:
    return {"branch_reason": getattr(branch, "reason", None)}


def resume_release(
    repo: str, version: str | None, crashed_flow_run: str | None = None
) -> dict[str, Any]:
    """Finish what a release left undone, from the plan recorded in the ledger. Without a
    version, the release that the flow run `crashed_flow_run` was working on (the automation of
    prefect.yaml passes the id of a crashed run)."""
    if not version and not crashed_flow_run:
        raise ReleaseError("resume needs a VERSION (`gestan-release status` lists the releases)")
    with workspace(repo) as settings:
        return _resume(settings, version, crashed_flow_run)


def _resume(
    settings: Settings, version: str | None, crashed_flow_run: str | None
) -> dict[str, Any]:
    from gestan_release.db import display_url
    from gestan_release.ledger import Ledger

    logger = get_run_logger()
    if crashed_flow_run and not version:
        return _resume_crashed(settings, crashed_flow_run)
    ledger = Ledger.existing(settings.database_url)
    known = ledger.release(version) if ledger is not None and version else None
    if ledger is None or known is None:
        raise ReleaseError(
            f"no release {version} in the ledger ({display_url(settings.database_url)}): nothing "
            f"to resume; `gestan-release status` lists the releases"
        )
    logger.info(f"resuming {known.label}: what is done is skipped")
    with ledger.lock(
        lock_name(settings), wait=settings.lock_wait, lease=settings.lock_lease
    ) as lock:
        return ship(settings, Plan.from_json(known.plan), lock)


def _resume_crashed(settings: Settings, reference: str) -> dict[str, Any]:
    """Finish the release of a flow run that crashed or went silent (prefect.yaml's triggers).

    The release lock is the truth about whether that run is gone: its lease is renewed while its
    process lives. So take the lock first (waiting out one lease), and only then mark a silent
    run `Lost` and finish its release; a run still renewing the lock is left alone."""
    from gestan_release import prefect_support as ps
    from gestan_release.db import ensure_state_dir
    from gestan_release.ledger import Ledger

    logger = get_run_logger()
    run_id = ps.flow_run_id_of(reference)
    state = ps.flow_run_state(run_id)
    ensure_state_dir(settings)
    ledger = Ledger(settings.database_url)
    wait = max(settings.lock_wait, settings.lock_lease * 1.5)
    try:
        lock = ledger.lock(lock_name(settings), wait=wait, lease=settings.lock_lease).acquire()
    except ReleaseError:
        if state in ("RUNNING", "PAUSED"):
            text = (
                f"Flow run {run_id} is {state.lower()} and still renews the release lock: it is "
                f"alive, nothing to resume.\n"
            )
            logger.info(text.strip())
            return {"version": None, "summary": text}
        raise
    with lock:  # already taken: entering starts its heartbeat
        if state in ("RUNNING", "PAUSED", "PENDING"):
            ps.mark_lost(
                run_id,
                f"no heartbeat and its release lock expired: finished by flow run "
                f"{_flow_run_id() or '(outside Prefect)'}",
            )
        known = ledger.release_of_flow_run(run_id)
        if known is None:
            text = (
                f"Flow run {run_id} recorded no release before it stopped: nothing was done, "
                f"nothing to resume.\n"
            )
            logger.info(text.strip())
            return {"version": None, "summary": text}
        logger.info(f"flow run {run_id} stopped during {known.label}: finishing it")
        return ship(settings, Plan.from_json(known.plan), lock)
