"""`once` and `deliver` on a real SQLite ledger, with a flaky fake channel: no Prefect, no
network. Each side effect happens exactly once, whatever fails or crashes in between."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fakes.plans import u_plan

from gestan_release.channels.base import Message, Post, Receipt
from gestan_release.errors import DeliveryError
from gestan_release.release.delivery import StepResult, deliver, once, record_start
from gestan_release.release.plan import Plan
from gestan_release.store import db
from gestan_release.store.ledger import Ledger

VERSION = "15.4.1"


class Killed(BaseException):
    """The process dies here (nothing after it runs, no handler catches it)."""


@pytest.fixture(autouse=True)
def _fresh_engines() -> Iterator[None]:
    yield
    db.dispose_all()


def plan() -> Plan:
    return u_plan(VERSION)


def post(n: int) -> Post:
    return Post(key=f"x:{VERSION}:{n}", text=f"Gestan 15.4 U1 ({n})", marker=f"{VERSION}-{n}")


@dataclass
class FlakySender:
    """A channel whose first `fail` sends of each message fail (transiently unless `permanent`);
    what went out is in `remote`, which `find_existing` looks up as the real channels do."""

    fail: int = 0
    permanent: bool = False
    error: str = "503 Service Unavailable"
    name: str = "x"
    remote: dict[str, int] = field(default_factory=dict)  # key → copies that went out
    sends: int = 0
    lookups: int = 0

    def send(self, message: Message) -> Receipt:
        self.sends += 1
        if self.fail > 0:
            self.fail -= 1
            raise DeliveryError(self.error, permanent=self.permanent)
        self.remote[message.key] = self.remote.get(message.key, 0) + 1
        return Receipt(external_id=f"id-{message.key}", url=f"https://x.test/{message.key}")

    def find_existing(self, message: Message) -> Receipt | None:
        self.lookups += 1
        if message.key in self.remote:
            return Receipt(external_id=f"id-{message.key}", url=f"https://x.test/{message.key}")
        return None

    def close(self) -> None:
        pass


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    led = Ledger(f"sqlite:///{tmp_path / 'gestan.db'}")
    record_start(led, plan())
    return led


def run(ledger: Ledger, sender: FlakySender, messages: list[Message]) -> StepResult:
    result = StepResult("X")
    deliver(ledger, plan(), sender, messages, "x", result)
    return result


def states(ledger: Ledger) -> dict[str, tuple[str, int]]:
    return {d.key: (d.state, d.attempts) for d in ledger.deliveries(VERSION)}


def test_transient_failures_are_recorded_then_a_rerun_sends_once(ledger: Ledger) -> None:
    sender = FlakySender(fail=2)
    messages = [post(1)]
    first = run(ledger, sender, messages)
    assert (first.done, len(first.failed), first.retryable) == (0, 1, 1)
    assert states(ledger) == {f"x:{VERSION}:1": ("failed", 1)}
    assert "503" in (ledger.delivery(f"x:{VERSION}:1").last_error or "")

    second = run(ledger, sender, messages)  # a failed one is looked for before it is sent again
    assert (second.done, len(second.failed), sender.lookups) == (0, 1, 1)

    third = run(ledger, sender, messages)
    assert (third.done, third.failed, third.retryable) == (1, [], 0)
    assert sender.remote == {f"x:{VERSION}:1": 1}
    d = ledger.delivery(f"x:{VERSION}:1")
    assert (d.state, d.external_id, d.url) == (
        "done",
        f"id-x:{VERSION}:1",
        f"https://x.test/x:{VERSION}:1",
    )


def test_a_crash_between_send_and_mark_is_found_by_the_lookup_not_sent_again(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    sender = FlakySender()
    real = Ledger.mark_done

    def killed(self: Ledger, *args: object, **kwargs: object) -> None:
        raise Killed("killed after the post went out, before the ledger knew")

    monkeypatch.setattr(Ledger, "mark_done", killed)
    with pytest.raises(Killed):
        run(ledger, sender, [post(1), post(2)])
    monkeypatch.setattr(Ledger, "mark_done", real)
    assert sender.remote == {f"x:{VERSION}:1": 1}  # the first went out, the second never started
    assert states(ledger) == {f"x:{VERSION}:1": ("sending", 1)}

    again = run(ledger, sender, [post(1), post(2)])
    assert (again.done, again.failed) == (2, [])
    assert sender.lookups == 1  # asked the channel about the one left `sending`
    assert sender.remote == {f"x:{VERSION}:1": 1, f"x:{VERSION}:2": 1}  # each exactly once
    assert {k: s for k, (s, _) in states(ledger).items()} == {
        f"x:{VERSION}:1": "done",
        f"x:{VERSION}:2": "done",
    }


def test_a_crash_before_the_send_sends_after_an_empty_lookup(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    sender = FlakySender()
    real = FlakySender.send

    def killed(self: FlakySender, message: Message) -> Receipt:
        raise Killed("killed once marked sending, before anything went out")

    monkeypatch.setattr(FlakySender, "send", killed)
    with pytest.raises(Killed):
        run(ledger, sender, [post(1)])
    monkeypatch.setattr(FlakySender, "send", real)
    assert states(ledger) == {f"x:{VERSION}:1": ("sending", 1)}

    again = run(ledger, sender, [post(1)])
    assert (again.done, sender.lookups, sender.remote) == (1, 1, {f"x:{VERSION}:1": 1})


def test_a_permanent_failure_is_recorded_failed_with_the_error_scrubbed(ledger: Ledger) -> None:
    sender = FlakySender(
        fail=1, permanent=True, error="401 Unauthorized: Bearer AAAAsecretTOKEN123 refused"
    )
    result = run(ledger, sender, [post(1), post(2)])
    assert (result.done, len(result.failed), result.retryable) == (1, 1, 0)  # the other went out
    d = ledger.delivery(f"x:{VERSION}:1")
    assert d.state == "failed" and "401 Unauthorized" in (d.last_error or "")
    assert "AAAAsecretTOKEN123" not in (d.last_error or "")


def test_done_deliveries_are_skipped_without_asking_the_channel(ledger: Ledger) -> None:
    sender = FlakySender()
    run(ledger, sender, [post(1), post(2)])
    sends = sender.sends
    again = run(ledger, sender, [post(1), post(2)])
    assert (again.done, again.skipped, again.failed) == (0, 2, [])
    assert (sender.sends, sender.lookups) == (sends, 0)


def test_once_records_a_failure_reraises_it_and_skips_once_done(ledger: Ledger) -> None:
    calls = []

    def flaky() -> tuple[str, None]:
        calls.append(1)
        if len(calls) == 1:
            raise DeliveryError("push failed: connection reset", permanent=False)
        return "origin", None

    result = StepResult("git")
    with pytest.raises(DeliveryError):
        once(ledger, plan(), "push:v15.4.1", "git", flaky, result)
    assert (len(result.failed), result.retryable) == (1, 1)
    assert ledger.delivery("push:v15.4.1").state == "failed"

    d = once(ledger, plan(), "push:v15.4.1", "git", flaky, result)
    assert (d.state, d.external_id, result.done) == ("done", "origin", 1)
    d = once(ledger, plan(), "push:v15.4.1", "git", flaky, result)
    assert (len(calls), result.skipped) == (2, 1)  # done: the action is not run again
