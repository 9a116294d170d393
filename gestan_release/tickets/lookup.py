"""The fast read path of the ticket store: `lookup_tickets`, what `changelog` needs, reads a
SQLite file with the stdlib (read-only, never creating anything) so that the command answers in
well under half a second; any other database goes through `ticket_store` (SQLAlchemy).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path

from gestan_release.errors import TicketError
from gestan_release.store.sqlitewait import retry_while_locked
from gestan_release.tickets.values import COLUMNS, Ticket, chunks, storable_ids, ticket_from_row


def plain_sqlite_file(database_url: str) -> Path | None:
    """The file of a plain `sqlite:///path` URL, else None (other databases, memory, options)."""
    scheme, sep, rest = database_url.partition(":///")
    if not sep or scheme not in ("sqlite", "sqlite+pysqlite") or "?" in rest or not rest:
        return None
    if rest == ":memory:" or rest.startswith("file:"):
        return None
    return Path(rest).expanduser()


def _first_read(connection: sqlite3.Connection) -> None:
    """Touch the file, waiting out "database is locked" (see `sqlitewait`)."""
    retry_while_locked(lambda: connection.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall())


def lookup_tickets(database_url: str, ids: Iterable[int]) -> dict[int, Ticket]:
    """The stored tickets among `ids`, by id, without importing SQLAlchemy for SQLite files.

    A missing database or one without tickets yet gives `{}`: reading never creates anything.
    """
    wanted = storable_ids(ids)
    path = plain_sqlite_file(database_url)
    if path is None:
        from gestan_release.tickets.store import TicketStore

        return TicketStore(database_url).get_many(wanted) if wanted else {}
    if not wanted or not path.is_file():
        return {}
    uri = path.resolve().as_uri() + "?mode=ro"
    try:
        connection = sqlite3.connect(uri, uri=True, timeout=30)
    except sqlite3.OperationalError as exc:
        raise TicketError(f"cannot open the ticket store {path}: {exc}") from None
    found: dict[int, Ticket] = {}
    try:
        connection.row_factory = sqlite3.Row
        _first_read(connection)
        columns = ", ".join(COLUMNS)
        for chunk in chunks(wanted, 500):
            marks = ", ".join("?" * len(chunk))
            query = f"SELECT {columns} FROM tickets WHERE id IN ({marks})"
            for row in connection.execute(query, tuple(chunk)):
                ticket = ticket_from_row(row)
                found[ticket.id] = ticket
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return {}
        raise TicketError(f"cannot read the ticket store {path}: {exc}") from None
    except sqlite3.DatabaseError as exc:
        raise TicketError(f"{path} is not a gestan-release database: {exc}") from None
    finally:
        connection.close()
    return found
