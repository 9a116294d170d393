"""What the next release would be: its range of commits, the tickets it fixes, its version.

These functions read git and the ticket store but change nothing; the CLI and the flows share them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from gestan_release.errors import GitError, ReleaseError, VersionError
from gestan_release.history.git import (
    branch_exists,
    check_ref,
    existing_tags,
    is_ancestor,
    local_branches,
    merge_base,
    resolve_commit,
    resolve_commits,
    tag_target,
)
from gestan_release.history.git import toplevel as ensure_repo
from gestan_release.history.ranges import (
    RangeFixes,
    ReleaseTag,
    Rules,
    find_previous_release,
    previous_release,
    release_tags,
    scan_range,
    tag_version,
)
from gestan_release.history.versions import Kind, Version
from gestan_release.release.changelog import Changelog, build_changelog
from gestan_release.settings import Settings

PARIS = "Europe/Paris"


@dataclass(frozen=True)
class Range:
    """`from_ref..to_sha`; `from_ref` None means the whole history (a first release)."""

    from_ref: str | None
    to_sha: str
    previous: Version | None
    warnings: tuple[str, ...] = ()  # what the user should know about how the range was chosen
    previous_tag: ReleaseTag | None = None  # the release tag picked as the start, if any
    from_sha: str | None = None  # an explicit --from, resolved (its ancestry is checked)
    to_ref: str = "HEAD"

    def rev_args(self) -> list[str]:
        return [f"{self.from_ref}..{self.to_sha}"] if self.from_ref else [self.to_sha]

    @property
    def at_release(self) -> bool:
        """The end of the range is the very commit of the release it starts from."""
        return self.previous_tag is not None and self.previous_tag.commit == self.to_sha


def resolve_range(
    repo: Path,
    to_ref: str = "HEAD",
    from_ref: str | None = None,
    prefix: str = "v",
    line: tuple[int, int] | None = None,
) -> Range:
    """The range of a changelog: `from_ref` or the previous release reachable from `to_ref`."""
    named = [(to_ref, "--to")] + ([(from_ref, "--from")] if from_ref is not None else [])
    for ref, option in named:
        check_ref(ref, option)
    tags = existing_tags(repo, [ref for ref, _ in named])
    versions = {ref: tag_version(ref, prefix) for ref in tags}  # a foreign tag is refused
    shas = resolve_commits(repo, named)
    to_sha = shas[0]
    if from_ref is not None:
        previous = versions.get(from_ref)
        return Range(from_ref, to_sha, previous, from_sha=shas[1], to_ref=to_ref)
    prev, elsewhere = find_previous_release(repo, to_sha, prefix, line)
    warnings = ()
    if elsewhere is not None:
        where = f"newer than {prev.tag}" if prev else "a release"
        start = f"the range starts at {prev.tag}" if prev else "the range is the whole history"
        warnings = (
            f"release tag {elsewhere.tag} is {where} but not in the history of {to_ref} "
            f"(tagged on another branch?): {start}; to start at {elsewhere.tag}, pass "
            f"--from {elsewhere.tag}",
        )
    if prev is None:
        return Range(None, to_sha, None, warnings)
    return Range(prev.tag, to_sha, prev.version, warnings, prev)


def range_warnings(repo: Path, rng: Range, fixes: RangeFixes) -> tuple[str, ...]:
    """What the user should know about the range, once read: how it was chosen, and whether an
    explicit `--from` is in the history of `--to` (a reversed or crossed range silently gives
    fewer tickets than the user thinks). The log tells the ancestry; git is asked only to name
    the merge base of a range that is wrong."""
    if rng.from_sha is None or rng.from_ref is None:
        return rng.warnings
    ancestor = fixes.start_is_ancestor
    if ancestor is None:
        ancestor = is_ancestor(repo, rng.from_sha, rng.to_sha)
    if ancestor or rng.from_sha == rng.to_sha:
        return rng.warnings
    return rng.warnings + _unrelated_range(repo, rng.from_ref, rng.from_sha, rng.to_ref, rng.to_sha)


def _unrelated_range(
    repo: Path, from_ref: str, from_sha: str, to_ref: str, to_sha: str
) -> tuple[str, ...]:
    """The warning for a `--from` that is not in the history of `--to`."""
    base = merge_base(repo, from_sha, to_sha)
    if base is None:
        return (
            f"--from {from_ref} and --to {to_ref} share no history: the range is the whole "
            f"history of {to_ref}",
        )
    if base == to_sha:
        return (
            f"--from {from_ref} is not an ancestor of --to {to_ref} (it is the other way "
            f"round): the range is empty; did you mean --from {to_ref} --to {from_ref}?",
        )
    return (
        f"--from {from_ref} is not an ancestor of --to {to_ref}: the range holds the commits "
        f"of {to_ref} since their merge base {base[:10]}; pass --from {base[:10]} to say so, "
        f"or check the two refs",
    )


def release_range(repo: Path, version: str, prefix: str = "v") -> Range:
    """The range of an existing release: from its previous release (the highest release tag in
    its history below it; the whole history for a first release) to its tag."""
    wanted = Version.parse(version.removeprefix(prefix))
    if wanted.is_nightly:
        raise VersionError(f"{wanted} is a nightly: nightlies have no tag, hence no notes here")
    tag = wanted.tag(prefix)
    sha = tag_target(repo, tag)
    if sha is None:
        known = ", ".join(t.tag for t in release_tags(repo, prefix)[:5]) or "none"
        raise GitError(f"no release {wanted}: tag {tag} does not exist (newest releases: {known})")
    below = [t for t in release_tags(repo, prefix, merged_into=sha) if t.version < wanted]
    prev = below[0] if below else None
    if prev is None:
        return Range(None, sha, None)
    return Range(prev.tag, sha, prev.version, (), prev)


def changelog_for(settings: Settings, rng: Range, fixes: RangeFixes | None = None) -> Changelog:
    """Read the range once, apply the rules, join with the ticket store."""
    if fixes is None:
        fixes = scan_range(
            settings.repo, rng.rev_args(), Rules.from_settings(settings), rng.from_sha
        )
    from gestan_release.tickets.lookup import lookup_tickets  # the store only when there are fixes

    tickets = lookup_tickets(settings.database_url, fixes.fixes.keys()) if fixes.fixes else {}
    return build_changelog(
        fixes,
        tickets,
        from_ref=rng.from_ref,
        to_sha=rng.to_sha,
        previous_version=str(rng.previous) if rng.previous else None,
    )


# --------------------------------------------------------------------------------------------
# Next versions
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NextVersion:
    version: Version
    previous: Version | None  # the release the version was computed from
    ref: str
    tag_prefix: str = "v"
    reachable: Version | None = None  # the highest release in the history of `ref`
    warnings: tuple[str, ...] = ()

    @property
    def kind(self) -> Kind:
        return self.version.kind

    @property
    def tag(self) -> str:
        return self.version.tag(self.tag_prefix)

    def to_json(self) -> dict[str, object]:
        return {
            "version": str(self.version),
            "label": self.version.label,
            "tag": self.tag,
            "previous": str(self.previous) if self.previous else None,
            "kind": str(self.kind),
        }


def maintenance_branches(repo: Path) -> list[tuple[tuple[int, int], str]]:
    """Local `release/X.Y` branches, newest line first."""
    found = []
    for name in local_branches(repo, "release/"):
        try:
            major, minor = name.removeprefix("release/").split(".")
            found.append(((int(major), int(minor)), name))
        except ValueError:
            continue
    return sorted(found, reverse=True)


def line_of_branch(branch: str) -> tuple[int, int]:
    try:
        major, minor = branch.removeprefix("refs/heads/").removeprefix("release/").split(".")
        return int(major), int(minor)
    except ValueError:
        raise VersionError(
            f"{branch!r} is not a maintenance branch: U sub-versions are cut from release/X.Y"
        ) from None


def today_paris() -> dt.date:
    from zoneinfo import ZoneInfo

    return dt.datetime.now(ZoneInfo(PARIS)).date()


def next_version(
    settings: Settings,
    kind: str = "minor",
    ref: str | None = None,
    *,
    day: dt.date | None = None,
    nightlies: Iterable[Version] = (),
) -> NextVersion:
    """The version the next release of `kind` (minor, major, u, nightly) would get."""
    repo = ensure_repo(settings.repo)
    prefix = settings.tag_prefix
    if ref is not None:
        check_ref(ref, "--ref")
    if kind == "u":
        if ref is None:
            branches = maintenance_branches(repo)
            if not branches:
                raise ReleaseError(
                    "no maintenance branch release/X.Y: a U sub-version is cut from the branch "
                    "of a full version (a full release creates it)"
                )
            ref = branches[0][1]
        line = line_of_branch(ref) if "release/" in ref else None
        resolve_commit(repo, ref, "--ref")
        reachable = previous_release(repo, ref, prefix, line)
        if reachable is None:
            where = f"{line[0]}.{line[1]}" if line else ref
            raise ReleaseError(
                f"no release of {where} is reachable from {ref}: cut the full version first"
            )
        same_line = [
            t for t in release_tags(repo, prefix) if t.version.line == reachable.version.line
        ]
        base = max(same_line, key=lambda t: t.version)
        return NextVersion(
            base.version.next_u(),
            base.version,
            ref,
            prefix,
            reachable.version,
            _computed_elsewhere(base, reachable, ref),
        )
    if kind not in ("minor", "major", "nightly"):
        raise VersionError(f"unknown kind {kind!r}: use minor, major, u or nightly")
    if ref is None:
        ref = settings.main_branch
        if not branch_exists(repo, ref):
            ref = "HEAD"
    resolve_commit(repo, ref, "--ref")
    reachable = previous_release(repo, ref, prefix)
    everything = release_tags(repo, prefix)
    highest = everything[0] if everything else None
    # The version is computed from the highest release; a U of the line this history already
    # has (on its maintenance branch) says nothing new, a newer line elsewhere does.
    base = (
        reachable
        if reachable and highest and reachable.version.line == highest.version.line
        else highest
    )
    if kind == "nightly":
        start = highest.version if highest else Version(0, 0, 0)
        version = start.next_nightly(day or today_paris(), nightlies)
    elif highest is None:
        version = Version(1, 0, 0) if kind == "major" else Version(0, 1, 0)
    else:
        version = highest.version.next_full(kind)
    return NextVersion(
        version,
        base.version if base else None,
        ref,
        prefix,
        reachable.version if reachable else None,
        _computed_elsewhere(base, reachable, ref) if base else (),
    )


def _computed_elsewhere(
    base: ReleaseTag, reachable: ReleaseTag | None, ref: str
) -> tuple[str, ...]:
    if reachable is not None and base.tag == reachable.tag:
        return ()
    return (
        f"computed from {base.tag}, which is not in the history of {ref} (tagged on another "
        f"branch?); the newest release in its history is "
        f"{reachable.tag if reachable else 'none'}",
    )
