"""The release ledger: what each release is, which tickets it fixed, and every side effect it had.

Every step that changes the world (tag, push, update endpoint, post, mail) is a *delivery* with a
unique key (`tag:v15.4.1`, `updates:stable:15.4.1`, `mail:15.4.1:alice@example.com`, ...). A step
marks its delivery `sending` before it acts and `done` (with the external id) after; a re-run skips
what is `done` and looks before acting again on what was left `sending` by a crash.

Same database as the tickets (`DATABASE_URL`); schema migrations in `migrations/versions/0002_*`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, Session, mapped_column

from gestan_release import db
from gestan_release.errors import ReleaseError
from gestan_release.scrub import scrub

# Delivery states. `pending_approval` is done as far as we are concerned: the forum holds the post
# for moderation and posting it again would make a duplicate.
PENDING, SENDING, DONE, FAILED, PENDING_APPROVAL = (
    "pending",
    "sending",
    "done",
    "failed",
    "pending_approval",
)
FINISHED = frozenset({DONE, PENDING_APPROVAL})

# Release states
IN_PROGRESS, RELEASED, INCOMPLETE = "in_progress", "released", "incomplete"


def _now() -> datetime:
    return datetime.now(UTC)


class ReleaseRecord(db.Base):
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
    started_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    # The Prefect flow run that last worked on it: a crashed run is resumed by its id.
    flow_run_id: Mapped[str | None] = mapped_column(sa.String(64), index=True)


class ReleaseTicketRecord(db.Base):
    __tablename__ = "release_tickets"

    version: Mapped[str] = mapped_column(
        sa.String(64), sa.ForeignKey("releases.version", ondelete="CASCADE"), primary_key=True
    )
    ticket_id: Mapped[int] = mapped_column(db.TicketId, primary_key=True, autoincrement=False)
    priority: Mapped[str | None] = mapped_column(sa.String(16))
    already_in: Mapped[str | None] = mapped_column(sa.String(64))
    known: Mapped[bool] = mapped_column(sa.Boolean, default=True)


class DeliveryRecord(db.Base):
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
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))


class OverrideRecord(db.Base):
    """A guard overridden on purpose (`--allow-missing ID`), with its reason."""

    __tablename__ = "overrides"

    version: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    ticket_id: Mapped[int] = mapped_column(db.TicketId, primary_key=True, autoincrement=False)
    rule: Mapped[str] = mapped_column(sa.String(64))
    reason: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))


class LockRecord(db.Base):
    """One row per repository while a release runs on it: two runs never cut one version twice."""

    __tablename__ = "locks"

    name: Mapped[str] = mapped_column(sa.String(512), primary_key=True)
    holder: Mapped[str] = mapped_column(sa.Text)
    acquired_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    # The lease: renewed by the holder's heartbeat; past it the row belongs to nobody (lock.py).
    expires_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))


class _SQL:
    """The statements of the per-delivery hot path, built once."""

    _t = DeliveryRecord.__table__
    _key = _t.c.key == sa.bindparam("k")
    sending = (
        _t.update()
        .where(_key)
        .values(state=SENDING, attempts=_t.c.attempts + 1, updated_at=sa.bindparam("now"))
    )
    insert = _t.insert().values(
        key=sa.bindparam("k"),
        version=sa.bindparam("version"),
        channel=sa.bindparam("channel"),
        state=SENDING,
        attempts=1,
        created_at=sa.bindparam("now"),
        updated_at=sa.bindparam("now"),
    )
    done = (
        _t.update()
        .where(_key)
        .values(
            state=sa.bindparam("state"),
            external_id=sa.bindparam("ext"),
            url=sa.bindparam("url"),
            last_error=None,
            updated_at=sa.bindparam("now"),
        )
    )
    failed = (
        _t.update()
        .where(_key)
        .values(state=FAILED, last_error=sa.bindparam("err"), updated_at=sa.bindparam("now"))
    )


@dataclass(frozen=True)
class Delivery:
    key: str
    version: str
    channel: str
    state: str
    external_id: str | None
    url: str | None
    attempts: int
    last_error: str | None

    @property
    def finished(self) -> bool:
        return self.state in FINISHED


@dataclass(frozen=True)
class Release:
    version: str
    kind: str
    label: str
    tag: str | None
    commit_sha: str | None
    channel: str
    previous_version: str | None
    state: str
    plan: dict[str, Any]
    started_at: datetime
    finished_at: datetime | None
    flow_run_id: str | None = None


def _delivery(r: DeliveryRecord) -> Delivery:
    return Delivery(
        r.key, r.version, r.channel, r.state, r.external_id, r.url, r.attempts, r.last_error
    )


def _release(r: ReleaseRecord) -> Release:
    return Release(
        r.version,
        r.kind,
        r.label,
        r.tag,
        r.commit_sha,
        r.channel,
        r.previous_version,
        r.state,
        json.loads(r.plan or "{}"),
        r.started_at,
        r.finished_at,
        r.flow_run_id,
    )


def _clip(text: str, limit: int = 2000) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Ledger:
    """Releases, their tickets and deliveries, in the database at `url` (migrated on first use)."""

    def __init__(self, url: str) -> None:
        self.url = url
        db.upgrade(url)
        self.engine = db.engine_for(url)

    @classmethod
    def existing(cls, url: str) -> Ledger | None:
        """The ledger if its database exists; None (and nothing created) for a missing SQLite
        file, so that read-only commands and dry runs leave no file behind."""
        path = db.sqlite_file(url)
        if path is not None and not path.exists():
            return None
        return cls(url)

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            yield session

    # -- releases ----------------------------------------------------------------------------
    def release(self, version: str) -> Release | None:
        with self._session() as s:
            row = s.get(ReleaseRecord, version)
            return _release(row) if row else None

    def releases(self, limit: int = 20) -> list[Release]:
        with self._session() as s:
            rows = s.scalars(
                sa.select(ReleaseRecord).order_by(ReleaseRecord.started_at.desc()).limit(limit)
            )
            return [_release(r) for r in rows]

    def start_release(
        self,
        *,
        version: str,
        kind: str,
        label: str,
        tag: str | None,
        channel: str,
        previous_version: str | None,
        plan: dict[str, Any],
        tickets: Iterable[tuple[int, str | None, str | None, bool]] = (),
        overrides: Iterable[tuple[int, str, str]] = (),
    ) -> Release:
        """Record a release (idempotent: an existing row is returned unchanged)."""
        now = _now()
        with self._session() as s:
            row = s.get(ReleaseRecord, version)
            if row is not None:
                return _release(row)
            row = ReleaseRecord(
                version=version,
                kind=kind,
                label=label,
                tag=tag,
                commit_sha=None,
                channel=channel,
                previous_version=previous_version,
                state=IN_PROGRESS,
                plan=json.dumps(plan, ensure_ascii=False, sort_keys=True),
                started_at=now,
                updated_at=now,
                finished_at=None,
            )
            s.add(row)
            s.flush()
            for ticket_id, priority, already_in, known in tickets:
                s.add(
                    ReleaseTicketRecord(
                        version=version,
                        ticket_id=ticket_id,
                        priority=priority,
                        already_in=already_in,
                        known=known,
                    )
                )
            for ticket_id, rule, reason in overrides:
                s.add(
                    OverrideRecord(
                        version=version,
                        ticket_id=ticket_id,
                        rule=rule,
                        reason=reason,
                        created_at=now,
                    )
                )
            return _release(row)

    def forget_release(self, version: str) -> bool:
        """Remove a release that did nothing yet (rejected at the approval gate), so that the
        next run plans it afresh; refused (False) once any of its side effects happened."""
        with self._session() as s:
            row = s.get(ReleaseRecord, version)
            if row is None:
                return True
            done = s.scalars(
                sa.select(DeliveryRecord.key).where(
                    DeliveryRecord.version == version, DeliveryRecord.state.in_(FINISHED)
                )
            ).first()
            if done is not None:
                return False
            for model in (DeliveryRecord, ReleaseTicketRecord, OverrideRecord):
                s.execute(sa.delete(model).where(model.version == version))
            s.delete(row)
            return True

    def set_commit(self, version: str, commit_sha: str) -> None:
        with self._session() as s:
            row = s.get(ReleaseRecord, version)
            if row is None:
                raise ReleaseError(f"release {version} is not in the ledger")
            row.commit_sha = commit_sha
            row.updated_at = _now()

    def finish_release(self, version: str, complete: bool) -> None:
        with self._session() as s:
            row = s.get(ReleaseRecord, version)
            if row is None:
                return
            row.state = RELEASED if complete else INCOMPLETE
            row.updated_at = _now()
            if complete and row.finished_at is None:
                row.finished_at = row.updated_at

    def release_tickets(self, version: str) -> list[ReleaseTicketRecord]:
        with self._session() as s:
            return list(
                s.scalars(
                    sa.select(ReleaseTicketRecord).where(ReleaseTicketRecord.version == version)
                )
            )

    def shipped_in_line(self, line: tuple[int, int]) -> dict[int, str]:
        """Tickets released in any U of the line X.Y (ticket id → label of the first U)."""
        prefix = f"{line[0]}.{line[1]}."
        with self._session() as s:
            rows = s.execute(
                sa.select(ReleaseTicketRecord.ticket_id, ReleaseRecord.label, ReleaseRecord.version)
                .join(ReleaseRecord, ReleaseRecord.version == ReleaseTicketRecord.version)
                .where(ReleaseRecord.kind == "u", ReleaseRecord.version.startswith(prefix))
            ).all()
        first: dict[int, tuple[int, str]] = {}
        for ticket_id, label, version in rows:
            patch = int(version.split(".")[2].split("-")[0])
            if ticket_id not in first or patch < first[ticket_id][0]:
                first[ticket_id] = (patch, label)
        return {tid: label for tid, (_, label) in first.items()}

    def overrides(self, version: str) -> list[OverrideRecord]:
        with self._session() as s:
            return list(
                s.scalars(sa.select(OverrideRecord).where(OverrideRecord.version == version))
            )

    def nightly_versions(self) -> list[str]:
        """Versions of every nightly recorded (to number a second nightly of the same day)."""
        with self._session() as s:
            return list(
                s.scalars(sa.select(ReleaseRecord.version).where(ReleaseRecord.kind == "nightly"))
            )

    # -- deliveries --------------------------------------------------------------------------
    def delivery(self, key: str) -> Delivery | None:
        with self._session() as s:
            row = s.get(DeliveryRecord, key)
            return _delivery(row) if row else None

    def deliveries(self, version: str | None = None, undone: bool = False) -> list[Delivery]:
        with self._session() as s:
            query = sa.select(DeliveryRecord).order_by(
                DeliveryRecord.created_at, DeliveryRecord.key
            )
            if version is not None:
                query = query.where(DeliveryRecord.version == version)
            if undone:
                query = query.where(DeliveryRecord.state.not_in(FINISHED))
            return [_delivery(r) for r in s.scalars(query)]

    def plan_deliveries(self, version: str, items: Iterable[tuple[str, str]]) -> None:
        """Declare the deliveries a release will make (key, channel), as `pending`, in one go."""
        now = _now()
        with self._session() as s:
            existing = set(
                s.scalars(sa.select(DeliveryRecord.key).where(DeliveryRecord.version == version))
            )
            for key, channel in items:
                if key not in existing:
                    existing.add(key)
                    s.add(
                        DeliveryRecord(
                            key=key,
                            version=version,
                            channel=channel,
                            state=PENDING,
                            attempts=0,
                            created_at=now,
                            updated_at=now,
                        )
                    )

    def deliveries_by_key(self, version: str) -> dict[str, Delivery]:
        """Every delivery of a release, by key, in one query (for steps that send many)."""
        return {d.key: d for d in self.deliveries(version)}

    def mark_sending(self, key: str, version: str, channel: str) -> None:
        """Record that a side effect is about to happen (before it happens).

        Prebuilt Core statements, not the ORM: this runs twice per mail on releases with
        hundreds of reporters, and building a statement costs more than running it."""
        now = _now()
        with self.engine.begin() as conn:
            updated = conn.execute(_SQL.sending, {"k": key, "now": now}).rowcount
            if not updated:
                conn.execute(
                    _SQL.insert,
                    {"k": key, "version": version, "channel": channel, "now": now},
                )

    def mark_sending_many(self, keys: list[str], version: str, channel: str) -> None:
        """`mark_sending` for a whole batch in one transaction (a batch sender, e.g. SMTP with a
        few connections, hands mails to the wire faster than one commit per mail)."""
        if not keys:
            return
        now = _now()
        with self.engine.begin() as conn:
            table = DeliveryRecord.__table__
            existing = set(
                conn.execute(sa.select(table.c.key).where(table.c.version == version)).scalars()
            )
            old = [{"k": k, "now": now} for k in keys if k in existing]
            new = [
                {"k": k, "version": version, "channel": channel, "now": now}
                for k in keys
                if k not in existing
            ]
            if old:
                conn.execute(_SQL.sending, old)
            if new:
                conn.execute(_SQL.insert, new)

    def mark_done(
        self,
        key: str,
        external_id: str | None = None,
        url: str | None = None,
        state: str = DONE,
    ) -> None:
        """Record that a side effect happened, with what identifies it outside."""
        params = {"k": key, "state": state, "ext": external_id, "url": url, "now": _now()}
        with self.engine.begin() as conn:
            updated = conn.execute(_SQL.done, params).rowcount
        if not updated:
            raise ReleaseError(f"delivery {key} was never started")

    def mark_failed(self, key: str, error: str) -> None:
        with self.engine.begin() as conn:
            # Scrubbed again here: whatever reached this point, no secret is ever stored.
            conn.execute(_SQL.failed, {"k": key, "err": _clip(scrub(error)), "now": _now()})

    # -- lock --------------------------------------------------------------------------------
    def lock(self, name: str, *, wait: float = 0.0, lease: float | None = None) -> Any:
        """The release lock `name` (one per repository) as a context manager: a lease row
        renewed by a heartbeat (see `gestan_release.lock` for why)."""
        from gestan_release.lock import DEFAULT_LEASE, ReleaseLock

        return ReleaseLock(self.engine, name, wait=wait, lease=lease or DEFAULT_LEASE)

    def acquire(self, name: str, wait: float = 0.0, lease: float | None = None) -> str:
        """Take the lock `name` without a heartbeat (short holders, tests); returns the holder
        to give back to `release_lock`. Fails with who holds it."""
        return self.lock(name, wait=wait, lease=lease).acquire().holder

    def release_lock(self, name: str, holder: str) -> None:
        from gestan_release.lock import ReleaseLock

        ReleaseLock(self.engine, name, holder=holder).release()

    # -- Prefect flow runs -------------------------------------------------------------------
    def set_flow_run(self, version: str, flow_run_id: str | None) -> None:
        """Record the flow run now working on a release (the one a crash would leave behind)."""
        if not flow_run_id:
            return
        with self._session() as s:
            row = s.get(ReleaseRecord, version)
            if row is not None and row.flow_run_id != flow_run_id:
                row.flow_run_id = flow_run_id
                row.updated_at = _now()

    def release_of_flow_run(self, flow_run_id: str) -> Release | None:
        """The release a (crashed) flow run was working on, if it got as far as recording it."""
        with self._session() as s:
            row = s.scalars(
                sa.select(ReleaseRecord).where(ReleaseRecord.flow_run_id == flow_run_id)
            ).first()
            return _release(row) if row else None
