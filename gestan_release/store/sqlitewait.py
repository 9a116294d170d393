"""Waiting out SQLite's "database is locked" on a connection's first statement.

Shared by the SQLAlchemy engines (`db`) and the fast stdlib read path
(`ticket_lookup.lookup_tickets`); it imports nothing heavy so that the read path stays fast.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable


def retry_while_locked(statement: Callable[[], object], seconds: float = 10.0) -> None:
    """Run a connection's first statement, retrying while SQLite says "database is locked".

    The busy timeout does not cover the moments when the last connection of another process is
    closing (it briefly locks the file to checkpoint and delete the WAL): a run starting just then
    gets "database is locked" at once. Once this first statement succeeds the connection holds the
    shared memory open, so no other process can do that cleanup under it any more.
    """
    deadline = time.monotonic() + seconds
    delay = 0.005
    while True:
        try:
            statement()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.1)
