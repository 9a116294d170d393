"""Every table of gestan-release, as SQLAlchemy ORM classes: the schema in one place.

One database (`DATABASE_URL`) holds them all; the stores read and write them:
- `tickets` (`TicketRecord`): the tickets, through `ticket_store` (and `ticket_lookup`'s
  read-only path);
- `releases`, `release_tickets`, `overrides` (`ReleaseRecord`, `ReleaseTicketRecord`,
  `OverrideRecord`): each release, the tickets it fixed, the guards overridden on purpose, through
  `release_book`; `deliveries` (`DeliveryRecord`): every side effect, through `delivery_book`
  (both make up the `ledger`);
- `locks` (`LockRecord`): the release lock, a lease row (`lock`);
- `forum_reports`, `intake_state`, `ticket_acks` (`ForumReportRecord`, `IntakeStateRecord`,
  `TicketAckRecord`): what the intake saw and sent, through `intake_store`.

The migrations in `migrations/versions/` (Alembic) create these tables and must follow every
change made here: a new column or table here needs a new migration (see `db.py`, "Adding
tables"), and `tests/store/test_db.py::test_the_orm_schema_matches_the_migrations` fails until the
two agree. States are stored as plain strings (`DeliveryState`, `ReleaseState` are `StrEnum`s);
migrations never need to change for a new member.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# Ticket ids are 1..2^63-1 (`validation.MAX_TICKET_ID`): BIGINT on PostgreSQL, where INTEGER is 32
# bits; SQLite's INTEGER already holds 64 bits (and keeps the plain name migration 0001 gave it).
TicketId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime(timezone=True)


class Base(DeclarativeBase):
    """Declarative base shared by every table below."""

    metadata = metadata


# -- tickets (migration 0001) ----------------------------------------------------------------------


class TicketRecord(Base):
    """A row of `tickets`; `tickets.values.Ticket` is the immutable value built from it."""

    __tablename__ = "tickets"

    id: Mapped[int] = mapped_column(TicketId, primary_key=True, autoincrement=False)
    title: Mapped[str] = mapped_column(sa.Text)
    priority: Mapped[str] = mapped_column(sa.String(16), index=True)
    reporter_name: Mapped[str] = mapped_column(sa.Text, default="")
    reporter_email: Mapped[str] = mapped_column(sa.Text)
    forum_url: Mapped[str | None] = mapped_column(sa.Text)
    forum_tracked: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    ack_message_id: Mapped[str | None] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(sa.String(16), default="open", index=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    updated_at: Mapped[datetime] = mapped_column(Timestamp)

    __table_args__ = (
        sa.CheckConstraint("priority IN ('flash', 'haute', 'normale', 'basse')", name="priority"),
        sa.CheckConstraint("status IN ('open', 'fixed', 'released')", name="status"),
    )


# -- the ledger (migrations 0002, 0004) ------------------------------------------------------------


class ReleaseRecord(Base):
    """A release; `state` holds a `release_book.ReleaseState`."""

    __tablename__ = "releases"

    version: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(16))
    label: Mapped[str] = mapped_column(sa.String(64))
    tag: Mapped[str | None] = mapped_column(sa.String(128))
    commit_sha: Mapped[str | None] = mapped_column(sa.String(64))
    channel: Mapped[str] = mapped_column(sa.String(32))
    previous_version: Mapped[str | None] = mapped_column(sa.String(64))
    state: Mapped[str] = mapped_column(sa.String(16), index=True)
    plan: Mapped[str] = mapped_column(sa.Text)  # JSON: what resume needs to finish the release
    started_at: Mapped[datetime] = mapped_column(Timestamp)
    updated_at: Mapped[datetime] = mapped_column(Timestamp)
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp)
    # The Prefect flow run that last worked on it: a crashed run is resumed by its id.
    flow_run_id: Mapped[str | None] = mapped_column(sa.String(64), index=True)


class ReleaseTicketRecord(Base):
    """A ticket a release fixes (`known`: in the ticket store when the release was cut)."""

    __tablename__ = "release_tickets"

    version: Mapped[str] = mapped_column(
        sa.String(64), sa.ForeignKey("releases.version", ondelete="CASCADE"), primary_key=True
    )
    ticket_id: Mapped[int] = mapped_column(TicketId, primary_key=True, autoincrement=False)
    priority: Mapped[str | None] = mapped_column(sa.String(16))
    already_in: Mapped[str | None] = mapped_column(sa.String(64))
    known: Mapped[bool] = mapped_column(sa.Boolean, default=True)


class DeliveryRecord(Base):
    """A side effect, by its unique key; `state` holds a `delivery_book.DeliveryState`."""

    __tablename__ = "deliveries"

    key: Mapped[str] = mapped_column(sa.String(512), primary_key=True)
    # The release (`15.4.1`) or the scope (`intake`: acknowledgement mails) it belongs to; no
    # foreign key since migration 0003, as a scope is not a release.
    version: Mapped[str] = mapped_column(sa.String(64), index=True)
    channel: Mapped[str] = mapped_column(sa.String(32))
    state: Mapped[str] = mapped_column(sa.String(24), index=True)
    external_id: Mapped[str | None] = mapped_column(sa.Text)
    url: Mapped[str | None] = mapped_column(sa.Text)
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    updated_at: Mapped[datetime] = mapped_column(Timestamp)


class OverrideRecord(Base):
    """A guard overridden on purpose (`--allow-missing ID`), with its reason."""

    __tablename__ = "overrides"

    version: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    ticket_id: Mapped[int] = mapped_column(TicketId, primary_key=True, autoincrement=False)
    rule: Mapped[str] = mapped_column(sa.String(64))
    reason: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(Timestamp)


class LockRecord(Base):
    """One row per repository while a release runs on it: two runs never cut one version twice."""

    __tablename__ = "locks"

    name: Mapped[str] = mapped_column(sa.String(512), primary_key=True)
    holder: Mapped[str] = mapped_column(sa.Text)
    acquired_at: Mapped[datetime] = mapped_column(Timestamp)
    # The lease: renewed by the holder's heartbeat; past it the row belongs to nobody (lock.py).
    expires_at: Mapped[datetime | None] = mapped_column(Timestamp)


# -- the intake (migration 0003) -------------------------------------------------------------------


class ForumReportRecord(Base):
    """A discussion read from a bug category, with its state (`intake_store.REPORT_STATES`)."""

    __tablename__ = "forum_reports"

    discussion_id: Mapped[int] = mapped_column(TicketId, primary_key=True, autoincrement=False)
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
    date_inserted: Mapped[datetime | None] = mapped_column(Timestamp)
    date_updated: Mapped[datetime | None] = mapped_column(Timestamp)
    seen_at: Mapped[datetime] = mapped_column(Timestamp)
    updated_at: Mapped[datetime] = mapped_column(Timestamp)


class IntakeStateRecord(Base):
    """A sync cursor: a JSON value by name."""

    __tablename__ = "intake_state"

    name: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    value: Mapped[str] = mapped_column(sa.Text)
    updated_at: Mapped[datetime] = mapped_column(Timestamp)


class TicketAckRecord(Base):
    """The acknowledgement of a ticket: the priority last announced to its reporter."""

    __tablename__ = "ticket_acks"

    ticket_id: Mapped[int] = mapped_column(TicketId, primary_key=True, autoincrement=False)
    priority: Mapped[str] = mapped_column(sa.String(16))  # last announced to the reporter
    first_priority: Mapped[str] = mapped_column(sa.String(16))  # announced by the first mail
    message_id: Mapped[str] = mapped_column(sa.Text)
    acked_at: Mapped[datetime] = mapped_column(Timestamp)
    updated_at: Mapped[datetime] = mapped_column(Timestamp)
