"""The release runbook as plain functions; `flows/` composes them into Prefect flows.

preflight → plan (fixed tickets, version) → guard → messages → git → build → update endpoint →
tickets marked released (once the update endpoint has the version) → X → forum → mail → summary.

Every step that changes the world goes through the ledger (`once` / `deliver`): a delivery is
marked `sending` before it acts and `done` after, so a re-run skips what was done and, for what a
crash left `sending`, asks the channel whether it went out before acting again.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import logging
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gestan_release import gitops
from gestan_release.changelog import Changelog, ChangelogEntry
from gestan_release.errors import DeliveryError, GestanReleaseError, ReleaseError
from gestan_release.git import has_parent, resolve_commit
from gestan_release.git import toplevel as ensure_repo
from gestan_release.history import (
    CommitRef,
    RevertedCommit,
    Rules,
    find_previous_release,
    release_tags,
    scan_range,
)
from gestan_release.planning import (
    Range,
    changelog_for,
    line_of_branch,
    maintenance_branches,
    next_version,
    today_paris,
)
from gestan_release.progress import NULL, Progress
from gestan_release.settings import Settings
from gestan_release.ticket_lookup import lookup_tickets
from gestan_release.tickets import Priority
from gestan_release.validation import url_host
from gestan_release.versions import Kind, Version, release_version

if TYPE_CHECKING:
    from gestan_release.ledger import Delivery

log = logging.getLogger("gestan_release.pipeline")


# --------------------------------------------------------------------------------------------
# The plan: everything decided before the first side effect (stored in the ledger for resume)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    kind: str  # full | u | nightly
    version: str
    branch: str
    commit: str  # the commit released (before a VERSION_FILE bump)
    previous: str | None
    from_ref: str | None
    channel: str  # update channel: stable | nightly
    date: str  # ISO date of the release (Europe/Paris)
    changelog: dict[str, Any]  # Changelog.to_json()
    tag_prefix: str = "v"
    already_in: dict[int, str] = field(default_factory=dict)
    allow_missing: dict[int, str] = field(default_factory=dict)
    adopted_tag: bool = False
    warnings: tuple[str, ...] = ()

    @property
    def v(self) -> Version:
        return Version.parse(self.version)

    @property
    def label(self) -> str:
        return self.v.label

    @property
    def tag(self) -> str | None:
        return None if self.kind == Kind.NIGHTLY else self.v.tag(self.tag_prefix)

    @property
    def ticket_ids(self) -> list[int]:
        return [t["id"] for t in self.changelog["tickets"]]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["already_in"] = {str(k): v for k, v in self.already_in.items()}
        data["allow_missing"] = {str(k): v for k, v in self.allow_missing.items()}
        data["warnings"] = list(self.warnings)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Plan:
        data = dict(data)
        data["already_in"] = {int(k): v for k, v in data.get("already_in", {}).items()}
        data["allow_missing"] = {int(k): v for k, v in data.get("allow_missing", {}).items()}
        data["warnings"] = tuple(data.get("warnings", ()))
        return cls(**data)


def changelog_of(settings: Settings, plan: Plan) -> Changelog:
    """The plan's changelog joined again with the ticket store (reporters may have changed)."""
    data = plan.changelog
    ids = [t["id"] for t in data["tickets"]]
    tickets = lookup_tickets(settings.database_url, ids)
    missing = [tid for tid in ids if tid not in tickets]
    if missing:
        raise ReleaseError(
            f"tickets {', '.join(map(str, missing))} of release {plan.version} are no longer in "
            f"the ticket store: import them again (`gestan-release tickets import`) and resume"
        )

    def refs(items: list[dict[str, str]]) -> tuple[CommitRef, ...]:
        return tuple(CommitRef(c["sha"], c["subject"], c["author"]) for c in items)

    entries = tuple(
        ChangelogEntry(tickets[t["id"]], refs(t["commits"]), plan.already_in.get(t["id"]))
        for t in data["tickets"]
    )
    return Changelog(
        from_ref=data["from"],
        to_sha=data["to"],
        previous_version=data["previous_version"],
        entries=entries,
        unknown=tuple(data["unknown"]),
        # The markdown changelog lists the commits of each unknown ref (plans recorded before
        # they were kept have none).
        unknown_commits={
            tid: refs(data.get("unknown_commits", {}).get(str(tid), [])) for tid in data["unknown"]
        },
        reverted=tuple(
            RevertedCommit(r["sha"], r["subject"], "", tuple(r["tickets"]))
            for r in data["reverted"]
        ),
    )


# --------------------------------------------------------------------------------------------
# Preflight
# --------------------------------------------------------------------------------------------
class Branch(str):
    """A branch name that also says why it was chosen (shown on the terminal, logged)."""

    reason: str

    def __new__(cls, name: str, reason: str = "") -> Branch:
        branch = super().__new__(cls, name)
        branch.reason = reason
        return branch


def default_branch(settings: Settings, kind: str, ref: str | None) -> Branch:
    """The branch to release: `ref` when given; for a U, the checked-out maintenance branch
    (the release manager is on `release/15.4` to fix 15.4), else the newest one; else main."""
    if ref:
        return Branch(ref.removeprefix("refs/heads/"), "as asked")
    if kind == Kind.U:
        branches = [name for _, name in maintenance_branches(settings.repo)]
        if not branches:
            raise ReleaseError(
                "no maintenance branch release/X.Y: a U sub-version is cut from the branch of a "
                "full version, which `gestan-release release` creates"
            )
        here = gitops.current_branch(settings.repo)
        if here in branches:
            return Branch(here, "the maintenance branch checked out")
        where = f"{here} is checked out" if here else "HEAD is detached"
        return Branch(
            branches[0], f"the newest maintenance branch: {where}; --branch to choose another"
        )
    return Branch(settings.main_branch, "MAIN_BRANCH")


def preflight(settings: Settings, kind: str, ref: str | None) -> str:
    """Check the repository and the settings before anything happens; return the branch."""
    repo = ensure_repo(settings.repo)
    branch = default_branch(settings, kind, ref)
    if kind != Kind.NIGHTLY:
        gitops.check_attached(repo)
    # The state dir (ledger, outbox) lives in the work tree; the flows keep it out of
    # `git status` (`.git/info/exclude`) before the first side effect. A dry run changes nothing.
    gitops.check_clean(repo, ignore=settings.state_dir)
    resolve_commit(repo, branch)
    if kind == Kind.U:
        line_of_branch(branch)
    if settings.remote:
        gitops.check_remote(repo, settings.remote)
    from gestan_release.channels import check_settings
    from gestan_release.workers import check_stateless

    check_settings(settings)
    check_stateless(settings, kind)
    return branch


# --------------------------------------------------------------------------------------------
# Plan
# --------------------------------------------------------------------------------------------
def shipped_in_us(settings: Settings, line: tuple[int, int]) -> dict[int, str]:
    """Tickets fixed by the U versions of the line X.Y: ticket id → label of the first U."""
    repo = settings.repo
    tags = sorted(
        (t for t in release_tags(repo, settings.tag_prefix) if t.version.line == line),
        key=lambda t: t.version,
    )
    rules = Rules.from_settings(settings)
    shipped: dict[int, str] = {}
    for before, tag in itertools.pairwise(tags):
        fixes = scan_range(repo, [f"{before.tag}..{tag.tag}"], rules)
        for ticket_id in fixes.fixes:
            shipped.setdefault(ticket_id, tag.version.label)
    return shipped


def plan_release(
    settings: Settings,
    kind: str,
    branch: str,
    *,
    bump: str = "minor",
    allow_missing: dict[int, str] | None = None,
    day: dt.date | None = None,
    nightlies: Iterable[Version] = (),
) -> Plan:
    """Decide the version and the tickets of the release of `branch` (nothing is changed)."""
    repo = ensure_repo(settings.repo)
    settings = settings.replace(repo=repo)
    prefix = settings.tag_prefix
    commit = resolve_commit(repo, branch)
    day = day or today_paris()
    adopted = False
    if kind == Kind.NIGHTLY:
        nxt = next_version(settings, "nightly", branch, day=day, nightlies=nightlies)
        version = nxt.version
    else:
        version, adopted = _version_for_commit(settings, kind, branch, commit, bump)
    line = version.line if kind == Kind.U else None
    # The range ends at the released commit; an adopted tag on it must not be its own start.
    start_from = f"{commit}^" if adopted else commit
    prev, elsewhere = (
        find_previous_release(repo, start_from, prefix, line)
        if (not adopted or has_parent(repo, commit))
        else (None, None)
    )
    rng = Range(prev.tag if prev else None, commit, prev.version if prev else None)
    fixes = scan_range(repo, rng.rev_args(), Rules.from_settings(settings))
    from gestan_release.stories import stories_of

    log_ = changelog_for(settings, rng, fixes)
    already_in: dict[int, str] = {}
    if kind == Kind.FULL and prev is not None:
        already_in = {
            tid: label
            for tid, label in shipped_in_us(settings, prev.version.line).items()
            if tid in set(log_.ticket_ids)
        }
    warnings = []
    if elsewhere is not None:
        warnings.append(
            f"release tag {elsewhere.tag} is newer than {prev.tag if prev else 'any release'} "
            f"in the history of {branch} but not in it (tagged on another branch?): this "
            f"release's notes start at {prev.tag if prev else 'the first commit'}"
        )
    if log_.unknown:
        warnings.append(
            f"{len(log_.unknown)} ticket(s) referenced in commits are not in the ticket store and "
            f"get no mail: {', '.join(f'#{t}' for t in log_.unknown)}"
        )
    return Plan(
        kind=str(version.kind),
        version=str(version),
        branch=branch,
        commit=commit,
        previous=str(prev.version) if prev else None,
        from_ref=rng.from_ref,
        channel="nightly" if kind == Kind.NIGHTLY else "stable",
        date=day.isoformat(),
        changelog=log_.to_json()
        | {
            "unknown_commits": {
                str(tid): [c.to_json() for c in commits]
                for tid, commits in log_.unknown_commits.items()
            },
            # Tickets whose story is not plain (reverted, picked, mention only): the preview
            # lists them so that the release manager checks them before mail goes out.
            "stories": [story.to_json() for story in stories_of(fixes)],
        },
        tag_prefix=prefix,
        already_in=already_in,
        allow_missing=dict(allow_missing or {}),
        adopted_tag=adopted,
        warnings=tuple(warnings),
    )


def _version_for_commit(
    settings: Settings, kind: str, branch: str, commit: str, bump: str
) -> tuple[Version, bool]:
    """The version to cut on `commit`, or the one a developer already tagged there (adopted)."""
    repo = settings.repo
    prefix = settings.tag_prefix
    on_commit = [
        (name, v) for name in gitops.tags_at(repo, commit) if (v := release_version(name, prefix))
    ]
    if on_commit:
        name, tagged = max(on_commit, key=lambda item: item[1])
        others = [t.version for t in release_tags(repo, prefix) if t.tag != name]
        if kind == Kind.U:
            same_line = [v for v in others if v.line == tagged.line]
            expected = max(same_line).next_u() if same_line else None
        else:
            highest = max(others) if others else None
            expected = highest.next_full(bump) if highest else None
        if expected is not None and tagged != expected and tagged.kind == kind:
            raise ReleaseError(
                f"tag {name} on {branch} names {tagged}, but the next "
                f"{'U sub-version' if kind == Kind.U else 'full version'} is {expected}: "
                f"delete the tag (`git tag -d {name}`) or fix it, then run again"
            )
        if kind == Kind.U and tagged.kind == Kind.U and tagged.line != line_of_branch(branch):
            line = ".".join(map(str, line_of_branch(branch)))
            raise ReleaseError(
                f"tag {name} on {branch} names {tagged}, which is not a U sub-version of {line}: "
                f"delete the tag (`git tag -d {name}`) or fix it, then run again"
            )
        if tagged.kind != kind:
            raise ReleaseError(
                f"{branch} is already released as {tagged.label} (tag {name}) at this commit: "
                f"commit the fixes first, or `gestan-release resume {tagged}` to finish it"
            )
        return tagged, True
    nxt = next_version(settings, "u" if kind == Kind.U else bump, branch)
    # A release of this kind above the one `commit` descends from, tagged on a commit outside
    # its history: cutting the next version would skip over it.
    for t in release_tags(repo, prefix):
        if (
            t.version.kind == kind
            and (kind != Kind.U or t.version.line == nxt.version.line)
            and (nxt.reachable is None or t.version > nxt.reachable)
        ):
            sha = gitops.tag_target(repo, t.tag) or ""
            raise ReleaseError(
                f"tag {t.tag} already exists on another commit ({sha[:10]}), outside the "
                f"history of {branch}: delete it if it is wrong (`git tag -d {t.tag}`), or "
                f"release that commit"
            )
    existing = gitops.tag_target(repo, nxt.tag)
    if existing and existing != commit:
        raise ReleaseError(
            f"tag {nxt.tag} already exists on another commit ({existing[:10]}): delete it if it "
            f"is wrong (`git tag -d {nxt.tag}`) or release that commit"
        )
    return nxt.version, False


# --------------------------------------------------------------------------------------------
# Guard
# --------------------------------------------------------------------------------------------
def guard(settings: Settings, plan: Plan) -> list[str]:
    """Gestan's rules: a U fixes something; a flash fix shipped in a U is in the next full
    version (unless allowed, with a reason). Returns warnings; raises ReleaseError."""
    warnings = list(plan.warnings)
    fixed = set(plan.ticket_ids) | set(plan.changelog["unknown"])
    if plan.kind == Kind.U and not fixed:
        raise ReleaseError(
            f"{plan.label} would fix no ticket: nothing references a ticket in "
            f"{plan.from_ref}..{plan.branch}; a U sub-version ships fixes only"
        )
    if plan.kind == Kind.FULL:
        if not fixed:
            warnings.append(f"{plan.label} fixes no ticket (allowed for a full version)")
        if plan.previous:
            prev = Version.parse(plan.previous)
            shipped = shipped_in_us(settings, prev.line)
            missing = sorted(set(shipped) - fixed - set(plan.allow_missing))
            if missing:
                listing = ", ".join(f"#{t} ({shipped[t]})" for t in missing)
                raise ReleaseError(
                    f"{plan.label} would lose fixes shipped in U versions of {prev.label}: "
                    f"{listing} not fixed in {plan.from_ref}..{plan.branch}. Merge or cherry-pick "
                    f"them, or override with --allow-missing ID (the reason is recorded)"
                )
    return warnings


# --------------------------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------------------------
def release_notes(settings: Settings, plan: Plan, changelog: Changelog | None = None) -> Any:
    from gestan_release.messages import ReleaseNotes

    base = (settings.forum_base_url or "https://forum.gestan.fr").rstrip("/")
    return ReleaseNotes(
        version=plan.v,
        tag=plan.tag or plan.version,
        date=dt.date.fromisoformat(plan.date),
        changelog=changelog or changelog_of(settings, plan),
        download_url=f"{settings.download_base_url.rstrip('/')}/{plan.version}/",
        forum_category_url=f"{base}/categories/{settings.forum_category}",
        forum_host=url_host(settings.forum_base_url),
    )


def preview(settings: Settings, plan: Plan) -> str:
    """The dry run: version, changelog, post texts and every mail, as markdown."""
    from gestan_release.messages import release_messages, render_preview

    notes = release_notes(settings, plan)
    messages = release_messages(
        notes, category=settings.forum_category, mail_from=settings.mail_from
    )
    head = [f"**{plan.label}** ({plan.version}) from `{plan.branch}` at `{plan.commit[:10]}`"]
    head += [f"> ⚠ {w}" for w in plan.warnings]
    stories = _with_titles(plan.changelog.get("stories", []), notes.changelog)
    return "\n\n".join(head) + "\n\n" + render_preview(notes, messages, stories=stories)


def _with_titles(stories: list[dict[str, Any]], changelog: Changelog) -> list[dict[str, Any]]:
    """The stories of the plan, each with its ticket's title when the release fixes it."""
    titles = {e.ticket.id: e.ticket.title for e in changelog.entries}
    return [s | {"title": titles.get(s["id"])} for s in stories]


# --------------------------------------------------------------------------------------------
# The ledger around side effects
# --------------------------------------------------------------------------------------------
@dataclass
class StepResult:
    step: str
    done: int = 0
    skipped: int = 0
    pending_approval: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    retryable: int = 0  # failures that may go through next time (5xx, timeouts, 4yz)

    @property
    def ok(self) -> bool:
        return not self.failed

    def line(self) -> str:
        parts = [f"{self.done} done"]
        if self.skipped:
            parts.append(f"{self.skipped} already done")
        if self.pending_approval:
            parts.append(f"{self.pending_approval} awaiting moderation")
        if self.failed:
            parts.append(f"{len(self.failed)} failed")
        return f"{self.step}: " + ", ".join(parts)


def record_start(ledger: Any, plan: Plan) -> None:
    """The release row, its tickets and overrides (idempotent)."""
    ledger.start_release(
        version=plan.version,
        kind=plan.kind,
        label=plan.label,
        tag=plan.tag,
        channel=plan.channel,
        previous_version=plan.previous,
        plan=plan.to_json(),
        tickets=[
            (t["id"], t["priority"], plan.already_in.get(t["id"]), True)
            for t in plan.changelog["tickets"]
        ]
        + [(tid, None, None, False) for tid in plan.changelog["unknown"]],
        overrides=[(tid, "flash-in-next-full", r) for tid, r in plan.allow_missing.items()],
    )


def once(
    ledger: Any,
    plan: Plan,
    key: str,
    channel: str,
    action: Callable[[], tuple[str | None, str | None]],
    result: StepResult,
) -> Any:
    """Run one side effect unless the ledger says it is done; `action` must itself be safe to
    repeat after a crash (it checks the world first). Failures are recorded and re-raised."""
    existing = ledger.delivery(key)
    if existing is not None and existing.finished:
        result.skipped += 1
        return existing
    ledger.mark_sending(key, plan.version, channel)
    try:
        external_id, url = action()
    except GestanReleaseError as exc:
        ledger.mark_failed(key, str(exc))
        result.failed.append((key, str(exc)))
        if isinstance(exc, DeliveryError) and not exc.permanent:
            result.retryable += 1
        raise
    ledger.mark_done(key, external_id, url)
    result.done += 1
    return ledger.delivery(key)


def deliver(
    ledger: Any,
    plan: Plan,
    sender: Any,
    messages: list[Any],
    channel: str,
    result: StepResult,
    progress: Progress = NULL,
) -> dict[str, Any]:
    """Send each message once: skip what the ledger has done; for what was tried before and may
    have gone out (left `sending` by a crash, or `failed` after an answer that never came),
    ask the channel first; record every outcome. One failure never stops the others."""
    from gestan_release.channels.base import send_many
    from gestan_release.ledger import FAILED, PENDING_APPROVAL, SENDING

    receipts: dict[str, Any] = {}  # key → Delivery (done before) or Receipt (done now)
    to_send = []
    known = ledger.deliveries_by_key(plan.version) if messages else {}
    for message in messages:
        d = known.get(message.key)
        if d is not None and d.finished:
            result.skipped += 1
            receipts[message.key] = d
            continue
        if d is not None and d.state in (SENDING, FAILED):
            # A POST that timed out may have been applied even when the retries then failed.
            try:
                found = sender.find_existing(message)
            except Exception as exc:
                # Sending blind could make a duplicate: leave it for the next resume.
                error = f"could not check whether it already went out, not sent again: {exc}"
                ledger.mark_failed(message.key, error)
                result.failed.append((message.key, error))
                continue
            if found is not None:
                state = _state(found)
                ledger.mark_done(message.key, found.external_id, found.url, state)
                if state == PENDING_APPROVAL:
                    result.pending_approval += 1
                else:
                    result.done += 1
                receipts[message.key] = found
                continue
        to_send.append(message)

    def before(message: Any) -> None:
        ledger.mark_sending(message.key, plan.version, channel)

    if getattr(sender, "send_many", None) is not None and len(to_send) > 1:
        # A batch sender (SMTP) goes faster than a commit per message: record the whole batch
        # as sending first, in one transaction. A crash then leaves the unsent ones `sending`,
        # which a re-run sends (after asking the channel, as for any `sending` delivery).
        ledger.mark_sending_many([m.key for m in to_send], plan.version, channel)
        before = None  # type: ignore[assignment]

    bar = progress.track(channel, len(to_send))
    for message, outcome in send_many(sender, to_send, before):
        bar.advance(failed=isinstance(outcome, DeliveryError))
        if isinstance(outcome, DeliveryError):
            ledger.mark_failed(message.key, str(outcome))
            result.failed.append((message.key, str(outcome)))
            if not outcome.permanent:
                result.retryable += 1
        else:
            state = _state(outcome)
            ledger.mark_done(message.key, outcome.external_id, outcome.url, state)
            if state == PENDING_APPROVAL:
                result.pending_approval += 1
            else:
                result.done += 1
            receipts[message.key] = outcome
    bar.close()
    return receipts


def _state(receipt: Any) -> str:
    from gestan_release.ledger import DONE, PENDING_APPROVAL

    return PENDING_APPROVAL if receipt.state == "pending_approval" else DONE


# --------------------------------------------------------------------------------------------
# Steps
# --------------------------------------------------------------------------------------------
def git_step(settings: Settings, ledger: Any, plan: Plan) -> tuple[str, StepResult]:
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
        redo_if_lost(f"bump:{plan.version}", lambda d: _has_commit(repo, d.external_id or ""))
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


def _has_commit(repo: Path, sha: str) -> bool:
    from gestan_release.history import git

    if not sha:
        return False
    return bool(git(repo, "rev-parse", "--verify", "--quiet", f"{sha}^{{commit}}", check=False))


def _push(repo: Path, remote: str, refs: list[str]) -> str:
    """Push; a failure may be the network, so it is worth a retry (`DeliveryError`)."""
    try:
        gitops.push(repo, remote, refs)
    except GestanReleaseError as exc:
        raise DeliveryError(f"push to {remote} failed: {exc}", permanent=False) from None
    return remote


def build_step(
    settings: Settings, ledger: Any, plan: Plan, commit: str
) -> tuple[list[dict], StepResult]:
    """Run BUILD_COMMAND at the released commit; hash the artifacts (sha256, size), once."""
    import json

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
    settings: Settings, ledger: Any, plan: Plan, artifacts: list[dict], notes_url: str | None
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


def announce_step(
    settings: Settings, ledger: Any, plan: Plan, senders: dict[str, Any]
) -> StepResult:
    from gestan_release.messages import announcement

    result = StepResult("X")
    deliver(ledger, plan, senders["x"], [announcement(release_notes(settings, plan))], "x", result)
    return result


def forum_step(
    settings: Settings, ledger: Any, plan: Plan, senders: dict[str, Any], progress: Progress = NULL
) -> tuple[str | None, StepResult]:
    """The changelog topic, then a reply on each fixed ticket's discussion."""
    from gestan_release.messages import forum_comments, forum_topic

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
    ledger: Any,
    plan: Plan,
    senders: dict[str, Any],
    topic_url: str | None,
    progress: Progress = NULL,
) -> StepResult:
    """One mail per reporter, listing all their tickets of this release."""
    from gestan_release.messages import reporter_mails

    result = StepResult("mail")
    notes = release_notes(settings, plan)
    mails = reporter_mails(notes, settings.mail_from, topic_url)
    deliver(ledger, plan, senders["mail"], mails, "mail", result, progress)
    return result


def tickets_step(settings: Settings, ledger: Any, plan: Plan) -> StepResult:
    """Mark the release's tickets released, once the update endpoint has the version: installs
    can then get the fix, whatever the announcements did (X, the forum and the mails may all have
    failed: they are resumed, the fix is out). Before that, the step waits (recorded failed)."""
    from gestan_release.ledger import FINISHED
    from gestan_release.ticket_store import TicketStore

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


# --------------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------------
def summary(ledger: Any, plan: Plan, results: list[StepResult]) -> tuple[bool, str]:
    """(complete?, markdown summary with a table of every step and what is left)."""
    undone = ledger.deliveries(plan.version, undone=True)
    complete = not undone and all(r.ok for r in results)
    lines = [
        f"## {plan.label} ({plan.version}) — {'publiée' if complete else 'INCOMPLÈTE'}",
        "",
        f"Branche `{plan.branch}`, commit `{plan.commit[:10]}`, "
        f"{len(plan.ticket_ids)} ticket(s) corrigé(s), précédente : {plan.previous or '—'}.",
        "",
        "| étape | fait | déjà fait | en modération | échecs |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        lines.append(
            f"| {r.step} | {r.done} | {r.skipped} | {r.pending_approval} | {len(r.failed)} |"
        )
    if undone:
        lines += ["", "### Reste à faire", "", "| clé | état | tentatives | dernière erreur |"]
        lines.append("| --- | --- | ---: | --- |")
        for d in undone:
            err = (d.last_error or "").replace("|", "\\|").replace("\n", " ")
            lines.append(f"| `{d.key}` | {d.state} | {d.attempts} | {err} |")
        refused = sorted(
            d.key.split(":", 2)[2] for d in undone if d.channel == "mail" and d.state == "failed"
        )
        if refused:
            lines += ["", "### Adresses refusées", ""]
            lines += [f"- {address}" for address in refused]
        lines += ["", f"Relancez `gestan-release resume {plan.version}` pour terminer."]
    for w in plan.warnings:
        lines += ["", f"> ⚠ {w}"]
    return complete, "\n".join(lines) + "\n"
