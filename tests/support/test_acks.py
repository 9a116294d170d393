"""The acknowledgement mail: built from the templates, sent once through the release mails' channel
and ledger (Maildir outbox, and a real SMTP server on loopback), parsed back; the later "corrigé"
mail threads under it; a priority raise mails one short update; crashes send nothing twice."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes.smtp import FakeSmtp

from gestan_release.channels import senders_for
from gestan_release.channels.mailmsg import build_email
from gestan_release.settings import load
from gestan_release.store import db
from gestan_release.store.ledger import Ledger
from gestan_release.support.acks import ack_mail, acknowledge
from gestan_release.support.intake_store import TICKET, ForumReport, IntakeStore
from gestan_release.tickets.store import TicketStore
from gestan_release.tickets.values import Priority, Ticket

MAIL_FROM = "Support Gestan <support@gestan.test>"


@pytest.fixture(autouse=True)
def _fresh_engines():
    yield
    db.dispose_all()


class Box:
    def __init__(self, root: Path, **env: str) -> None:
        self.repo = root / "repo"
        self.repo.mkdir(parents=True)
        self.settings = load(self.repo, env={"GESTAN_RELEASE_MAIL_FROM": MAIL_FROM, **env})
        self.url = self.settings.database_url
        self.store = IntakeStore(self.url)
        self.tickets = TicketStore(self.url)
        self.ledger = Ledger(self.url)

    def forum_ticket(
        self, tid: int, priority: str, email_: str = "zoe@example.com", reported=None
    ) -> Ticket:
        ticket = Ticket(
            tid,
            f"Plantage n°{tid} <b>gras</b>",
            Priority(priority),
            "Zoé Lefèvre",
            email_,
            forum_url=f"https://forum.gestan.fr/discussion/{tid}/plantage",
        )
        report = ForumReport(
            discussion_id=tid,
            category_id=30,
            title=ticket.title,
            url=ticket.forum_url,
            insert_user_id=5,
            state=TICKET,
            priority=ticket.priority,
            date_inserted=reported,
        )
        self.store.write_page([report], [ticket])
        return ticket

    def ack(self, ids=None, senders=None):
        senders = senders or senders_for(self.settings)
        return acknowledge(self.settings, self.ledger, self.store, senders, ids)

    def maildir(self) -> list[email.message.EmailMessage]:
        new = self.settings.outbox_dir / "mail" / "new"
        return (
            [
                email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
                for p in sorted(new.iterdir())
            ]
            if new.is_dir()
            else []
        )


@pytest.fixture
def box(tmp_path) -> Box:
    return Box(tmp_path)


def body(msg) -> str:
    return msg.get_body(preferencelist=("plain",)).get_content()


def test_ack_mail_states_priority_meaning_and_delay_in_the_seeds_words(box):
    t = box.forum_ticket(3226, "flash")
    text = ack_mail(t, MAIL_FROM, "15.5").text
    assert "Priorité : flash (anomalie bloquante)" in text
    assert "au plus vite, quelquefois dans la demi-heure" in text
    assert "le plus souvent via une sous-version U" in text
    assert "toujours intégrée à la version suivante de Gestan (15.5)" in text
    haute = ack_mail(Ticket(1, "x", Priority.HAUTE, "", "a@b.fr"), MAIL_FROM, "15.5").text
    assert "normalement intégrée dans la prochaine version de Gestan (15.5)" in haute
    assert "en moyenne dans les 3 ou 4 versions suivantes" in haute
    normale = ack_mail(Ticket(1, "x", Priority.NORMALE, "", "a@b.fr"), MAIL_FROM, None).text
    assert "quand il ne restera plus de priorités hautes à traiter" in normale
    assert "développement spécifique" in normale
    basse = ack_mail(Ticket(1, "x", Priority.BASSE, "", "a@b.fr"), MAIL_FROM, None).text
    assert "quand il ne restera plus de priorités normales à traiter" in basse
    assert "(None)" not in normale


def test_ack_goes_out_once_parsed_back_and_the_fixed_mail_threads_under_it(box):
    from gestan_release.history.versions import Version
    from gestan_release.release.changelog import Changelog, ChangelogEntry
    from gestan_release.release.messages import ReleaseNotes, reporter_mails

    box.forum_ticket(3226, "flash")
    result = box.ack()
    assert result.acknowledged == [(3226, "flash")]
    [msg] = box.maildir()
    assert msg["To"] == "Zoé Lefèvre <zoe@example.com>"
    assert msg["From"] == MAIL_FROM
    assert msg["Subject"] == "Gestan : votre signalement #3226 est pris en compte (priorité flash)"
    assert msg["Auto-Submitted"] == "auto-generated"
    ack_id = msg["Message-ID"].strip("<>")
    assert ack_id.startswith("gestan-release.ack.3226.") and ack_id.endswith("@gestan.test")
    assert "Plantage n°3226 <b>gras</b>" in body(msg)
    html = msg.get_body(preferencelist=("html",)).get_content()
    assert "&lt;b&gt;gras&lt;/b&gt;" in html and "<b>gras</b>" not in html
    ticket = box.tickets.get(3226)
    assert ticket.ack_message_id == ack_id
    # Again: nothing more.
    again = box.ack()
    assert again.acknowledged == [] and len(box.maildir()) == 1
    assert box.ledger.delivery("ack:3226").version == "intake"
    # The release that fixes it: its mail threads under the acknowledgement.
    notes = ReleaseNotes(
        version=Version.parse("15.4.1"),
        tag="v15.4.1",
        date=__import__("datetime").date(2026, 11, 28),
        changelog=Changelog(None, "abc", None, (ChangelogEntry(ticket, ()),), ()),
    )
    [fixed] = reporter_mails(notes, MAIL_FROM, None)
    parsed = email.message_from_bytes(build_email(fixed, MAIL_FROM).as_bytes())
    assert parsed["In-Reply-To"] == f"<{ack_id}>" and parsed["References"] == f"<{ack_id}>"


def test_priority_raised_sends_one_short_update_lowered_sends_none(box):
    box.forum_ticket(3226, "normale")
    box.ack()
    ack_id = box.tickets.get(3226).ack_message_id
    box.forum_ticket(3226, "basse")  # lowered
    assert box.ack().raised == [] and len(box.maildir()) == 1
    box.forum_ticket(3226, "flash")  # raised above what was announced (normale)
    result = box.ack()
    assert result.raised == [(3226, "normale", "flash")]
    update = [m for m in box.maildir() if m["In-Reply-To"]]
    assert len(update) == 1
    assert update[0]["In-Reply-To"] == f"<{ack_id}>"
    assert update[0]["Subject"] == "Gestan : votre signalement #3226 passe en priorité flash"
    assert "passe de normale à flash" in body(update[0])
    assert box.ack().raised == [] and len(box.maildir()) == 2
    box.forum_ticket(3226, "normale")
    box.forum_ticket(3226, "flash")  # down and up again: the reporter already knows flash
    assert box.ack().raised == [] and len(box.maildir()) == 2
    assert box.store.acks([3226])[3226].first_priority is Priority.NORMALE


def test_only_forum_tracked_open_tickets_are_acknowledged(box):
    box.forum_ticket(1, "haute")
    phone = Ticket(2, "Appel", Priority.FLASH, "Paul", "paul@example.com")
    box.tickets.add(phone)
    fixed = box.forum_ticket(3, "flash")
    box.tickets.set_status([fixed.id], "released")
    external = box.forum_ticket(4, "haute")
    box.tickets.add(
        Ticket(
            4,
            external.title,
            Priority.HAUTE,
            "Zoé",
            "zoe@example.com",
            forum_url=external.forum_url,
            ack_message_id="old@support.fr",
        )
    )
    result = box.ack()
    assert result.acknowledged == [(1, "haute")]
    explicit = box.ack([2, 3, 4, 99])
    assert dict(explicit.refused) == {
        2: "not tracked through the forum (no forum discussion URL): no acknowledgement",
        3: "already released: the 'fixed' mail is what it gets",
        99: "not in the ticket store",
    }
    assert explicit.already == [4]
    assert len(box.maildir()) == 1


def test_a_hand_ticket_with_a_forum_url_is_acknowledged_when_asked(box):
    box.tickets.add(
        Ticket(
            7,
            "Appel",
            Priority.HAUTE,
            "Paul",
            "paul@example.com",
            forum_url="https://forum.gestan.fr/discussion/7/x",
        )
    )
    assert box.ack().acknowledged == []  # not found by a sync: not automatic
    assert box.ack([7]).acknowledged == [(7, "haute")]


def test_crash_after_sending_before_the_ledger_knew_sends_nothing_twice(box, monkeypatch):
    box.forum_ticket(1, "flash")
    box.forum_ticket(2, "haute")

    class Killed(BaseException):
        pass

    real = Ledger.mark_done
    armed = [True]

    def mark_done(ledger, key, *a, **k):
        if armed[0] and key == "ack:2":
            armed[0] = False
            raise Killed
        return real(ledger, key, *a, **k)

    monkeypatch.setattr(Ledger, "mark_done", mark_done)
    with pytest.raises(Killed):
        box.ack()
    assert box.ledger.delivery("ack:2").state == "sending"
    result = box.ack()  # the outbox finds the mail that went out
    assert len(box.maildir()) == 2
    assert box.tickets.get(2).ack_message_id is not None
    assert box.tickets.get(1).ack_message_id is not None
    assert result.failed == []


def test_crash_after_the_ledger_before_the_ticket_knew_repairs_the_ticket(box, monkeypatch):
    box.forum_ticket(1, "flash")

    class Killed(BaseException):
        pass

    def boom(*a, **k):
        raise Killed

    monkeypatch.setattr(IntakeStore, "record_ack", boom)
    with pytest.raises(Killed):
        box.ack()
    monkeypatch.undo()
    assert box.tickets.get(1).ack_message_id is None
    box.ack()
    assert box.tickets.get(1).ack_message_id is not None
    assert len(box.maildir()) == 1


@pytest.fixture
def smtp() -> Iterator[FakeSmtp]:
    with FakeSmtp.start(security="none", auth=False) as server:
        yield server


def test_ack_through_real_smtp_on_loopback(tmp_path, smtp):
    env = {
        "GESTAN_RELEASE_SMTP_ENABLED": "true",
        "GESTAN_RELEASE_SMTP_HOST": "127.0.0.1",
        "GESTAN_RELEASE_SMTP_PORT": str(smtp.port),
        "GESTAN_RELEASE_SMTP_SECURITY": "none",
    }
    box = Box(tmp_path, **env)
    box.forum_ticket(10, "haute", "chloe@example.com")
    box.forum_ticket(11, "basse", "marc@example.com")
    result = box.ack()
    assert sorted(result.acknowledged) == [(10, "haute"), (11, "basse")]
    got = smtp.handler.received_by("chloe@example.com")
    assert len(got) == 1
    msg = got[0].message
    assert msg["Message-ID"].strip("<>") == box.tickets.get(10).ack_message_id
    assert "3 ou 4 versions" in msg.get_body(preferencelist=("plain",)).get_content()
    box.ack()
    assert len(smtp.handler.messages) == 2


def test_forum_reply_once_when_asked(tmp_path):
    box = Box(tmp_path, GESTAN_RELEASE_FORUM_ACK_REPLY="true")
    box.forum_ticket(3226, "flash")
    box.ack()
    box.ack()
    posts = list((box.settings.outbox_dir / "forum").glob("*.json"))
    assert len(posts) == 1
    text = posts[0].read_text(encoding="utf-8")
    assert "priorité **flash**" in text and "zoe@example.com" not in text
    assert box.ledger.delivery("ack-forum:3226").state == "done"


def test_reports_older_than_ack_max_age_days_are_not_acknowledged_automatically(box):
    import datetime as dt

    now = dt.datetime.now(dt.UTC)
    box.forum_ticket(1, "haute", reported=now - dt.timedelta(days=400))  # from the forum's past
    box.forum_ticket(2, "haute", reported=now - dt.timedelta(days=2))
    result = box.ack()
    assert result.acknowledged == [(2, "haute")] and result.too_old == [1]
    assert "ACK_MAX_AGE_DAYS" in result.line()
    assert box.ack([1]).acknowledged == [(1, "haute")]  # by hand, it goes


def test_the_stdlib_outlook_says_what_the_acknowledgement_step_then_does(box):
    """`tickets sync` skips its acknowledgement step when the stdlib read says nothing is due:
    that read must foresee what `acknowledge` does, state after state (an old report, a forum
    URL without a discussion, a lowered and a raised priority, a ticket not from the forum)."""
    import datetime as dt

    from gestan_release.support.intake_cursors import ack_outlook

    def foresees(due: bool, too_old: tuple[int, ...] = ()) -> None:
        outlook = ack_outlook(box.url, box.settings.ack_max_age_days)
        assert outlook is not None
        assert (outlook.due, outlook.too_old) == (due, list(too_old))
        result = box.ack()
        assert bool(result.acknowledged or result.raised) is due
        assert result.too_old == list(too_old)

    foresees(False)  # an empty database
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=box.settings.ack_max_age_days + 1)
    box.forum_ticket(7, "haute", reported=long_ago)
    foresees(False, too_old=(7,))  # reported before ACK_MAX_AGE_DAYS: never automatic
    box.forum_ticket(1, "normale", reported=dt.datetime.now(dt.UTC))
    foresees(True, too_old=(7,))  # a forum ticket never acknowledged
    foresees(False, too_old=(7,))
    box.forum_ticket(1, "basse")
    foresees(False, too_old=(7,))  # lowered: nothing to tell
    box.forum_ticket(1, "flash")
    foresees(True, too_old=(7,))  # raised above what was announced
    box.tickets.add(Ticket(2, "Appel", Priority.FLASH, "Paul", "paul@example.com"))
    foresees(False, too_old=(7,))  # not tracked through the forum
    odd = box.forum_ticket(3, "haute")
    box.tickets.add(
        Ticket(3, odd.title, Priority.HAUTE, "Zoé", "zoe@example.com", forum_url="https://x.test/")
    )
    foresees(False, too_old=(7,))  # its forum URL names no discussion
    fixed = box.forum_ticket(4, "haute")
    box.tickets.set_status([fixed.id], "released")
    foresees(False, too_old=(7,))  # already released
    assert ack_outlook("postgresql+psycopg://postgres@127.0.0.1/test", 14) is None
    assert ack_outlook(f"sqlite:///{box.repo / 'missing.sqlite'}", 14) is None
