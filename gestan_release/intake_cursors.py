"""The intake store as `tickets sync` first needs it: the cursors, read with the stdlib.

A re-sync with nothing new reads its cursors, asks the forum what came after them, hears
"nothing" and writes nothing; it must answer within a second (issue 10), and importing SQLAlchemy
alone takes half of that. So on a plain SQLite file the cursors (table `intake_state`) are read
with `sqlite3` on a read-only connection (as `ticket_lookup` does for `changelog`), and the
SQLAlchemy `IntakeStore` is opened — state directory prepared, schema migrated — only when the
sync has something to write. Any other database, or a file without that table yet, opens the
store at the first call.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from gestan_release.settings import Settings
from gestan_release.sqlitewait import retry_while_locked
from gestan_release.ticket_lookup import plain_sqlite_file


def read_cursors(database_url: str) -> dict[str, str] | None:
    """Every row of `intake_state` (name → JSON text) of a plain SQLite file, read-only; None
    when that is not possible (another database, no file, no table yet)."""
    path = plain_sqlite_file(database_url)
    if path is None or not path.is_file():
        return None
    try:
        connection = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, timeout=30)
    except sqlite3.Error:
        return None
    rows: list[tuple[str, str]] = []

    def read() -> None:
        rows[:] = connection.execute("SELECT name, value FROM intake_state").fetchall()

    try:
        retry_while_locked(read)
    except sqlite3.Error:
        return None  # no table yet, not a database: the store will say what is wrong
    finally:
        connection.close()
    return dict(rows)


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
