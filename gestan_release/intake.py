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

Fields read from the forum go through `validate_discussion` / `validate_reporter` (the one place
where forum data enters the store).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from gestan_release.errors import ConfigError
from gestan_release.progress import NULL, Progress
from gestan_release.settings import Settings
from gestan_release.ticket_fields import ticket_from_mapping
from gestan_release.tickets import Priority, Ticket
from gestan_release.validation import url_host

log = logging.getLogger("gestan_release.intake")

# Edits committed while we read a page may carry a date just before the newest one we saw.
UPDATE_OVERLAP = dt.timedelta(minutes=10)


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------
def bug_categories(settings: Settings) -> tuple[str, ...]:
    categories = tuple(c.strip() for c in settings.forum_bug_categories if c.strip())
    if not categories:
        raise ConfigError(
            "tickets sync needs FORUM_BUG_CATEGORIES: the url codes (or ids) of the forum "
            "categories where bugs are reported, e.g. GESTAN_RELEASE_FORUM_BUG_CATEGORIES="
            "signaler-un-bug"
        )
    return categories


def priority_tags(settings: Settings) -> dict[str, Priority]:
    """`FORUM_PRIORITY_TAGS` as {tag name (lower case): priority}; ConfigError if malformed.

    Each entry is `tag` (a tag named like its priority) or `priority=tag`; a priority may have
    several tags."""
    mapping: dict[str, Priority] = {}
    for entry in settings.forum_priority_tags:
        text = entry.strip()
        if not text:
            continue
        prio_text, sep, tag = text.partition("=")
        if not sep:
            prio_text, tag = text, text
        try:
            priority = Priority.parse(prio_text)
        except ValueError:
            raise ConfigError(
                f"FORUM_PRIORITY_TAGS: {text!r} does not start with a priority "
                "(flash, haute, normale, basse); write PRIORITY=TAG, e.g. flash=urgent"
            ) from None
        tag = tag.strip().lower()
        if not tag:
            raise ConfigError(f"FORUM_PRIORITY_TAGS: {text!r} names no tag")
        if tag in mapping and mapping[tag] is not priority:
            raise ConfigError(
                f"FORUM_PRIORITY_TAGS: tag {tag!r} is mapped to both {mapping[tag]} and {priority}"
            )
        mapping[tag] = priority
    if not mapping:
        raise ConfigError("FORUM_PRIORITY_TAGS is empty: name the tag of each priority")
    return mapping


def resolve_priority_tags(
    mapping: dict[str, Priority], tags: Iterable[Any], host: str
) -> dict[int, Priority]:
    """{tag id: priority} from the forum's tags (matched on name or url code, any case);
    ConfigError naming every configured tag the forum does not have."""
    by_key: dict[str, int] = {}
    for t in tags:
        by_key.setdefault(t.name.strip().lower(), t.tag_id)
        by_key.setdefault(t.urlcode.strip().lower(), t.tag_id)
    missing = sorted(name for name in mapping if name not in by_key)
    if missing:
        known = ", ".join(sorted({t.name for t in tags})[:20]) or "none"
        raise ConfigError(
            f"FORUM_PRIORITY_TAGS names tag(s) {', '.join(map(repr, missing))} that the forum "
            f"at {host} does not have (its tags: {known}); create them on the forum or fix the "
            "setting (PRIORITY=TAG, e.g. flash=urgent)"
        )
    return {by_key[name]: priority for name, priority in mapping.items()}


# --------------------------------------------------------------------------------------------
# Validation: where forum data enters the store
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DiscussionFields:
    discussion_id: int
    category_id: int | None
    title: str
    url: str | None
    insert_user_id: int | None
    tag_ids: tuple[int, ...]
    tag_names: tuple[str, ...]
    date_inserted: dt.datetime | None
    date_updated: dt.datetime | None


class InvalidField(ValueError):
    pass


def _date(value: Any, name: str) -> dt.datetime | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise InvalidField(f"{name} is not a date")
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidField(f"{name} {value[:40]!r} is not an ISO date") from None
    # Stored in UTC: SQLite keeps no offset.
    return parsed.astimezone(dt.UTC) if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _one_line(text: str) -> str:
    """Control characters and line breaks out, blanks collapsed (a title is one line)."""
    cleaned = "".join(ch if ch.isprintable() else " " for ch in text)
    return " ".join(cleaned.split())


def validate_discussion(row: dict[str, Any]) -> DiscussionFields:
    """The fields of a listed discussion that the intake uses, checked; InvalidField if not.

    Titles and names are made one line here (a forum title may hold a stray control character:
    cleaned, not refused); the ticket built from them then goes through the same validation as
    `tickets import` (`ticket_from_mapping`), so the store never holds what a delivery refuses."""
    did = row.get("discussionID")
    if not isinstance(did, int) or isinstance(did, bool) or did <= 0:
        raise InvalidField(f"discussionID {did!r} is not a positive integer")
    name = row.get("name")
    if not isinstance(name, str) or not _one_line(name):
        raise InvalidField("the discussion has no title")
    title = _one_line(name)[:300]
    url = row.get("url")
    from gestan_release.templating import safe_url

    url = safe_url(url) if isinstance(url, str) else None
    user = row.get("insertUserID")
    if not isinstance(user, int) or isinstance(user, bool):
        user = None
    category = row.get("categoryID")
    if not isinstance(category, int) or isinstance(category, bool):
        category = None
    tag_ids, tag_names = [], []
    for tag in row.get("tags") or []:
        if isinstance(tag, dict) and isinstance(tag.get("tagID"), int):
            tag_ids.append(tag["tagID"])
            tag_names.append(_one_line(str(tag.get("name") or tag.get("urlcode") or "")))
    return DiscussionFields(
        discussion_id=did,
        category_id=category,
        title=title,
        url=url,
        insert_user_id=user,
        tag_ids=tuple(tag_ids),
        tag_names=tuple(tag_names),
        date_inserted=_date(row.get("dateInserted"), "dateInserted"),
        date_updated=_date(row.get("dateUpdated"), "dateUpdated"),
    )


def validate_reporter(user: dict[str, Any] | None) -> tuple[str, str] | str:
    """(name, normalised e-mail) of a forum account, or the reason it cannot be acknowledged."""
    if user is None:
        return "the reporter's forum account no longer exists"
    banned = user.get("banned")
    if banned not in (None, 0, False, "0"):
        return "the reporter is banned on the forum"
    email = user.get("email")
    if not isinstance(email, str) or not email.strip():
        return "the reporter has no e-mail address on the forum"
    name = _one_line(str(user.get("name") or ""))
    from gestan_release.ticket_fields import validate_email_address

    try:
        return name, validate_email_address(email.strip())
    except ValueError as exc:
        return f"the reporter's {exc}"


# --------------------------------------------------------------------------------------------
# Classification (pure)
# --------------------------------------------------------------------------------------------
def priority_of(tag_ids: Iterable[int], tag_priorities: dict[int, Priority]) -> Priority | None:
    """The most urgent priority among the discussion's tags, or None (à trier)."""
    found = [tag_priorities[t] for t in tag_ids if t in tag_priorities]
    return min(found, key=lambda p: p.rank) if found else None


def classify(
    row: dict[str, Any],
    tag_priorities: dict[int, Priority],
    users: dict[int, dict[str, Any]],
    existing: dict[int, Ticket],
    owned: set[int],
    forum_host: str | None = None,
) -> tuple[Any, Ticket | None]:
    """(ForumReport, ticket to write or None) for one listed discussion.

    `existing`: stored tickets among this page's ids; `owned`: ids the intake already tracks
    (a stored ticket with such an id is the report's own ticket)."""
    from gestan_release.intake_store import A_TRIER, ECARTE, TICKET, ForumReport

    try:
        f = validate_discussion(row)
    except InvalidField as exc:
        did = row.get("discussionID") if isinstance(row.get("discussionID"), int) else 0
        return (
            ForumReport(
                discussion_id=did,
                category_id=None,
                title=str(row.get("name") or "")[:300] or "?",
                url=None,
                insert_user_id=None,
                state=ECARTE,
                reason=f"invalid discussion: {exc}",
            ),
            None,
        )
    priority = priority_of(f.tag_ids, tag_priorities)
    reporter = validate_reporter(users.get(f.insert_user_id or 0))
    base = {
        "discussion_id": f.discussion_id,
        "category_id": f.category_id,
        "title": f.title,
        "url": f.url,
        "insert_user_id": f.insert_user_id,
        "priority": priority,
        "tags": f.tag_names,
        "date_inserted": f.date_inserted,
        "date_updated": f.date_updated,
    }
    if isinstance(reporter, tuple):
        base["reporter_name"], base["reporter_email"] = reporter
    if priority is None:
        return ForumReport(state=A_TRIER, **base), None
    if isinstance(reporter, str):
        return ForumReport(state=ECARTE, reason=reporter, **base), None
    stored = existing.get(f.discussion_id)
    if stored is not None and f.discussion_id not in owned:
        from gestan_release.usertext import discussion_id

        if discussion_id(stored.forum_url) != f.discussion_id:
            return (
                ForumReport(
                    state=ECARTE,
                    reason=(
                        f"ticket #{f.discussion_id} already exists in the store for another "
                        "report (added by hand): give that ticket another id, then sync again"
                    ),
                    **base,
                ),
                None,
            )
    name, email = reporter
    candidate, _, problems = ticket_from_mapping(
        {
            "id": f.discussion_id,
            "title": f.title,
            "priority": priority.value,
            "reporter_name": name,
            "reporter_email": email,
            "forum_url": f.url,
        },
        forum_host=forum_host,
    )
    if problems:
        return ForumReport(state=ECARTE, reason="; ".join(problems), **base), None
    ticket = candidate
    if stored is not None:
        # Keep what the store decides: status, ack, whether the reporter is followed up.
        from dataclasses import replace

        ticket = replace(
            candidate,
            status=stored.status,
            ack_message_id=stored.ack_message_id,
            forum_tracked=stored.forum_tracked,
        )
    return ForumReport(state=TICKET, **base), ticket


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
    from gestan_release.ticket_store import TicketStore

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
        _CategorySync(
            settings, reader, store, TicketStore(settings.database_url), summary, tag_priorities
        ).run(entry, cid, set(ids.values()), bool(full), started, progress)
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
        tickets: Any,
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
        from gestan_release.intake_store import DELETED, ECARTE

        reader, store, summary = self.reader, self.store, self.summary
        self.key = f"category:{cid}"
        cursor = self.cursor = store.state(self.key) or {"after_id": 0, "updated_since": None}
        if full:
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
        from gestan_release.intake_store import A_TRIER, ECARTE, TICKET

        summary, cursor = self.summary, self.cursor
        page_ids = [r["discussionID"] for r in rows if isinstance(r.get("discussionID"), int)]
        before = {r.discussion_id: r for r in self.store.reports_among(page_ids)}
        owned = {i for i, r in before.items() if r.state == TICKET}
        existing = self.tickets.get_many(page_ids)
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
    from gestan_release.templating import render_template

    return render_template("intake_summary.md.j2", s=summary, acks=acks, json=json)
