"""What the next release would be: its range of commits, the tickets it fixes, its version.

These functions read git and the ticket store but change nothing; the CLI and the flows share them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from gestan_release.changelog import Changelog, build_changelog
from gestan_release.errors import ReleaseError, VersionError
from gestan_release.history import (
    Rules,
    ensure_repo,
    git,
    previous_release,
    release_tags,
    resolve_commit,
    scan_range,
    version_of_explicit_tag,
)
from gestan_release.settings import Settings
from gestan_release.tickets import lookup_tickets
from gestan_release.versions import Kind, Version

PARIS = "Europe/Paris"


@dataclass(frozen=True)
class Range:
    """`from_ref..to_sha`; `from_ref` None means the whole history (a first release)."""

    from_ref: str | None
    to_sha: str
    previous: Version | None

    def rev_args(self) -> list[str]:
        return [f"{self.from_ref}..{self.to_sha}"] if self.from_ref else [self.to_sha]


def resolve_range(
    repo: Path,
    to_ref: str = "HEAD",
    from_ref: str | None = None,
    prefix: str = "v",
    line: tuple[int, int] | None = None,
) -> Range:
    """The range of a changelog: `from_ref` or the previous release reachable from `to_ref`."""
    for ref in (to_ref, from_ref):
        if ref is not None:
            version_of_explicit_tag(repo, ref, prefix)  # a foreign tag named explicitly is refused
    to_sha = resolve_commit(repo, to_ref)
    if from_ref is not None:
        resolve_commit(repo, from_ref)
        return Range(from_ref, to_sha, version_of_explicit_tag(repo, from_ref, prefix))
    prev = previous_release(repo, to_sha, prefix, line)
    if prev is None:
        return Range(None, to_sha, None)
    return Range(prev.tag, to_sha, prev.version)


def changelog_for(settings: Settings, rng: Range) -> Changelog:
    """Read the range once, apply the rules, join with the ticket store."""
    fixes = scan_range(settings.repo, rng.rev_args(), Rules.from_settings(settings))
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
    previous: Version | None
    ref: str
    tag_prefix: str = "v"

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
    for name in git(
        repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/release/"
    ).split():
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
        resolve_commit(repo, ref)
        reachable = previous_release(repo, ref, prefix, line)
        if reachable is None:
            where = f"{line[0]}.{line[1]}" if line else ref
            raise ReleaseError(
                f"no release of {where} is reachable from {ref}: cut the full version first"
            )
        same_line = [
            t.version
            for t in release_tags(repo, prefix)
            if t.version.line == reachable.version.line
        ]
        return NextVersion(max(same_line).next_u(), reachable.version, ref, prefix)
    if kind not in ("minor", "major", "nightly"):
        raise VersionError(f"unknown kind {kind!r}: use minor, major, u or nightly")
    if ref is None:
        ref = settings.main_branch
        if not git(
            repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{ref}", check=False
        ).strip():
            ref = "HEAD"
    resolve_commit(repo, ref)
    reachable = previous_release(repo, ref, prefix)
    everything = release_tags(repo, prefix)
    highest = everything[0].version if everything else None
    previous = reachable.version if reachable else None
    if kind == "nightly":
        base = highest or Version(0, 0, 0)
        version = base.next_nightly(day or today_paris(), nightlies)
    elif highest is None:
        version = Version(1, 0, 0) if kind == "major" else Version(0, 1, 0)
    else:
        version = highest.next_full(kind)
    return NextVersion(version, previous, ref, prefix)
