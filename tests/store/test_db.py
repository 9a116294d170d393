"""The database layer: migrations, SQLite locking, the state directory kept out of git."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory

from gestan_release.settings import load
from gestan_release.store import db
from gestan_release.store.tables import metadata


@pytest.fixture(autouse=True)
def _fresh_engines():
    yield
    db.dispose_all()


def head_revision() -> str:
    return ScriptDirectory.from_config(db.alembic_config("sqlite://")).get_current_head()


def test_upgrade_creates_the_file_and_its_directory(tmp_path):
    path = tmp_path / "deep" / "state" / "gestan.db"
    url = f"sqlite:///{path}"
    db.upgrade(url)
    assert path.is_file()
    assert db.current_revision(url) == head_revision()
    assert "tickets" in sa.inspect(db.engine_for(url)).get_table_names()
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_upgrade_twice_is_a_no_op(tmp_path):
    url = f"sqlite:///{tmp_path / 'gestan.db'}"
    db.upgrade(url)
    with db.engine_for(url).begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO tickets VALUES (1, 't', 'flash', '', 'a@example.com', NULL, 1, NULL,"
                " 'open', '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
            )
        )
    db.dispose_all()  # forget that this process already migrated it
    db.upgrade(url)
    db.upgrade(url)
    assert db.current_revision(url) == head_revision()
    with db.engine_for(url).connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM tickets")).scalar() == 1


def test_upgrade_to_the_first_revision_only(empty_database_url):
    url = empty_database_url
    db.upgrade(url, "0001")
    assert db.current_revision(url) == "0001"
    assert sorted(sa.inspect(db.engine_for(url)).get_table_names()) == [
        "alembic_version",
        "tickets",
    ]


def _revisions() -> list[str]:
    """Every revision, oldest first."""
    script = ScriptDirectory.from_config(db.alembic_config("sqlite://"))
    return [r.revision for r in reversed(list(script.walk_revisions()))]


def test_upgrade_from_the_previous_revision_keeps_the_data(empty_database_url):
    """A database left at the revision before the newest (what a deployed ledger is when a new
    version of gestan-release starts) is taken to the newest one with its rows."""
    url = empty_database_url
    revisions = _revisions()
    previous = revisions[-2]
    db.upgrade(url, previous)
    assert db.current_revision(url) == previous
    with db.engine_for(url).begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO tickets (id, title, priority, reporter_name, reporter_email,"
                " forum_tracked, status, created_at, updated_at) VALUES (1, 'Bug', 'flash',"
                " '', 'a@example.com', true, 'open', '2026-01-01 00:00:00+00',"
                " '2026-01-01 00:00:00+00')"
            )
        )
    db.dispose_all()  # a new process
    db.upgrade(url)
    assert db.current_revision(url) == head_revision()
    with db.engine_for(url).connect() as connection:
        assert connection.execute(sa.text("SELECT title FROM tickets")).scalars().all() == ["Bug"]


def test_downgrade_then_upgrade_again(empty_database_url):
    """Each migration can be undone (an operator rolling gestan-release back)."""
    from alembic import command

    url = empty_database_url
    db.upgrade(url)
    config = db.alembic_config(url)
    with db.engine_for(url).begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    assert sa.inspect(db.engine_for(url)).get_table_names() == ["alembic_version"]
    db.dispose_all()
    db.upgrade(url)
    assert db.current_revision(url) == head_revision()


def test_the_orm_schema_matches_the_migrations(empty_database_url):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    url = empty_database_url
    db.upgrade(url)
    with db.engine_for(url).connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []


CONCURRENT_WRITER = """
import sys
from gestan_release.tickets.values import Priority, Ticket
from gestan_release.tickets.store import TicketStore
store = TicketStore(sys.argv[1])
for n in range(20):
    i = int(sys.argv[2]) * 100 + n
    store.add(Ticket(i, f"Bug {i}", Priority.HAUTE, "A", "a@example.com"))
"""


def test_concurrent_first_runs_wait_instead_of_failing(empty_database_url):
    """Four processes migrate and write an empty database at once (SQLite: BEGIN IMMEDIATE;
    PostgreSQL: the migration's advisory lock)."""
    url = empty_database_url
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT_WRITER, url, str(k)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(1, 5)
    ]
    errors = [p.communicate(timeout=60)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errors
    with db.engine_for(url).connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM tickets")).scalar() == 80


def test_sqlite_file_helper():
    assert db.sqlite_file("sqlite:////abs/g.db") == Path("/abs/g.db")
    assert db.sqlite_file("sqlite:///rel/g.db") == Path("rel/g.db")
    assert db.sqlite_file("sqlite://") is None
    assert db.sqlite_file("sqlite:///:memory:") is None
    assert db.sqlite_file("postgresql+psycopg://u:p@host/gestan") is None


def _git_init(path: Path) -> Path:
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    return path


def test_ensure_state_dir_adds_the_exclude_line_once(tmp_path):
    repo = _git_init(tmp_path / "repo")
    exclude = repo / ".git" / "info" / "exclude"
    exclude.write_text("*.swp")  # no final newline
    settings = load(repo, env={})
    assert db.ensure_state_dir(settings) == repo / ".gestan-release"
    db.ensure_state_dir(settings)
    text = exclude.read_text()
    assert text.startswith("*.swp\n")
    assert text.count("/.gestan-release/") == 1
    (repo / ".gestan-release" / "x").write_text("x")
    status = subprocess.run(
        ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=all"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert status.stdout == ""


def test_ensure_state_dir_in_a_worktree_writes_the_common_exclude(tmp_path):
    repo = _git_init(tmp_path / "repo")
    git = ["git", "-C", str(repo), "-c", "user.name=T", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "init"], check=True)
    subprocess.run([*git, "worktree", "add", "-q", str(tmp_path / "wt")], check=True)
    db.ensure_state_dir(load(tmp_path / "wt", env={}))
    assert "/.gestan-release/" in (repo / ".git" / "info" / "exclude").read_text()
    assert (tmp_path / "wt" / ".gestan-release").is_dir()


def test_ensure_state_dir_outside_git_or_outside_the_repo(tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    assert db.ensure_state_dir(load(plain, env={})).is_dir()
    assert not (plain / ".git").exists()

    repo = _git_init(tmp_path / "repo")
    elsewhere = tmp_path / "state"
    settings = load(repo, env={"GESTAN_RELEASE_STATE_DIR": str(elsewhere)})
    assert db.ensure_state_dir(settings) == elsewhere and elsewhere.is_dir()
    assert "gestan-release" not in (repo / ".git" / "info" / "exclude").read_text()


def test_a_plain_postgresql_url_means_psycopg_3():
    assert db._server_url("postgresql://u@h/g").drivername == "postgresql+psycopg"
    assert db._server_url("postgresql+psycopg://u@h/g").drivername == "postgresql+psycopg"


def test_a_missing_driver_is_named_without_the_password():
    from gestan_release.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        db.create_engine("postgresql+pg8000://gestan:s3cret@db.example/gestan")
    message = str(info.value)
    assert "s3cret" not in message and "pg8000" in message
    assert db.display_url("postgresql://gestan:s3cret@db/g") == "postgresql://gestan:***@db/g"
