"""The facts Gestan's promises are measured on, read from the database in four queries
(`promises.measure` is the pure side).

On a SQLite file they are read with the stdlib, read-only (SQLAlchemy's import alone costs half a
second); elsewhere through SQLAlchemy. Reading never creates anything.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from gestan_release.support.promises import Facts, ReleaseFact, TicketFact
from gestan_release.tickets.values import Priority


def _aware(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


_TICKETS_SQL = """
SELECT t.id, t.priority, t.status, t.created_at, t.title, f.date_inserted, a.acked_at
FROM tickets t
LEFT JOIN forum_reports f ON f.discussion_id = t.id
LEFT JOIN ticket_acks a ON a.ticket_id = t.id
"""
_RELEASES_SQL = """
SELECT version, kind, label, started_at, finished_at FROM releases
WHERE state = 'released' AND kind IN ('full', 'u')
"""
_MEMBERS_SQL = "SELECT version, ticket_id FROM release_tickets"
_OVERRIDES_SQL = "SELECT version, ticket_id, reason FROM overrides"


def _rows_sqlite(path: Any) -> list[list[Any]] | None:
    """The four queries on a SQLite file with the stdlib (read-only: SQLAlchemy's import alone
    costs half a second); None when the schema is not there yet."""
    import sqlite3

    from gestan_release.store.sqlitewait import retry_while_locked

    connection = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, timeout=30)
    try:
        retry_while_locked(lambda: connection.execute("SELECT 1 FROM sqlite_master LIMIT 1"))
        return [
            connection.execute(sql).fetchall()
            for sql in (_TICKETS_SQL, _RELEASES_SQL, _MEMBERS_SQL, _OVERRIDES_SQL)
        ]
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return None
        raise
    finally:
        connection.close()


def _rows_sqlalchemy(database_url: str) -> list[list[Any]]:
    import sqlalchemy as sa

    from gestan_release.store import db

    db.upgrade(database_url)
    with db.engine_for(database_url).connect() as conn:
        return [
            list(conn.execute(sa.text(sql)).all())
            for sql in (_TICKETS_SQL, _RELEASES_SQL, _MEMBERS_SQL, _OVERRIDES_SQL)
        ]


def load_facts(database_url: str, since: dt.date | None = None) -> Facts:
    """Everything the measures need, in four queries (10,000 tickets load in a fraction of a
    second). Reading never creates anything: a missing database, or one from before the intake,
    gives empty facts."""
    from gestan_release.tickets.lookup import plain_sqlite_file

    path = plain_sqlite_file(database_url)
    if path is not None:
        if not path.is_file():
            return Facts((), ())
        rows = _rows_sqlite(path)
        if rows is None:
            return Facts((), ())
    else:
        rows = _rows_sqlalchemy(database_url)
    ticket_rows, releases, members, overrides = rows
    start = dt.datetime.combine(since, dt.time(), dt.UTC) if since else None
    tickets = []
    for tid, prio, status, created, title, inserted, acked in ticket_rows:
        reported = _aware(inserted) or _aware(created)
        assert reported is not None
        acked_at = _aware(acked)
        if start is not None and (acked_at or reported) < start:
            continue
        tickets.append(TicketFact(tid, Priority(prio), status, reported, acked_at, title))
    by_version: dict[str, set[int]] = {}
    for version, tid in members:
        by_version.setdefault(version, set()).add(tid)
    facts_releases = sorted(
        (
            ReleaseFact(
                v,
                kind,
                label,
                _aware(finished) or _aware(started),  # type: ignore[arg-type]
                frozenset(by_version.get(v, ())),
            )
            for v, kind, label, started, finished in releases
        ),
        key=lambda rel: rel.released_at,
    )
    return Facts(
        tuple(sorted(tickets, key=lambda x: x.id)),
        tuple(facts_releases),
        {(v, tid): reason for v, tid, reason in overrides},
    )
