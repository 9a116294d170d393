"""What a range of commits fixes: the analysis of the commits whose message names a ticket,
as `scan` read them (pure: no git here; `history` streams the log and feeds it).

The rules it applies are listed in `history`'s docstring: reverts cancel what they undo unless
reverted themselves, a cherry-pick is the same fix as its original, a release commit fixes
nothing. What it decided on each commit (`RangeFixes.decisions`) is what `stories` explains.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from gestan_release.history.rules import Rules, quoted_subject, strip_pr
from gestan_release.history.scan import CommitRef, Scanned


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


def _full_sha(ref: str, in_range: set[str], ordered: list[str] | None) -> str | None:
    """The full sha in the range that `ref` names (a revert may cite a short one)."""
    if ref in in_range:
        return ref
    if len(ref) < 40 and ordered:
        i = bisect_left(ordered, ref)
        if i < len(ordered) and ordered[i].startswith(ref):
            return ordered[i]
    return None


def analyse(shas: list[str], commits: list[Scanned], rules: Rules) -> RangeFixes:
    """The fixes of a range from the shas of all its commits and the commits whose message says
    something, both newest first."""
    analysis = Analysis(rules)
    analysis.feed(commits)
    return analysis.finish(shas, commits)


class Analysis:
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
            again = Analysis(self.rules, lambda ref: _full_sha(ref, set(), ordered))
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
