"""The one retry policy (`gestan_release.core.retry`): backoff, waits the peer asks for, the lookup
before retrying a POST whose answer was lost. A mock transport plays the peer; sleeps are
recorded, never slept."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

import httpx
import pytest

from gestan_release.core import retry
from gestan_release.core.retry import Backoff, HttpRetry, RateLimit
from gestan_release.errors import DeliveryError, DuplicatePost

NOW = 1_800_000_000.0


def judge(response: httpx.Response, agains: int) -> retry.Verdict:
    status = response.status_code
    if status < 300:
        return retry.DONE
    if status == 429:
        return retry.wait(float(response.headers.get("Retry-After", 60)), "rate limited")
    if status == 409:
        raise DuplicatePost("already there")
    if status >= 500:
        return retry.failed(f"server error HTTP {status}")
    raise DeliveryError(f"refused {status}", permanent=True)


class Peer:
    """Answers scripted one by one (an exception is raised as the transport would)."""

    def __init__(self, *answers: object) -> None:
        self.answers = list(answers)
        self.calls = 0
        self.client = httpx.Client(
            base_url="http://peer.test", transport=httpx.MockTransport(self.handle)
        )

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        answer = self.answers.pop(0) if self.answers else 200
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, httpx.Response):
            return answer
        return httpx.Response(int(answer))  # type: ignore[call-overload]

    def send(self) -> httpx.Response:
        return self.client.post("/things", json={})


def loop(sleeps: list[float], **kwargs) -> HttpRetry:
    kwargs.setdefault("backoff", Backoff(attempts=4, base=1.0, cap=3.0))
    return HttpRetry("the peer", sleep=sleeps.append, **kwargs)


def timeout() -> httpx.ReadTimeout:
    return httpx.ReadTimeout("slow", request=httpx.Request("POST", "http://peer.test/things"))


def test_failures_back_off_exponentially_up_to_the_cap_then_give_up_transient():
    sleeps: list[float] = []
    peer = Peer(500, 502, timeout(), httpx.ConnectError("refused"))
    with pytest.raises(DeliveryError) as info:
        loop(sleeps).request(peer.send, what="posting", judge=judge)
    assert sleeps == [1.0, 2.0, 3.0] and peer.calls == 4
    assert not info.value.permanent
    assert str(info.value) == (
        "the peer connection failed (ConnectError) while posting "
        "(gave up after 4 attempts); try again later"
    )


def test_a_refusal_is_not_retried():
    sleeps: list[float] = []
    peer = Peer(403)
    with pytest.raises(DeliveryError, match="refused 403") as info:
        loop(sleeps).request(peer.send, what="posting", judge=judge)
    assert info.value.permanent and sleeps == [] and peer.calls == 1


def test_waits_the_peer_asks_for_do_not_eat_the_failure_budget():
    sleeps: list[float] = []
    rate_limited = httpx.Response(429, headers={"Retry-After": "7"})
    peer = Peer(500, rate_limited, rate_limited, 500, 500, 201)
    response = loop(sleeps, rate=RateLimit(waits=2, cap=10)).request(
        peer.send, what="posting", judge=judge
    )
    assert response.status_code == 201
    assert sleeps == [1.0, 7.0, 7.0, 2.0, 3.0]


def limited(seconds: int) -> httpx.Response:
    return httpx.Response(429, headers={"Retry-After": str(seconds)})


@pytest.mark.parametrize(
    ("answers", "why"),
    [((limited(11),), "11 s"), ((limited(5), limited(5), limited(5)), "5 s")],
    ids=["too long", "too often"],
)
def test_a_peer_asking_to_wait_too_long_or_too_often_stops_the_run(answers, why):
    sleeps: list[float] = []
    patient = loop(sleeps, rate=RateLimit(waits=2, cap=10))
    with pytest.raises(DeliveryError) as info:
        patient.request(Peer(*answers).send, what="posting", judge=judge)
    assert not info.value.permanent
    assert why in str(info.value) and "resume later" in str(info.value)
    assert len(sleeps) == len(answers) - 1


def test_a_lost_post_answer_is_looked_for_before_trying_again():
    sleeps: list[float] = []
    peer = Peer(timeout())
    looked: list[int] = []

    def lookup() -> str | None:
        looked.append(peer.calls)
        return "found-it"

    result = loop(sleeps).request(peer.send, what="posting", judge=judge, post=True, lookup=lookup)
    assert result == "found-it" and peer.calls == 1 and looked == [1] and sleeps == [1.0]


def test_a_lookup_that_finds_nothing_or_fails_lets_the_post_go_again():
    sleeps: list[float] = []
    peer = Peer(timeout(), timeout(), 201)
    answers = iter([None, DeliveryError("lookup down")])

    def lookup() -> str | None:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    response = loop(sleeps).request(
        peer.send, what="posting", judge=judge, post=True, lookup=lookup
    )
    assert response.status_code == 201 and peer.calls == 3


def test_no_lookup_after_a_failure_that_cannot_have_posted():
    sleeps: list[float] = []
    peer = Peer(500, 201)
    response = loop(sleeps).request(
        peer.send, what="posting", judge=judge, post=True, lookup=lambda: pytest.fail("looked")
    )
    assert response.status_code == 201


def test_a_duplicate_after_a_lost_answer_is_the_lost_post():
    sleeps: list[float] = []
    peer = Peer(timeout(), 409)
    lookups = iter([None, "the-first-post"])
    result = loop(sleeps).request(
        peer.send, what="posting", judge=judge, post=True, lookup=lambda: next(lookups)
    )
    assert result == "the-first-post" and peer.calls == 2


def test_a_duplicate_without_a_lost_answer_is_raised_by_type():
    sleeps: list[float] = []
    with pytest.raises(DuplicatePost) as info:
        loop(sleeps).request(
            Peer(409).send, what="posting", judge=judge, post=True, lookup=lambda: "nope"
        )
    assert info.value.permanent


def test_again_is_counted_for_the_judge():
    seen: list[int] = []

    def once_again(response: httpx.Response, agains: int) -> retry.Verdict:
        seen.append(agains)
        if response.status_code == 401 and agains == 0:
            return retry.AGAIN
        return judge(response, agains)

    peer = Peer(401, 401)
    with pytest.raises(DeliveryError, match="refused 401"):
        loop([]).request(peer.send, what="reading", judge=once_again)
    assert seen == [0, 1]


def test_retry_after_and_reset_epochs():
    def clock() -> float:
        return NOW

    date = format_datetime(datetime.fromtimestamp(NOW + 90, UTC), usegmt=True)
    assert retry.retry_after({"Retry-After": "12"}, clock) == 12.0
    assert retry.retry_after({"Retry-After": "-3"}, clock) == 0.0
    assert retry.retry_after({"Retry-After": date}, clock) == pytest.approx(90.0)
    assert retry.retry_after({"Retry-After": "soon"}, clock) is None
    assert retry.retry_after({}, clock) is None
    assert retry.until_epoch(str(int(NOW) + 30), clock) == 30.0
    assert retry.until_epoch(str(int(NOW) - 30), clock) == 0.0
    assert retry.until_epoch("x", clock) is None and retry.until_epoch(None, clock) is None


def test_gave_up_says_how_many_attempts():
    error = retry.gave_up("mail to a@b refused", 1)
    assert str(error) == "mail to a@b refused (gave up after 1 attempt); try again later"
    assert not error.permanent
