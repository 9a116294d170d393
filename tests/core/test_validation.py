"""Hostile ticket data (issue 9, holes 1, 9 and 10): one validation where data enters (import,
`tickets add`), the same one again where it leaves (the mail builder), one clear line and exit 1."""

from __future__ import annotations

import email
import json
import subprocess
from email import policy
from pathlib import Path

import pytest

from gestan_release.channels.base import Mail
from gestan_release.channels.mailmsg import build_email
from gestan_release.cli import main
from gestan_release.core.validation import (
    MAX_TICKET_ID,
    check_text,
    check_url,
    excerpt,
    json_too_deep,
    parse_ticket_id,
)
from gestan_release.errors import DeliveryError, TicketError
from gestan_release.store import db
from gestan_release.tickets.importer import read_import_file
from gestan_release.tickets.lookup import lookup_tickets
from gestan_release.tickets.store import TicketStore

HEADER = "id,title,priority,reporter_name,reporter_email,forum_url,forum_tracked,ack_message_id\n"
# Every character that `str.splitlines()` and header folding take as a line break, and NUL.
LINE_BREAKERS = [
    *("\x00", "\n", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029")
]
HIDING = ["\u202e", "\u2066", "\u200b", "\u2060", "\ufeff"]  # bidi override/isolate, invisible


@pytest.fixture(autouse=True)
def _fresh_engines():
    yield
    db.dispose_all()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    return path


def cli(repo: Path, *args: str) -> int:
    return main(["--repo", str(repo), *args])


def mail(**changes: object) -> Mail:
    fields: dict[str, object] = {
        "key": "mail:15.4.1:alice@example.com",
        "to_name": "Alice Martin",
        "to_email": "alice@example.com",
        "subject": "Gestan 15.4 U1 : votre signalement #1 est corrigé",
        "text": "Bonjour\n",
        "html": "<p>Bonjour</p>\n",
        "message_id": "gestan-release.15.4.1.abc@gestan.fr",
    }
    return Mail(**{**fields, **changes})  # type: ignore[arg-type]


# -- hole 1: mail header injection through a reporter's name ---------------------------------------


@pytest.mark.parametrize("char", LINE_BREAKERS, ids=lambda c: f"U+{ord(c):04X}")
def test_the_mail_builder_refuses_every_line_breaker_in_a_header(char: str) -> None:
    for change in (
        {"to_name": f"Alice{char}Reply-To : x@evil.example"},
        {"subject": f"Gestan{char}Bcc: x@evil.example"},
        {"in_reply_to": f"ack@gestan.fr{char}Bcc: x@evil.example"},
    ):
        with pytest.raises(DeliveryError) as err:
            build_email(mail(**change), "Support <support@gestan.fr>")
        assert err.value.permanent
        assert f"U+{ord(char):04X}" in str(err.value)
    with pytest.raises(DeliveryError):
        build_email(mail(), f"Support{char}Bcc: x@evil.example <support@gestan.fr>")


def test_a_clean_name_gives_exactly_the_expected_headers() -> None:
    msg = build_email(mail(to_name="Zoé \u200dNoël\ttab"), "Support <support@gestan.fr>")
    parsed = email.message_from_bytes(msg.as_bytes(), policy=policy.default)
    assert sorted(parsed.keys()) == sorted(
        ["Content-Type", "MIME-Version", "From", "To", "Subject", "Date", "Message-ID",
         "Auto-Submitted"]
    )  # fmt: skip
    # Folding may turn the tab into a space: both are blanks, nothing else changes.
    assert parsed["To"].addresses[0].display_name.replace("\t", " ") == "Zoé \u200dNoël tab"


@pytest.mark.parametrize("char", LINE_BREAKERS[3:], ids=lambda c: f"U+{ord(c):04X}")
def test_import_refuses_the_line_breakers_newline_checks_missed(tmp_path: Path, char: str) -> None:
    csv = tmp_path / "t.csv"
    csv.write_text(
        HEADER
        + "1,Bon titre,flash,Alice,alice@example.com,,,\n"
        + f"2,Titre,haute,Alice{char}Reply-To : x@evil.example,alice@example.com,,,\n",
        encoding="utf-8",
    )
    with pytest.raises(TicketError) as err:
        read_import_file(csv)
    message = str(err.value)
    assert "nothing imported, 1 problem(s): line 3: reporter_name must be on one line" in message
    assert f"U+{ord(char):04X}" in message
    assert "\n" not in message

    items = [{"id": 3, "title": f"A{char}B", "priority": "haute", "reporter_email": "a@b.fr"}]
    js = tmp_path / "t.json"
    js.write_text(json.dumps(items, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(TicketError, match=r"item 1 \(line 1\): title must be on one line"):
        read_import_file(js)


@pytest.mark.parametrize("char", HIDING, ids=lambda c: f"U+{ord(c):04X}")
def test_bidi_overrides_and_invisible_characters_are_refused(char: str) -> None:
    with pytest.raises(ValueError, match=f"U\\+{ord(char):04X}"):
        check_text("title", f"Facture{char}gnp.exe")


def test_script_marks_joiners_and_tabs_are_kept() -> None:
    # LRM/RLM/ALM in mixed-direction text, ZWJ/ZWNJ in Persian and emoji sequences, tabs.
    for text in ("Sarah \u200fعلي\u200e", "می\u200cخواهم", "👩\u200d💻", "a\tb", "Zoé"):
        assert check_text("title", text) == text


def test_tickets_add_refuses_control_characters_in_one_line(repo: Path, capsys) -> None:
    base = ["tickets", "add", "--id", "7", "--priority", "haute"]
    assert cli(repo, *base, "--title", "T", "--reporter", "Alice\fReply-To : x@evil.example "
               "<alice@example.com>") == 1  # fmt: skip
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "U+000C (FORM FEED)" in err
    assert cli(repo, *base, "--title", "Export\vPDF", "--reporter", "a@example.com") == 1
    err = capsys.readouterr().err
    assert err.startswith("gestan-release: error: ticket 7 not saved: title must be on one line")
    assert err.count("\n") == 1
    assert cli(repo, "tickets", "list", "--format", "json") == 0
    assert json.loads(capsys.readouterr().out) == []  # nothing half-done


# -- hole 10: the import accepts nothing that delivery refuses -------------------------------------


def test_nul_in_a_csv_is_refused_at_import(tmp_path: Path) -> None:
    csv = tmp_path / "t.csv"
    csv.write_text(HEADER + "1,Titre\x00caché,flash,Alice,alice@example.com,,,\n", encoding="utf-8")
    with pytest.raises(TicketError, match=r"line 2: title .*U\+0000 \(NUL\)"):
        read_import_file(csv)


def test_what_the_import_accepts_the_mail_builder_accepts(tmp_path: Path) -> None:
    csv = tmp_path / "t.csv"
    csv.write_text(
        HEADER + '1,"Facture\tTVA «20 %»",flash,"Zoé ""Zaza"" Noël, SARL",zoe@example.com,,,'
        "<ack.1@gestan.fr>\n",
        encoding="utf-8",
    )
    [row] = read_import_file(csv)
    t = row.ticket
    built = build_email(
        mail(to_name=t.reporter_name, to_email=t.reporter_email, in_reply_to=t.ack_message_id),
        "Support <support@gestan.fr>",
    )
    parsed = email.message_from_bytes(built.as_bytes(), policy=policy.default)
    assert parsed["To"].addresses[0].display_name == 'Zoé "Zaza" Noël, SARL'
    assert parsed["In-Reply-To"] == "<ack.1@gestan.fr>"


def test_import_refuses_a_malformed_ack_message_id(tmp_path: Path) -> None:
    csv = tmp_path / "t.csv"
    csv.write_text(HEADER + "1,T,flash,A,a@example.com,,,ack `[x](https://evil)`\n")
    with pytest.raises(TicketError, match=r"ack_message_id .* is not a Message-ID"):
        read_import_file(csv)


# -- hole 9: ids are ASCII digits in 1..2^63-1; deep or huge JSON is one line ----------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("٣٤", "not an integer"),  # Arabic-Indic digits: int() reads 34
        ("３４", "not an integer"),  # fullwidth digits
        ("²", "not an integer"),
        (str(2**63), "too large"),
        (2**63, "too large"),
        ("9" * 5000, "too large"),
        ("0", "positive"),
        (-3, "positive"),
        (True, "not an integer"),
        (4.0, "not an integer"),
    ],
)
def test_ticket_ids_are_ascii_digits_in_range(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message) as err:
        parse_ticket_id(value)
    assert len(str(err.value)) < 200  # a short prefix of the input, never all of it


def test_the_largest_id_is_accepted_and_stored(tmp_path: Path) -> None:
    assert parse_ticket_id(f" {MAX_TICKET_ID} ") == MAX_TICKET_ID
    url = f"sqlite:///{tmp_path / 'gestan.db'}"
    js = tmp_path / "t.json"
    js.write_text(json.dumps([{"id": MAX_TICKET_ID, "title": "T", "priority": "basse",
                               "reporter_email": "a@example.com"}]))  # fmt: skip
    TicketStore(url).import_file(js)
    assert list(lookup_tickets(url, [MAX_TICKET_ID, 2**64, 10**30])) == [MAX_TICKET_ID]
    assert list(TicketStore(url).get_many([MAX_TICKET_ID, 2**64])) == [MAX_TICKET_ID]


def test_cli_refuses_unicode_digits_and_huge_ids_in_one_line(repo: Path, capsys) -> None:
    base = ["tickets", "add", "--title", "T", "--priority", "haute", "--reporter", "a@b.fr"]
    for bad in ("٣٤", str(2**63)):
        with pytest.raises(SystemExit) as exit_info:
            cli(repo, *base, "--id", bad)
        assert exit_info.value.code == 2  # a usage error, named
        assert "--id" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli(repo, "tickets", "show", "٣٤")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[" * 30_000 + "]" * 30_000, "nested too deeply"),
        ('[{"id": 1, "title": ' + "[" * 30_000 + "]" * 30_000 + "}]", "nested too deeply"),
        ('[{"id": ' + "9" * 5000 + ', "title": "T"}]', "item 1 (line 1)"),
    ],
)
def test_deep_or_huge_json_is_one_line_and_nothing_imported(
    repo: Path, tmp_path: Path, capsys, text: str, message: str
) -> None:
    js = tmp_path / "t.json"
    js.write_text(text)
    assert cli(repo, "tickets", "import", str(js)) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and len(err) < 400
    assert (
        not (repo / ".gestan-release" / "gestan.db").exists()
        or lookup_tickets(f"sqlite:///{repo / '.gestan-release' / 'gestan.db'}", [1]) == {}
    )


def test_json_depth_check() -> None:
    assert not json_too_deep('{"a": [[1]], "b": "[[[[[[[["}', 3)
    assert json_too_deep("[[[[1]]]]", 3)
    assert not json_too_deep('["\\"[[[[[["]', 2)


# -- URLs (hole 8 at the entry) --------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://forum.gestan.fr/discussion/4004/a) [Télécharger le correctif](https://evil.example/fix.exe",
        "javascript:alert(1)",
        "https://forum.gestan.fr/discussion/1/<script>",
        "https://user:pass@forum.gestan.fr/discussion/1",
        "https://forum.gestan.fr.evil.example/discussion/1",
        "https://evil.example/discussion/1",
        "https:///discussion/1",
        "https://forum.gestan.fr:99999/x",
    ],
)
def test_forum_urls_must_be_plain_http_on_the_forums_host(url: str) -> None:
    with pytest.raises(ValueError):
        check_url("forum_url", url, host="forum.gestan.fr")


def test_import_checks_forum_urls_against_forum_base_url(
    repo: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    csv = tmp_path / "t.csv"
    csv.write_text(HEADER + "1,T,flash,A,a@example.com,https://evil.example/discussion/1/x,,\n")
    assert cli(repo, "tickets", "import", str(csv)) == 0  # no FORUM_BASE_URL: any http(s) host
    capsys.readouterr()
    monkeypatch.setenv("GESTAN_RELEASE_FORUM_BASE_URL", "https://forum.gestan.fr")
    assert cli(repo, "tickets", "import", str(csv)) == 1
    assert "line 2: forum_url 'https://evil.example/discussion/1/x' is not on the forum's host " \
           "forum.gestan.fr" in capsys.readouterr().err  # fmt: skip


def test_excerpt_quotes_a_short_prefix() -> None:
    assert excerpt("abc") == "'abc'"
    assert excerpt("x" * 1000) == repr("x" * 40) + "…"
    assert len(excerpt(list(range(10_000)))) <= 41
