"""The intake: triaged bug reports taken in from the forum (`gestan-release tickets sync`).

Support triages each report on the forum by tagging its discussion with a priority (flash, haute,
normale, basse; tag names mapped by `FORUM_PRIORITY_TAGS`). The sync reads the discussions of the
bug-report categories (`FORUM_BUG_CATEGORIES`) and, for each:
- with a priority tag → a ticket (id = discussion id, reporter from the forum account): added, or
  updated (a re-tag changes its priority; the acknowledgement step mails a raise);
- without → `a-trier`, listed by `tickets list --status a-trier`, never acknowledged;
- reporter banned, without (valid) e-mail, account gone, a field that does not validate, an id
  already taken by a ticket added by hand for something else → `ecarte`, with the reason;
- gone from the forum (seen by a full scan) → `deleted`, with the reason. Never a crash: one bad
  discussion is set aside alone.

Incremental and resumable: per category two cursors, the highest discussion id read (new reports)
and the newest update date seen (edited / re-tagged ones, `dateUpdated`, re-read with an overlap);
each page is written with its cursor in one transaction (`IntakeStore.write_page`). A full scan
(`--full`, and automatically every `FORUM_FULL_SYNC_HOURS`) re-reads everything: Vanilla is not
documented to touch `dateUpdated` when only the tags change, and deletions leave no trace in a
listing.

What one discussion becomes (the settings, the validation of its fields, `classify`) is
`support.intake_fields`; this module is the sync that reads the forum and writes the store.
Given an `intake_cursors.LazyIntakeStore`, a re-sync with nothing new reads its cursors with the
stdlib and opens no store at all (nor a ticket store: that one is opened for the first page).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gestan_release.core.progress import NULL, Progress
from gestan_release.core.validation import url_host
from gestan_release.settings import Settings
from gestan_release.support.intake_fields import (
    bug_categories,
    classify,
    priority_tags,
    resolve_priority_tags,
)
from gestan_release.tickets.values import Priority

# Edits committed while we read a page may carry a date just before the newest one we saw.
UPDATE_OVERLAP = dt.timedelta(minutes=10)


# --------------------------------------------------------------------------------------------
# The sync
# --------------------------------------------------------------------------------------------
@dataclass
class SyncSummary:
    categories: dict[str, int] = field(default_factory=dict)  # setting entry -> id
    read: int = 0
    new: int = 0
    updated: int = 0
    a_trier: int = 0
    set_aside: list[tuple[int, str]] = field(default_factory=list)  # (id, reason)
    deleted: list[tuple[int, str]] = field(default_factory=list)
    reprioritised: list[tuple[int, str, str]] = field(default_factory=list)
    full: bool = False

    def line(self) -> str:
        parts = [f"{self.read} discussion(s) read", f"{self.new} new ticket(s)"]
        if self.updated:
            parts.append(f"{self.updated} updated")
        if self.reprioritised:
            parts.append(f"{len(self.reprioritised)} re-prioritised")
        if self.a_trier:
            parts.append(f"{self.a_trier} à trier")
        if self.set_aside:
            parts.append(f"{len(self.set_aside)} set aside")
        if self.deleted:
            parts.append(f"{len(self.deleted)} deleted on the forum")
        return ("full sync: " if self.full else "sync: ") + ", ".join(parts)


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def sync(
    settings: Settings,
    reader: Any,
    store: Any,
    *,
    full: bool | None = None,
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    progress: Progress = NULL,
) -> SyncSummary:
    """Read the bug categories into the store; see the module docstring. `full=None` lets the
    `FORUM_FULL_SYNC_HOURS` schedule decide."""
    from gestan_release.tickets.store import TicketStore

    # Opened for the first page to write: a re-sync with nothing new needs no ticket store.
    tickets = functools.cache(lambda: TicketStore(settings.database_url))
    categories = bug_categories(settings)
    mapping = priority_tags(settings)
    ids = {c: reader.category_id(c) for c in categories}
    tag_priorities = resolve_priority_tags(mapping, reader.tags(), reader.host)
    if full is None:
        last_full = store.state("full:at")
        hours = settings.forum_full_sync_hours
        full = last_full is None or (
            hours > 0 and now() - dt.datetime.fromisoformat(last_full) >= dt.timedelta(hours=hours)
        )
    summary = SyncSummary(categories=ids, full=bool(full))
    started = now()
    for entry, cid in ids.items():
        _CategorySync(settings, reader, store, tickets, summary, tag_priorities).run(
            entry, cid, set(ids.values()), bool(full), started, progress
        )
    if full:
        store.set_state("full:at", started.isoformat())
    summary.reprioritised.sort()
    return summary


class _CategorySync:
    """One category of one sync: its pages, its cursor."""

    def __init__(
        self,
        settings: Settings,
        reader: Any,
        store: Any,
        tickets: Callable[[], Any],
        summary: SyncSummary,
        tag_priorities: dict[int, Priority],
    ) -> None:
        self.reader, self.store, self.tickets = reader, store, tickets
        self.summary = summary
        self.tag_priorities = tag_priorities
        # The same rule as `tickets import`: a forum URL must be on the forum's own host.
        self.forum_host = url_host(settings.forum_base_url)
        self.seen: set[int] = set()
        self.newest: dt.datetime | None = None
        self.cursor: dict[str, Any] = {}
        self.key = ""

    def run(
        self,
        entry: str,
        cid: int,
        bug_ids: set[int],
        full: bool,
        started: dt.datetime,
        progress: Progress,
    ) -> None:
        reader, store, summary = self.reader, self.store, self.summary
        self.key = f"category:{cid}"
        cursor = self.cursor = store.state(self.key) or {"after_id": 0, "updated_since": None}
        if full:
            from gestan_release.support.intake_store import DELETED, ECARTE

            # A full scan resumes where a crash stopped it (`full_after`); deletions are looked
            # for among the ids this run covered.
            start = cursor.get("full_after", 0)
            with progress.track(f"forum {entry}", None) as bar:
                for rows in reader.discussions(cid, after_id=start):
                    self.write(rows, advance=True, full_scan=True)
                    bar.advance(len(rows))
            known = store.report_ids(cid, exclude_states=(DELETED,))
            for gone in sorted(i for i in known - self.seen if i > start):
                row = reader.discussion(gone)
                if row is None:
                    reason = f"deleted on the forum (not found on {_iso(started)[:10]})"
                    store.mark(gone, DELETED, reason)
                    summary.deleted.append((gone, reason))
                elif row.get("categoryID") not in bug_ids:
                    reason = f"moved out of the bug categories (now in #{row.get('categoryID')})"
                    store.mark(gone, ECARTE, reason)
                    summary.set_aside.append((gone, reason))
            cursor.pop("full_after", None)
        else:
            with progress.track(f"forum {entry}", None) as bar:
                for rows in reader.discussions(cid, after_id=cursor["after_id"]):
                    self.write(rows, advance=True)
                    bar.advance(len(rows))
            if cursor["updated_since"]:
                since = _iso(dt.datetime.fromisoformat(cursor["updated_since"]))
                for rows in reader.discussions(cid, updated_since=since):
                    self.write(rows, advance=False)
        previous = cursor["updated_since"]
        if self.newest is not None:
            candidate = self.newest - UPDATE_OVERLAP
            if previous is None or candidate > dt.datetime.fromisoformat(previous):
                cursor["updated_since"] = candidate.isoformat()
        elif previous is None:
            cursor["updated_since"] = (started - UPDATE_OVERLAP).isoformat()
        store.set_state(self.key, cursor)

    def write(self, rows: list[dict[str, Any]], advance: bool, full_scan: bool = False) -> None:
        """Classify one page and write it with the cursor that marks it done."""
        from gestan_release.support.intake_store import A_TRIER, ECARTE, TICKET

        summary, cursor = self.summary, self.cursor
        page_ids = [r["discussionID"] for r in rows if isinstance(r.get("discussionID"), int)]
        before = {r.discussion_id: r for r in self.store.reports_among(page_ids)}
        owned = {i for i, r in before.items() if r.state == TICKET}
        existing = self.tickets().get_many(page_ids)
        # Reporters are only needed for tagged discussions (à trier ones get no mail).
        users = self.reader.users(
            [
                r["insertUserID"]
                for r in rows
                if isinstance(r.get("insertUserID"), int) and r.get("tags")
            ]
        )
        reports, to_write = [], []
        for row in rows:
            report, ticket = classify(
                row, self.tag_priorities, users, existing, owned, self.forum_host
            )
            if report.discussion_id <= 0:
                summary.set_aside.append((0, report.reason or "invalid"))
                continue
            reports.append(report)
            self.seen.add(report.discussion_id)
            if ticket is not None:
                to_write.append(ticket)
            # Counted when it changes: a full scan does not report again what is known.
            known = before.get(report.discussion_id)
            changed = known is None or (known.state, known.reason) != (report.state, report.reason)
            if report.state == A_TRIER and changed:
                summary.a_trier += 1
            elif report.state == ECARTE and changed:
                summary.set_aside.append((report.discussion_id, report.reason or ""))
            for d in (report.date_updated, report.date_inserted):
                if d is not None and (self.newest is None or d > self.newest):
                    self.newest = d
        summary.read += len(rows)
        if advance and page_ids:
            cursor["after_id"] = max(cursor["after_id"], max(page_ids))
            if full_scan:
                cursor["full_after"] = max(page_ids)
        out = self.store.write_page(
            reports, to_write, (self.key, dict(cursor)) if advance else None
        )
        summary.new += out.new
        summary.updated += out.updated
        summary.reprioritised.extend(out.reprioritised)


def summary_markdown(summary: SyncSummary, acks: Any | None = None) -> str:
    """The intake flow's artifact (French, like the release summaries)."""
    from gestan_release.text.templating import render_template

    return render_template("intake_summary.md.j2", s=summary, acks=acks, json=json)
