"""The per-repository release lock: a lease row with a heartbeat, in the ledger's database.

Two runs on one repository must never cut one version twice, wherever they run, and a lock left
by a holder that vanished (kill -9, a lost machine) must free itself soon, without a person.

Why a lease row (and not the alternatives):
- **Prefect global concurrency limits** have leases too, but only exist where a Prefect server
  does: the CLI on the embedded default starts a temporary server *per process*, so two commands
  would each get their own limit and both run.
- **A PostgreSQL advisory lock** dies with its connection, but needs a connection held open for
  the whole release, does not exist on SQLite, and when a machine vanishes (no FIN, no RST) the
  server only notices after TCP keepalive gives up, which is two hours by default.
- **A lease row with a heartbeat** works the same on SQLite and PostgreSQL: the holder writes
  `expires_at = now + LOCK_LEASE` and renews it every third of the lease from a background thread;
  a row whose lease ran out belongs to nobody. A holder on this host whose process is gone frees it
  at once. The cost: hosts' clocks must agree to well under the lease (NTP), and a holder that
  cannot renew (database unreachable) must stop before its next step, which `ensure_held` does.

Taking over an expired row is a compare-and-swap (`UPDATE … WHERE holder = <old> AND expires_at <=
now`): on PostgreSQL the row lock makes two takers see each other, on SQLite `BEGIN IMMEDIATE`
serialises them; exactly one wins.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from gestan_release.errors import ReleaseError
from gestan_release.store.tables import LockRecord

log = logging.getLogger("gestan_release.release.lock")

DEFAULT_LEASE = 60.0  # seconds; `LOCK_LEASE`
# A row written before leases existed (no expires_at) is held for this long after acquired_at.
LEGACY_STALE_AFTER = timedelta(hours=6)
POLL = 0.5  # seconds between two tries while waiting (`LOCK_WAIT`)

Clock = Callable[[], datetime]
_LOCKS: sa.Table = LockRecord.__table__  # type: ignore[assignment]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def holder_id(host: str | None = None, pid: int | None = None) -> str:
    """`host:pid:token`: who holds a lock, readable by a person, unique per acquisition."""
    return f"{host or socket.gethostname()}:{pid or os.getpid()}:{secrets.token_hex(4)}"


def holder_is_dead(holder: str) -> bool:
    """A lock left by a process of this host that no longer exists is free."""
    parts = holder.split(":")
    if len(parts) < 2 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return False
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class ReleaseLock:
    """The lock `name` (one per repository) in the database of `engine`.

    `with ReleaseLock(engine, name, wait=…, lease=…) as lock:` takes it (or raises ReleaseError
    saying who holds it), renews it in the background, and frees it on the way out. Clock, sleep
    and monotonic time are injectable so that tests never wait for real.
    """

    def __init__(
        self,
        engine: Engine,
        name: str,
        *,
        wait: float = 0.0,
        lease: float = DEFAULT_LEASE,
        holder: str | None = None,
        clock: Clock = _utcnow,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if lease <= 0:
            raise ValueError("the lease must be positive")
        self.engine = engine
        self.name = name
        self.wait = max(0.0, float(wait))
        self.lease = float(lease)
        self.holder = holder or holder_id()
        self._clock = clock
        self._sleep = sleep
        self._monotonic = monotonic
        self._held = False
        self._lost: str | None = None
        self._renewed_at = 0.0  # monotonic time of the last successful renewal
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- taking and freeing ------------------------------------------------------------------
    def try_acquire(self) -> tuple[bool, str | None, datetime | None]:
        """One attempt: (taken?, current holder, its expiry) — without waiting."""
        table = _LOCKS
        now = self._clock()
        expires = now + timedelta(seconds=self.lease)
        with self.engine.begin() as conn:
            if _insert_if_absent(conn, table, self.name, self.holder, now, expires):
                return self._took(), None, None
            row = conn.execute(
                sa.select(table.c.holder, table.c.acquired_at, table.c.expires_at).where(
                    table.c.name == self.name
                )
            ).first()
            if row is None:  # freed between our insert and our read: try again next time
                return False, None, None
            held_by, acquired_at, old_expiry = row
            expiry = (
                _aware(old_expiry)
                if old_expiry is not None
                else _aware(acquired_at) + LEGACY_STALE_AFTER
            )
            if held_by == self.holder:  # taken again by its holder (a retried task)
                conn.execute(
                    table.update()
                    .where(table.c.name == self.name, table.c.holder == self.holder)
                    .values(expires_at=expires)
                )
                return self._took(), None, None
            if expiry > now and not holder_is_dead(held_by):
                return False, held_by, expiry
            # Expired, or its process is gone: take it over unless someone else just did, or
            # (expired case) its holder renewed it meanwhile: the WHERE is evaluated again on
            # the locked row.
            where = [table.c.name == self.name, table.c.holder == held_by]
            if expiry <= now:
                where.append(
                    table.c.expires_at <= now
                    if old_expiry is not None
                    else table.c.expires_at.is_(None)
                )
            taken = conn.execute(
                table.update()
                .where(*where)
                .values(holder=self.holder, acquired_at=now, expires_at=expires)
            ).rowcount
            if taken:
                log.warning(
                    "took over the release lock %s from %s (%s)",
                    self.name,
                    held_by,
                    "lease expired" if expiry <= now else "its process is gone",
                )
                return self._took(), None, None
            return False, held_by, expiry

    def _took(self) -> bool:
        self._held = True
        self._lost = None
        self._renewed_at = self._monotonic()
        return True

    def acquire(self) -> ReleaseLock:
        """Take the lock, waiting up to `wait` seconds; ReleaseError names the holder."""
        deadline = self._monotonic() + self.wait
        while True:
            taken, held_by, expiry = self.try_acquire()
            if taken:
                return self
            if self._monotonic() >= deadline:
                since = f", lease until {expiry:%H:%M:%S} UTC" if expiry else ""
                raise ReleaseError(
                    f"another release is running on this repository ({held_by}{since}); wait for "
                    f"it to finish (LOCK_WAIT), or if its machine is gone the lock frees itself "
                    f"when the lease ends, then run `gestan-release resume VERSION`"
                )
            self._sleep(min(POLL, max(0.0, deadline - self._monotonic())) or POLL)

    def renew(self) -> bool:
        """Push the lease forward; False (and the lock marked lost) if someone else has it."""
        table = _LOCKS
        expires = self._clock() + timedelta(seconds=self.lease)
        with self.engine.begin() as conn:
            kept = conn.execute(
                table.update()
                .where(table.c.name == self.name, table.c.holder == self.holder)
                .values(expires_at=expires)
            ).rowcount
        if kept:
            self._renewed_at = self._monotonic()
            return True
        self._held = False
        self._lost = "another run took it over"
        return False

    def release(self) -> None:
        """Free the lock if this holder still has it (never someone else's)."""
        self._stop_heartbeat()
        table = _LOCKS
        with self.engine.begin() as conn:
            conn.execute(
                table.delete().where(table.c.name == self.name, table.c.holder == self.holder)
            )
        self._held = False

    # -- while holding it --------------------------------------------------------------------
    @property
    def held(self) -> bool:
        """Held and renewed recently enough that no one else can have taken it over."""
        if not self._held or self._lost:
            return False
        if self._monotonic() - self._renewed_at >= self.lease:
            self._lost = f"not renewed for {self.lease:.0f} s (is the database reachable?)"
            return False
        return True

    def ensure_held(self) -> None:
        """Raise before a step if the lock was lost: two runs must never ship at once."""
        if not self.held:
            raise ReleaseError(
                f"the release lock on this repository was lost ({self._lost or 'released'}); "
                f"stopped before the next step so that two runs never ship at once. Run "
                f"`gestan-release resume VERSION` to finish"
            )

    def heartbeat_once(self) -> None:
        """One beat of the background thread: renew, keep going on a passing database error."""
        try:
            self.renew()
        except sa.exc.SQLAlchemyError as exc:
            log.warning("could not renew the release lock %s: %s", self.name, exc.__class__)

    def _beat(self) -> None:
        interval = self.lease / 3
        while not self._stop.wait(interval):
            self.heartbeat_once()
            if self._lost:
                log.error("release lock %s lost: %s", self.name, self._lost)
                return

    def start_heartbeat(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._beat, name=f"lock-heartbeat {self.name}", daemon=True
            )
            self._thread.start()

    def _stop_heartbeat(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join(timeout=10)

    def __enter__(self) -> ReleaseLock:
        self.acquire()
        self.start_heartbeat()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _insert_if_absent(
    conn: sa.Connection,
    table: sa.Table,
    name: str,
    holder: str,
    now: datetime,
    expires: datetime,
) -> bool:
    """Insert the lock row unless one exists; whether it was inserted (atomic on both)."""
    values = {"name": name, "holder": holder, "acquired_at": now, "expires_at": expires}
    dialect = conn.dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # any other database: a savepoint around a plain insert
        try:
            with conn.begin_nested():
                conn.execute(table.insert().values(**values))
            return True
        except sa.exc.IntegrityError:
            return False
    statement = (
        insert(table)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["name"])
        .returning(table.c.name)  # rowcount of an INSERT is not reliable across drivers
    )
    return conn.execute(statement).first() is not None
