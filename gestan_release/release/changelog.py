"""The changelog of a range: fixed tickets joined with the ticket store, and its renderings.

Building is pure (`build_changelog`); rendering markdown/text goes through the Jinja2 templates in
`gestan_release/text/templates/` (French by default), JSON is the shape of docs/reference.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from gestan_release.history.analysis import RangeFixes, RevertedCommit
from gestan_release.history.scan import CommitRef
from gestan_release.tickets.values import Priority, Ticket

PRIORITY_TITLES = {
    Priority.FLASH: "Flash",
    Priority.HAUTE: "Haute",
    Priority.NORMALE: "Normale",
    Priority.BASSE: "Basse",
}


@dataclass(frozen=True)
class ChangelogEntry:
    """A fixed ticket and the commits that fix it; `already_in` is the label of an earlier U."""

    ticket: Ticket
    commits: tuple[CommitRef, ...]
    already_in: str | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.ticket.id,
            "title": self.ticket.title,
            "priority": str(self.ticket.priority),
            "forum_url": self.ticket.forum_url,
            "commits": [c.to_json() for c in self.commits],
        }
        if self.already_in:
            data["already_in"] = self.already_in
        return data


@dataclass(frozen=True)
class Changelog:
    from_ref: str | None
    to_sha: str
    previous_version: str | None
    entries: tuple[ChangelogEntry, ...]
    unknown: tuple[int, ...]
    unknown_commits: dict[int, tuple[CommitRef, ...]] = field(default_factory=dict)
    reverted: tuple[RevertedCommit, ...] = ()
    commit_count: int = 0

    @property
    def ticket_ids(self) -> list[int]:
        return [e.ticket.id for e in self.entries]

    def by_priority(self) -> list[tuple[Priority, list[ChangelogEntry]]]:
        groups: dict[Priority, list[ChangelogEntry]] = {}
        for entry in self.entries:
            groups.setdefault(entry.ticket.priority, []).append(entry)
        return [(p, groups[p]) for p in Priority if p in groups]

    def to_json(self) -> dict[str, Any]:
        return {
            "from": self.from_ref,
            "to": self.to_sha,
            "previous_version": self.previous_version,
            "tickets": [e.to_json() for e in self.entries],
            "unknown": list(self.unknown),
            "reverted": [r.to_json() for r in self.reverted],
        }


def build_changelog(
    fixes: RangeFixes,
    tickets: dict[int, Ticket],
    *,
    from_ref: str | None,
    to_sha: str,
    previous_version: str | None,
) -> Changelog:
    """Join the fixes of a range with the store; ids missing from it go to `unknown`."""
    entries = [
        ChangelogEntry(tickets[tid], tuple(commits))
        for tid, commits in fixes.fixes.items()
        if tid in tickets
    ]
    entries.sort(key=lambda e: e.ticket.sort_key)
    unknown = sorted(tid for tid in fixes.fixes if tid not in tickets)
    return Changelog(
        from_ref=from_ref,
        to_sha=to_sha,
        previous_version=previous_version,
        entries=tuple(entries),
        unknown=tuple(unknown),
        unknown_commits={tid: tuple(fixes.fixes[tid]) for tid in unknown},
        reverted=tuple(fixes.reverted),
        commit_count=fixes.commit_count,
    )


def render_json(changelog: Changelog) -> str:
    return json.dumps(changelog.to_json(), ensure_ascii=False, indent=2)


def render(changelog: Changelog, fmt: str, *, title: str | None = None) -> str:
    """The changelog as `markdown`, `text` or `json`."""
    if fmt == "json":
        return render_json(changelog)
    from gestan_release.text.templating import render_template

    return render_template(
        f"changelog.{'md' if fmt == 'markdown' else 'txt'}.j2",
        changelog=changelog,
        title=title,
        groups=changelog.by_priority(),
        priority_titles=PRIORITY_TITLES,
    )


def render_story(story: dict[str, Any], *, markdown: bool, range_label: str | None = None) -> str:
    """Why a ticket is (not) fixed (`TicketStory.to_json()`, plus its `title`), in French: one
    line per commit that names it and the rule that applied."""
    from gestan_release.text.templating import render_template

    return render_template(
        "ticket_story.j2",
        story={"title": None, **story},
        markdown=markdown,
        range_label=range_label,
    )
