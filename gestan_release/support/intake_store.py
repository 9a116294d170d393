"""What the intake keeps: every forum report seen, the sync cursors, the acknowledgements sent.

Same database as the tickets and the ledger (`DATABASE_URL`; migration `0003_intake`). The sync
writes one page of discussions per transaction — its reports, their tickets and the cursor that
says the page is done — so a crash at any point leaves a state the next sync simply continues.

Tables (in `tables.py`):
- `forum_reports`: one row per discussion read from a bug category, with its state: `ticket`
  (triaged, a ticket of the store), `a-trier` (no priority tag yet), `ecarte` (recorded but not
  taken: reporter banned or without e-mail, invalid field, id taken by a hand-made ticket, moved
  out of the bug categories) or `deleted` (gone from the forum), and the reason;
- `intake_state`: the cursors (JSON values by name);
- `ticket_acks`: the acknowledgement of each ticket: the priority last announced to the reporter
  (a raise above it sends one short update mail), the Message-ID, when.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from gestan_release.store import db
from gestan_release.store.tables import (
    ForumReportRecord,
    IntakeStateRecord,
    TicketAckRecord,
    TicketRecord,
)
from gestan_release.tickets.store import new_record
from gestan_release.tickets.values import Priority, Ticket, chunks

TICKET, A_TRIER, ECARTE, DELETED = "ticket", "a-trier", "ecarte", "deleted"
REPORT_STATES = (TICKET, A_TRIER, ECARTE, DELETED)


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class ForumReport:
    """A discussion of a bug category as the intake classified it."""

    discussion_id: int
    category_id: int | None
    title: str
    url: str | None
    insert_user_id: int | None
    state: str
    priority: Priority | None = None
    reporter_name: str | None = None
    reporter_email: str | None = None
    tags: tuple[str, ...] = ()
    reason: str | None = None
    date_inserted: datetime | None = None
    date_updated: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.discussion_id,
            "title": self.title,
            "priority": self.priority.value if self.priority else None,
            "reporter_name": self.reporter_name,
            "reporter_email": self.reporter_email,
            "forum_url": self.url,
            "status": self.state,
            "reason": self.reason,
            "tags": list(self.tags),
            "reported_at": self.date_inserted.isoformat() if self.date_inserted else None,
        }


@dataclass(frozen=True)
class Ack:
    ticket_id: int
    priority: Priority
    first_priority: Priority
    message_id: str
    acked_at: datetime


@dataclass(frozen=True)
class PageOutcome:
    """What writing one page changed in the ticket store."""

    new: int = 0
    updated: int = 0
    reprioritised: tuple[tuple[int, str, str], ...] = ()  # (id, old, new)


# What a report and its row hold alike; the other fields are converted on the way in and out.
_SAME = (
    "category_id",
    "title",
    "url",
    "insert_user_id",
    "reporter_name",
    "reporter_email",
    "state",
    "reason",
)


def _report(r: ForumReportRecord) -> ForumReport:
    return ForumReport(
        discussion_id=r.discussion_id,
        **{name: getattr(r, name) for name in _SAME},
        priority=Priority(r.priority) if r.priority else None,
        tags=tuple(json.loads(r.tags or "[]")),
        date_inserted=_aware(r.date_inserted),
        date_updated=_aware(r.date_updated),
    )


def _row_values(rep: ForumReport) -> dict[str, Any]:
    """The columns of a report's row, its key and bookkeeping times aside."""
    return {name: getattr(rep, name) for name in _SAME} | {
        "priority": rep.priority.value if rep.priority else None,
        "tags": json.dumps(list(rep.tags), ensure_ascii=False),
        "date_inserted": rep.date_inserted,
        "date_updated": rep.date_updated,
    }


class IntakeStore(db.Store):
    """Forum reports, cursors and acknowledgements in the database at `url`."""

    # -- cursors -----------------------------------------------------------------------------
    def state(self, name: str) -> Any:
        with self._session() as s:
            row = s.get(IntakeStateRecord, name)
            return json.loads(row.value) if row else None

    def states(self, prefix: str) -> dict[str, Any]:
        with self._session() as s:
            rows = s.scalars(
                sa.select(IntakeStateRecord).where(IntakeStateRecord.name.startswith(prefix))
            )
            return {r.name: json.loads(r.value) for r in rows}

    @staticmethod
    def _set_state(s: Session, name: str, value: Any) -> None:
        row = s.get(IntakeStateRecord, name)
        text = json.dumps(value, sort_keys=True)
        if row is None:
            s.add(IntakeStateRecord(name=name, value=text, updated_at=_now()))
        elif row.value != text:
            row.value, row.updated_at = text, _now()

    def set_state(self, name: str, value: Any) -> None:
        with self._session() as s:
            self._set_state(s, name, value)

    # -- reports -----------------------------------------------------------------------------
    def write_page(
        self,
        reports: Iterable[ForumReport],
        tickets: Iterable[Ticket],
        cursor: tuple[str, Any] | None = None,
    ) -> PageOutcome:
        """One page of the sync in one transaction: its reports, their tickets (added, or updated
        keeping their status, ack and `forum_tracked`) and the cursor that marks it done."""
        reports = list(reports)
        tickets = {t.id: t for t in tickets}
        now = _now()
        new = updated = 0
        changed: list[tuple[int, str, str]] = []
        with self._session() as s:
            ids = sorted({r.discussion_id for r in reports})
            existing = {}
            for chunk in chunks(ids, 500):
                existing.update(
                    {
                        r.discussion_id: r
                        for r in s.scalars(
                            sa.select(ForumReportRecord).where(
                                ForumReportRecord.discussion_id.in_(chunk)
                            )
                        )
                    }
                )
            for rep in reports:
                values = _row_values(rep)
                row = existing.get(rep.discussion_id)
                if row is None:
                    s.add(
                        ForumReportRecord(
                            discussion_id=rep.discussion_id, seen_at=now, updated_at=now, **values
                        )
                    )
                    continue
                diff = {
                    k: v
                    for k, v in values.items()
                    if (_aware(getattr(row, k)) if k.startswith("date_") else getattr(row, k)) != v
                }
                for k, v in diff.items():
                    setattr(row, k, v)
                if diff:
                    row.updated_at = now
            ticket_ids = sorted(tickets)
            stored = {}
            for chunk in chunks(ticket_ids, 500):
                stored.update(
                    {
                        r.id: r
                        for r in s.scalars(
                            sa.select(TicketRecord).where(TicketRecord.id.in_(chunk))
                        )
                    }
                )
            for tid in ticket_ids:
                t = tickets[tid]
                record = stored.get(tid)
                if record is None:
                    s.add(new_record(t, now))
                    new += 1
                    continue
                wanted = {
                    "title": t.title,
                    "priority": t.priority.value,
                    "reporter_name": t.reporter_name,
                    "reporter_email": t.reporter_email,
                    "forum_url": t.forum_url,
                }
                diff = {k: v for k, v in wanted.items() if getattr(record, k) != v}
                if "priority" in diff:
                    changed.append((tid, record.priority, diff["priority"]))
                for k, v in diff.items():
                    setattr(record, k, v)
                if diff:
                    record.updated_at = now
                    updated += 1
            if cursor is not None:
                self._set_state(s, cursor[0], cursor[1])
        return PageOutcome(new, updated, tuple(changed))

    def mark(self, discussion_id: int, state: str, reason: str) -> None:
        """Record a known report as deleted / set aside, with why."""
        with self._session() as s:
            row = s.get(ForumReportRecord, discussion_id)
            if row is not None and (row.state, row.reason) != (state, reason):
                row.state, row.reason, row.updated_at = state, reason, _now()

    def report(self, discussion_id: int) -> ForumReport | None:
        with self._session() as s:
            row = s.get(ForumReportRecord, discussion_id)
            return _report(row) if row else None

    def reports(
        self, state: str | None = None, category_id: int | None = None
    ) -> list[ForumReport]:
        with self._session() as s:
            query = sa.select(ForumReportRecord).order_by(ForumReportRecord.discussion_id)
            if state is not None:
                query = query.where(ForumReportRecord.state == state)
            if category_id is not None:
                query = query.where(ForumReportRecord.category_id == category_id)
            return [_report(r) for r in s.scalars(query)]

    def reports_among(self, ids: Iterable[int]) -> list[ForumReport]:
        wanted = sorted(set(ids))
        found: list[ForumReport] = []
        with self._session() as s:
            for chunk in chunks(wanted, 500):
                query = sa.select(ForumReportRecord).where(
                    ForumReportRecord.discussion_id.in_(chunk)
                )
                found += [_report(r) for r in s.scalars(query)]
        return found

    def report_ids(self, category_id: int, exclude_states: tuple[str, ...] = ()) -> set[int]:
        with self._session() as s:
            query = sa.select(ForumReportRecord.discussion_id).where(
                ForumReportRecord.category_id == category_id
            )
            if exclude_states:
                query = query.where(ForumReportRecord.state.not_in(exclude_states))
            return set(s.scalars(query))

    # -- acknowledgements --------------------------------------------------------------------
    def acks(self, ids: Iterable[int] | None = None) -> dict[int, Ack]:
        with self._session() as s:
            query = sa.select(TicketAckRecord)
            if ids is not None:
                wanted = sorted(set(ids))
                if not wanted:
                    return {}
                rows = []
                for chunk in chunks(wanted, 500):
                    rows += list(s.scalars(query.where(TicketAckRecord.ticket_id.in_(chunk))))
            else:
                rows = list(s.scalars(query))
            return {
                r.ticket_id: Ack(
                    r.ticket_id,
                    Priority(r.priority),
                    Priority(r.first_priority),
                    r.message_id,
                    _aware(r.acked_at),  # type: ignore[arg-type]
                )
                for r in rows
            }

    def record_ack(self, ticket_id: int, priority: Priority, message_id: str) -> None:
        """The first mail went out: remember it and put its Message-ID on the ticket (so the
        "fixed" mail threads under it). Idempotent."""
        now = _now()
        with self._session() as s:
            if s.get(TicketAckRecord, ticket_id) is None:
                s.add(
                    TicketAckRecord(
                        ticket_id=ticket_id,
                        priority=priority.value,
                        first_priority=priority.value,
                        message_id=message_id,
                        acked_at=now,
                        updated_at=now,
                    )
                )
            ticket = s.get(TicketRecord, ticket_id)
            if ticket is not None and ticket.ack_message_id != message_id:
                ticket.ack_message_id, ticket.updated_at = message_id, now

    def record_raise(self, ticket_id: int, priority: Priority) -> None:
        """An update mail announced a higher priority."""
        with self._session() as s:
            row = s.get(TicketAckRecord, ticket_id)
            if row is not None and Priority(row.priority).rank > priority.rank:
                row.priority, row.updated_at = priority.value, _now()

    def ack_candidates(self) -> list[int]:
        """Open tickets found on the forum (state `ticket`), forum-tracked, never acknowledged
        (no ack recorded and no acknowledgement Message-ID from elsewhere)."""
        with self._session() as s:
            query = (
                sa.select(TicketRecord.id)
                .join(ForumReportRecord, ForumReportRecord.discussion_id == TicketRecord.id)
                .outerjoin(TicketAckRecord, TicketAckRecord.ticket_id == TicketRecord.id)
                .where(
                    ForumReportRecord.state == TICKET,
                    TicketRecord.status == "open",
                    TicketRecord.forum_tracked.is_(True),
                    TicketRecord.ack_message_id.is_(None),
                    TicketAckRecord.ticket_id.is_(None),
                )
                .order_by(TicketRecord.id)
            )
            return list(s.scalars(query))

    def raise_candidates(self) -> list[int]:
        """Acknowledged open tickets whose priority is now above the one last announced."""
        ranks = {p.value: p.rank for p in Priority}
        with self._session() as s:
            rows = s.execute(
                sa.select(TicketRecord.id, TicketRecord.priority, TicketAckRecord.priority)
                .join(TicketAckRecord, TicketAckRecord.ticket_id == TicketRecord.id)
                .where(
                    TicketRecord.status == "open", TicketRecord.priority != TicketAckRecord.priority
                )
            ).all()
        return sorted(tid for tid, now, told in rows if ranks[now] < ranks[told])
