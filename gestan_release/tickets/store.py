"""The ticket store: the tickets of `DATABASE_URL` through SQLAlchemy (SQLite by default,
PostgreSQL at scale); the schema is migrated on first use. Writes are one transaction each: an
import is all of its rows or none. SQLAlchemy is imported when the store is used, not before.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from gestan_release.core.progress import NULL, Progress
from gestan_release.errors import TicketError
from gestan_release.tickets.importer import ImportRow, read_import_file
from gestan_release.tickets.values import (
    COLUMNS,
    FIELDS,
    Priority,
    Ticket,
    check_status,
    chunks,
    storable_ids,
    ticket_from_row,
)


@dataclass(frozen=True)
class ImportSummary:
    new: int = 0
    updated: int = 0
    unchanged: int = 0

    @property
    def total(self) -> int:
        return self.new + self.updated + self.unchanged

    def __str__(self) -> str:
        noun = "ticket" if self.total == 1 else "tickets"
        parts = [f"{self.new} new", f"{self.updated} updated"]
        if self.unchanged:
            parts.append(f"{self.unchanged} unchanged")
        return f"imported {self.total} {noun} ({', '.join(parts)})"


Outcome = Literal["new", "updated", "unchanged"]


def new_record(ticket: Ticket, now: datetime) -> Any:
    """The `tickets` row of a ticket not stored yet (the ticket store's and the intake's)."""
    from gestan_release.store.tables import TicketRecord

    values = {name: getattr(ticket, name) for name in (*FIELDS, "status")}
    values["priority"] = ticket.priority.value
    return TicketRecord(**values, created_at=now, updated_at=now)


class TicketStore:
    """The tickets of `DATABASE_URL` (SQLAlchemy); the schema is migrated on first use."""

    def __init__(self, url: str) -> None:
        from gestan_release.store import db

        self.url = url
        self._engine = db.engine_for(url)
        db.upgrade(url)

    def _session(self) -> Any:
        from sqlalchemy.orm import Session

        return Session(self._engine, expire_on_commit=False)

    @staticmethod
    def _record_to_ticket(record: Any) -> Ticket:
        return ticket_from_row({name: getattr(record, name) for name in COLUMNS})

    def _upsert(self, session: Any, ticket: Ticket, *, keep_status: bool) -> Outcome:
        from gestan_release.store.tables import TicketRecord

        now = datetime.now(UTC)
        record = session.get(TicketRecord, ticket.id)
        if record is None:
            session.add(new_record(ticket, now))
            return "new"
        wanted = {name: getattr(ticket, name) for name in FIELDS}
        wanted["priority"] = ticket.priority.value
        if not keep_status:
            wanted["status"] = ticket.status
        changed = {name: value for name, value in wanted.items() if getattr(record, name) != value}
        if not changed:
            return "unchanged"
        for name, value in changed.items():
            setattr(record, name, value)
        record.updated_at = now
        return "updated"

    def add(self, ticket: Ticket) -> Outcome:
        """Add `ticket`, or update the stored one with that id (its status is kept)."""
        with self._session() as session, session.begin():
            return self._upsert(session, ticket, keep_status=True)

    def import_rows(
        self, rows: Iterable[ImportRow | Ticket], progress: Progress = NULL
    ) -> ImportSummary:
        """Add or update every row in one transaction: all of them, or (on any error) none."""
        rows = [
            r if isinstance(r, ImportRow) else ImportRow(f"ticket {r.id}", r, True) for r in rows
        ]
        seen: dict[int, str] = {}
        for row in rows:
            if row.ticket.id in seen:
                raise TicketError(
                    f"{row.where}: duplicate id {row.ticket.id} "
                    f"(already at {seen[row.ticket.id]}); nothing imported"
                )
            seen[row.ticket.id] = row.where
        counts = {"new": 0, "updated": 0, "unchanged": 0}
        with (
            progress.track("import", len(rows)) as bar,
            self._session() as session,
            session.begin(),
        ):
            for row in rows:
                counts[self._upsert(session, row.ticket, keep_status=not row.status_given)] += 1
                bar.advance()
        return ImportSummary(**counts)

    def import_file(self, path: str | Path, *, forum_host: str | None = None) -> ImportSummary:
        """Check the whole file first (TicketError listing every bad row), then import it."""
        return self.import_rows(read_import_file(path, forum_host=forum_host))

    def get(self, ticket_id: int) -> Ticket | None:
        from gestan_release.store.tables import TicketRecord

        with self._session() as session:
            record = session.get(TicketRecord, ticket_id)
            return None if record is None else self._record_to_ticket(record)

    def get_many(self, ids: Iterable[int]) -> dict[int, Ticket]:
        """The stored tickets among `ids`, by id; ids not in the store are simply absent."""
        from sqlalchemy import select

        from gestan_release.store.tables import TicketRecord

        wanted = storable_ids(ids)
        found: dict[int, Ticket] = {}
        with self._session() as session:
            for chunk in chunks(wanted, 500):
                query = select(TicketRecord).where(TicketRecord.id.in_(chunk))
                for record in session.scalars(query):
                    found[record.id] = self._record_to_ticket(record)
        return found

    def list(
        self, priority: Priority | str | None = None, status: str | None = None
    ) -> list[Ticket]:
        """Tickets, most urgent first then by id, optionally only one priority and/or status."""
        from sqlalchemy import select

        from gestan_release.store.tables import TicketRecord

        query = select(TicketRecord)
        if priority is not None:
            query = query.where(TicketRecord.priority == Priority.parse(priority).value)
        if status is not None:
            query = query.where(TicketRecord.status == check_status(status))
        with self._session() as session:
            tickets = [self._record_to_ticket(record) for record in session.scalars(query)]
        return sorted(tickets, key=lambda t: t.sort_key)

    def set_status(self, ids: Iterable[int], status: str) -> int:
        """Move tickets to `status` ; all or none. Returns how many changed."""
        from sqlalchemy import select

        from gestan_release.store.tables import TicketRecord

        status = check_status(status)
        wanted = sorted(set(ids))
        now = datetime.now(UTC)
        changed = 0
        with self._session() as session, session.begin():
            records = {}
            for chunk in chunks(wanted, 500):
                query = select(TicketRecord).where(TicketRecord.id.in_(chunk))
                records.update({r.id: r for r in session.scalars(query)})
            missing = [i for i in wanted if i not in records]
            if missing:
                raise TicketError(
                    f"ticket(s) {', '.join(map(str, missing))} not in the store; no status changed "
                    "(add them with `gestan-release tickets add` or `tickets import`)"
                )
            for record in records.values():
                if record.status != status:
                    record.status, record.updated_at = status, now
                    changed += 1
        return changed
