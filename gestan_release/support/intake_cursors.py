"""The intake store as `tickets sync` first needs it: the cursors, read with the stdlib.

A re-sync with nothing new reads its cursors, asks the forum what came after them, hears
"nothing" and writes nothing; it must answer within a second (issue 10), and importing SQLAlchemy
alone takes half of that. So on a plain SQLite file the cursors (table `intake_state`) are read
with `sqlite3` on a read-only connection (as `ticket_lookup` does for `changelog`), and the
SQLAlchemy `IntakeStore` is opened — state directory prepared, schema migrated — only when the
sync has something to write. Any other database, or a file without that table yet, opens the
store at the first call. After the sync, `ack_outlook` asks the same file whether the
acknowledgement step has anything to mail: when not, it is skipped without opening the stores and
the mail channels.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gestan_release.settings import Settings
from gestan_release.store.sqlitewait import retry_while_locked
from gestan_release.tickets.lookup import plain_sqlite_file


def _read(database_url: str, read: Callable[[sqlite3.Connection], None]) -> bool:
    """Run `read` on a read-only connection to the plain SQLite file of `database_url`; False when
    that is not possible (another database, no file, no such table yet)."""
    path = plain_sqlite_file(database_url)
    if path is None or not path.is_file():
        return False
    try:
        connection = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, timeout=30)
    except sqlite3.Error:
        return False
    try:
        retry_while_locked(lambda: read(connection))
    except sqlite3.Error:
        return False  # no table yet, not a database: the store will say what is wrong
    finally:
        connection.close()
    return True


def read_cursors(database_url: str) -> dict[str, str] | None:
    """Every row of `intake_state` (name → JSON text) of a plain SQLite file, read-only; None
    when that is not possible (another database, no file, no table yet)."""
    rows: list[tuple[str, str]] = []

    def read(connection: sqlite3.Connection) -> None:
        rows[:] = connection.execute("SELECT name, value FROM intake_state").fetchall()

    return dict(rows) if _read(database_url, read) else None


# What `acks.acknowledge` would mail, asked of the same tables: its candidates (as
# `intake_store.ack_candidates` selects them, with what it then checks of each) and the priority
# raises (`intake_store.raise_candidates`). tests/support/test_acks.py holds the two to agreement.
_ACK_CANDIDATES = """
SELECT t.id, t.forum_url, f.date_inserted FROM tickets t
JOIN forum_reports f ON f.discussion_id = t.id
LEFT JOIN ticket_acks a ON a.ticket_id = t.id
WHERE f.state = 'ticket' AND t.status = 'open' AND t.forum_tracked = 1
  AND t.ack_message_id IS NULL AND a.ticket_id IS NULL
ORDER BY t.id
"""
_PRIORITY_CHANGED = """
SELECT t.priority, a.priority FROM tickets t JOIN ticket_acks a ON a.ticket_id = t.id
WHERE t.status = 'open' AND t.priority != a.priority
"""


@dataclass(frozen=True)
class AckOutlook:
    """What the automatic acknowledgement step would do: mail something (`due`), or nothing,
    leaving out the tickets reported more than ACK_MAX_AGE_DAYS ago (`too_old`)."""

    due: bool
    too_old: list[int]


def ack_outlook(
    database_url: str, max_age_days: int, now: dt.datetime | None = None
) -> AckOutlook | None:
    """`AckOutlook` read with the stdlib from a plain SQLite file; None when that is not possible
    (the real step then decides). A candidate whose forum URL names no discussion is never
    acknowledged automatically, one reported before the ACK_MAX_AGE_DAYS cut-off is too old:
    `acknowledge` skips both, and so does this."""
    from gestan_release.text.usertext import discussion_id
    from gestan_release.tickets.values import Priority

    oldest = None
    if max_age_days > 0:
        oldest = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(days=max_age_days)
    candidates: list[tuple[int, str | None, str | None]] = []
    changed: list[tuple[str, str]] = []

    def read(connection: sqlite3.Connection) -> None:
        candidates[:] = connection.execute(_ACK_CANDIDATES).fetchall()
        changed[:] = connection.execute(_PRIORITY_CHANGED).fetchall()

    if not _read(database_url, read):
        return None
    ranks = {p.value: p.rank for p in Priority}
    due = any(ranks.get(now_, 0) < ranks.get(told, 0) for now_, told in changed)
    too_old: list[int] = []
    for tid, forum_url, reported in candidates:
        if discussion_id(forum_url) is None:
            continue
        if oldest is not None and reported is not None and _aware(reported) < oldest:
            too_old.append(tid)
        else:
            due = True
    return AckOutlook(due, too_old)


def _aware(stored: str) -> dt.datetime:
    """A timestamp as SQLite holds it (ISO text, UTC when it carries no offset)."""
    value = dt.datetime.fromisoformat(stored)
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


class LazyIntakeStore:
    """An `IntakeStore` opened on first need: until then `state` reads the stdlib copy of the
    cursors and `set_state` of an unchanged value writes nothing; every other method is the real
    store's (opened then, once). Without a stdlib copy the store is opened at once."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._store: Any = None
        self._cursors = read_cursors(settings.database_url or "")
        if self._cursors is None:
            self.open()

    @property
    def opened(self) -> bool:
        return self._store is not None

    def open(self) -> Any:
        """The real store (the state directory made and the schema migrated first)."""
        if self._store is None:
            from gestan_release.store.db import ensure_state_dir
            from gestan_release.support.intake_store import IntakeStore

            ensure_state_dir(self.settings)
            assert self.settings.database_url is not None
            self._store = IntakeStore(self.settings.database_url)
            self._cursors = None  # the store is the truth from now on
        return self._store

    def state(self, name: str) -> Any:
        if self._cursors is None:
            return self.open().state(name)
        text = self._cursors.get(name)
        return json.loads(text) if text is not None else None

    def set_state(self, name: str, value: Any) -> None:
        known = self._cursors.get(name) if self._cursors is not None else None
        if known is not None and known == json.dumps(value, sort_keys=True):
            return  # what the store holds already (IntakeStore would write nothing either)
        self.open().set_state(name, value)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.open(), name)
