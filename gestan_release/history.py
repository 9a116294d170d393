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
releases in the tags, the range read and analysed), `stories` (why a ticket is or is not fixed,
from what the analysis decided on each commit); git itself runs in the seam `git`.
"""

from __future__ import annotations

import contextlib
import gc
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from gestan_release import git as gitcmd
from gestan_release.errors import VersionError
from gestan_release.rules import (
    DEFAULT_SKIP_PATTERNS,
    DEFAULT_TICKET_PATTERN,
    Reference,
    Rules,
    normalise,
    quoted_subject,
    strip_pr,
)
from gestan_release.scan import CommitRef, Scanned, ScanState, scan_block
from gestan_release.versions import Version, parse_tag, release_version

if TYPE_CHECKING:
    from gestan_release.stories import TicketStory

__all__ = [  # also kept for the modules that import them from here
    "DEFAULT_SKIP_PATTERNS",
    "DEFAULT_TICKET_PATTERN",
    "CommitRef",
    "Reference",
    "Rules",
    "ScanState",
    "Scanned",
    "scan_block",
]

# The seam's names, kept here for the modules (and other branches) that import them from history.
git = gitcmd.run
ensure_repo = gitcmd.toplevel
resolve_commit = gitcmd.resolve_commit

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


# --------------------------------------------------------------------------------------------
# Fixed tickets of a range
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RevertedCommit:
    """A commit of the range that reverts one from before it (or, quoting a subject, one that
    the range does not hold: `reverts` is then empty)."""

    sha: str
    subject: str
    reverts: str
    tickets: tuple[int, ...]

    def to_json(self) -> dict[str, object]:
        return {"sha": self.sha, "subject": self.subject, "tickets": list(self.tickets)}


class Rule(StrEnum):
    """What happened to a commit that names a ticket (for `explain`)."""

    FIX = "fix"
    MENTION = "mention"
    SKIPPED = "skipped"  # a release commit (SKIP_PATTERNS)
    MERGE_IGNORED = "merge-ignored"  # a merge's own ref (MERGE_REFS = trailers)
    PICK = "pick"  # the same fix as another commit (cherry-pick -x): folded into it
    CANCELLED = "cancelled"  # undone by a revert that stands
    REVERT = "revert"  # a revert: fixes nothing, cancels its target
    REVERT_UNDONE = "revert-undone"  # a revert that was itself reverted


@dataclass
class RangeFixes:
    """What a range of commits fixes: ticket id → its commits (oldest first), plus reverts, and
    what was decided on every commit that names a ticket (for `explain`)."""

    fixes: dict[int, list[CommitRef]] = field(default_factory=dict)
    mentioned: set[int] = field(default_factory=set)
    reverted: list[RevertedCommit] = field(default_factory=list)
    commit_count: int = 0
    commits: list[Scanned] = field(default_factory=list, repr=False)  # newest first
    start_is_ancestor: bool | None = None  # see scan_range(start=…)
    # sha -> (rule, the other commit: the revert, the original of a pick, a revert's target)
    decisions: dict[str, tuple[Rule, str]] = field(default_factory=dict, repr=False)
    rules: Rules = field(default_factory=Rules, repr=False)

    def explain(self, ticket: int) -> TicketStory:
        """Why `ticket` is or is not fixed in the range: every commit that names it (or undoes
        one that does) and the rule that applied."""
        from gestan_release.stories import story_of

        return story_of(self, ticket)

    def stories(self) -> list[TicketStory]:
        """The tickets whose story is not plain (reverted, picked, mention only), by id: what a
        release manager checks before the mails go out."""
        from gestan_release.stories import stories_of

        return stories_of(self)


def _full_sha(ref: str, in_range: set[str], ordered: list[str] | None) -> str | None:
    """The full sha in the range that `ref` names (a revert may cite a short one)."""
    if ref in in_range:
        return ref
    if len(ref) < 40 and ordered:
        i = bisect_left(ordered, ref)
        if i < len(ordered) and ordered[i].startswith(ref):
            return ordered[i]
    return None


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
    analysis = _Analysis(rules)  # fed while git writes the next block
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
    return _analyse(*scan_block(block, rules), rules) if block else RangeFixes(rules=rules)


def _analyse(shas: list[str], commits: list[Scanned], rules: Rules) -> RangeFixes:
    """The fixes of a range from the shas of all its commits and the commits whose message says
    something, both newest first."""
    analysis = _Analysis(rules)
    analysis.feed(commits)
    return analysis.finish(shas, commits)


class _Analysis:
    """The analysis of a range, fed newest first, a block at a time while git still writes.

    One pass: a revert is met before what it undoes, so when a commit comes, the standing
    reverts that cancel it are known. A revert stands unless a newer standing revert undoes it;
    it cancels its target (by sha, or the nearest older commit with the subject it quotes) and
    every cherry-pick of the same original that is older than it. A short sha in a revert or
    cherry-pick line (hand-written) can only be resolved once every sha of the range is known:
    then the pass is made again at the end.
    """

    def __init__(self, rules: Rules, resolve: Callable[[str], str | None] | None = None) -> None:
        self.rules = rules
        self.resolve = resolve
        self.short = False  # a short sha was met that `resolve` could not yet resolve
        self.decisions: dict[str, tuple[Rule, str]] = {}
        self.cancel: dict[str, Scanned] = {}  # sha or original → the revert that cancels it
        self.waiting: dict[str, list[Scanned]] = {}  # quoted subject → sha-less reverts
        self.met: set[str] = set()  # sha-less reverts that found the commit they undo
        self.listed: list[Scanned | None] = []  # the commit standing for each fix, newest first
        self.slot: dict[str, int] = {}  # original of a cherry-pick → its place in `listed`
        self.picks: list[Scanned] = []
        self.mentions: set[int] = set()
        self.standing: list[tuple[Scanned, str]] = []  # standing reverts and their targets

    def full(self, ref: str) -> str:
        if len(ref) >= 40:
            return ref
        if self.resolve is None:
            self.short = True
            return ref
        return self.resolve(ref) or ref

    def feed(self, commits: Iterable[Scanned]) -> None:
        """The next commits of the range, newest first."""
        decisions, cancel, waiting, met = self.decisions, self.cancel, self.waiting, self.met
        listed, slot, picks, mentions = self.listed, self.slot, self.picks, self.mentions
        full = self.full
        for c in commits:
            ref, _, fixed, mentioned, reverts, picked_from, revert_of, skipped, _, _ = c
            sha = ref.sha
            if waiting and (
                queue := waiting.get(
                    subject := strip_pr(ref.subject) if ref.subject.endswith(")") else ref.subject
                )
            ):
                canceller = queue.pop()  # the nearest newer revert quoting this subject
                if not queue:
                    del waiting[subject]
                met.add(canceller.sha)
            elif cancel:
                canceller = cancel.get(sha)
                if canceller is None and picked_from:
                    canceller = cancel.get(full(picked_from))
            else:
                canceller = None
            if skipped:
                decisions[sha] = (Rule.SKIPPED, canceller.sha if canceller else "")
                continue
            if picked_from:
                origin = full(picked_from)
                picks.append(c)
                decisions[sha] = (Rule.PICK, origin)
            else:
                origin = sha
            if canceller is not None:
                cancel.setdefault(origin, canceller)  # the original and its other picks, older
                rule = Rule.CANCELLED if revert_of is None else Rule.REVERT_UNDONE
                decisions[sha] = (rule, canceller.sha)
                continue
            if revert_of is not None:
                target = full(reverts) if reverts else ""
                if target:
                    cancel[target] = c
                else:
                    waiting.setdefault(revert_of, []).append(c)
                decisions[sha] = (Rule.REVERT, target)
                self.standing.append((c, target))
                continue
            if mentioned:
                mentions |= mentioned
            if fixed:
                # One fix, one listed commit: the oldest of an original and its cherry-picks.
                at = slot.get(origin) if slot else None
                if at is not None:
                    listed[at] = None
                if origin != sha or at is not None:
                    slot[origin] = len(listed)
                listed.append(c)

    def finish(self, shas: list[str], commits: list[Scanned]) -> RangeFixes:
        """What the range fixes, once every commit was fed (`shas`: all of them)."""
        if self.short:
            ordered = sorted(shas)
            again = _Analysis(self.rules, lambda ref: _full_sha(ref, set(), ordered))
            again.feed(commits)
            return again.finish(shas, commits)
        rules = self.rules
        result = RangeFixes(commit_count=len(shas), commits=commits, rules=rules)
        decisions = result.decisions = self.decisions
        # A revert whose target the range does not hold reverts something from before it; a
        # sha-less one that found nothing is listed too.
        in_range = set(shas) if self.standing else set()
        for c, target in reversed(self.standing):  # oldest first
            if (target and target in in_range) or (not target and c.sha in self.met):
                continue
            # Its tickets: those its subject quotes (not its own pull request's `(#N)`);
            # scan_range reads those of a reverted commit from before the range when it can.
            quoted = quoted_subject(c.ref.subject) or ""
            undone = sorted(rules.tickets(quoted)[0])
            result.reverted.append(RevertedCommit(c.sha, c.ref.subject, target, tuple(undone)))
        if self.met:  # for explain: a sha-less revert learns which commit it cancelled
            for c in commits:
                rule, other = decisions.get(c.sha, (None, ""))
                if (
                    rule in (Rule.CANCELLED, Rule.REVERT_UNDONE, Rule.SKIPPED)
                    and other in self.met
                    and decisions[other] == (Rule.REVERT, "")
                ):
                    decisions[other] = (Rule.REVERT, c.sha)
        fixes = result.fixes
        listed = self.listed
        for c in reversed(listed):  # oldest first
            if c is None:
                continue
            ref = c.ref
            for ticket_id in c.fixed:
                if ticket_id in fixes:
                    fixes[ticket_id].append(ref)
                else:
                    fixes[ticket_id] = [ref]
        # A pick that is not the listed commit of its fix is folded into the listed one.
        for c in self.picks:
            rule, origin = decisions[c.sha]
            at = self.slot.get(origin)
            if rule is Rule.PICK and at is not None and listed[at] is not c:
                decisions[c.sha] = (Rule.PICK, listed[at].sha)  # type: ignore[union-attr]
        result.mentioned = self.mentions - set(fixes)
        return result
