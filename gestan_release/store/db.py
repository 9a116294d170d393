"""The database layer: engines, schema migrations (Alembic), and `Store`, the base of the stores.

One database holds the tickets, the release ledger and the intake (every table: `tables.py`).
`DATABASE_URL` selects it: a SQLite file by default, PostgreSQL at scale. Every store opens it with
`engine_for(url)` and calls `upgrade(url)` once before first use; migrations run
programmatically, no `alembic.ini`.

SQLite is opened so that concurrent runs *wait* instead of failing: WAL journal (readers never
block the writer), a 30 s busy timeout, and every SQLAlchemy transaction starts with
`BEGIN IMMEDIATE`, which takes the write lock up front. (A deferred BEGIN would let two runs both
read, then one fail with "database is locked" when it upgrades to a write.) Read-only hot paths
that must stay fast, like `ticket_lookup.lookup_tickets`, use the stdlib `sqlite3` module on a
read-only connection instead, which never waits for a writer.

Adding a table or a column
--------------------------
1. Write the ORM class in `gestan_release/store/tables.py` (the whole schema lives there, so that
   autogenerate and `tests/store/test_db.py` see every table).
2. Add the migration `gestan_release/store/migrations/versions/000N_<name>.py` with the next
   `revision` and `down_revision` = the current head. Either write it by hand (copy the shape of
   an earlier one) or let Alembic draft it against a database at the current head, then review it:

       python -m gestan_release.store.db revision --rev-id 000N -m <name> --autogenerate

   Give constraints explicit names (the naming convention of `tables.metadata` does it for you in
   ORM classes) and keep SQLite in mind: changing an existing table needs `op.batch_alter_table`.
3. Nothing else: `upgrade(url)` takes every database to the newest head on first use, inside one
   transaction (SQLite) or under an advisory lock (PostgreSQL), so concurrent first runs are safe.
   `tests/store/test_db.py` checks that the ORM classes and the migrations agree.

Stores (`IntakeStore`, the ledger's books) subclass `Store`: migrated on first use, the shared
engine, one transaction per `_session()`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session

from gestan_release.history.git import common_dir
from gestan_release.store.sqlitewait import retry_while_locked

if TYPE_CHECKING:
    from gestan_release.settings import Settings

MIGRATIONS_DIR = Path(__file__).with_name("migrations")

SQLITE_BUSY_TIMEOUT_MS = 30_000

# Any fixed 64-bit key: serialises concurrent migrations of one PostgreSQL database.
_PG_MIGRATION_LOCK = 0x6765_7374_616E  # "gestan"

# -- engines ---------------------------------------------------------------------------------------

_engines: dict[str, Engine] = {}
_upgraded: set[str] = set()
_lock = threading.Lock()


def sqlite_file(url: str) -> Path | None:
    """The file behind a SQLite URL, or None for other databases and in-memory SQLite."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database).expanduser()


def display_url(url: str) -> str:
    """`url` fit to show (logs, errors, `doctor`): a password in it is masked."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL at all: show nothing of it that could be a secret
        return "<unreadable DATABASE_URL>"


def _server_url(url: str) -> sa.URL:
    """`url` with the PostgreSQL driver made explicit: a plain `postgresql://` means psycopg 3
    (SQLAlchemy would otherwise look for psycopg2, which we do not install)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def create_engine(url: str) -> Engine:
    """A new engine for `url`; for SQLite, creates the file's directory and sets up locking."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        parsed = _server_url(url)
        try:
            return sa.create_engine(parsed, pool_pre_ping=True)
        except ModuleNotFoundError as exc:
            from gestan_release.errors import ConfigError

            hint = (
                "pip install 'gestan-release[postgres]'"
                if parsed.get_backend_name() == "postgresql"
                else f"install the driver {parsed.get_driver_name()!r}"
            )
            raise ConfigError(
                f"DATABASE_URL {display_url(url)} needs a database driver that is not installed "
                f"({exc.name}): {hint}"
            ) from None
    path = sqlite_file(url)
    if path is not None:
        create_private_file(path)
    engine = sa.create_engine(parsed)
    wal = path is not None

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Hand transaction control to SQLAlchemy's "begin" event below (SQLAlchemy's documented
        # recipe for pysqlite), so that DDL is transactional and BEGIN can be IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        if wal:
            retry_while_locked(lambda: cursor.execute("PRAGMA journal_mode = WAL"))
            # In WAL mode NORMAL keeps every commit safe from a crash of the process (the case
            # the ledger is for) and skips an fsync per commit; only a power cut can lose the
            # last commits, and a lost "done" is re-checked with the channel on the next run.
            cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def create_private_file(path: Path) -> None:
    """Create `path` (and its missing directories) readable by its owner only, 0600 in 0700, if it
    does not exist: the database holds reporters' names and addresses. SQLite gives its -wal and
    -shm files the mode of the database file."""
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def engine_for(url: str) -> Engine:
    """The process-wide engine for `url` (created on first use), shared by every store."""
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _engines[url] = create_engine(url)
        return engine


def dispose_all() -> None:
    """Close every cached engine (tests, and before forking workers)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
        _upgraded.clear()


# -- stores ----------------------------------------------------------------------------------------


class Store:
    """What every store over the database at `url` starts from: the schema migrated on first use,
    the process-wide engine, and `_session()`, one transaction."""

    def __init__(self, url: str) -> None:
        self.url = url
        upgrade(url)
        self.engine = engine_for(url)

    @contextlib.contextmanager
    def _session(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            yield session


# -- migrations ------------------------------------------------------------------------------------


def alembic_config(url: str) -> Any:
    """An Alembic `Config` for our migrations and `url`, built in code (there is no alembic.ini)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # configparser interpolation: a literal % (e.g. in a password) must be doubled.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def _head_revision() -> str | None:
    """The newest revision of `migrations/versions`, read from the files without Alembic: the
    one no other file names as its `down_revision` (our history is linear). None if unclear."""
    import re

    revisions, downs = set(), set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        rev = re.search(r'^revision: str = "([^"]+)"', text, re.MULTILINE)
        down = re.search(r'^down_revision: str \| None = "([^"]+)"', text, re.MULTILINE)
        if rev:
            revisions.add(rev.group(1))
        if down:
            downs.add(down.group(1))
    heads = revisions - downs
    return heads.pop() if len(heads) == 1 else None


def _already_at(url: str, revision: str | None) -> bool:
    """Whether the database is at `revision` already (one query, no Alembic import: a command
    on an up-to-date database must start fast)."""
    if revision is None:
        return False
    try:
        with engine_for(url).connect() as connection:
            current = connection.execute(sa.text("SELECT version_num FROM alembic_version"))
            return [row[0] for row in current] == [revision]
    except sa.exc.DBAPIError:
        return False  # no table yet: a new database


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at `url` to `revision` (the newest by default); once per process."""
    if revision == "head" and url in _upgraded:
        return
    if revision == "head" and _already_at(url, _head_revision()):
        _upgraded.add(url)
        return
    from alembic import command

    config = alembic_config(url)
    with engine_for(url).begin() as connection:
        # One transaction for the whole upgrade: on SQLite BEGIN IMMEDIATE makes a concurrent
        # first run wait, then find the schema already current.
        if connection.dialect.name == "postgresql":
            connection.execute(
                sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK}
            )
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    if revision == "head":
        _upgraded.add(url)


def current_revision(url: str) -> str | None:
    """The revision the database at `url` is at, or None before the first migration."""
    from alembic.runtime.migration import MigrationContext

    with engine_for(url).connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


# -- state directory -------------------------------------------------------------------------------


def ensure_state_dir(settings: Settings) -> Path:
    """Create `STATE_DIR` and keep it out of `git status` via `.git/info/exclude` (added once)."""
    state = settings.state_dir
    assert state is not None, "settings must come from settings.load()"
    # Owner only: the database and the outbox hold reporters' names and addresses.
    state.mkdir(mode=0o700, parents=True, exist_ok=True)
    repo = settings.repo.resolve()
    git_dir = common_dir(repo)
    if git_dir is None:
        return state
    try:
        relative = state.resolve().relative_to(repo)
    except ValueError:
        return state  # outside the work tree: nothing to hide
    line = f"/{relative.as_posix()}/"
    exclude = git_dir / "info" / "exclude"
    existing = exclude.read_text(encoding="utf-8") if exclude.is_file() else ""
    if line in (entry.strip() for entry in existing.splitlines()):
        return state
    exclude.parent.mkdir(parents=True, exist_ok=True)
    separator = "" if not existing or existing.endswith("\n") else "\n"
    with exclude.open("a", encoding="utf-8") as fh:
        fh.write(f"{separator}# gestan-release state (tickets, ledger, outbox)\n{line}\n")
    return state


# -- developer entry point -------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """`python -m gestan_release.store.db upgrade URL | revision -m MSG --rev-id N
    [--autogenerate]`."""
    parser = argparse.ArgumentParser(
        prog="python -m gestan_release.store.db", description=main.__doc__
    )
    sub = parser.add_subparsers(dest="action", required=True)
    up = sub.add_parser("upgrade", help="migrate a database to the newest schema")
    up.add_argument("url")
    rev = sub.add_parser("revision", help="draft a new migration file in migrations/versions")
    rev.add_argument("-m", "--message", required=True)
    rev.add_argument("--rev-id", required=True, help="the next number, e.g. 0002")
    rev.add_argument("--autogenerate", action="store_true", help="diff tables.py against --url")
    rev.add_argument(
        "--url",
        default="sqlite://",
        help="database to diff against (default: a fresh in-memory one, migrated to head first)",
    )
    args = parser.parse_args(argv)
    if args.action == "upgrade":
        upgrade(args.url)
        return 0
    from alembic import command

    upgrade(args.url)
    config = alembic_config(args.url)
    with engine_for(args.url).begin() as connection:
        config.attributes["connection"] = connection
        command.revision(
            config,
            message=args.message,
            rev_id=args.rev_id,
            autogenerate=args.autogenerate,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
