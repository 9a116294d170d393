"""Why a ticket is (not) fixed in a range: its story, commit by commit (`changelog --explain`),
and the tickets whose story a release manager should read before the mails go out.

Built from what the analysis of the range decided on each commit (`RangeFixes.decisions`); how a
commit names the ticket is read again from its message, with the plain reading of the rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from gestan_release.history.analysis import RangeFixes, Rule
from gestan_release.history.scan import CommitRef, Scanned

_STORY_RULES = frozenset({Rule.PICK, Rule.CANCELLED, Rule.REVERT, Rule.REVERT_UNDONE})


class StoryStep(NamedTuple):
    """One commit in the story of a ticket: how it names the ticket, what rule applied."""

    commit: CommitRef
    how: tuple[str, ...]  # subject, body, trailer Fixes, merge-trailer Ticket, … ("" = not named)
    rule: Rule
    other: CommitRef | None  # the revert that cancels it, the original of a pick, the target
    listed: bool = False  # one of the commits the changelog lists for the ticket

    def to_json(self) -> dict[str, object]:
        return {
            **self.commit.to_json(),
            "how": list(self.how),
            "rule": str(self.rule),
            "other": self.other.to_json() if self.other else None,
            "listed": self.listed,
        }


@dataclass(frozen=True)
class TicketStory:
    """Why a ticket is (not) fixed in a range."""

    ticket: int
    fixed: bool
    mentioned: bool
    steps: tuple[StoryStep, ...]  # oldest first

    @property
    def plain(self) -> bool:
        """Nothing for a release manager to check: no revert, no cherry-pick, and not a ticket
        that commits only mention (release commits and merges' own refs are not news)."""
        if any(s.rule in _STORY_RULES for s in self.steps):
            return False
        return self.fixed or not any(s.rule is Rule.MENTION for s in self.steps)

    @property
    def verdict(self) -> str:
        if self.fixed:
            return "fixed"
        if self.mentioned:
            return "mentioned"
        return "not-fixed" if self.steps else "not-named"

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.ticket,
            "fixed": self.fixed,
            "verdict": self.verdict,
            "plain": self.plain,
            "steps": [s.to_json() for s in self.steps],
        }


def story_of(fixes: RangeFixes, ticket: int) -> TicketStory:
    """The story of `ticket` in the range `fixes` was read from."""
    rules = fixes.rules
    by_sha = {c.sha: c for c in fixes.commits}
    steps: list[StoryStep] = []
    listed = set(fixes.fixes.get(ticket, ()))
    for c in reversed(fixes.commits):  # oldest first
        names = ticket in c.fixed or ticket in c.mentioned or ticket in c.ignored
        rule, other = fixes.decisions.get(c.sha, (None, ""))
        undoes_named = (
            rule in (Rule.REVERT, Rule.REVERT_UNDONE)
            and other in by_sha
            and ticket in (set(by_sha[other].fixed) | set(by_sha[other].mentioned))
        )
        if not names and not undoes_named:
            continue
        how = tuple(
            f"{r.kind} {r.trailer}".strip()
            for r in rules.references(c.message, c.merge)
            if r.ticket == ticket
        ) or ("",)
        if rule is None:
            if c.skipped:
                rule = Rule.SKIPPED
            elif ticket in c.ignored and ticket not in c.fixed and ticket not in c.mentioned:
                rule = Rule.MERGE_IGNORED
            elif ticket in c.fixed:
                rule = Rule.FIX
            else:
                rule = Rule.MENTION
        elif rule is Rule.FIX and ticket not in c.fixed:
            rule = Rule.MENTION
        related = by_sha.get(other)
        steps.append(
            StoryStep(
                c.ref,
                how,
                rule,
                related.ref if related else (CommitRef(other, "", "") if other else None),
                c.ref in listed,
            )
        )
    shown = {s.commit.sha for s in steps}
    for r in fixes.reverted:  # a revert of a commit from before the range that named it
        if ticket in r.tickets and r.sha not in shown:
            revert = by_sha[r.sha].ref if r.sha in by_sha else CommitRef(r.sha, r.subject, "")
            other = CommitRef(r.reverts, "", "") if r.reverts else None
            steps.append(StoryStep(revert, ("",), Rule.REVERT, other))
    return TicketStory(
        ticket,
        ticket in fixes.fixes,
        ticket in fixes.mentioned,
        tuple(steps),
    )


def stories_of(fixes: RangeFixes) -> list[TicketStory]:
    """The tickets whose story is not plain (reverted, picked, mention only), by id."""
    touched: set[int] = set(fixes.mentioned)
    for r in fixes.reverted:
        touched.update(r.tickets)
    named: dict[str, Scanned] = {c.sha: c for c in fixes.commits}
    for sha, (rule, other) in fixes.decisions.items():
        if rule in _STORY_RULES:
            for c in (named.get(sha), named.get(other)):
                if c is not None:
                    touched.update(c.fixed)
                    touched.update(c.mentioned)
    return [s for s in (story_of(fixes, t) for t in sorted(touched)) if not s.plain]
