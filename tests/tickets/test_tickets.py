"""The tickets: the values (`tickets`), import files (`ticket_import`: all or nothing, every error
with its line), the store (`ticket_store`: add-or-update, listing), the CLI, and the stdlib fast
path used by `changelog` (`ticket_lookup`)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from gestan_release.cli import main
from gestan_release.errors import TicketError
from gestan_release.store import db
from gestan_release.tickets.fields import parse_reporter
from gestan_release.tickets.importer import read_import_file
from gestan_release.tickets.lookup import lookup_tickets
from gestan_release.tickets.store import ImportSummary, TicketStore
from gestan_release.tickets.values import Priority, Ticket

HEADER = "id,title,priority,reporter_name,reporter_email,forum_url,forum_tracked,ack_message_id\n"


@pytest.fixture(autouse=True)
def _fresh_engines():
    yield
    db.dispose_all()  # each test has its own database file; do not keep their engines around


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    return path


@pytest.fixture
def db_url(repo: Path) -> str:
    return f"sqlite:///{repo / '.gestan-release' / 'gestan.db'}"


@pytest.fixture
def store(database_url: str, monkeypatch: pytest.MonkeyPatch) -> TicketStore:
    """The store on SQLite and on PostgreSQL; the CLI of the test uses the same database."""
    monkeypatch.setenv("GESTAN_RELEASE_DATABASE_URL", database_url)
    return TicketStore(database_url)


@pytest.fixture
def sqlite_store(db_url: str) -> TicketStore:
    """The store in the repository's SQLite file, for the stdlib fast path's own tests."""
    return TicketStore(db_url)


def cli(repo: Path, *args: str) -> int:
    return main(["--repo", str(repo), *args])


def ticket(id: int = 1, **changes) -> Ticket:
    values = {
        "id": id,
        "title": f"Bug {id}",
        "priority": Priority.NORMALE,
        "reporter_name": "Alice Martin",
        "reporter_email": "alice@example.com",
        "forum_url": f"https://forum.gestan.fr/discussion/{id}/bug",
    }
    return Ticket(**{**values, **changes})


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def import_error(path: Path) -> str:
    with pytest.raises(TicketError) as excinfo:
        read_import_file(path)
    return str(excinfo.value)


# -- values ----------------------------------------------------------------------------------------


def test_priority_rank_orders_most_urgent_first():
    assert [p.rank for p in Priority] == [0, 1, 2, 3]
    assert sorted(["basse", "flash", "normale", "haute"], key=lambda p: Priority(p).rank) == [
        "flash",
        "haute",
        "normale",
        "basse",
    ]
    assert Priority.parse(" Flash ") is Priority.FLASH
    with pytest.raises(ValueError, match="not one of flash, haute, normale, basse"):
        Priority.parse("urgent")


def test_ticket_json_has_the_interface_fields_plus_status():
    assert ticket(7, priority="haute", ack_message_id="<a@b>").to_json() == {
        "id": 7,
        "title": "Bug 7",
        "priority": "haute",
        "reporter_name": "Alice Martin",
        "reporter_email": "alice@example.com",
        "forum_url": "https://forum.gestan.fr/discussion/7/bug",
        "forum_tracked": True,
        "ack_message_id": "<a@b>",
        "status": "open",
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Alice Martin <alice@example.com>", ("Alice Martin", "alice@example.com")),
        ('"Dupont, Jean" <jean@Gestan.FR>', ("Dupont, Jean", "jean@gestan.fr")),
        ("bob@example.com", ("", "bob@example.com")),
    ],
)
def test_parse_reporter(text, expected):
    assert parse_reporter(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Alice", "is not"),
        ("Alice <alice@>", "is not|invalid"),
        ("Alice\r\nBcc: x@example.com <alice@example.com>", "one line"),
        ("Alice <alice@example>", "invalid"),
        ("Alice <alice@exa mple.com>", "is not"),
        ("alice@example.com, bob@example.com", "is not"),
        ("Alice <alice@example.com> Bob <bob@example.com>", "is not"),
    ],
)
def test_parse_reporter_refuses(text, message):
    with pytest.raises(TicketError, match=message):
        parse_reporter(text)


# -- import files: every error kind, with its line -------------------------------------------------


def test_csv_import_reads_every_field(tmp_path):
    path = write(
        tmp_path / "t.csv",
        HEADER
        + "1,Crash à l'export,flash,Zoé,zoe@example.com,https://forum.gestan.fr/discussion/1/x,,\n"
        + '2,"Titre, avec virgule",BASSE,,bob@example.com,,no,<m1@gestan.fr>\n',
    )
    rows = read_import_file(path)
    assert [r.ticket for r in rows] == [
        Ticket(1, "Crash à l'export", Priority.FLASH, "Zoé", "zoe@example.com",
               "https://forum.gestan.fr/discussion/1/x", True, None),
        Ticket(2, "Titre, avec virgule", Priority.BASSE, "", "bob@example.com", None, False,
               "<m1@gestan.fr>"),
    ]  # fmt: skip
    assert [r.where for r in rows] == ["line 2", "line 3"]
    assert not any(r.status_given for r in rows)


@pytest.mark.parametrize("value", ["true", "1", "yes", "TRUE", ""])
def test_csv_forum_tracked_true_values(tmp_path, value):
    path = write(tmp_path / "t.csv", HEADER + f"1,T,flash,A,a@example.com,,{value},\n")
    assert read_import_file(path)[0].ticket.forum_tracked is True


@pytest.mark.parametrize("value", ["false", "0", "no", "No"])
def test_csv_forum_tracked_false_values(tmp_path, value):
    path = write(tmp_path / "t.csv", HEADER + f"1,T,flash,A,a@example.com,,{value},\n")
    assert read_import_file(path)[0].ticket.forum_tracked is False


def test_csv_reports_every_bad_row_with_its_physical_line(tmp_path):
    path = write(
        tmp_path / "t.csv",
        HEADER
        + "1,Bon,flash,A,a@example.com,,,\n"
        + "2,Priorité inconnue,urgent,A,a@example.com,,,\n"  # line 3
        + "\n"  # line 4: blank lines are skipped but counted
        + '3,"Titre sur\ndeux lignes",haute,A,a@example.com,,,\n'  # line 5-6: a line break
        + "4,Mauvais mail,haute,A,pas-un-mail,,,\n"  # line 7
        + "1,Doublon,basse,A,a@example.com,,,\n"  # line 8
        + "5,,basse,A,a@example.com,,,\n"  # line 9
        + "cinq,Id pas entier,basse,A,a@example.com,,,\n"  # line 10
        + "6,Booléen,basse,A,a@example.com,,peut-être,\n",  # line 11
    )
    message = import_error(path)
    assert "nothing imported, 7 problem(s)" in message
    assert "line 3: priority 'urgent' is not one of flash, haute, normale, basse" in message
    assert "line 5: title must be on one line" in message
    assert "line 7: e-mail address 'pas-un-mail' is invalid" in message
    assert "line 8: duplicate id 1 (already at line 2)" in message
    assert "line 9: title is missing" in message
    assert "line 10: id 'cinq' is not an integer" in message
    assert "line 11: forum_tracked 'peut-être' is not true/false" in message
    assert "line 2:" not in message


def test_csv_unknown_column_is_reported_on_the_header(tmp_path):
    path = write(
        tmp_path / "t.csv", "id,title,priority,reporter_email,urgence\n1,T,flash,a@example.com,x\n"
    )
    assert "line 1 (header): unknown column(s) 'urgence'" in import_error(path)


def test_csv_missing_required_column(tmp_path):
    path = write(tmp_path / "t.csv", "id,title,reporter_email\n1,T,a@example.com\n")
    assert "required column(s) missing: priority" in import_error(path)


def test_csv_too_many_values(tmp_path):
    path = write(
        tmp_path / "t.csv", "id,title,priority,reporter_email\n1,A, B,flash,a@example.com\n"
    )
    assert "line 2: 5 values for 4 columns" in import_error(path)


def test_csv_semicolons_and_bom_from_a_french_excel(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes("\ufeffid;title;priority;reporter_email\n1;Écran, figé;flash;a@example.com\n"
                     .encode())  # fmt: skip
    assert read_import_file(path)[0].ticket.title == "Écran, figé"


def test_csv_not_utf8(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(
        "id,title,priority,reporter_email\n1,Écran,flash,a@example.com\n".encode("cp1252")
    )
    assert "is not UTF-8" in import_error(path)


def test_json_import_reports_items_and_lines(tmp_path):
    items = [
        {"id": 1, "title": "Bon", "priority": "flash", "reporter_email": "a@example.com"},
        {"id": 2, "title": "X", "priority": "urgent", "reporter_email": "a@example.com"},
        {"id": 3, "title": "X", "priority": "haute", "reporter_email": "nope@"},
        {"id": 1, "title": "X", "priority": "haute", "reporter_email": "a@example.com"},
        {"id": 4, "priority": "haute", "reporter_email": "a@example.com"},
        {"id": 4.5, "title": "X", "priority": "haute", "reporter_email": "a@example.com"},
        {"id": 6, "title": "X", "priority": "haute", "reporter_email": "a@example.com", "prio": 1},
        {"id": True, "title": "X", "priority": "haute", "reporter_email": "a@example.com"},
        "not an object",
    ]
    # One item per line after the opening bracket: item N is on line N + 1.
    text = "[\n" + ",\n".join(json.dumps(item) for item in items) + "\n]\n"
    message = import_error(write(tmp_path / "t.json", text))
    assert "item 2 (line 3): priority 'urgent' is not one of" in message
    assert "item 3 (line 4): e-mail address 'nope@' is invalid" in message
    assert "item 4 (line 5): duplicate id 1 (already at item 1 (line 2))" in message
    assert "item 5 (line 6): title is missing" in message
    assert "item 6 (line 7): id 4.5 is not an integer" in message
    assert "item 7 (line 8): unknown field(s) 'prio'" in message
    assert "item 8 (line 9): id True is not an integer" in message
    assert "item 9 (line 10): expected an object" in message
    assert "item 1 " not in message.split("already at")[0]


def test_json_duplicate_key_in_one_object(tmp_path):
    path = write(
        tmp_path / "t.json",
        '[{"id": 1, "title": "A", "title": "B", "priority": "flash", '
        '"reporter_email": "a@example.com"}]',
    )
    assert "item 1 (line 1): field 'title' is given twice" in import_error(path)


def test_json_accepts_nulls_and_the_list_output(tmp_path):
    path = write(
        tmp_path / "t.json",
        json.dumps([{**ticket(3).to_json(), "forum_url": None, "status": "fixed"}], indent=2),
    )
    [row] = read_import_file(path)
    assert row.ticket == ticket(3, forum_url=None, status="fixed")
    assert row.status_given


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"id": 1}', "expected a JSON array of tickets"),
        ('[{"id": 1,}]', "line 1 column 11: invalid JSON"),
        ('[\n{"id": 1}\n{"id": 2}]', "line 3 column 1: invalid JSON: expected ',' or ']'"),
        ("[]", "no tickets in the file"),
        ("[] []", "expected end of file"),
    ],
)
def test_json_file_level_errors(tmp_path, text, message):
    assert message in import_error(write(tmp_path / "t.json", text))


def test_many_errors_are_capped(tmp_path):
    lines = "".join(f"{i},T,urgent,A,a@example.com,,,\n" for i in range(1, 31))
    message = import_error(write(tmp_path / "t.csv", HEADER + lines))
    assert "30 problem(s)" in message
    assert "line 21:" in message and "line 22:" not in message
    assert message.endswith("… and 10 more")


def test_unsupported_or_missing_file(tmp_path):
    assert "unsupported file type '.xlsx'" in import_error(tmp_path / "t.xlsx")
    assert "no such file" in import_error(tmp_path / "absent.csv")


# -- the store -------------------------------------------------------------------------------------


def test_add_or_update(store):
    assert store.add(ticket(1)) == "new"
    first = store.get(1)
    assert first == ticket(1) and first.created_at is not None
    assert store.add(ticket(1)) == "unchanged"
    assert store.add(ticket(1, title="Nouveau titre", priority="flash")) == "updated"
    updated = store.get(1)
    assert updated.title == "Nouveau titre" and updated.priority is Priority.FLASH
    assert updated.created_at == first.created_at
    assert updated.updated_at >= first.updated_at
    assert store.get(2) is None


def test_add_keeps_the_status(store):
    store.add(ticket(1))
    assert store.set_status([1], "released") == 1
    store.add(ticket(1, title="Autre"))
    assert store.get(1).status == "released"


def test_set_status_is_all_or_nothing(store):
    store.add(ticket(1))
    with pytest.raises(TicketError, match=r"ticket\(s\) 99 not in the store"):
        store.set_status([1, 99], "fixed")
    assert store.get(1).status == "open"
    with pytest.raises(TicketError, match="not one of open, fixed, released"):
        store.set_status([1], "done")


def test_list_orders_and_filters(store):
    store.import_rows(
        [
            ticket(5, priority="basse"),
            ticket(4, priority="flash"),
            ticket(2, priority="haute"),
            ticket(3, priority="flash"),
        ]
    )
    store.set_status([3], "fixed")
    assert [t.id for t in store.list()] == [3, 4, 2, 5]
    assert [t.id for t in store.list(priority="flash")] == [3, 4]
    assert [t.id for t in store.list(status="fixed")] == [3]
    assert [t.id for t in store.list(priority=Priority.FLASH, status="open")] == [4]
    assert store.get_many([2, 5, 77]).keys() == {2, 5}


def test_import_counts_new_updated_unchanged(store, tmp_path):
    store.add(ticket(1))
    store.add(ticket(2))
    path = write(
        tmp_path / "t.json",
        json.dumps(
            [
                {**ticket(1).to_json(), "status": None},
                {**ticket(2, title="Changé").to_json(), "status": None},
                {**ticket(3).to_json(), "status": None},
            ]
        ),
    )
    summary = store.import_file(path)
    assert summary == ImportSummary(new=1, updated=1, unchanged=1)
    assert str(summary) == "imported 3 tickets (1 new, 1 updated, 1 unchanged)"


def test_import_status_applies_only_when_given(store, tmp_path):
    store.add(ticket(1))
    store.add(ticket(2))
    store.set_status([1, 2], "released")
    path = write(
        tmp_path / "t.csv",
        "id,title,priority,reporter_email,status\n"
        "1,Bug 1,normale,alice@example.com,\n"
        "2,Bug 2,normale,alice@example.com,fixed\n",
    )
    store.import_file(path)
    assert store.get(1).status == "released"
    assert store.get(2).status == "fixed"


def test_bad_import_leaves_the_store_unchanged(repo, store, tmp_path, capsys):
    store.add(ticket(1))
    before = store.list()
    path = write(
        tmp_path / "t.csv",
        HEADER
        + "1,Renommé,flash,A,a@example.com,,,\n"
        + "2,Nouveau,haute,A,a@example.com,,,\n"
        + "3,Mauvais,haute,A,a@@example.com,,,\n",
    )
    assert cli(repo, "tickets", "import", str(path)) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("gestan-release: error: ")
    assert "line 4: e-mail address 'a@@example.com' is invalid" in err
    assert store.list() == before


def test_store_refuses_a_duplicate_inside_one_batch(store):
    with pytest.raises(TicketError, match="duplicate id 1"):
        store.import_rows([ticket(1), ticket(2), ticket(1, title="autre")])
    assert store.list() == []


# -- the fast read path ----------------------------------------------------------------------------


def test_lookup_equals_the_sqlalchemy_path(store):
    """On SQLite the stdlib read path; on PostgreSQL the SQLAlchemy one: the same tickets."""
    store.import_rows(
        [
            ticket(1, priority="flash", ack_message_id="<x@y>"),
            ticket(2, forum_tracked=False, forum_url=None, reporter_name=""),
            ticket(3, priority="basse", title="Accentué : éàç"),
        ]
    )
    store.set_status([2], "fixed")
    fast = lookup_tickets(store.url, [3, 1, 2, 404])
    slow = store.get_many([3, 1, 2, 404])
    assert fast == slow and fast.keys() == {1, 2, 3}
    for ticket_id in fast:  # compare=False on timestamps: check them explicitly
        assert fast[ticket_id].created_at == slow[ticket_id].created_at
        assert fast[ticket_id].updated_at == slow[ticket_id].updated_at
        assert fast[ticket_id].created_at.tzinfo is not None


def test_lookup_while_a_writer_holds_the_database(sqlite_store, db_url):
    sqlite_store.add(ticket(1))
    with db.engine_for(db_url).begin() as connection:  # BEGIN IMMEDIATE: the write lock is held
        connection.exec_driver_sql("UPDATE tickets SET title = 'pending' WHERE id = 1")
        assert lookup_tickets(db_url, [1])[1].title == "Bug 1"  # WAL: readers never wait
    assert lookup_tickets(db_url, [1])[1].title == "pending"


def test_lookup_on_a_missing_database_creates_nothing(tmp_path):
    path = tmp_path / "nothing" / "gestan.db"
    assert lookup_tickets(f"sqlite:///{path}", [1, 2]) == {}
    assert not path.parent.exists()


def test_lookup_without_the_tickets_table(tmp_path):
    path = tmp_path / "other.db"
    sqlite3.connect(path).execute("CREATE TABLE unrelated (x)").connection.close()
    assert lookup_tickets(f"sqlite:///{path}", [1]) == {}


def test_lookup_on_a_file_that_is_not_a_database(tmp_path):
    path = write(tmp_path / "gestan.db", "hello, I am text" * 100)
    with pytest.raises(TicketError, match="not a gestan-release database"):
        lookup_tickets(f"sqlite:///{path}", [1])


def test_lookup_falls_back_to_sqlalchemy_for_other_urls(tmp_path, sqlite_store, db_url):
    sqlite_store.add(ticket(1))
    url = db_url.replace("sqlite:///", "sqlite+pysqlite:///") + "?timeout=5"
    assert lookup_tickets(url, [1]) == {1: ticket(1)}


def test_importing_tickets_stays_light():
    code = (
        "import sys, gestan_release.tickets.values, gestan_release.tickets.lookup\n"
        "import gestan_release.tickets.importer, gestan_release.tickets.store\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in "
        "('sqlalchemy', 'alembic', 'email_validator', 'rich', 'prefect')]\n"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- the command line ------------------------------------------------------------------------------


def test_cli_import_list_show(repo, tmp_path, capsys):
    path = write(
        tmp_path / "t.csv",
        HEADER
        + "101,Plantage à l'impression,flash,Zoé Petit,zoe@example.com,"
        + "https://forum.gestan.fr/discussion/101/x,,<ack101@gestan.fr>\n"
        + "102,Lenteur,basse,Bob,bob@example.com,,false,\n",
    )
    assert cli(repo, "tickets", "import", str(path)) == 0
    assert "imported 2 tickets (2 new, 0 updated)" in capsys.readouterr().err

    assert cli(repo, "tickets", "list", "--format", "json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert [t["id"] for t in listed] == [101, 102]
    assert listed[1] == {
        "id": 102,
        "title": "Lenteur",
        "priority": "basse",
        "reporter_name": "Bob",
        "reporter_email": "bob@example.com",
        "forum_url": None,
        "forum_tracked": False,
        "ack_message_id": None,
        "status": "open",
    }

    assert cli(repo, "tickets", "list", "--priority", "basse", "--format", "json") == 0
    assert [t["id"] for t in json.loads(capsys.readouterr().out)] == [102]

    assert cli(repo, "tickets", "list") == 0
    table = capsys.readouterr().out
    assert "Plantage à l'impression" in table and "Zoé Petit <zoe@example.com>" in table
    assert table.index("101") < table.index("102")

    assert cli(repo, "tickets", "show", "101", "--format", "json") == 0
    assert json.loads(capsys.readouterr().out)["ack_message_id"] == "<ack101@gestan.fr>"
    assert cli(repo, "tickets", "show", "101") == 0
    assert "#101 Plantage à l'impression" in capsys.readouterr().out

    # The list output imports back unchanged.
    listing = write(tmp_path / "listing.json", json.dumps(listed))
    assert cli(repo, "tickets", "import", str(listing)) == 0
    assert "imported 2 tickets (0 new, 0 updated, 2 unchanged)" in capsys.readouterr().err


def test_cli_add_then_update(repo, capsys):
    args = ["tickets", "add", "--id", "7", "--title", "Export PDF vide", "--priority", "haute"]
    assert cli(repo, *args, "--reporter", "Alice Martin <alice@example.com>", "--not-forum") == 0
    assert "added ticket 7 (haute)" in capsys.readouterr().err
    assert cli(repo, *args[:-1], "flash", "--reporter", "alice@example.com",
               "--forum-url", "https://forum.gestan.fr/discussion/7/x",
               "--ack-message-id", "<a7@gestan.fr>") == 0  # fmt: skip
    assert "updated ticket 7 (flash)" in capsys.readouterr().err
    assert cli(repo, "tickets", "show", "7", "--format", "json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["priority"] == "flash" and shown["forum_tracked"] is True
    assert shown["reporter_name"] == "" and shown["ack_message_id"] == "<a7@gestan.fr>"


def test_cli_add_refuses_bad_input(repo, capsys):
    base = ["tickets", "add", "--id", "7", "--title", "T", "--priority", "haute"]
    assert cli(repo, *base, "--reporter", "Alice <alice@exa mple.com>") == 1
    assert capsys.readouterr().err.startswith("gestan-release: error: --reporter")
    assert cli(repo, *base, "--reporter", "a@example.com", "--forum-url", "forum/7") == 1
    assert "forum_url 'forum/7' is not an http(s) URL" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        cli(repo, *base[:-1], "urgente", "--reporter", "a@example.com")
    assert exit_info.value.code == 2


def test_cli_show_unknown_and_empty_list(repo, capsys):
    assert cli(repo, "tickets", "show", "42") == 1
    err = capsys.readouterr().err
    assert err == (
        "gestan-release: error: ticket 42 is not in the store; add it with "
        "`gestan-release tickets add` or `tickets import`\n"
    )
    assert cli(repo, "tickets", "list", "--format", "json") == 0
    assert json.loads(capsys.readouterr().out) == []


def test_cli_import_unreadable_file(repo, tmp_path, capsys):
    assert cli(repo, "tickets", "import", str(tmp_path / "absent.json")) == 1
    assert "no such file" in capsys.readouterr().err
    assert cli(repo, "tickets", "import", str(write(tmp_path / "t.txt", "x"))) == 1
    assert "unsupported file type '.txt'" in capsys.readouterr().err
    assert cli(repo, "tickets", "import", str(tmp_path)) == 1
    assert "unsupported file type" in capsys.readouterr().err


def test_cli_keeps_the_state_dir_out_of_git_status(repo, capsys):
    cli(repo, "tickets", "list")
    cli(repo, "tickets", "list")
    exclude = (repo / ".git" / "info" / "exclude").read_text()
    assert exclude.count("/.gestan-release/") == 1
    status = subprocess.run(
        ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=all"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert status.stdout == ""


def test_help_texts(capsys):
    with pytest.raises(SystemExit):
        main(["tickets", "import", "--help"])
    out = capsys.readouterr().out
    assert "nothing is written" in " ".join(out.split()) and "forum_tracked" in out


def test_the_largest_ticket_id_is_stored_on_every_database(store: TicketStore) -> None:
    # 1..2^63-1 are valid ids: PostgreSQL needs BIGINT columns for them (migration 0005).
    import sqlalchemy as sa

    from gestan_release.core.validation import MAX_TICKET_ID
    from gestan_release.store.ledger import Ledger
    from gestan_release.store.tables import ReleaseTicketRecord

    store.add(ticket(MAX_TICKET_ID))
    got = store.get(MAX_TICKET_ID)
    assert got is not None and got.id == MAX_TICKET_ID
    ledger = Ledger(store.url)
    ledger.start_release(
        version="15.5.0",
        kind="full",
        label="15.5",
        tag="v15.5.0",
        channel="stable",
        previous_version=None,
        plan={},
        tickets=[(MAX_TICKET_ID, "normale", None, True)],
        overrides=[(MAX_TICKET_ID, "flash-in-next-full", "tested")],
    )
    with ledger.engine.connect() as connection:
        stored = connection.execute(sa.select(ReleaseTicketRecord.ticket_id)).scalars().all()
    assert stored == [MAX_TICKET_ID]
