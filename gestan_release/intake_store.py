"""What the intake keeps: every forum report seen, the sync cursors, the acknowledgements sent.

Same database as the tickets and the ledger (`DATABASE_URL`; migration `0003_intake`). The sync
writes one page of discussions per transaction — its reports, their tickets and the cursor that
says the page is done — so a crash at any point leaves a state the next sync simply continues.

Tables:
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
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, Session, mapped_column

from gestan_release import db
from gestan_release.tickets import Priority, Ticket

TICKET, A_TRIER, ECARTE, DELETED = "ticket", "a-trier", "ecarte", "deleted"
REPORT_STATES = (TICKET, A_TRIER, ECARTE, DELETED)


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class ForumReportRecord(db.Base):
    __tablename__ = "forum_reports"

    discussion_id: Mapped[int] = mapped_column(db.TicketId, primary_key=True, autoincrement=False)
    category_id: Mapped[int | None] = mapped_column(sa.Integer)
    title: Mapped[str] = mapped_column(sa.Text)
    url: Mapped[str | None] = mapped_column(sa.Text)
    insert_user_id: Mapped[int | None] = mapped_column(sa.Integer)
    reporter_name: Mapped[str | None] = mapped_column(sa.Text)
    reporter_email: Mapped[str | None] = mapped_column(sa.Text)
    priority: Mapped[str | None] = mapped_column(sa.String(16))
    tags: Mapped[str | None] = mapped_column(sa.Text)  # JSON list of the tag names
    state: Mapped[str] = mapped_column(sa.String(16), index=True)
    reason: Mapped[str | None] = mapped_column(sa.Text)
    date_inserted: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    date_updated: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    seen_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))


class IntakeStateRecord(db.Base):
    __tablename__ = "intake_state"

    name: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    value: Mapped[str] = mapped_column(sa.Text)
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))


class TicketAckRecord(db.Base):
    __tablename__ = "ticket_acks"

    ticket_id: Mapped[int] = mapped_column(db.TicketId, primary_key=True, autoincrement=False)
    priority: Mapped[str] = mapped_column(sa.String(16))  # last announced to the reporter
    first_priority: Mapped[str] = mapped_column(sa.String(16))  # announced by the first mail
    message_id: Mapped[str] = mapped_column(sa.Text)
    acked_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))


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


def _report(r: ForumReportRecord) -> ForumReport:
    return ForumReport(
        discussion_id=r.discussion_id,
        category_id=r.category_id,
        title=r.title,
        url=r.url,
        insert_user_id=r.insert_user_id,
        state=r.state,
        priority=Priority(r.priority) if r.priority else None,
        reporter_name=r.reporter_name,
        reporter_email=r.reporter_email,
        tags=tuple(json.loads(r.tags or "[]")),
        reason=r.reason,
        date_inserted=_aware(r.date_inserted),
        date_updated=_aware(r.date_updated),
    )


def _chunks(items: Sequence[int], size: int = 500) -> Iterator[Sequence[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class IntakeStore:
    """Forum reports, cursors and acknowledgements in the database at `url`."""

    def __init__(self, url: str) -> None:
        self.url = url
        db.upgrade(url)
        self.engine = db.engine_for(url)

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            yield session

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
        from gestan_release.db import TicketRecord

        reports = list(reports)
        tickets = {t.id: t for t in tickets}
        now = _now()
        new = updated = 0
        changed: list[tuple[int, str, str]] = []
        with self._session() as s:
            ids = sorted({r.discussion_id for r in reports})
            existing = {}
            for chunk in _chunks(ids):
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
                values = {
                    "category_id": rep.category_id,
                    "title": rep.title,
                    "url": rep.url,
                    "insert_user_id": rep.insert_user_id,
                    "reporter_name": rep.reporter_name,
                    "reporter_email": rep.reporter_email,
                    "priority": rep.priority.value if rep.priority else None,
                    "tags": json.dumps(list(rep.tags), ensure_ascii=False),
                    "state": rep.state,
                    "reason": rep.reason,
                    "date_inserted": rep.date_inserted,
                    "date_updated": rep.date_updated,
                }
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
            for chunk in _chunks(ticket_ids):
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
                    s.add(
                        TicketRecord(
                            id=t.id,
                            title=t.title,
                            priority=t.priority.value,
                            reporter_name=t.reporter_name,
                            reporter_email=t.reporter_email,
                            forum_url=t.forum_url,
                            forum_tracked=t.forum_tracked,
                            ack_message_id=t.ack_message_id,
                            status=t.status,
                            created_at=now,
                            updated_at=now,
                        )
                    )
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
            for chunk in _chunks(wanted):
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
                for chunk in _chunks(wanted):
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
        from gestan_release.db import TicketRecord

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
        from gestan_release.db import TicketRecord

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
        from gestan_release.db import TicketRecord

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
