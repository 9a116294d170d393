"""Tokens never leak when a peer echoes them (issue 9, hole 7): X, the forum, an update server and
an SMTP server that quote our credentials in their errors, each through the pipeline's `deliver`
(or the publish step) into a real ledger; the secret reaches no exception, log or `last_error`."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes.contracts import contracts_dir
from fakes.echo import EchoHTTPServer, EchoingSmtpHandler, vanilla_echo, x_echo
from fakes.openapi import FakeClock
from fakes.plans import u_plan
from fakes.smtp import PASSWORD, USERNAME, FakeSmtp, make_self_signed_cert
from fakes.vanilla_server import FakeVanilla
from fakes.x_server import FakeX

from gestan_release.channels.base import ForumComment, Mail, Post
from gestan_release.channels.forum import ForumSender
from gestan_release.channels.smtp import SmtpSender
from gestan_release.channels.x import XSender
from gestan_release.cli import main
from gestan_release.core.scrub import MASK, remember, remember_smtp_login, scrub
from gestan_release.errors import DeliveryError
from gestan_release.release.delivery import StepResult, deliver, record_start
from gestan_release.release.plan import Plan
from gestan_release.release.steps import publish_step
from gestan_release.settings import load
from gestan_release.store import db
from gestan_release.store.ledger import Ledger
from gestan_release.updates.publisher import HttpPublisher

X_TOKEN = "user-access-token-1"
FORUM_TOKEN = "forum-token-S3CR3T-echo"
UPDATES_TOKEN = "updates-admin-S3CR3T-token"


def forms(secret: str) -> list[str]:
    return [secret, base64.b64encode(secret.encode()).decode()]


def assert_clean(secret: str, *texts: str | None) -> None:
    for text in texts:
        for form in forms(secret):
            assert form not in (text or ""), f"{form!r} leaked into {text!r}"


def log_text(caplog: pytest.LogCaptureFixture) -> str:
    """What our side logged (the fake SMTP server's own debug log, `mail.log`, is the peer's)."""
    return "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("mail."))


@pytest.fixture(autouse=True)
def _fresh_engines() -> Iterator[None]:
    yield
    db.dispose_all()


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger(f"sqlite:///{tmp_path / 'gestan.db'}")


def plan(version: str = "15.4.1") -> Plan:
    return u_plan(version)


def deliver_one(ledger: Ledger, sender, message, channel: str) -> StepResult:
    p = plan()
    record_start(ledger, p)
    result = StepResult(channel)
    deliver(ledger, p, sender, [message], channel, result)
    return result


# -- the scrubber ----------------------------------------------------------------------------------


def test_scrub_removes_known_secrets_and_credential_forms() -> None:
    remember("known-secret-value-123")
    encoded = base64.b64encode(b"known-secret-value-123").decode()
    text = (
        f"known-secret-value-123 / {encoded} / "
        "Authorization: Bearer eyJhbGciOi.J9.unknown-rotated / Basic dXNlcjpwYXNzd29yZA== / "
        'OAuth oauth_consumer_key="ck", oauth_token="tok", oauth_signature="sig%3D" / '
        '{"access_token": "at-123456", "refresh_token":"rt-987654"} password=hunter22'
    )
    clean = scrub(text)
    for leaked in ("known-secret", encoded[:12], "eyJhbGciOi", "dXNlcjpw", "oauth_token=",
                   "sig%3D", "at-123456", "rt-987654", "hunter22"):  # fmt: skip
        assert leaked not in clean
    assert clean.count(MASK) >= 8
    assert scrub(clean) == clean  # idempotent


def test_scrub_masks_the_credentials_of_a_url() -> None:
    text = "fatal: unable to access 'https://deploy:ghp_tok3n@git.example/gestan.git/': 403"
    clean = scrub(text)
    assert "ghp_tok3n" not in clean and "deploy" not in clean
    assert "https://***@git.example/gestan.git/" in clean
    assert scrub("see https://forum.gestan.fr/discussion/3226 (mail a@b.fr)") == (
        "see https://forum.gestan.fr/discussion/3226 (mail a@b.fr)"
    )


def test_scrub_keeps_ordinary_words() -> None:
    text = "a Bearer token is required; check SMTP_USERNAME and SMTP_PASSWORD; Basic auth off"
    assert scrub(text) == text
    remember("ab", None, "")  # too short to mean anything: never masks ordinary letters
    assert scrub("abc abd") == "abc abd"


def test_loading_a_secret_setting_registers_it(tmp_path: Path) -> None:
    settings = load(tmp_path, env={"GESTAN_RELEASE_FORUM_TOKEN": "loaded-forum-token-42"})
    assert settings.forum_token is not None
    assert scrub("the forum said: loaded-forum-token-42") == f"the forum said: {MASK}"


# -- one echoing peer per channel ------------------------------------------------------------------


def test_x_echoing_the_authorization_header(ledger: Ledger, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    clock = FakeClock()
    with FakeX(contracts_dir(), clock=clock) as x:
        x.script(x_echo(status=400), x_echo(status=403))
        sender = XSender(x.url, bearer_token=X_TOKEN, sleep=clock.sleep, clock=clock)
        post = Post(key="x:15.4.1", text="Gestan 15.4 U1 est disponible.", marker="15.4.1")
        with pytest.raises(DeliveryError) as err:
            sender.send(post)
        assert "Invalid request" in str(err.value) and MASK in str(err.value)
        result = deliver_one(ledger, sender, post, "x")
        sender.close()
    [(key, error)] = result.failed
    stored = ledger.delivery(key)
    assert stored is not None and stored.state == "failed" and MASK in (stored.last_error or "")
    assert_clean(X_TOKEN, str(err.value), error, stored.last_error, log_text(caplog))


def test_forum_echoing_the_authorization_header(ledger: Ledger, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    clock = FakeClock()
    with FakeVanilla(contracts_dir(), token=FORUM_TOKEN, clock=clock) as forum:
        forum.script(vanilla_echo(status=403))
        sender = ForumSender(forum.url, FORUM_TOKEN, sleep=clock.sleep, clock=clock)
        comment = ForumComment(
            key="forum:15.4.1:ticket:1", discussion_id=1, body="Corrigé.\n", marker="<!-- m -->"
        )
        result = deliver_one(ledger, sender, comment, "forum")
        sender.close()
    [(key, error)] = result.failed
    stored = ledger.delivery(key)
    assert stored is not None and "Permission Problem" in (stored.last_error or "")
    assert_clean(FORUM_TOKEN, error, stored.last_error, log_text(caplog))


@pytest.mark.parametrize("as_json", [True, False], ids=["json-error", "html-error"])
def test_update_server_echoing_the_token(
    tmp_path: Path, ledger: Ledger, caplog, as_json: bool
) -> None:
    caplog.set_level(logging.DEBUG)
    with EchoHTTPServer(status=403 if as_json else 400, as_json=as_json) as echo:
        publisher = HttpPublisher(echo.url, UPDATES_TOKEN, attempts=1)
        entry = {"version": "15.4.1", "artifacts": {}}
        with pytest.raises(DeliveryError) as err:
            publisher.publish("stable", entry)
        publisher.close()
        settings = load(
            tmp_path,
            env={"GESTAN_RELEASE_UPDATES_URL": echo.url,
                 "GESTAN_RELEASE_UPDATES_TOKEN": UPDATES_TOKEN},
        )  # fmt: skip
        p = plan()
        record_start(ledger, p)
        artifacts = [{"platform": "win64", "name": "g.exe", "sha256": "ab" * 32, "size": 1}]
        result = publish_step(settings, ledger, p, artifacts, None)
    [(key, error)] = result.failed
    stored = ledger.delivery(key)
    assert stored is not None and stored.state == "failed"
    assert_clean(UPDATES_TOKEN, str(err.value), error, stored.last_error, log_text(caplog))


def test_smtp_server_echoing_the_login(tmp_path: Path, ledger: Ledger, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    cert = make_self_signed_cert(tmp_path / "tls")
    mail = Mail(
        key="mail:15.4.1:alice@example.com",
        to_name="Alice",
        to_email="alice@example.com",
        subject="Gestan 15.4 U1",
        text="Bonjour\n",
        html="<p>Bonjour</p>\n",
        message_id="gestan-release.15.4.1.a@gestan.test",
    )
    errors = []
    for refuse_login in (True, False):
        handler = EchoingSmtpHandler(refuse_login=refuse_login)
        with FakeSmtp.start(cert=cert, handler=handler) as server:
            sender = SmtpSender(**server.sender_kwargs(mail_from="Support <s@gestan.test>"))
            with pytest.raises(DeliveryError) as err:
                sender.send(mail)
            errors.append(str(err.value))
            sender.close()
    assert "535" in errors[0] and "550" in errors[1]
    # Through the pipeline into the ledger, the recipient refusal quoting the password:
    with FakeSmtp.start(cert=cert, handler=EchoingSmtpHandler()) as server:
        sender = SmtpSender(**server.sender_kwargs(mail_from="Support <s@gestan.test>"))
        result = deliver_one(ledger, sender, mail, "mail")
        sender.close()
    [(key, error)] = result.failed
    stored = ledger.delivery(key)
    assert stored is not None and "550" in (stored.last_error or "")
    plain_blob = base64.b64encode(f"\0{USERNAME}\0{PASSWORD}".encode()).decode()
    assert_clean(PASSWORD, *errors, error, stored.last_error, log_text(caplog))
    assert plain_blob not in " ".join(errors)


def test_the_terminal_never_shows_a_secret(tmp_path: Path, capsys) -> None:
    remember_smtp_login("u", "terminal-secret-99")

    def boom(_args) -> int:
        raise DeliveryError("server said: password=terminal-secret-99", permanent=True)

    import gestan_release.cli as cli

    parser = cli.build_parser
    try:
        cli.build_parser = lambda: _parser_with(parser(), boom)
        assert main(["changelog"]) == 1
    finally:
        cli.build_parser = parser
    err = capsys.readouterr().err
    assert "terminal-secret-99" not in err and MASK in err


def _parser_with(parser, func):
    parser.set_defaults(func=func)
    for action in parser._subparsers._group_actions:  # every sub-command runs `func`
        for sub in action.choices.values():
            sub.set_defaults(func=func)
    return parser
