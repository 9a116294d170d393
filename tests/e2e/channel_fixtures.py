"""Fixtures for the release flow with the REAL channel clients (`XSender`, `ForumSender`,
`SmtpSender`) talking to local stand-ins: `FakeX` and `FakeVanilla` (every request validated
against the OpenAPI documents of `tests/contracts`; any invalid request fails the test at
teardown) and a real aiosmtpd server with STARTTLS and AUTH.

The channels are enabled the way an operator does it, through `GESTAN_RELEASE_*` variables; the
flow builds its senders with `senders_for(settings)` as in production. Only the waits are made
test-friendly: each sender's `from_settings` gets a recording `sleep` that does not wait (so
backoffs, flood and rate-limit pauses cost nothing), and a scenario may shorten a channel's
HTTP timeout. A `sleep` can also be told to "kill the process" (raise `ProcessKilled`), which is
how a test stops the flow right after a POST whose answer never came.

`ProcessKilled` is a `BaseException`: like a process dying, it is not a delivery failure, so the
pipeline records nothing more, Prefect does not retry the task (the run ends Crashed), and the
ledger keeps the delivery `sending`, exactly as after `kill -9`.

Imported by `test_real_channels.py` with `pytest_plugins`, next to `flow_fixtures`.
"""

from __future__ import annotations

import email.utils
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fakes.contracts import contracts_dir
from fakes.smtp import PASSWORD, USERNAME, FakeSmtp, ReceivedMail, make_self_signed_cert
from fakes.vanilla_server import FakeVanilla
from fakes.x_server import FakeX
from flow_fixtures import NOT_FORUM, TICKETS, VERSION, Sandbox, build_sandbox

from gestan_release.demo import BUILD
from gestan_release.tickets.store import TicketStore
from gestan_release.tickets.values import Ticket

# Distinctive secrets: a test can look for them anywhere (they must never show).
X_TOKEN = "xtok-7Qv3ZpR9-user-context-DO-NOT-LEAK"
FORUM_TOKEN = "forumtok-Lm4Kx8Wd-DO-NOT-LEAK"
SMTP_PASSWORD = PASSWORD  # what the aiosmtpd fixture accepts
MAIL_FROM = "Support Gestan <support@gestan.test>"
CATEGORY_ID = 12  # "nouvelles-versions" on FakeVanilla
# Alice's acknowledgement mail for #102: her "fixed" mail threads under it.
ACK = {102: "ack.102.1700000000@gestan.test"}


class ProcessKilled(BaseException):
    """The release process dies here (`kill -9`): nothing after this point runs."""


@dataclass
class Channels:
    """The three fakes, the sandbox repository, and what the senders did."""

    box: Sandbox
    x: FakeX
    forum: FakeVanilla
    smtp: FakeSmtp
    discussions: dict[int, int]  # ticket id → its forum discussion (someone else's) on the fake
    mp: pytest.MonkeyPatch
    timeouts: dict[str, float] = field(default_factory=dict)  # channel → HTTP timeout, seconds
    sleeps: list[tuple[str, float]] = field(default_factory=list)
    kill_in_sleep: set[str] = field(default_factory=set)  # channels whose next sleep "kills"
    outage_in_sleep: set[str] = field(default_factory=set)  # ... or starts an outage
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- scripting crashes -------------------------------------------------------------------
    def sleeper(self, channel: str) -> Callable[[float], None]:
        def sleep(seconds: float) -> None:
            with self._lock:
                self.sleeps.append((channel, seconds))
                kill = channel in self.kill_in_sleep
                self.kill_in_sleep.discard(channel)
                if channel in self.outage_in_sleep:
                    self.outage_in_sleep.discard(channel)
                    self.outage(channel)
            if kill:
                raise ProcessKilled(f"{channel}: killed while waiting to retry")

        return sleep

    def kill_after_send(self, key: str) -> None:
        """The side effect of delivery `key` happens, then the process dies before the ledger
        records it (once: the next run is a new process)."""
        from gestan_release.store.ledger import Ledger

        real = Ledger.mark_done
        armed = [True]

        def mark_done(ledger: Any, k: str, *args: Any, **kwargs: Any) -> None:
            if armed[0] and k == key:
                armed[0] = False
                raise ProcessKilled(f"killed after {k} was sent, before the ledger knew")
            real(ledger, k, *args, **kwargs)

        self.mp.setattr(Ledger, "mark_done", mark_done)

    def kill_before_summary(self) -> None:
        """Every step ran; the process dies before the release's summary (once)."""
        from gestan_release.release import runbook

        real = runbook.summary
        armed = [True]

        def summary(*args: Any, **kwargs: Any) -> Any:
            if armed[0]:
                armed[0] = False
                raise ProcessKilled("killed after every step, before the summary")
            return real(*args, **kwargs)

        self.mp.setattr(runbook, "summary", summary)

    def kill_after_timeout(self, channel: str, timeout: float = 2.0) -> None:
        """The channel's next POST reaches the server and is applied, but never answered (the
        fake holds it until the client times out); the process dies while the sender waits to
        look/retry."""
        self.timeouts[channel] = timeout
        self.kill_in_sleep.add(channel)

    def lose_answer_then_outage(self, channel: str, timeout: float = 2.0) -> None:
        """The channel's next POST is applied and never answered (the client times out); from the
        sender's next wait on, the service is down (503 to everything) until `end_outage`."""
        self.timeouts[channel] = timeout
        self.outage_in_sleep.add(channel)

    def fake(self, channel: str) -> Any:
        return {"x": self.x, "forum": self.forum}[channel]

    def outage(self, channel: str, answers: int = 200) -> None:
        from fakes import vanilla_server, x_server

        error = {"x": x_server.server_error, "forum": vanilla_server.server_error}[channel]
        self.fake(channel).script(
            *(error(503, method=m, path=".*") for m in ("GET", "POST") for _ in range(answers))
        )

    def end_outage(self, channel: str) -> None:
        with self.fake(channel)._lock:
            self.fake(channel).scripts.clear()

    # -- what the world holds ----------------------------------------------------------------
    def tweets_with(self, version: str = VERSION) -> list[dict[str, Any]]:
        return [t for t in self.x.tweets if version in t["text"]]

    def own_topics(self) -> list[dict[str, Any]]:
        return [
            d
            for d in self.forum.discussions.values()
            if d["insertUserID"] == self.forum.user_id and d["categoryID"] == CATEGORY_ID
        ]

    def own_comments(self, ticket_id: int) -> list[dict[str, Any]]:
        return self.forum.own_comments(self.discussions[ticket_id])

    def mails_to(self, address: str) -> list[ReceivedMail]:
        return self.smtp.handler.received_by(address)

    def recipients(self) -> list[str]:
        return sorted(r for m in self.smtp.handler.messages for r in m.rcpt_tos)

    def post_calls(self) -> dict[str, int]:
        return {
            "tweets": len(self.x.calls("POST", "/2/tweets")),
            "discussions": len(self.forum.calls("POST", "/api/v2/discussions")),
            "comments": len(self.forum.calls("POST", "/api/v2/comments")),
        }

    def set_env(self, name: str, value: str) -> None:
        self.mp.setenv(f"GESTAN_RELEASE_{name}", value)


def message_id(received: ReceivedMail) -> str:
    return email.utils.unquote(str(received.message["Message-ID"]).strip())


def import_tickets(box: Sandbox, forum: FakeVanilla) -> dict[int, int]:
    """The sandbox's tickets, each forum report pointing at its own discussion on the fake."""
    from gestan_release.store.db import ensure_state_dir

    ensure_state_dir(box.settings())
    discussions: dict[int, int] = {}
    rows = []
    for tid, title, prio, name, who in TICKETS:
        forum_url = None
        if tid not in NOT_FORUM:
            did = forum.add_discussion(f"Signalement : {title}", f"Rapport #{tid}", 1, 200 + tid)
            discussions[tid] = did
            forum_url = forum.discussions[did]["url"]
        rows.append(
            Ticket(
                id=tid,
                title=title,
                priority=prio,
                reporter_name=name,
                reporter_email=f"{who}@example.com",
                forum_url=forum_url,
                forum_tracked=tid not in NOT_FORUM,
                ack_message_id=ACK.get(tid),
            )
        )
    TicketStore(box.db_url).import_rows(rows)
    return discussions


def _fast_senders(channels: Channels) -> None:
    """Each real sender built by `senders_for(settings)` gets a recording no-wait `sleep` and,
    when a scenario asks, a short timeout; nothing else changes."""
    from gestan_release.channels.forum import ForumSender
    from gestan_release.channels.smtp import SmtpSender
    from gestan_release.channels.x import XSender

    for cls, channel in ((XSender, "x"), (ForumSender, "forum"), (SmtpSender, "mail")):
        real = cls.from_settings  # bound classmethod

        def from_settings(
            klass: type, settings: Any, _real: Any = real, _ch: str = channel, **kwargs: Any
        ) -> Any:
            kwargs.setdefault("sleep", channels.sleeper(_ch))
            if _ch in channels.timeouts:
                kwargs.setdefault("timeout", channels.timeouts[_ch])
            return _real(settings, **kwargs)

        channels.mp.setattr(cls, "from_settings", classmethod(from_settings))


@pytest.fixture(scope="session")
def smtp_cert(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return make_self_signed_cert(tmp_path_factory.mktemp("smtp-tls"))


@pytest.fixture
def fake_x() -> Iterator[FakeX]:
    with FakeX(contracts_dir(), access_tokens=(X_TOKEN,)) as server:
        yield server
    assert server.validation_errors == [], "\n".join(server.validation_errors)


@pytest.fixture
def fake_forum() -> Iterator[FakeVanilla]:
    with FakeVanilla(contracts_dir(), token=FORUM_TOKEN) as server:
        yield server
    assert server.validation_errors == [], "\n".join(server.validation_errors)


@pytest.fixture
def fake_smtp(smtp_cert: Any) -> Iterator[FakeSmtp]:
    with FakeSmtp.start(cert=smtp_cert, security="starttls", auth=True) as server:
        yield server


@pytest.fixture
def channels(
    make_repo: Callable[[str], Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    prefect_harness: str,
    fast_retries: None,
    fake_x: FakeX,
    fake_forum: FakeVanilla,
    fake_smtp: FakeSmtp,
    smtp_cert: Any,
) -> Channels:
    """The sandbox repository of `flow_fixtures` with X, the forum and SMTP enabled for real."""
    env = {
        "REMOTE": "origin",
        "BUILD_COMMAND": BUILD,
        "ARTIFACTS": "dist/*.exe",
        "X_ENABLED": "1",
        "X_API_BASE": fake_x.url,
        "X_BEARER_TOKEN": X_TOKEN,
        "FORUM_ENABLED": "1",
        "FORUM_BASE_URL": fake_forum.url,
        "FORUM_TOKEN": FORUM_TOKEN,
        "FORUM_CATEGORY": "nouvelles-versions",
        "SMTP_ENABLED": "1",
        "SMTP_HOST": fake_smtp.host,
        "SMTP_PORT": str(fake_smtp.port),
        "SMTP_SECURITY": "starttls",
        "SMTP_USERNAME": USERNAME,
        "SMTP_PASSWORD": SMTP_PASSWORD,
        "MAIL_FROM": MAIL_FROM,
    }
    for name, value in env.items():
        monkeypatch.setenv(f"GESTAN_RELEASE_{name}", value)
    # STARTTLS verifies the server with the default context: trust the test certificate.
    monkeypatch.setenv("SSL_CERT_FILE", str(smtp_cert.cert))
    box = build_sandbox(make_repo, tmp_path)
    box.env = {f"GESTAN_RELEASE_{k}": v for k, v in env.items()}
    discussions = import_tickets(box, fake_forum)
    result = Channels(box, fake_x, fake_forum, fake_smtp, discussions, monkeypatch)
    _fast_senders(result)
    return result
