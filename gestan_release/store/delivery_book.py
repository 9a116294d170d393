"""The deliveries: every side effect of a release, by a unique key, with its state.

Every step that changes the world (tag, push, update endpoint, post, mail) is a *delivery* with a
unique key (`tag:v15.4.1`, `updates:stable:15.4.1`, `mail:15.4.1:alice@example.com`, ...). A step
marks its delivery `sending` before it acts and `done` (with the external id) after; a re-run skips
what is finished and looks before acting again on what was left `sending` by a crash. A delivery
belongs to a release (`15.4.1`) or to a scope (`intake`: the acknowledgement mails).

Table `deliveries` (`tables.DeliveryRecord`); `Ledger` is this book and the release book together.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

import sqlalchemy as sa

from gestan_release.core.scrub import scrub
from gestan_release.errors import ReleaseError
from gestan_release.store import db
from gestan_release.store.tables import DeliveryRecord


class DeliveryState(StrEnum):
    """Where a delivery stands (stored as its value)."""

    SENDING = "sending"  # about to happen, or happened and a crash lost the answer
    DONE = "done"
    FAILED = "failed"
    # Done as far as we are concerned: the forum holds the post for moderation and posting it
    # again would make a duplicate.
    PENDING_APPROVAL = "pending_approval"


FINISHED = frozenset({DeliveryState.DONE, DeliveryState.PENDING_APPROVAL})


@dataclass(frozen=True)
class Delivery:
    key: str
    version: str
    channel: str
    state: DeliveryState
    external_id: str | None
    url: str | None
    attempts: int
    last_error: str | None

    @property
    def finished(self) -> bool:
        return self.state in FINISHED


def _delivery(r: DeliveryRecord) -> Delivery:
    return Delivery(
        r.key,
        r.version,
        r.channel,
        DeliveryState(r.state),
        r.external_id,
        r.url,
        r.attempts,
        r.last_error,
    )


def _now() -> datetime:
    return datetime.now(UTC)


def _clip(text: str, limit: int = 2000) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _SQL:
    """The statements of the per-delivery hot path, built once."""

    _t = DeliveryRecord.__table__
    _key = _t.c.key == sa.bindparam("k")
    sending = (
        _t.update()
        .where(_key)
        .values(
            state=DeliveryState.SENDING, attempts=_t.c.attempts + 1, updated_at=sa.bindparam("now")
        )
    )
    insert = _t.insert().values(
        key=sa.bindparam("k"),
        version=sa.bindparam("version"),
        channel=sa.bindparam("channel"),
        state=DeliveryState.SENDING,
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
        .values(
            state=DeliveryState.FAILED,
            last_error=sa.bindparam("err"),
            updated_at=sa.bindparam("now"),
        )
    )


class DeliveryBook(db.Store):
    """The deliveries in the database at `url`: read them, and record each state change."""

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
        state: DeliveryState = DeliveryState.DONE,
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
