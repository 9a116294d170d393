"""The intake: `tickets sync` against the contract-validated Vanilla fake (every request checked
against `tests/contracts/vanilla-openapi/`), on a real SQLite file."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes.contracts import contracts_dir
from fakes.openapi import FakeClock
from fakes.vanilla_server import (
    FakeVanilla,
    forbidden,
    html_page,
    server_error,
    too_many_requests,
    unauthorized,
)

from gestan_release.channels.forum_reader import ForumReader, MissingEmailScope
from gestan_release.errors import ConfigError, DeliveryError
from gestan_release.settings import load
from gestan_release.store import db
from gestan_release.support.intake import sync
from gestan_release.support.intake_cursors import LazyIntakeStore
from gestan_release.support.intake_fields import (
    InvalidField,
    priority_tags,
    validate_discussion,
    validate_reporter,
)
from gestan_release.support.intake_store import IntakeStore
from gestan_release.tickets.store import TicketStore
from gestan_release.tickets.values import Priority, Ticket

TOKEN = "forumtok-intake-DO-NOT-LEAK"
BUGS = 30  # category id of "signaler-un-bug" on the fake
CATEGORIES = ((1, "general", "Général"), (BUGS, "signaler-un-bug", "Signaler un bug"))


@pytest.fixture(autouse=True)
def _fresh_engines():
    yield
    db.dispose_all()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def forum(clock: FakeClock) -> Iterator[FakeVanilla]:
    with FakeVanilla(contracts_dir(), token=TOKEN, categories=CATEGORIES, clock=clock) as server:
        for name in ("flash", "haute", "normale", "basse", "question"):
            server.add_tag(name)
        yield server
    assert server.validation_errors == [], "\n".join(server.validation_errors)


@pytest.fixture
def settings(tmp_path: Path, forum: FakeVanilla):
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {
        "GESTAN_RELEASE_FORUM_BASE_URL": forum.url,
        "GESTAN_RELEASE_FORUM_TOKEN": TOKEN,
        "GESTAN_RELEASE_FORUM_BUG_CATEGORIES": "signaler-un-bug",
    }
    return load(repo, env=env)


def reader_for(forum: FakeVanilla, clock: FakeClock, **kwargs) -> ForumReader:
    return ForumReader(forum.url, TOKEN, sleep=clock.sleep, clock=clock, **kwargs)


def report(forum: FakeVanilla, title: str, *tags: str, email: str | None = None, **user) -> int:
    uid = forum.add_user(
        title.split()[0], email or f"{title.split()[0].lower()}@example.com", **user
    )
    return forum.add_discussion(title, "Détails du bug", category_id=BUGS, user_id=uid, tags=tags)


def run(settings, forum, clock, **kwargs):
    store = IntakeStore(settings.database_url)
    with reader_for(forum, clock) as reader:
        return sync(settings, reader, store, **kwargs), store


# -- taking reports in -----------------------------------------------------------------------


def test_a_tagged_discussion_becomes_a_ticket_with_its_reporter(settings, forum, clock):
    did = report(forum, "Zoé : plantage à l'ouverture d'une facture", "flash", "question")
    summary, store = run(settings, forum, clock)
    ticket = TicketStore(settings.database_url).get(did)
    assert ticket is not None
    assert ticket.priority is Priority.FLASH
    assert ticket.reporter_email == "zoé@example.com"
    assert ticket.reporter_name == "Zoé"
    assert ticket.forum_url == f"{forum.url}/discussion/{did}/zo-plantage-l-ouverture-d-une-facture"
    assert ticket.forum_tracked and ticket.status == "open"
    assert summary.new == 1 and summary.read == 1
    assert store.report(did).state == "ticket"


def test_without_a_priority_tag_it_is_a_trier_and_not_a_ticket(settings, forum, clock):
    did = report(forum, "Question sur les devis", "question")
    summary, store = run(settings, forum, clock)
    assert TicketStore(settings.database_url).get(did) is None
    assert [r.discussion_id for r in store.reports(state="a-trier")] == [did]
    assert summary.a_trier == 1


def test_other_categories_are_not_read(settings, forum, clock):
    uid = forum.add_user("Marc", "marc@example.com")
    forum.add_discussion("Bonjour à tous", "…", category_id=1, user_id=uid, tags=("flash",))
    summary, _ = run(settings, forum, clock)
    assert summary.read == 0
    assert TicketStore(settings.database_url).list() == []


def test_banned_user_and_user_without_email_are_set_aside_with_a_reason(settings, forum, clock):
    banned = report(forum, "Spam important", "haute", banned=1)
    uid = forum.add_user("Sans", None)
    no_mail = forum.add_discussion("Sans mail", "…", category_id=BUGS, user_id=uid, tags=("basse",))
    gone = forum.add_discussion(
        "Compte supprimé", "…", category_id=BUGS, user_id=4242, tags=("flash",)
    )
    ok = report(forum, "Alice export FEC", "normale")
    summary, store = run(settings, forum, clock)
    reasons = dict(summary.set_aside)
    assert reasons[banned] == "the reporter is banned on the forum"
    assert reasons[no_mail] == "the reporter has no e-mail address on the forum"
    assert reasons[gone] == "the reporter's forum account no longer exists"
    assert [t.id for t in TicketStore(settings.database_url).list()] == [ok]
    assert {r.discussion_id for r in store.reports(state="ecarte")} == {banned, no_mail, gone}


def test_pages_are_all_followed_and_a_deletion_between_two_pages_skips_nothing(
    settings, forum, clock
):
    ids = [report(forum, f"Bug{n} numéro {n}", "basse") for n in range(1, 251)]
    deleted = ids[10]  # on the first page, already read when it goes

    def delete(_request):
        forum.delete_discussion(deleted)

    # Just before the second list request is answered: an offset-paged reader (page=2) would
    # now get ids[101:201] and never see ids[100].
    forum.before("GET", "/api/v2/discussions", lambda r: None)
    forum.before("GET", "/api/v2/discussions", delete)
    summary, _ = run(settings, forum, clock)
    stored = {t.id for t in TicketStore(settings.database_url).list()}
    assert stored == set(ids)  # all 250, the deleted one included (it was read)
    assert summary.read == 250
    lists = forum.calls("GET", "/api/v2/discussions")
    assert len(lists) == 3
    assert all("page=" not in r.raw_target for r in lists)  # keyset, not offsets


def test_the_sync_reports_its_pages_to_whoever_watches(settings, forum, clock):
    from gestan_release.core.progress import CountingTracker

    bars: list[CountingTracker] = []

    class Watcher:
        def track(self, label, total):
            bars.append(CountingTracker(label, total))
            return bars[-1]

    for n in range(1, 131):
        report(forum, f"Bug{n} numéro {n}", "basse")
    run(settings, forum, clock, progress=Watcher())
    assert [(b.label, b.total, b.done, b.closed) for b in bars] == [
        ("forum signaler-un-bug", None, 130, True)
    ]


def test_a_deleted_discussion_is_recorded_with_a_reason_by_the_full_scan(settings, forum, clock):
    a = report(forum, "Alice bug", "haute")
    b = report(forum, "Bruno bug", "haute")
    run(settings, forum, clock)
    forum.delete_discussion(a)
    summary, store = run(settings, forum, clock, full=True)
    assert [d for d, _ in summary.deleted] == [a]
    assert store.report(a).state == "deleted"
    assert "deleted on the forum" in store.report(a).reason
    assert store.report(b).state == "ticket"
    assert TicketStore(settings.database_url).get(a) is not None  # the ticket itself stays


def test_incremental_resync_reads_only_what_is_new(settings, forum, clock):
    for n in range(5):
        report(forum, f"Bug{n} ancien", "normale")
    run(settings, forum, clock)
    before = len(forum.requests)
    clock.now += 3600
    new = report(forum, "Nouveau bug", "flash")
    summary, _ = run(settings, forum, clock)
    assert summary.read == 1 and summary.new == 1
    assert TicketStore(settings.database_url).get(new).priority is Priority.FLASH
    users = [r for r in forum.requests[before:] if r.path == "/api/v2/users"]
    assert [r.args["userID"] for r in users] == [str(forum.discussions[new]["insertUserID"])]


def test_nothing_new_reads_no_user_and_writes_nothing(settings, forum, clock):
    report(forum, "Bug un", "haute")
    run(settings, forum, clock)
    clock.now += 3600
    before = len(forum.requests)
    summary, _ = run(settings, forum, clock)
    assert summary.read == 0 and summary.new == 0
    assert not [r for r in forum.requests[before:] if r.path == "/api/v2/users"]


def test_nothing_new_opens_no_store_the_first_page_to_write_does(settings, forum, clock):
    """On a SQLite file the cursors are read with the stdlib: a re-sync with nothing new never
    opens the SQLAlchemy store (issue 10: within a second); a page to write opens it."""
    report(forum, "Bug un", "haute")
    run(settings, forum, clock)
    clock.now += 3600
    for expect_new in (0, 1):
        if expect_new:
            new = report(forum, "Bug deux", "flash")
        store = LazyIntakeStore(settings)
        with reader_for(forum, clock) as reader:
            summary = sync(settings, reader, store)
        assert summary.new == expect_new and store.opened == bool(expect_new)
    assert TicketStore(settings.database_url).get(new).priority is Priority.FLASH
    assert store.state(f"category:{BUGS}")["after_id"] == new


def test_a_retag_that_touches_date_updated_is_seen_incrementally(settings, forum, clock):
    forum.retag_touches_date_updated = True
    did = report(forum, "Bug normal", "normale")
    run(settings, forum, clock)
    clock.now += 3600
    forum.tag_discussion(did, "flash")
    summary, _ = run(settings, forum, clock)
    assert summary.reprioritised == [(did, "normale", "flash")]
    assert TicketStore(settings.database_url).get(did).priority is Priority.FLASH


def test_a_retag_that_leaves_date_updated_alone_is_caught_by_the_full_scan(settings, forum, clock):
    did = report(forum, "Bug normal", "normale")
    run(settings, forum, clock)
    clock.now += 3600
    forum.tag_discussion(did, "haute")
    summary, _ = run(settings, forum, clock)  # incremental: Vanilla did not bump dateUpdated
    assert summary.reprioritised == []
    summary, _ = run(settings, forum, clock, full=True)
    assert summary.reprioritised == [(did, "normale", "haute")]


def test_full_scan_runs_by_itself_every_forum_full_sync_hours(settings, forum, clock):
    report(forum, "Bug un", "haute")
    t0 = dt.datetime(2026, 11, 27, 9, tzinfo=dt.UTC)
    first, _ = run(settings, forum, clock, now=lambda: t0)
    assert first.full  # the first sync reads everything
    later, _ = run(settings, forum, clock, now=lambda: t0 + dt.timedelta(hours=2))
    assert not later.full
    day, _ = run(settings, forum, clock, now=lambda: t0 + dt.timedelta(hours=25))
    assert day.full


def test_a_removed_priority_tag_keeps_the_ticket(settings, forum, clock):
    did = report(forum, "Bug haut", "haute")
    run(settings, forum, clock)
    forum.tag_discussion(did, "question")
    _, store = run(settings, forum, clock, full=True)
    assert TicketStore(settings.database_url).get(did).priority is Priority.HAUTE
    assert store.report(did).state == "a-trier"


def test_a_hand_made_ticket_with_the_same_id_for_something_else_is_not_overwritten(
    settings, forum, clock
):
    did = report(forum, "Bug du forum", "flash")
    phone = Ticket(did, "Appel : imprimante", Priority.BASSE, "Paul", "paul@example.com")
    TicketStore(settings.database_url).add(phone)
    _, store = run(settings, forum, clock)
    assert TicketStore(settings.database_url).get(did).title == "Appel : imprimante"
    assert store.report(did).state == "ecarte"
    assert "added by hand" in store.report(did).reason


def test_a_hand_made_ticket_of_that_discussion_is_adopted(settings, forum, clock):
    did = report(forum, "Bug du forum", "flash")
    url = f"https://forum.gestan.fr/discussion/{did}/bug-du-forum"
    TicketStore(settings.database_url).add(
        Ticket(did, "Bug du forum", Priority.BASSE, "Zoé", "zoe@example.com", forum_url=url)
    )
    summary, store = run(settings, forum, clock)
    assert TicketStore(settings.database_url).get(did).priority is Priority.FLASH
    assert store.report(did).state == "ticket"
    assert summary.reprioritised == [(did, "basse", "flash")]


def test_crash_between_pages_resumes_where_it_stopped(settings, forum, clock):
    ids = [report(forum, f"Bug{n} n{n}", "basse") for n in range(1, 231)]

    class Killed(BaseException):
        pass

    def kill(_request):
        raise Killed

    store = IntakeStore(settings.database_url)
    # The third users lookup (page 3) dies: pages 1 and 2 are written with their cursor.
    forum.before("GET", "/api/v2/users", lambda r: None)
    forum.before("GET", "/api/v2/users", lambda r: None)
    with reader_for(forum, clock, max_attempts=1) as reader:
        original = reader.users
        n = {"calls": 0}

        def users(user_ids):
            n["calls"] += 1
            if n["calls"] == 3:
                raise Killed
            return original(user_ids)

        reader.users = users
        with pytest.raises(Killed):
            sync(settings, reader, store)
    assert len(TicketStore(settings.database_url).list()) == 200
    before = len(forum.requests)
    summary, _ = run(settings, forum, clock)
    assert {t.id for t in TicketStore(settings.database_url).list()} == set(ids)
    lists = [r for r in forum.requests[before:] if r.path == "/api/v2/discussions"]
    assert lists[0].args["discussionID"] == f">{ids[199]}"  # resumed after page 2
    assert summary.read == 30


# -- errors, one clear line ----------------------------------------------------------------------


def test_unknown_priority_tag_names_it(settings, forum, clock):
    bad = settings.replace(forum_priority_tags=("flash=urgentissime", "haute"))
    with pytest.raises(ConfigError, match=r"'urgentissime'.*does not have"):
        run(bad, forum, clock)


def test_malformed_priority_tags_setting():
    from gestan_release.settings import Settings

    with pytest.raises(ConfigError, match="does not start with a priority"):
        priority_tags(Settings(forum_priority_tags=("urgent=flash",)))
    mapping = priority_tags(
        Settings(forum_priority_tags=("flash=Urgent", "flash=bloquant", "haute"))
    )
    assert mapping == {
        "urgent": Priority.FLASH,
        "bloquant": Priority.FLASH,
        "haute": Priority.HAUTE,
    }


def test_a_category_that_does_not_exist_names_the_setting(settings, forum, clock):
    bad = settings.replace(forum_bug_categories=("bugs-inexistants",))
    with pytest.raises(ConfigError, match=r"'bugs-inexistants' not found.*FORUM_BUG_CATEGORIES"):
        run(bad, forum, clock)


def test_no_bug_category_configured(settings, forum, clock):
    with pytest.raises(ConfigError, match="FORUM_BUG_CATEGORIES"):
        run(settings.replace(forum_bug_categories=()), forum, clock)


def test_html_instead_of_json_is_one_clear_line(settings, forum, clock):
    report(forum, "Bug", "haute")
    forum.script(html_page(path="/api/v2/tags"))
    with pytest.raises(DeliveryError, match="answered an HTML page instead of JSON") as err:
        run(settings, forum, clock)
    assert "\n" not in str(err.value) and TOKEN not in str(err.value)


def test_a_token_that_cannot_see_emails_says_so(settings, forum, clock):
    forum.admin = False
    report(forum, "Bug", "haute")
    with pytest.raises(MissingEmailScope, match="administrator"):
        run(settings, forum, clock)


def test_401_and_403_are_permanent_and_never_show_the_token(settings, forum, clock):
    forum.script(unauthorized(method="GET"))
    with pytest.raises(DeliveryError, match="HTTP 401") as err:
        run(settings, forum, clock)
    assert err.value.permanent and TOKEN not in str(err.value)
    forum.script(forbidden(method="GET", path="/api/v2/tags"))
    with pytest.raises(DeliveryError, match="HTTP 403"):
        run(settings, forum, clock)


def test_429_and_5xx_are_waited_out(settings, forum, clock):
    did = report(forum, "Bug", "haute")
    forum.script(
        too_many_requests(7, method="GET", path="/api/v2/discussions"),
        server_error(503, method="GET", path="/api/v2/users"),
    )
    run(settings, forum, clock)
    assert TicketStore(settings.database_url).get(did) is not None
    assert 7 in clock.sleeps and len(clock.sleeps) == 2


def test_missing_forum_settings_are_named(tmp_path):
    with pytest.raises(ConfigError, match="FORUM_BASE_URL"):
        ForumReader("", "x")
    with pytest.raises(ConfigError, match="FORUM_TOKEN"):
        ForumReader("https://forum.gestan.fr", "")


# -- validation of what the forum says -----------------------------------------------------------


def test_validate_discussion_flattens_and_refuses():
    fields = validate_discussion(
        {
            "discussionID": 3226,
            "name": "Ligne\r\nBcc: x@evil\x00 titre",
            "url": "javascript:alert(1)",
            "insertUserID": 9,
            "categoryID": 30,
            "dateInserted": "2026-11-27T10:00:00Z",
            "dateUpdated": None,
            "tags": [{"tagID": 41, "name": "flash", "urlcode": "flash"}, "junk"],
        }
    )
    assert fields.title == "Ligne Bcc: x@evil titre"
    assert fields.url is None  # no javascript: from the forum
    assert fields.tag_ids == (41,)
    assert fields.date_inserted == dt.datetime(2026, 11, 27, 10, tzinfo=dt.UTC)
    for bad in ({"discussionID": "12", "name": "x"}, {"discussionID": 5, "name": "  "}):
        with pytest.raises(InvalidField):
            validate_discussion(bad)


def test_validate_reporter_reasons():
    assert validate_reporter({"name": "A", "email": "a@example.com", "banned": 0}) == (
        "A",
        "a@example.com",
    )
    assert "invalid" in validate_reporter({"name": "A", "email": "pas une adresse", "banned": 0})
    assert validate_reporter({"name": "A", "email": "a@example.com", "banned": 2}).endswith(
        "banned on the forum"
    )


# -- the command line ------------------------------------------------------------------------------


def _cli(args, monkeypatch, forum, repo, **env):
    from gestan_release.cli import main

    base = {
        "GESTAN_RELEASE_FORUM_BASE_URL": forum.url,
        "GESTAN_RELEASE_FORUM_TOKEN": TOKEN,
        "GESTAN_RELEASE_FORUM_BUG_CATEGORIES": "signaler-un-bug",
    }
    for k, v in {**base, **env}.items():
        monkeypatch.setenv(k, v)
    return main(["--repo", str(repo), *args])


def test_cli_sync_acks_lists_and_fails_in_one_line(tmp_path, monkeypatch, forum, capsys):
    import json

    repo = tmp_path / "cli"
    repo.mkdir()
    flash = report(forum, "Zoe facture bloquée", "flash")
    triage = report(forum, "Marc question", "question")
    assert _cli(["tickets", "sync"], monkeypatch, forum, repo) == 0
    err = capsys.readouterr().err
    assert f"acknowledged #{flash} (flash)" in err and "1 à trier" in err
    assert (
        _cli(
            ["tickets", "list", "--status", "a-trier", "--format", "json"], monkeypatch, forum, repo
        )
        == 0
    )
    listed = json.loads(capsys.readouterr().out)
    assert [(r["id"], r["status"]) for r in listed] == [(triage, "a-trier")]
    assert _cli(["tickets", "ack", str(triage)], monkeypatch, forum, repo) == 1
    assert "à trier on the forum" in capsys.readouterr().err
    code = _cli(
        ["tickets", "sync"],
        monkeypatch,
        forum,
        repo,
        GESTAN_RELEASE_FORUM_PRIORITY_TAGS="flash=rouge",
    )
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "'rouge'" in err and "Traceback" not in err


def test_cli_resync_in_a_process_of_its_own_loads_no_sqlalchemy(tmp_path, monkeypatch, forum):
    """What a re-sync with nothing new imports is checked in a real process (issue 10: it must
    answer within a second, and SQLAlchemy alone costs half of that)."""
    import json
    import subprocess
    import sys

    repo = tmp_path / "cli"
    repo.mkdir()
    report(forum, "Zoe facture bloquée", "flash")
    assert _cli(["tickets", "sync"], monkeypatch, forum, repo) == 0  # and its acknowledgement
    code = (
        "import json, sys\n"
        "from gestan_release.cli import main\n"
        "code = main(sys.argv[1:])\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'sqlalchemy', 'alembic'})\n"
        "print(json.dumps({'code': code, 'heavy': heavy}), file=sys.stderr)\n"
    )
    for extra in (["--no-ack"], []):
        # with the acknowledgement step too: nothing due, so neither the stores nor the mail
        # channels are opened
        args = ["--repo", str(repo), "tickets", "sync", *extra]
        proc = subprocess.run(
            [sys.executable, "-c", code, *args], capture_output=True, text=True, check=True
        )
        lines = proc.stderr.strip().splitlines()
        if extra:
            assert "sync: 0 discussion(s) read" in lines[-2]
        else:
            assert "sync: 0 discussion(s) read" in lines[-3]
            assert lines[-2].endswith("ack: 0 acknowledgement(s) sent")
        assert json.loads(lines[-1]) == {"code": 0, "heavy": []}


def test_a_forum_report_goes_through_the_same_validation_as_an_import() -> None:
    from gestan_release.support.intake_fields import classify

    def row(**over):
        base = {
            "discussionID": 4004,
            "name": "Plantage\u2028à l'export",
            "url": "https://forum.gestan.fr/discussion/4004/plantage",
            "insertUserID": 7,
            "categoryID": BUGS,
            "tags": [{"tagID": 1, "name": "flash"}],
        }
        return base | over

    users = {7: {"userID": 7, "name": "Alice", "email": "alice@example.com"}}
    priorities = {1: Priority.FLASH}
    report, ticket = classify(row(), priorities, users, {}, set(), "forum.gestan.fr")
    assert report.state == "ticket"
    assert ticket is not None and ticket.title == "Plantage à l'export"  # one line, cleaned
    elsewhere = row(url="https://evil.example/discussion/4004/plantage")
    report, ticket = classify(elsewhere, priorities, users, {}, set(), "forum.gestan.fr")
    assert ticket is None and report.state == "ecarte"
    assert "forum.gestan.fr" in report.reason
    bidi = {7: {"userID": 7, "name": "Alice\u202egpj.exe", "email": "alice@example.com"}}
    report, ticket = classify(row(), priorities, bidi, {}, set(), "forum.gestan.fr")
    assert ticket is not None and "\u202e" not in ticket.reporter_name
