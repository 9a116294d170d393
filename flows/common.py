"""Tasks shared by the release, hotfix and nightly flows, and the side-effect half of a release.

Each task wraps one plain function of `gestan_release.pipeline`; the retry policy is explicit.
Transient failures are retried; a permanent one (`DeliveryError(permanent=True)`, any other
expected error) is not. Channel failures are recorded in the ledger and do not stop the others.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.utilities.annotations import quote

from gestan_release import pipeline
from gestan_release.errors import DeliveryError, GestanReleaseError, ReleaseError
from gestan_release.pipeline import Plan, StepResult
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
OPTS = {"cache_policy": NO_CACHE, "persist_result": False}
# Big arguments (settings, the ledger, a plan with hundreds of tickets, the senders) are passed
# quoted: Prefect then does not walk them looking for upstream task results, which cost more than
# the steps themselves on big releases.


def load_settings(repo: str) -> Settings:
    """Settings of `repo`; secrets not in the environment come from Prefect Secret blocks
    named `gestan-release-<name>` (e.g. `gestan-release-x-bearer-token`) when a Prefect API is
    configured."""
    settings = load(repo)
    if not os.environ.get("PREFECT_API_URL"):
        return settings
    updates: dict[str, Secret] = {}
    for f in dataclasses.fields(settings):
        if f.metadata.get("secret") and getattr(settings, f.name) is None:
            value = _secret_block(SECRET_BLOCK_PREFIX + f.name.replace("_", "-"))
            if value:
                updates[f.name] = Secret(value)
    return settings.replace(**updates) if updates else settings


def _secret_block(name: str) -> str | None:
    from prefect.blocks.system import Secret as SecretBlock

    try:
        return str(SecretBlock.load(name).get())
    except ValueError:
        return None  # no such block


@task(name="preflight", **OPTS)
def preflight(settings: Settings, kind: str, ref: str | None) -> str:
    return pipeline.preflight(settings, kind, ref)


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


def _progress() -> Any:
    logger = get_run_logger()
    return logger.info


def _artifact_key(plan: Plan, what: str) -> str:
    return f"{what}-{plan.version}".replace(".", "-").lower()


def ship(settings: Settings, plan: Plan) -> dict[str, Any]:
    """The side-effect half of a release, top to bottom like the runbook. Ends with a summary
    artifact; raises ReleaseError (the flow ends Failed) when something is left to do."""
    from gestan_release.channels import close_all, senders_for
    from gestan_release.ledger import Ledger

    logger = get_run_logger()
    ledger = Ledger(settings.database_url)
    pipeline.record_start(ledger, plan)
    results: list[StepResult] = []
    try:
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
        raise ReleaseError(
            f"{plan.label} stopped before publishing: {exc}. Fix it, then run "
            f"`gestan-release resume {plan.version}` to finish it."
        ) from exc
    results.append(
        publish_step(quote(settings), quote(ledger), quote(plan), quote(artifacts), None)
    )
    if plan.kind != "nightly":
        # Installs can get the fixes once the update endpoint has the version: the tickets are
        # released then, whatever happens to the announcements below.
        results.append(tickets_step(quote(settings), quote(ledger), quote(plan)))
        senders = senders_for(settings)
        try:
            results.append(
                announce_step(quote(settings), quote(ledger), quote(plan), quote(senders))
            )
            topic_url, forum_result = forum_step(
                quote(settings), quote(ledger), quote(plan), quote(senders)
            )
            results.append(forum_result)
            results.append(
                mail_step(quote(settings), quote(ledger), quote(plan), quote(senders), topic_url)
            )
        finally:
            close_all(senders)
    for r in results:
        logger.info(r.line())
    complete, text = pipeline.summary(ledger, plan, results)
    ledger.finish_release(plan.version, complete)
    create_markdown_artifact(
        text, key=_artifact_key(plan, "release"), description=f"Release {plan.label}"
    )
    if not complete:
        raise ReleaseError(
            f"{plan.label} is incomplete: "
            + "; ".join(r.line() for r in results if not r.ok)
            + f". Run `gestan-release resume {plan.version}` to finish it."
        )
    return {"version": plan.version, "label": plan.label, "tag": plan.tag, "summary": text}


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
    from gestan_release.ledger import Ledger

    settings = load_settings(repo)
    if allow_missing and not reason:
        raise ReleaseError("--allow-missing needs --reason: say why the fix may be left out")
    overrides = {int(t): reason or "" for t in allow_missing or ()}
    branch = preflight(quote(settings), kind, ref)
    if dry_run:
        plan = plan_step(quote(settings), kind, branch, bump, overrides)
        guard(quote(settings), quote(plan))
        return {
            "version": plan.version,
            "label": plan.label,
            "dry_run": dry_run_task(quote(settings), quote(plan)),
        }
    from gestan_release.db import ensure_state_dir

    ensure_state_dir(settings)
    ledger = Ledger(settings.database_url)
    lock = f"repo:{settings.repo}"
    holder = ledger.acquire(lock, wait=settings.lock_wait)
    try:
        plan = plan_step(quote(settings), kind, branch, bump, overrides)
        guard(quote(settings), quote(plan))
        return ship(settings, plan)
    finally:
        ledger.release_lock(lock, holder)


def resume_release(repo: str, version: str) -> dict[str, Any]:
    """Finish what a release left undone, from the plan recorded in the ledger."""
    from gestan_release.ledger import Ledger

    settings = load_settings(repo)
    ledger = Ledger.existing(settings.database_url)
    known = ledger.release(version) if ledger is not None else None
    if ledger is None or known is None:
        raise ReleaseError(
            f"no release {version} in the ledger ({settings.database_url}): nothing to resume; "
            f"`gestan-release status` lists the releases"
        )
    lock = f"repo:{settings.repo}"
    holder = ledger.acquire(lock, wait=settings.lock_wait)
    try:
        return ship(settings, Plan.from_json(known.plan))
    finally:
        ledger.release_lock(lock, holder)
