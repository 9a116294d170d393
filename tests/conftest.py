"""Shared fixtures: real git repositories made by the test, an isolated environment."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

from fakes.contracts import CONTRACTS, contracts_dir  # noqa: F401


class GitRepo:
    """A real git repository in a temporary directory, with helpers to write history."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._n = 0
        path.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "-b", "main")
        self.git("config", "user.name", "Équipe Gestan")
        self.git("config", "user.email", "dev@gestan.test")
        self.git("config", "commit.gpgsign", "false")
        self.git("config", "tag.gpgsign", "false")

    def git(self, *args: str, env: dict[str, str] | None = None) -> str:
        full_env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", **(env or {})}
        proc = subprocess.run(
            ["git", "-C", str(self.path), *args],
            capture_output=True,
            text=True,
            env=full_env,
            check=False,
        )
        if proc.returncode != 0:
            raise AssertionError(f"git {' '.join(args)} failed: {proc.stderr}")
        return proc.stdout.strip()

    def commit(self, message: str, author: str | None = None, file: str | None = None) -> str:
        """Commit a change with exactly `message` (CRLF and accents kept); return its sha."""
        self._n += 1
        name = file or f"file{self._n}.txt"
        target = self.path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("a", encoding="utf-8") as fh:
            fh.write(f"change {self._n}\n")
        self.git("add", name)
        msg_file = self.path.parent / f".msg-{self.path.name}"
        msg_file.write_bytes(message.encode("utf-8"))
        args = ["commit", "-q", "--cleanup=verbatim", "-F", str(msg_file)]
        if author:
            args += ["--author", author]
        self.git(*args)
        return self.head()

    def head(self, ref: str = "HEAD") -> str:
        return self.git("rev-parse", ref)

    def tag(self, name: str, ref: str = "HEAD", message: str | None = None) -> None:
        self.git("tag", "-a", name, "-m", message or name, ref)

    def branch(self, name: str, ref: str = "HEAD") -> None:
        self.git("branch", name, ref)

    def checkout(self, ref: str) -> None:
        self.git("checkout", "-q", ref)

    def revert(self, sha: str) -> str:
        self.git("revert", "--no-edit", sha)
        return self.head()

    def cherry_pick(self, sha: str) -> str:
        self.git("cherry-pick", "-x", sha)
        return self.head()

    def merge(self, branch: str, message: str) -> str:
        self.git("merge", "--no-ff", "-q", "-m", message, branch)
        return self.head()


@pytest.fixture
def git_repo(tmp_path: Path) -> Iterator[GitRepo]:
    yield GitRepo(tmp_path / "repo")


@pytest.fixture
def make_repo(tmp_path: Path):
    def factory(name: str = "repo") -> GitRepo:
        return GitRepo(tmp_path / name)

    return factory


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No GESTAN_RELEASE_* variable of the developer's shell leaks into a test, nor a secret that
    an earlier test registered with the scrubber (a wrong token "nope" would mask that word)."""
    from gestan_release.core.scrub import forget_all

    for name in list(os.environ):
        if name.startswith("GESTAN_RELEASE_"):
            monkeypatch.delenv(name)
    forget_all()
    yield
    forget_all()


# -- databases: SQLite and PostgreSQL ----------------------------------------------------------
# The ledger, ticket, lock and pipeline suites run on both (`database_url` is parametrised). The
# PostgreSQL half uses the local server (127.0.0.1:5432, user postgres, trust), in a database of
# its own made for this test session and dropped after it; outside CI it is skipped, with the
# reason, when no server answers; under CI=true it must run.
PG_SERVER = os.environ.get("GESTAN_TEST_PG_SERVER", "postgresql+psycopg://postgres@127.0.0.1:5432")


class PgServer:
    """The local PostgreSQL server: makes and drops databases of this test session."""

    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")
        self.made: list[str] = []

    def url(self, name: str) -> str:
        return f"{self.base}/{name}"

    def _admin(self, statement: str) -> None:
        import psycopg

        dsn = self.url("postgres").replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
            conn.execute(statement)

    def create(self, prefix: str = "gestan_test") -> str:
        """A new empty database; its URL."""
        import uuid

        name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        self._admin(f'CREATE DATABASE "{name}"')
        self.made.append(name)
        return self.url(name)

    def drop(self, url: str) -> None:
        from gestan_release.store import db

        db.dispose_all()
        name = url.rsplit("/", 1)[1]
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if name in self.made:
            self.made.remove(name)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """The local PostgreSQL server, or a skip (a failure under CI=true) saying why not."""
    try:
        import psycopg
    except ModuleNotFoundError:
        reason = "psycopg is not installed: pip install -e '.[test]' (it pulls '[postgres]')"
    else:
        server = PgServer(PG_SERVER)
        dsn = server.url("postgres").replace("postgresql+psycopg://", "postgresql://")
        try:
            psycopg.connect(dsn, connect_timeout=5).close()
            reason = None
        except psycopg.OperationalError as exc:
            reason = (
                f"no PostgreSQL server answers at {PG_SERVER} ({str(exc).strip().splitlines()[0]}):"
                " start one (user postgres, trust auth) to run the PostgreSQL half of the suite"
            )
    if reason is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and {reason}")
        pytest.skip(reason)
    yield server
    for name in list(server.made):
        server.drop(server.url(name))


@pytest.fixture(scope="session")
def pg_session_url(pg_server: PgServer) -> str:
    """One fresh database for the session's PostgreSQL tests, migrated to the newest schema."""
    from gestan_release.store import db

    url = pg_server.create()
    db.upgrade(url)
    return url


def _empty_tables(url: str) -> None:
    """Every table of the schema emptied (the schema itself kept): a clean ledger per test."""
    import sqlalchemy as sa

    from gestan_release.store import db
    from gestan_release.store.tables import metadata

    names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
    with db.engine_for(url).begin() as connection:
        connection.execute(sa.text(f"TRUNCATE {names} CASCADE"))


@pytest.fixture
def pg_database_url(pg_session_url: str) -> str:
    """The session's PostgreSQL database with every table emptied (PostgreSQL-only tests)."""
    _empty_tables(pg_session_url)
    return pg_session_url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A clean database for one test: a SQLite file, or the session's PostgreSQL database with
    every table emptied."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'db' / 'gestan.db'}"
    url = request.getfixturevalue("pg_session_url")
    _empty_tables(url)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with nothing in it, not even a schema (migrations from empty): a SQLite file
    or a new PostgreSQL database, dropped after the test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty' / 'gestan.db'}"
        return
    server: PgServer = request.getfixturevalue("pg_server")
    url = server.create()
    yield url
    server.drop(url)
