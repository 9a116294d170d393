"""The plan of a release: everything decided before the first side effect.

preflight (the repository and the settings, the branch) → plan (the version, the fixed tickets,
stored in the ledger so that a resume ships exactly what was planned) → guard (Gestan's rules).
Nothing here changes the world; `gestan_release.release.runbook` runs the steps that do.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from gestan_release.errors import ReleaseError
from gestan_release.history import gitops
from gestan_release.history.git import has_parent, resolve_commit
from gestan_release.history.git import toplevel as ensure_repo
from gestan_release.history.ranges import (
    Rules,
    find_previous_release,
    release_tags,
    scan_range,
)
from gestan_release.history.versions import Kind, Version, release_version
from gestan_release.release.planning import (
    Range,
    changelog_for,
    line_of_branch,
    maintenance_branches,
    next_version,
    today_paris,
)
from gestan_release.settings import Settings

if TYPE_CHECKING:
    from gestan_release.store.ledger import Ledger
    from gestan_release.store.release_book import Release


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
    from gestan_release.release.workers import check_stateless

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
    from gestan_release.history.stories import stories_of

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
# Decisions the flows used to make
# --------------------------------------------------------------------------------------------
def allow_missing_overrides(ids: Iterable[int] | None, reason: str | None) -> dict[int, str]:
    """`--allow-missing ID…` as the plan's overrides (ticket id → reason); leaving a fix out
    needs a reason, recorded in the ledger."""
    ids = list(ids or ())
    if ids and not reason:
        raise ReleaseError("--allow-missing needs --reason: say why the fix may be left out")
    return {int(t): reason or "" for t in ids}


def plan_or_resume(
    settings: Settings,
    kind: str,
    branch: str,
    *,
    bump: str = "minor",
    allow_missing: dict[int, str] | None = None,
    ledger: Ledger | None = None,
) -> tuple[Plan, Release | None]:
    """The plan of the release of `branch`, or, when the ledger already has that version, the plan
    recorded then (a release is resumed as planned, never planned anew) with its record."""
    nightlies = []
    if kind == Kind.NIGHTLY and ledger is not None:
        nightlies = [Version.parse(v) for v in ledger.nightly_versions()]
    plan = plan_release(
        settings, kind, branch, bump=bump, allow_missing=allow_missing, nightlies=nightlies
    )
    if ledger is not None and (known := ledger.release(plan.version)) is not None:
        return Plan.from_json(known.plan), known
    return plan, None
