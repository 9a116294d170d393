"""The intake store as `tickets sync` first needs it: the cursors, read with the stdlib.

A re-sync with nothing new reads its cursors, asks the forum what came after them, hears
"nothing" and writes nothing; it must answer within a second (issue 10), and importing SQLAlchemy
alone takes half of that. So on a plain SQLite file the cursors (table `intake_state`) are read
with `sqlite3` on a read-only connection (as `ticket_lookup` does for `changelog`), and the
SQLAlchemy `IntakeStore` is opened — state directory prepared, schema migrated — only when the
sync has something to write. Any other database, or a file without that table yet, opens the
store at the first call. After the sync, `acks_due` asks the same file whether the
acknowledgement step has anything to mail: when not, it is skipped without opening the stores and
the mail channels.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import Any

from gestan_release.settings import Settings
from gestan_release.sqlitewait import retry_while_locked
from gestan_release.ticket_lookup import plain_sqlite_file


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


# What `acknowledge` would send, asked of the same tables (intake_store.ack_candidates and
# raise_candidates say the same in SQLAlchemy; tests/test_intake.py holds them to agreement).
_ACK_DUE = """
SELECT 1 FROM tickets t
JOIN forum_reports f ON f.discussion_id = t.id
LEFT JOIN ticket_acks a ON a.ticket_id = t.id
WHERE f.state = 'ticket' AND t.status = 'open' AND t.forum_tracked = 1
  AND t.ack_message_id IS NULL AND a.ticket_id IS NULL
LIMIT 1
"""
_PRIORITY_CHANGED = """
SELECT t.priority, a.priority FROM tickets t JOIN ticket_acks a ON a.ticket_id = t.id
WHERE t.status = 'open' AND t.priority != a.priority
"""


def acks_due(database_url: str) -> bool | None:
    """Whether the acknowledgement step of `tickets sync` has anything to mail (a forum ticket
    never acknowledged, or a priority raised since its last mail), read with the stdlib from a
    plain SQLite file; None when that is not possible (the real step then decides)."""
    from gestan_release.tickets import Priority

    found: list[Any] = []

    def read(connection: sqlite3.Connection) -> None:
        found[:] = [connection.execute(_ACK_DUE).fetchone()]
        ranks = {p.value: p.rank for p in Priority}
        changed = connection.execute(_PRIORITY_CHANGED).fetchall()
        found.append(any(ranks.get(now, 0) < ranks.get(told, 0) for now, told in changed))

    if not _read(database_url, read):
        return None
    return found[0] is not None or bool(found[1])


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
            from gestan_release.db import ensure_state_dir
            from gestan_release.intake_store import IntakeStore

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
