"""The SMTP channel against a real aiosmtpd server on loopback: STARTTLS, AUTH, scripted replies."""

from __future__ import annotations

import email.utils
import threading
from collections.abc import Iterator

import pytest

from gestan_release import settings as settings_mod
from gestan_release.channels.base import Mail, Receipt, send_many
from gestan_release.channels.smtp import MailRefused, SmtpSender, is_loopback, refused
from gestan_release.errors import ConfigError, DeliveryError
from tests.fakes.smtp import PASSWORD, FakeSmtp, SelfSignedCert, free_port, make_self_signed_cert

MAIL_FROM = "Support Gestan <support@gestan.test>"
ACK_ID = "ack.3226.1700000000@gestan.test"
SUBJECT = "Votre signalement n°3226 est corrigé dans Gestan 15.4 U1 — à installer"


@pytest.fixture(scope="module")
def smtp_cert(tmp_path_factory: pytest.TempPathFactory) -> SelfSignedCert:
    return make_self_signed_cert(tmp_path_factory.mktemp("smtp-tls"))


@pytest.fixture
def smtp_server(smtp_cert: SelfSignedCert) -> Iterator[FakeSmtp]:
    """aiosmtpd on 127.0.0.1 with STARTTLS required and AUTH (only over TLS)."""
    with FakeSmtp.start(cert=smtp_cert, security="starttls", auth=True) as server:
        yield server


def make_mail(n: int = 0, **changes: object) -> Mail:
    address = f"reporter{n}@client{n}.test"
    fields: dict[str, object] = {
        "key": f"mail:15.4.1:{address}",
        "to_name": "Zoé Lefèvre-Dâvila" if n == 0 else f"Rapporteur {n}",
        "to_email": address,
        "subject": SUBJECT,
        "text": "Bonjour Zoé,\n\nLe problème « Facture en double » est corrigé.\n",
        "html": "<p>Bonjour Zoé,</p>\n<p>Le problème « Facture en double » est corrigé.</p>\n",
        "message_id": f"gestan-release.15.4.1.{n:04d}@gestan.test",
        "in_reply_to": ACK_ID,
        "ticket_ids": (3226,),
    }
    fields.update(changes)
    return Mail(**fields)  # type: ignore[arg-type]


def sender_for(server: FakeSmtp, **overrides: object) -> SmtpSender:
    kwargs = server.sender_kwargs(mail_from=MAIL_FROM, **overrides)
    return SmtpSender(**kwargs)


def run(sender: SmtpSender, mails: list[Mail], before=None) -> dict[str, Receipt | DeliveryError]:
    try:
        return {m.to_email: r for m, r in send_many(sender, mails, before)}
    finally:
        sender.close()


def test_headers_threading_encodings_and_parts(smtp_server: FakeSmtp) -> None:
    mail = make_mail(0)
    sender = sender_for(smtp_server, reply_to="Équipe Support <aide@gestan.test>")
    try:
        receipt = sender.send(mail)
    finally:
        sender.close()

    assert receipt == Receipt(external_id=mail.message_id, detail="accepted by 127.0.0.1")
    [got] = smtp_server.handler.messages
    assert got.mail_from == "support@gestan.test"
    assert got.rcpt_tos == [mail.to_email]
    msg = got.message
    # Every header line on the wire is ASCII: accents are RFC 2047 encoded...
    head = got.content.split(b"\r\n\r\n", 1)[0]
    assert head.isascii()
    assert b"=?utf-8?" in head
    # ...and decode back to exactly what we meant.
    assert msg["Subject"] == SUBJECT
    [to] = msg["To"].addresses
    assert (to.display_name, to.addr_spec) == ("Zoé Lefèvre-Dâvila", mail.to_email)
    [sender_address] = msg["From"].addresses
    assert (sender_address.display_name, sender_address.addr_spec) == (
        "Support Gestan",
        "support@gestan.test",
    )
    assert msg["Reply-To"].addresses[0].display_name == "Équipe Support"
    assert email.utils.parsedate_to_datetime(msg["Date"]).tzinfo is not None
    assert msg["Message-ID"] == f"<{mail.message_id}>"
    assert msg["Auto-Submitted"] == "auto-generated"
    # Threads under the acknowledgement mail.
    assert msg["In-Reply-To"] == f"<{ACK_ID}>"
    assert msg["References"] == f"<{ACK_ID}>"
    assert msg.get_content_type() == "multipart/alternative"
    text = msg.get_body(preferencelist=("plain",))
    html = msg.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    assert text.get_content().replace("\r\n", "\n") == mail.text
    assert html.get_content().replace("\r\n", "\n") == mail.html
    assert text.get_content_charset() == "utf-8"


def test_no_thread_headers_without_an_acknowledgement(smtp_server: FakeSmtp) -> None:
    run(sender_for(smtp_server), [make_mail(1, in_reply_to=None)])
    [got] = smtp_server.handler.messages
    assert got.message["In-Reply-To"] is None
    assert got.message["References"] is None


@pytest.mark.parametrize(
    "changes",
    [
        {"to_name": "Eve\r\nBcc: victim@evil.test"},
        {"to_name": "Eve\nX-Injected: yes"},
        {"to_name": "Eve\rX-Injected: yes"},
        {"subject": "Corrigé\r\nBcc: victim@evil.test"},
        {"to_email": "eve@client.test\r\nBcc: victim@evil.test"},
    ],
)
def test_crlf_in_a_header_value_is_refused_before_the_wire(
    smtp_server: FakeSmtp, changes: dict[str, str]
) -> None:
    bad = make_mail(1, **changes)
    good = make_mail(2)
    results = run(sender_for(smtp_server), [bad, good])

    error = results[bad.to_email]
    assert isinstance(error, DeliveryError) and error.permanent
    assert isinstance(results[good.to_email], Receipt)
    # The server saw only the good mail: no RCPT for the bad one, no extra header anywhere.
    assert [m.rcpt_tos for m in smtp_server.handler.messages] == [[good.to_email]]
    assert [a for a, _ in smtp_server.handler.rcpt_log] == [good.to_email]
    for got in smtp_server.handler.messages:
        assert got.message["Bcc"] is None
        assert got.message["X-Injected"] is None
        assert b"victim@evil.test" not in got.content


def test_550_fails_that_mail_and_the_others_are_delivered(smtp_server: FakeSmtp) -> None:
    mails = [make_mail(n) for n in range(5)]
    smtp_server.handler.refuse_rcpt[mails[2].to_email] = "550 5.1.1 <reporter2>: mailbox unknown"
    # One connection, so the mails after the refusal reuse the session that was RSET.
    results = run(sender_for(smtp_server, concurrency=1), mails)

    error = results[mails[2].to_email]
    assert isinstance(error, MailRefused) and error.permanent
    assert error.code == 550 and error.recipient == mails[2].to_email
    assert "mailbox unknown" in str(error)
    delivered = sorted(r for m in smtp_server.handler.messages for r in m.rcpt_tos)
    assert delivered == sorted(m.to_email for m in mails if m is not mails[2])
    assert refused([(m, results[m.to_email]) for m in mails]) == [mails[2].to_email]


def test_451_once_is_retried_and_delivered_once(smtp_server: FakeSmtp) -> None:
    sleeps: list[float] = []
    mails = [make_mail(n) for n in range(3)]
    smtp_server.handler.transient_rcpt[mails[0].to_email] = 1
    smtp_server.handler.transient_data[mails[1].to_email] = 1
    results = run(sender_for(smtp_server, sleep=sleeps.append, concurrency=1), mails)

    assert all(isinstance(r, Receipt) for r in results.values())
    counts = {m.to_email: len(smtp_server.handler.received_by(m.to_email)) for m in mails}
    assert counts == {m.to_email: 1 for m in mails}
    assert (mails[0].to_email, 451) in smtp_server.handler.rcpt_log
    assert sleeps and all(s > 0 for s in sleeps)  # backed off before retrying


def test_451_forever_gives_up_after_bounded_retries(smtp_server: FakeSmtp) -> None:
    sleeps: list[float] = []
    mail, other = make_mail(0), make_mail(1)
    smtp_server.handler.transient_rcpt[mail.to_email] = 1000
    results = run(sender_for(smtp_server, sleep=sleeps.append, retries=3), [mail, other])

    error = results[mail.to_email]
    assert isinstance(error, DeliveryError) and not error.permanent
    assert "gave up after 4 attempts" in str(error)
    assert [c for a, c in smtp_server.handler.rcpt_log if a == mail.to_email] == [451] * 4
    assert isinstance(results[other.to_email], Receipt)
    assert refused([(mail, error)]) == []  # transient: for `resume`, not "refused"


def test_single_send_retries_then_raises(smtp_server: FakeSmtp) -> None:
    sleeps: list[float] = []
    mail = make_mail(0)
    smtp_server.handler.transient_rcpt[mail.to_email] = 1000
    sender = sender_for(smtp_server, sleep=sleeps.append, retries=2, backoff=1.0)
    with pytest.raises(DeliveryError) as info:
        sender.send(mail)
    sender.close()
    assert not info.value.permanent
    assert sleeps == [1.0, 2.0]


def test_421_reconnects_and_delivers(smtp_server: FakeSmtp) -> None:
    mails = [make_mail(n) for n in range(3)]
    smtp_server.handler.close_data[mails[1].to_email] = (1, "421 4.3.2 Service shutting down")
    results = run(sender_for(smtp_server, concurrency=1), mails)
    assert all(isinstance(r, Receipt) for r in results.values())
    assert sorted(r for m in smtp_server.handler.messages for r in m.rcpt_tos) == sorted(
        m.to_email for m in mails
    )


def test_server_restart_between_sends_reconnects(smtp_server: FakeSmtp) -> None:
    sender = sender_for(smtp_server)
    sender.send(make_mail(0))
    smtp_server.restart()  # the kept connection is now dead
    try:
        assert sender.send(make_mail(1)).external_id == make_mail(1).message_id
    finally:
        sender.close()
    assert len(smtp_server.handler.messages) == 2


def test_wrong_password_is_a_clear_permanent_error_without_the_password(
    smtp_server: FakeSmtp,
) -> None:
    wrong = "Wr0ng-" + PASSWORD
    sender = sender_for(smtp_server, password=wrong)
    failures = smtp_server.handler.auth_failures
    with pytest.raises(DeliveryError) as info:
        sender.send(make_mail(0))
    message = str(info.value)
    assert info.value.permanent
    assert "refused the login of gestan-bot" in message and "SMTP_PASSWORD" in message
    assert wrong not in message and PASSWORD not in message
    assert wrong not in repr(sender)
    one_login = smtp_server.handler.auth_failures - failures  # smtplib tries PLAIN then LOGIN

    # A batch does not hammer the server with one failed login per mail or per connection.
    before = smtp_server.handler.auth_failures
    results = run(sender_for(smtp_server, password=wrong), [make_mail(n) for n in range(6)])
    assert all(isinstance(r, DeliveryError) and r.permanent for r in results.values())
    assert smtp_server.handler.auth_failures - before == one_login
    assert smtp_server.handler.messages == []


@pytest.mark.parametrize("host", ["smtp.example.com", "10.0.0.1", "::2", "localhost.example.com"])
def test_security_none_is_refused_to_a_non_loopback_host(host: str) -> None:
    with pytest.raises(ConfigError, match="loopback"):
        SmtpSender(host, security="none", mail_from=MAIL_FROM)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.3.2.1", "::1", "[::1]", "localhost"])
def test_security_none_is_allowed_to_loopback(host: str) -> None:
    assert is_loopback(host)
    assert SmtpSender(host, security="none", mail_from=MAIL_FROM).port == 25


def test_plaintext_delivery_to_a_loopback_relay() -> None:
    server = FakeSmtp.start(security="none", auth=False)
    try:
        results = run(sender_for(server), [make_mail(n) for n in range(3)])
        assert all(isinstance(r, Receipt) for r in results.values())
        assert len(server.handler.messages) == 3
    finally:
        server.stop()


def test_starttls_missing_never_falls_back_to_plaintext(smtp_cert) -> None:
    server = FakeSmtp.start(security="none", auth=False)
    try:
        sender = sender_for(server, security="starttls", ssl_context=smtp_cert.client_context())
        with pytest.raises(DeliveryError, match="does not offer STARTTLS") as info:
            sender.send(make_mail(0))
        assert info.value.permanent
        assert server.handler.messages == []
        assert server.handler.rcpt_log == []
    finally:
        server.stop()


def test_untrusted_certificate_is_a_permanent_error(smtp_server: FakeSmtp) -> None:
    sender = sender_for(smtp_server, ssl_context=None)  # the system trust store
    with pytest.raises(DeliveryError, match="not trusted") as info:
        sender.check()
    assert info.value.permanent


def test_implicit_tls(smtp_cert) -> None:
    server = FakeSmtp.start(cert=smtp_cert, security="ssl", auth=True)
    try:
        sender = sender_for(server)
        assert "implicit TLS" in sender.check()
        results = run(sender, [make_mail(0), make_mail(1)])
        assert all(isinstance(r, Receipt) for r in results.values())
        assert len(server.handler.messages) == 2
    finally:
        server.stop()


def test_check_says_what_worked_and_sends_nothing(smtp_server: FakeSmtp) -> None:
    description = sender_for(smtp_server).check()
    assert description.startswith(f"SMTP 127.0.0.1:{smtp_server.port}, STARTTLS (TLSv1.")
    assert "authenticated as gestan-bot" in description
    assert smtp_server.handler.messages == []
    assert smtp_server.handler.rcpt_log == []


def test_check_unreachable_server_is_clear() -> None:
    port = free_port()  # nobody listens there
    sender = SmtpSender(
        "127.0.0.1", port, security="none", mail_from=MAIL_FROM, sleep=lambda _s: None
    )
    with pytest.raises(DeliveryError, match=f"cannot connect to the SMTP server 127.0.0.1:{port}"):
        sender.check()


def test_batch_uses_bounded_connections_and_calls_before_in_the_callers_thread(
    smtp_server: FakeSmtp,
) -> None:
    mails = [make_mail(n) for n in range(40)]
    calls: list[tuple[str, int]] = []
    sender = sender_for(smtp_server, concurrency=4)
    seen: list[str] = []
    try:
        for mail, result in sender.send_many(
            mails, lambda m: calls.append((m.to_email, threading.get_ident()))
        ):
            assert isinstance(result, Receipt)
            assert result.external_id == mail.message_id
            seen.append(mail.to_email)
        assert len(sender._idle) == 4  # the connections are kept for the next batch
    finally:
        sender.close()
    assert sorted(seen) == sorted(m.to_email for m in mails)
    assert sorted(a for a, _ in calls) == sorted(m.to_email for m in mails)
    assert {t for _, t in calls} == {threading.get_ident()}
    got = [r for m in smtp_server.handler.messages for r in m.rcpt_tos]
    assert sorted(got) == sorted(m.to_email for m in mails)  # each exactly once
    ids = {m.message["Message-ID"] for m in smtp_server.handler.messages}
    assert ids == {f"<{m.message_id}>" for m in mails}


def test_an_error_in_before_stops_the_batch(smtp_server: FakeSmtp) -> None:
    mails = [make_mail(n) for n in range(10)]
    called: list[str] = []

    def before(mail: Mail) -> None:
        if len(called) == 3:
            raise RuntimeError("ledger unavailable")
        called.append(mail.to_email)

    sender = sender_for(smtp_server, concurrency=2)
    with pytest.raises(RuntimeError, match="ledger unavailable"):
        for _ in sender.send_many(mails, before):
            pass
    sender.close()
    got = sorted(r for m in smtp_server.handler.messages for r in m.rcpt_tos)
    assert got == sorted(called)  # only what was recorded as "sending" went out


def test_find_existing_cannot_look() -> None:
    sender = SmtpSender("127.0.0.1", security="none", mail_from=MAIL_FROM)
    assert sender.find_existing(make_mail(0)) is None
    assert sender.name == "mail"


def test_from_settings(tmp_path) -> None:
    env = {
        "GESTAN_RELEASE_SMTP_HOST": "smtp.gestan.test",
        "GESTAN_RELEASE_SMTP_SECURITY": "ssl",
        "GESTAN_RELEASE_SMTP_USERNAME": "bot",
        "GESTAN_RELEASE_SMTP_PASSWORD": "hunter2-long",
        "GESTAN_RELEASE_MAIL_REPLY_TO": "aide@gestan.test",
    }
    sender = SmtpSender.from_settings(settings_mod.load(tmp_path, env=env))
    assert (sender.host, sender.port, sender.security, sender.username) == (
        "smtp.gestan.test",
        465,
        "ssl",
        "bot",
    )
    assert sender.reply_to == "aide@gestan.test"
    assert sender.envelope_from == "support@gestan.fr"
    assert "hunter2" not in repr(sender)
    with pytest.raises(ConfigError, match="SMTP_HOST"):
        SmtpSender.from_settings(settings_mod.load(tmp_path, env={}))
