"""Git history: the previous release of a ref, and the tickets a range of commits fixes.

The range is read with one `git log` process whose output is parsed in Python while git is still
writing it (no process or object lookup per commit). What a message means is data (patterns,
trailer names and skip rules from settings), not code. The rules, each with an example in the
README's table:

- `#1234` in the subject or body fixes it; so do the trailers `Ticket:`, `Fixes:`, `Closes:`,
  `Corrige:` and `Refs:` only mentions it. Trailers are read from the final trailer block only,
  as `git interpret-trailers` finds it (never from the subject), and a value gives ids only when
  it is a list of ticket refs (`#12`, `12`, `#12, #13`); `org/repo#12` is another project's;
- a release or bump commit (`SKIP_PATTERNS` on the subject) fixes and mentions nothing;
- a commit is a revert only when its subject says so (`Revert "…"`, `revert: …`); it undoes the
  commit of its "This reverts commit <sha>" line, or else the newest earlier commit of the range
  with the quoted subject. A revert is never itself a fix; a revert that is reverted stands no
  more; a revert of a commit from before the range is reported under `reverted`;
- a cherry-pick (`-x`) is the same fix as its original: one commit entry, and a revert of either
  cancels both;
- a merge commit's own message counts only for its trailers (`MERGE_REFS = all`: also for its
  `#45`).

The pieces: `rules` (the rules as data, and their plain reading of one message), `trailers`
(git's trailer block), `scan` (the fast reading of blocks of `git log` output), this module (the
releases in the tags, the range read from git), `analysis` (what the range fixes: pure),
`stories` (why a ticket is or is not fixed, from what the analysis decided on each commit); git
itself runs in the seam `git`.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from gestan_release.errors import VersionError
from gestan_release.history import git as gitcmd
from gestan_release.history.analysis import Analysis, RangeFixes, RevertedCommit, analyse
from gestan_release.history.rules import (
    DEFAULT_SKIP_PATTERNS,
    DEFAULT_TICKET_PATTERN,
    Reference,
    Rules,
    normalise,
)
from gestan_release.history.scan import CommitRef, Scanned, ScanState, scan_block
from gestan_release.history.versions import Version, parse_tag, release_version

__all__ = [  # also kept for the modules that import them from here
    "DEFAULT_SKIP_PATTERNS",
    "DEFAULT_TICKET_PATTERN",
    "CommitRef",
    "RangeFixes",
    "Reference",
    "RevertedCommit",
    "Rules",
    "ScanState",
    "Scanned",
    "scan_block",
]

_FORMAT = "%H%x1f%P%x1f%an%x1f%n%B"


# --------------------------------------------------------------------------------------------
# Releases in the tags
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReleaseTag:
    tag: str
    version: Version
    commit: str = ""


def release_tags(
    repo: Path | str, prefix: str = "v", merged_into: str | None = None
) -> list[ReleaseTag]:
    """Release tags (full or U, never nightlies or foreign tags), highest version first."""
    found = []
    for tag in gitcmd.tags(repo, f"{prefix}*", merged_into):
        version = release_version(tag.name, prefix)
        if version is not None:
            found.append(ReleaseTag(tag.name, version, tag.commit))
    found.sort(key=lambda t: t.version, reverse=True)
    return found


def previous_release(
    repo: Path | str, ref: str, prefix: str = "v", line: tuple[int, int] | None = None
) -> ReleaseTag | None:
    """The highest release tag reachable from `ref` (on the `line` X.Y when given), or None."""
    return find_previous_release(repo, ref, prefix, line, look_elsewhere=False)[0]


def find_previous_release(
    repo: Path | str,
    ref: str,
    prefix: str = "v",
    line: tuple[int, int] | None = None,
    *,
    look_elsewhere: bool = True,
) -> tuple[ReleaseTag | None, ReleaseTag | None]:
    """(the highest release tag reachable from `ref`, on the `line` X.Y when given; the newest
    release tag *outside* the history of `ref` that is newer than it).

    The second one is how a team that tags releases on another branch learns that the range
    starts further back than it thinks. U versions of the picked line tagged on their
    maintenance branch are the normal case, not news: only a newer line counts (on `line`, any
    newer U of that line).
    """
    reachable = [
        t
        for t in release_tags(repo, prefix, merged_into=ref)
        if line is None or t.version.line == line
    ]
    picked = reachable[0] if reachable else None
    if not look_elsewhere:
        return picked, None
    inside = {t.tag for t in reachable}
    for t in release_tags(repo, prefix):
        if t.tag in inside or (line is not None and t.version.line != line):
            continue
        if picked is None or (
            t.version > picked.version
            and (line is not None or t.version.line > picked.version.line)
        ):
            return picked, t
    return picked, None


def version_of_explicit_tag(repo: Path | str, ref: str, prefix: str = "v") -> Version | None:
    """The version named by `ref` when it is a tag; a tag outside the scheme is refused."""
    gitcmd.check_ref(ref)
    return tag_version(ref, prefix) if gitcmd.tag_exists(repo, ref) else None


def tag_version(tag: str, prefix: str = "v") -> Version:
    """The version of a tag named explicitly (by --from, --to): one outside the scheme is
    refused, since a range from `build-7` is surely not what was meant."""
    try:
        return parse_tag(tag, prefix)
    except VersionError as exc:
        raise VersionError(f"{exc}; name a release tag, a branch or a commit instead") from None


# --------------------------------------------------------------------------------------------
# Reading the range
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Commit:
    sha: str
    parents: tuple[str, ...]
    author: str
    message: str

    @property
    def subject(self) -> str:
        return self.message.split("\n", 1)[0].strip()

    @property
    def is_merge(self) -> bool:
        return len(self.parents) > 1


def _log_args(rev_range: Iterable[str], *extra: str) -> list[str]:
    return ["log", f"--format={_FORMAT}", "-z", *extra, "--end-of-options", *rev_range]


def iter_commits(repo: Path | str, rev_range: list[str]) -> Iterator[Commit]:
    """Stream the commits of a range, newest first, from one `git log` process."""
    for block in gitcmd.stream(repo, _log_args(rev_range)):
        for record in normalise(block).split("\0"):
            sha, parents, author, message = record.split("\x1f", 3)
            yield Commit(sha.lstrip("\n"), tuple(parents.split()), author, message.strip("\n"))


def scan_range(
    repo: Path | str, rev_range: list[str], rules: Rules, start: str | None = None
) -> RangeFixes:
    """What a range fixes, read with one `git log` and parsed while git is still writing.

    `start`: the full sha of the commit the range starts after; `RangeFixes.start_is_ancestor`
    then says whether it is in the history of the end (it is exactly when it is the parent of a
    commit of the range), learnt from the log itself rather than from one more walk of git.
    """
    shas: list[str] = []
    hits: list[Scanned] = []
    state = ScanState()
    analysis = Analysis(rules)  # fed while git writes the next block
    seen = False
    with _no_gc():
        for block in gitcmd.stream(repo, _log_args(rev_range)):
            block_shas, block_hits = scan_block(block, rules, state)
            shas += block_shas
            hits += block_hits
            analysis.feed(block_hits)
            if start is not None and not seen:
                seen = _is_parent_in(block, start)
        result = analysis.finish(shas, hits)
    if start is not None:
        result.start_is_ancestor = seen
    outside = [r.reverts for r in result.reverted if len(r.reverts) == 40]
    if outside:
        # A revert of a commit from before the range undoes that commit's tickets: read them
        # (one more `git log`, only when the range reverts older commits).
        targets: dict[str, set[int]] = {}
        args = _log_args(outside, "--no-walk=unsorted", "--ignore-missing")
        for block in gitcmd.stream(repo, args):
            for c in scan_block(block, rules)[1]:
                targets[c.sha] = set(c.fixed) if not (c.skipped or c.is_revert) else set()
        result.reverted = [
            RevertedCommit(r.sha, r.subject, r.reverts, tuple(sorted(targets[r.reverts])))
            if r.reverts in targets
            else r
            for r in result.reverted
        ]
    return result


def _is_parent_in(block: str, sha: str) -> bool:
    """Whether `sha` is in the parents field of a record of the block (not just in a message)."""
    at = block.find(sha)
    while at >= 0:
        record = block.rfind("\0", 0, at) + 1
        head = block[record:at]
        if head.count("\x1f") == 1 and "\n" not in head:
            return True
        at = block.find(sha, at + len(sha))
    return False


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """Reading a big range makes a few hundred thousand small objects and no reference cycle:
    the cyclic garbage collector would only walk them again and again (~10 % of the time)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def fixed_tickets(commits: Iterable[Commit], rules: Rules) -> RangeFixes:
    """Apply the rules of the module docstring to the commits of a range (newest first)."""
    block = "\0".join(
        f"{c.sha}\x1f{' '.join(c.parents)}\x1f{c.author}\x1f\n{c.message}" for c in commits
    )
    return analyse(*scan_block(block, rules), rules) if block else RangeFixes(rules=rules)
