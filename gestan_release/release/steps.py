"""The steps of a release that change the world, each through the ledger (`delivery.once` /
`delivery.deliver`) so that a re-run does nothing twice: git (version-file bump, tag, maintenance
branch, push), build, the update endpoint, the tickets marked released, X, the forum, the mails;
and the approval and the `published` event around them. `release.runbook` orders them.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from gestan_release.channels.base import Sender
from gestan_release.core.progress import NULL, Progress
from gestan_release.errors import DeliveryError, GestanReleaseError, ReleaseError
from gestan_release.history import gitops
from gestan_release.history.git import has_commit
from gestan_release.history.versions import Kind
from gestan_release.release.delivery import StepResult, deliver, once
from gestan_release.release.notes import release_notes
from gestan_release.release.plan import Plan
from gestan_release.settings import Settings
from gestan_release.tickets.values import Priority

if TYPE_CHECKING:
    from gestan_release.store.delivery_book import Delivery
    from gestan_release.store.ledger import Ledger

Senders = dict[str, Sender]


def git_step(settings: Settings, ledger: Ledger, plan: Plan) -> tuple[str, StepResult]:
    """Version-file bump, annotated tag, maintenance branch (full), push: each once."""
    repo = settings.repo
    result = StepResult("git")
    commit = plan.commit
    if plan.kind == Kind.NIGHTLY:
        return commit, result
    # A stateless worker's clone is fresh from REPO_URL: what a vanished worker made but never
    # pushed is not in it, whatever the ledger says. Make it again (nobody else ever saw it).
    stateless = bool(settings.repo_url)

    def redo_if_lost(key: str, present: Callable[[Delivery], bool]) -> None:
        d = ledger.delivery(key)
        if stateless and d is not None and d.finished and not present(d):
            ledger.mark_failed(key, "made by a worker that vanished before pushing it: made again")

    if settings.version_file and not plan.adopted_tag:
        redo_if_lost(f"bump:{plan.version}", lambda d: has_commit(repo, d.external_id or ""))
        d = once(
            ledger,
            plan,
            f"bump:{plan.version}",
            "git",
            lambda: (
                gitops.bump_version_file(
                    repo,
                    plan.branch,
                    settings.version_file or "",
                    plan.version,
                    f"Version {plan.label} ({plan.version})",
                ),
                None,
            ),
            result,
        )
        commit = d.external_id
    tag = plan.tag
    assert tag is not None
    message = f"Gestan {plan.label} ({plan.version})"
    redo_if_lost(f"tag:{tag}", lambda _: gitops.tag_target(repo, tag) is not None)
    once(
        ledger,
        plan,
        f"tag:{tag}",
        "git",
        lambda: (gitops.create_tag(repo, tag, commit, message) and commit, None),
        result,
    )
    ledger.set_commit(plan.version, commit)
    refs = [f"refs/tags/{tag}"]
    if plan.kind == Kind.FULL:
        branch = plan.v.branch
        redo_if_lost(f"branch:{branch}", lambda _: gitops.branch_exists(repo, branch))
        once(
            ledger,
            plan,
            f"branch:{branch}",
            "git",
            lambda: (gitops.create_branch(repo, branch, commit) and commit, None),
            result,
        )
        refs.append(f"refs/heads/{branch}")
    if settings.version_file and not plan.adopted_tag:
        refs.append(f"refs/heads/{plan.branch}")
    if settings.remote:
        remote = settings.remote
        once(
            ledger,
            plan,
            f"push:{tag}",
            "git",
            lambda: (_push(repo, remote, refs), None),
            result,
        )
    return commit, result


def _push(repo: Path, remote: str, refs: list[str]) -> str:
    """Push; a failure may be the network, so it is worth a retry (`DeliveryError`)."""
    try:
        gitops.push(repo, remote, refs)
    except GestanReleaseError as exc:
        raise DeliveryError(f"push to {remote} failed: {exc}", permanent=False) from None
    return remote


def build_step(
    settings: Settings, ledger: Ledger, plan: Plan, commit: str
) -> tuple[list[dict], StepResult]:
    """Run BUILD_COMMAND at the released commit; hash the artifacts (sha256, size), once."""
    result = StepResult("build")
    if not settings.build_command:
        return [], result
    key = f"build:{plan.version}"
    existing = ledger.delivery(key)
    if existing is not None and existing.finished:
        result.skipped += 1
        return json.loads(existing.external_id or "[]"), result
    assert settings.state_dir is not None
    out_dir = settings.state_dir / "artifacts" / plan.version

    def action() -> tuple[str, str]:
        artifacts = gitops.build(
            settings.repo,
            commit,
            settings.build_command or "",
            settings.artifacts or "dist/*",
            out_dir,
            {"GESTAN_VERSION": plan.version, "GESTAN_LABEL": plan.label},
        )
        return json.dumps([a.to_json() for a in artifacts]), str(out_dir)

    d = once(ledger, plan, key, "build", action, result)
    return json.loads(d.external_id or "[]"), result


def update_entry(
    settings: Settings, plan: Plan, artifacts: list[dict], notes_url: str | None
) -> dict:
    base = settings.download_base_url.rstrip("/")
    critical = any(
        t["priority"] == Priority.FLASH and t["id"] not in plan.already_in
        for t in plan.changelog["tickets"]
    )
    return {
        "version": plan.version,
        "label": plan.label,
        "kind": plan.kind,
        "critical": critical,
        "rollout": 100,
        "artifacts": {
            a["platform"]: {
                "url": f"{base}/{plan.version}/{a['name']}",
                "sha256": a["sha256"],
                "size": a["size"],
            }
            for a in artifacts
        },
        "notes_url": notes_url,
    }


def publish_step(
    settings: Settings, ledger: Ledger, plan: Plan, artifacts: list[dict], notes_url: str | None
) -> StepResult:
    """Publish the release to the update endpoint of its channel, once."""
    from gestan_release.updates.publisher import publisher_for

    result = StepResult("update endpoint")
    key = f"updates:{plan.channel}:{plan.version}"
    if not artifacts:
        existing = ledger.delivery(key)
        if existing is None or not existing.finished:
            ledger.mark_sending(key, plan.version, "updates")
            ledger.mark_done(key, "skipped: no artifacts (BUILD_COMMAND is not set)")
            result.skipped += 1
        return result
    entry = update_entry(settings, plan, artifacts, notes_url)

    def action() -> tuple[str, None]:
        answer = publisher_for(settings).publish(plan.channel, entry)
        return f"serial {answer.get('serial')}", None

    with contextlib.suppress(DeliveryError):  # recorded in the ledger; the other channels go on
        once(ledger, plan, key, "updates", action, result)
    return result


def announce_step(settings: Settings, ledger: Ledger, plan: Plan, senders: Senders) -> StepResult:
    from gestan_release.release.messages import announcement

    result = StepResult("X")
    deliver(ledger, plan, senders["x"], [announcement(release_notes(settings, plan))], "x", result)
    return result


def forum_step(
    settings: Settings, ledger: Ledger, plan: Plan, senders: Senders, progress: Progress = NULL
) -> tuple[str | None, StepResult]:
    """The changelog topic, then a reply on each fixed ticket's discussion."""
    from gestan_release.release.messages import forum_comments, forum_topic

    result = StepResult("forum")
    notes = release_notes(settings, plan)
    topic = forum_topic(notes, settings.forum_category)
    receipts = deliver(ledger, plan, senders["forum"], [topic], "forum", result)
    topic_url = getattr(receipts.get(topic.key), "url", None)
    comments = forum_comments(notes, topic_url)
    deliver(ledger, plan, senders["forum"], comments, "forum", result, progress)
    return topic_url, result


def mail_step(
    settings: Settings,
    ledger: Ledger,
    plan: Plan,
    senders: Senders,
    topic_url: str | None,
    progress: Progress = NULL,
) -> StepResult:
    """One mail per reporter, listing all their tickets of this release."""
    from gestan_release.release.messages import reporter_mails

    result = StepResult("mail")
    notes = release_notes(settings, plan)
    mails = reporter_mails(notes, settings.mail_from, topic_url)
    deliver(ledger, plan, senders["mail"], mails, "mail", result, progress)
    return result


def tickets_step(settings: Settings, ledger: Ledger, plan: Plan) -> StepResult:
    """Mark the release's tickets released, once the update endpoint has the version: installs
    can then get the fix, whatever the announcements did (X, the forum and the mails may all have
    failed: they are resumed, the fix is out). Before that, the step waits (recorded failed)."""
    from gestan_release.store.delivery_book import FINISHED
    from gestan_release.tickets.store import TicketStore

    result = StepResult("tickets")
    ids = plan.ticket_ids
    key = f"tickets:{plan.version}"
    published = ledger.delivery(f"updates:{plan.channel}:{plan.version}")
    if published is None or published.state not in FINISHED:
        done = ledger.delivery(key)
        if done is None or not done.finished:
            reason = (
                f"not marked released yet: the update endpoint does not have {plan.version}; "
                f"resume once it does"
            )
            ledger.mark_sending(key, plan.version, "tickets")
            ledger.mark_failed(key, reason)
            result.failed.append((key, reason))
        return result

    def action() -> tuple[str, None]:
        TicketStore(settings.database_url).set_status(ids, "released")
        return f"{len(ids)} released", None

    once(ledger, plan, key, "tickets", action, result)
    return result


def approval(
    settings: Settings, ledger: Ledger, plan: Plan, ask: Callable[[Settings, Plan], str]
) -> str | None:
    """APPROVAL=required: nothing ships before someone approves (once per release, recorded in
    the ledger, so a resumed release is not asked again, and one never approved always is).
    Returns who approved now (None: no approval needed, or given before). A rejection or a timeout
    (`ask` raises ReleaseError) ends the run with nothing shipped, and the release is forgotten so
    that the next run plans it afresh."""
    if settings.approval != "required" or plan.kind == Kind.NIGHTLY:
        return None
    key = f"approval:{plan.version}"
    known = ledger.delivery(key)
    if known is not None and known.finished:
        return None
    try:
        who = ask(settings, plan)
    except ReleaseError:
        ledger.forget_release(plan.version)
        raise
    ledger.mark_sending(key, plan.version, "approval")
    ledger.mark_done(key, f"approved by {who}")
    return who


def published_event(ledger: Ledger, plan: Plan, emit: Callable[[Plan], str]) -> bool:
    """One `gestan.release.published` event per released version (recorded in the ledger; a
    repeat after a crash carries the same event id). True when emitted now."""
    key = f"event:{plan.version}"
    known = ledger.delivery(key)
    if known is not None and known.finished:
        return False
    ledger.mark_sending(key, plan.version, "event")
    ledger.mark_done(key, emit(plan))
    return True
