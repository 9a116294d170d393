"""The outbox senders: a real Maildir for mail, one JSON request per post for X and the forum."""

from __future__ import annotations

import datetime as dt
import email
import json
import mailbox
from dataclasses import replace
from email import policy
from email.headerregistry import Address
from pathlib import Path

import pytest

from gestan_release.channels.base import ForumComment, Mail, Post, Receipt, Sender, send_many
from gestan_release.channels.mailmsg import build_email
from gestan_release.channels.outbox import MaildirOutbox, PostOutbox, channel_outboxes
from gestan_release.errors import DeliveryError
from gestan_release.history.ranges import CommitRef
from gestan_release.history.versions import Version
from gestan_release.release.changelog import Changelog, ChangelogEntry
from gestan_release.release.messages import (
    ReleaseNotes,
    announcement,
    forum_comments,
    forum_topic,
    reporter_mails,
)
from gestan_release.tickets.values import Priority, Ticket

MAIL_FROM = "Support Gestan <support@gestan.fr>"


def _ticket(tid: int, priority: Priority, name: str, mail: str, ack: str | None = None) -> Ticket:
    return Ticket(
        id=tid,
        title=f"Écran de saisie n°{tid} bloqué",
        priority=priority,
        reporter_name=name,
        reporter_email=mail,
        forum_url=f"https://forum.gestan.fr/discussion/{tid}/ecran-{tid}",
        ack_message_id=ack,
    )


@pytest.fixture
def notes() -> ReleaseNotes:
    commit = CommitRef("b" * 40, "Corrige l'écran", "Dev")
    tickets = [
        _ticket(
            3226, Priority.FLASH, "Hélène Müller-Ćosić", "helene@exemple.fr", "<ack-3226@gestan.fr>"
        ),
        _ticket(3227, Priority.HAUTE, "Hélène Müller-Ćosić", "HELENE@exemple.fr"),
        _ticket(3228, Priority.NORMALE, "Bob Durand", "bob@example.com"),
    ]
    cl = Changelog(
        None, "c" * 40, "15.4.0", tuple(ChangelogEntry(t, (commit,)) for t in tickets), ()
    )
    return ReleaseNotes(Version.parse("15.4.1"), "v15.4.1", dt.date(2026, 11, 27), cl)


@pytest.fixture
def mails(notes: ReleaseNotes) -> list[Mail]:
    return reporter_mails(notes, MAIL_FROM, "https://forum.gestan.fr/discussion/4000/notes")


def maildir_files(root: Path) -> list[Path]:
    return sorted(p for sub in ("tmp", "new", "cur") for p in (root / sub).glob("*"))


# -- Maildir ---------------------------------------------------------------------------------------


def test_maildir_messages_are_real_rfc5322(tmp_path: Path, mails: list[Mail]) -> None:
    outbox = MaildirOutbox(tmp_path / "mail", MAIL_FROM, reply_to="support@gestan.fr")
    helene, _bob = mails
    receipt = outbox.send(helene)
    assert receipt.external_id == helene.message_id
    assert receipt.url and receipt.url.startswith("file://")

    box = mailbox.Maildir(tmp_path / "mail", factory=None, create=False)
    assert len(box) == 1
    (key,) = box.keys()
    raw = box.get_bytes(key)
    msg = email.message_from_bytes(raw, policy=policy.default)

    assert msg["Subject"] == "Gestan 15.4 U1 : vos signalements #3226 et #3227 sont corrigés"
    assert b"corrig\xc3\xa9s" not in raw.split(b"\n\n", 1)[0]  # headers are 7-bit, RFC 2047
    (to,) = msg["To"].addresses
    assert (to.display_name, to.addr_spec) == ("Hélène Müller-Ćosić", "helene@exemple.fr")
    (sender,) = msg["From"].addresses
    assert (sender.display_name, sender.addr_spec) == ("Support Gestan", "support@gestan.fr")
    assert msg["Reply-To"] == "support@gestan.fr"
    assert msg["Message-ID"] == f"<{helene.message_id}>"
    assert msg["In-Reply-To"] == "<ack-3226@gestan.fr>"
    assert msg["References"] == "<ack-3226@gestan.fr>"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["Date"] is not None and msg["Date"].datetime.tzinfo is not None
    assert msg.get_content_type() == "multipart/alternative"
    plain = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert plain.get_content_charset() == "utf-8" and html.get_content_charset() == "utf-8"
    assert plain.get_content().strip() == helene.text.strip()
    assert "Bonjour Hélène Müller-Ćosić," in plain.get_content()
    assert html.get_content().strip() == helene.html.strip()


def test_maildir_send_is_idempotent(tmp_path: Path, mails: list[Mail]) -> None:
    outbox = MaildirOutbox(tmp_path / "mail", MAIL_FROM)
    helene, bob = mails
    assert outbox.find_existing(helene) is None
    first = outbox.send(helene)
    assert outbox.find_existing(helene) == first
    assert outbox.send(helene) == first
    outbox.send(bob)
    files = maildir_files(tmp_path / "mail")
    assert [p.parent.name for p in files] == ["new", "new"]  # nothing left in tmp/
    assert {p.name for p in files} == {helene.message_id, bob.message_id}


def test_maildir_finds_a_mail_a_client_has_read(tmp_path: Path, mails: list[Mail]) -> None:
    outbox = MaildirOutbox(tmp_path / "mail", MAIL_FROM)
    helene = mails[0]
    outbox.send(helene)
    box = mailbox.Maildir(tmp_path / "mail", create=False)
    (key,) = box.keys()
    msg = box[key]
    msg.set_subdir("cur")
    msg.add_flag("S")
    box[key] = msg  # moved to cur/ with ":2,S"
    assert [p.parent.name for p in maildir_files(tmp_path / "mail")] == ["cur"]
    assert outbox.find_existing(helene) is not None
    outbox.send(helene)
    assert len(maildir_files(tmp_path / "mail")) == 1


@pytest.mark.parametrize(
    "change",
    [
        {"to_name": "Mallory\r\nBcc: victim@example.com"},
        {"to_name": "Mallory\nX-Evil: 1"},
        {"subject": "Sujet\r\nBcc: victim@example.com"},
        {"in_reply_to": "ack@x.fr\r\nBcc: victim@example.com"},
        {"to_email": "bob@example.com\r\nBcc: victim@example.com"},
    ],
)
def test_cr_lf_in_a_header_is_refused_and_nothing_written(
    tmp_path: Path, mails: list[Mail], change: dict[str, str]
) -> None:
    outbox = MaildirOutbox(tmp_path / "mail", MAIL_FROM)
    with pytest.raises(DeliveryError) as err:
        outbox.send(replace(mails[1], **change))
    assert err.value.permanent
    assert "line break" in str(err.value)
    assert maildir_files(tmp_path / "mail") == []


def test_bad_mail_from_fails_at_construction(tmp_path: Path) -> None:
    with pytest.raises(DeliveryError):
        MaildirOutbox(tmp_path, "Support\r\nBcc: x@y.fr <support@gestan.fr>")
    with pytest.raises(DeliveryError):
        MaildirOutbox(tmp_path, "pas une adresse")


def test_build_email_without_ack_has_no_threading(mails: list[Mail]) -> None:
    bob = mails[1]
    assert bob.in_reply_to is None
    built = build_email(bob, MAIL_FROM, date=dt.datetime(2026, 11, 27, 9, 0, tzinfo=dt.UTC))
    msg = email.message_from_bytes(built.as_bytes(), policy=policy.default)
    assert "In-Reply-To" not in msg and "References" not in msg
    assert msg["To"].addresses == (Address("Bob Durand", addr_spec="bob@example.com"),)
    assert msg["Date"] == "Fri, 27 Nov 2026 09:00:00 +0000"


# -- posts -----------------------------------------------------------------------------------------


def test_x_outbox_holds_the_exact_request(tmp_path: Path, notes: ReleaseNotes) -> None:
    outbox = PostOutbox(tmp_path / "x", "x")
    post = announcement(notes)
    assert outbox.find_existing(post) is None
    receipt = outbox.send(post)
    path = tmp_path / "x" / "x_15.4.1.json"
    assert receipt == Receipt(external_id="x_15.4.1.json", url=path.resolve().as_uri())
    request = json.loads(path.read_text(encoding="utf-8"))
    assert request == {"method": "POST", "path": "/2/tweets", "body": {"text": post.text}}
    assert "Gestan 15.4 U1 (15.4.1) est disponible" in path.read_text(
        encoding="utf-8"
    )  # UTF-8, no \\u


def test_forum_outbox_requests(tmp_path: Path, notes: ReleaseNotes) -> None:
    outbox = PostOutbox(tmp_path / "forum", "forum")
    topic = forum_topic(notes, "nouvelles-versions")
    receipt = outbox.send(topic)
    assert receipt.external_id == "forum_15.4.1.json"
    request = json.loads((tmp_path / "forum" / "forum_15.4.1.json").read_text(encoding="utf-8"))
    assert request == {
        "method": "POST",
        "path": "/api/v2/discussions",
        "body": {
            "name": "Gestan 15.4 U1 — notes de version",
            "body": topic.body,
            "format": "markdown",
            "category": "nouvelles-versions",
        },
    }
    by_id = replace(topic, key="forum:15.4.1-by-id", category="12")
    outbox.send(by_id)
    body = json.loads((tmp_path / "forum" / "forum_15.4.1-by-id.json").read_text())["body"]
    assert body["categoryID"] == 12 and "category" not in body

    comments = forum_comments(notes, receipt.url)
    for c in comments:
        outbox.send(c)
    assert receipt.url in comments[0].body  # replies link to the topic's receipt
    request = json.loads((tmp_path / "forum" / "forum_15.4.1_ticket_3226.json").read_text())
    assert request == {
        "method": "POST",
        "path": "/api/v2/comments",
        "body": {"body": comments[0].body, "format": "markdown", "discussionID": 3226},
    }


def test_post_send_is_idempotent_and_refuses_a_changed_message(
    tmp_path: Path, notes: ReleaseNotes
) -> None:
    outbox = PostOutbox(tmp_path / "x", "x")
    post = announcement(notes)
    first = outbox.send(post)
    assert outbox.send(post) == first
    assert outbox.find_existing(post) == first
    assert [p.name for p in (tmp_path / "x").iterdir()] == ["x_15.4.1.json"]
    with pytest.raises(DeliveryError) as err:
        outbox.send(replace(post, text="Autre texte"))
    assert err.value.permanent
    assert json.loads((tmp_path / "x" / "x_15.4.1.json").read_text())["body"]["text"] == post.text


def test_file_names_are_safe_and_distinct(tmp_path: Path) -> None:
    outbox = PostOutbox(tmp_path, "forum")
    evil = ForumComment(key="forum:../../etc/passwd", discussion_id=1, body="x", marker="m")
    other = ForumComment(key="forum:.._.._etc_passwd", discussion_id=1, body="y", marker="m")
    a, b = outbox.file_name(evil), outbox.file_name(other)
    assert "/" not in a and not a.startswith(".") and a != b
    outbox.send(evil)
    assert [p.parent for p in tmp_path.iterdir()] == [tmp_path]


def test_wrong_message_type_is_a_bug(tmp_path: Path, mails: list[Mail]) -> None:
    with pytest.raises(TypeError):
        PostOutbox(tmp_path, "x").send(mails[0])
    with pytest.raises(TypeError):
        MaildirOutbox(tmp_path, MAIL_FROM).send(Post(key="x:1", text="t", marker="1"))


def test_channel_outboxes(tmp_path: Path, notes: ReleaseNotes, mails: list[Mail]) -> None:
    senders = channel_outboxes(tmp_path, mail_from=MAIL_FROM)
    assert set(senders) == {"x", "forum", "mail"}
    assert all(isinstance(s, Sender) for s in senders.values())
    results = list(send_many(senders["mail"], list(mails)))
    assert all(isinstance(r, Receipt) for _, r in results)
    senders["x"].send(announcement(notes))
    senders["forum"].send(forum_topic(notes, "nouvelles-versions"))
    assert (tmp_path / "x" / "x_15.4.1.json").is_file()
    assert (tmp_path / "forum" / "forum_15.4.1.json").is_file()
    assert len(mailbox.Maildir(tmp_path / "mail", create=False)) == 2
