"""One bad record never blocks a release (issue 9, hole 2): an error building or sending one message
is the permanent failure of that delivery alone, recorded with its reason in the ledger and shown
by `status`; the other messages go out, and resuming never crashes on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes.plans import u_plan
from fakes.smtp import FakeSmtp, make_self_signed_cert

from gestan_release.channels.base import Mail, Message, Receipt
from gestan_release.channels.outbox import MaildirOutbox
from gestan_release.channels.smtp import SmtpSender
from gestan_release.release.delivery import StepResult, deliver, record_start
from gestan_release.release.plan import Plan
from gestan_release.settings import load
from gestan_release.store import db
from gestan_release.store.ledger import Ledger
from gestan_release.support.status import status

MAIL_FROM = "Support Gestan <support@gestan.test>"
# Written into the store before the import validated names (or by hand): `\v` passed the old
# CR/LF check, and header folding then split on it.
BAD_NAME = "Carole\vBcc: victim@evil.example"


@pytest.fixture(autouse=True)
def _fresh_engines() -> Iterator[None]:
    yield
    db.dispose_all()


def mail(who: str, name: str) -> Mail:
    return Mail(
        key=f"mail:15.4.1:{who}@example.com",
        to_name=name,
        to_email=f"{who}@example.com",
        subject="Gestan 15.4 U1 : votre signalement est corrigé",
        text="Bonjour\n",
        html="<p>Bonjour</p>\n",
        message_id=f"gestan-release.15.4.1.{who}@gestan.test",
    )


MAILS = [mail("alice", "Alice Martin"), mail("carol", BAD_NAME), mail("bob", "Bob Girard")]


def plan() -> Plan:
    return u_plan()


def run(ledger: Ledger, sender, messages: list[Message]) -> StepResult:
    result = StepResult("mail")
    deliver(ledger, plan(), sender, messages, "mail", result)
    return result


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    led = Ledger(f"sqlite:///{tmp_path / 'gestan.db'}")
    record_start(led, plan())
    return led


def assert_only_carol_failed(ledger: Ledger, result: StepResult) -> None:
    [(key, reason)] = result.failed
    assert key == "mail:15.4.1:carol@example.com"
    assert "U+000B (VERTICAL TAB)" in reason
    assert result.retryable == 0  # permanent: no retry of the step can help
    states = {d.key: d.state for d in ledger.deliveries("15.4.1")}
    assert states == {
        "mail:15.4.1:alice@example.com": "done",
        "mail:15.4.1:carol@example.com": "failed",
        "mail:15.4.1:bob@example.com": "done",
    }
    assert "U+000B" in (ledger.delivery(key).last_error or "")


def test_one_bad_name_in_an_smtp_batch_fails_alone(tmp_path: Path, ledger: Ledger) -> None:
    with FakeSmtp.start(cert=make_self_signed_cert(tmp_path / "tls")) as server:
        sender = SmtpSender(**server.sender_kwargs(mail_from=MAIL_FROM, concurrency=2))
        try:
            result = run(ledger, sender, MAILS)
            assert_only_carol_failed(ledger, result)
            assert sorted(r for m in server.handler.messages for r in m.rcpt_tos) == [
                "alice@example.com",
                "bob@example.com",
            ]
            # Resuming does not crash: the others are skipped, the bad one fails again, alone.
            again = run(ledger, sender, MAILS)
        finally:
            sender.close()
    assert again.skipped == 2 and len(again.failed) == 1 and again.done == 0
    assert len(server.handler.messages) == 2  # nobody mailed twice, no header injected
    for received in server.handler.messages:
        assert b"victim@evil.example" not in received.content


def test_one_bad_name_in_the_maildir_outbox_fails_alone(tmp_path: Path, ledger: Ledger) -> None:
    outbox = MaildirOutbox(tmp_path / "mail", MAIL_FROM)
    assert_only_carol_failed(ledger, run(ledger, outbox, MAILS))
    assert len(list((tmp_path / "mail" / "new").iterdir())) == 2


class _Choking(MaildirOutbox):
    """The Maildir outbox, with the `email` package choking on one mail in a way no validation
    foresaw (a library bug, an encoding it cannot handle)."""

    def send(self, message: Message) -> Receipt:
        if message.key.endswith("carol@example.com"):
            raise UnicodeEncodeError("ascii", "é", 0, 1, "a library choked on this mail")
        return super().send(message)


def test_any_exception_while_sending_one_message_fails_it_alone(
    tmp_path: Path, ledger: Ledger
) -> None:
    result = run(ledger, _Choking(tmp_path / "mail", MAIL_FROM), MAILS)
    [(key, reason)] = result.failed
    assert key.endswith("carol@example.com") and "UnicodeEncodeError" in reason
    assert len(list((tmp_path / "mail" / "new").iterdir())) == 2


def test_status_shows_the_failed_delivery_and_its_reason(git_repo, ledger: Ledger) -> None:
    git_repo.commit("Gestan 15.4")
    settings = load(git_repo.path, env={"GESTAN_RELEASE_DATABASE_URL": ledger.url})
    run(ledger, MaildirOutbox(git_repo.path.parent / "mail", MAIL_FROM), MAILS)
    undone = status(settings)["undone"]
    assert [(d["key"], d["state"]) for d in undone] == [("mail:15.4.1:carol@example.com", "failed")]
    assert "U+000B (VERTICAL TAB)" in undone[0]["error"]
