"""One retry policy for every peer we talk to: X, the forum, the update server (HTTP) and the SMTP
server. The rules, the same everywhere:

- A failure that may pass (a 5xx, a timeout, a dropped or refused connection; for SMTP a `4yz`
  reply) is tried again after an exponential backoff (`Backoff`: `base`, doubling, at most `cap`
  seconds), `attempts` tries in all; then a *transient* `DeliveryError` ("gave up after N
  attempts"): `resume` tries again later.
- A peer that asks us to wait (HTTP 429 with `Retry-After` or a reset time, the forum's flood
  control) is waited out, `RateLimit.waits` times at most, each wait at most `RateLimit.cap`
  seconds; these waits are not failures. Asked to wait longer, we stop with a transient error
  rather than hold a worker for an hour.
- Anything else the peer refuses is permanent: the peer's own judge raises it (its text scrubbed:
  a peer may quote our credentials).
- A `POST` whose answer never came (a timeout) may have been applied: before trying again the
  loop *looks* (`lookup`), and a post found is the result, never a second post. A peer that then
  refuses the post as one it already has (`DuplicatePost`) confirms it the same way.

Sleeps (and the clocks that compute waits) are injected: tests never wait.

Why our own loop rather than tenacity or stamina: both retry a function on exceptions with a
stop and a wait policy, but here two budgets run side by side (failures vs. waits the peer asked
for, which must not eat the failure budget), the wait comes from the answer itself (a reset epoch,
a `Retry-After` date, seconds in a flood-control message), and a retry may be replaced by a lookup
whose result ends the loop. Expressing that through their hooks took more code than this module.

Stdlib only at import time: `httpx` is imported when a request is made.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, TypeVar

from gestan_release.errors import DeliveryError, DuplicatePost

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """`attempts` tries in all for failures that may pass, `base` seconds before the second, then
    doubling, at most `cap`."""

    attempts: int = 4
    base: float = 1.0
    cap: float = 30.0

    def delay(self, failures: int) -> float:
        """Seconds to wait after the `failures`-th failure."""
        return min(self.cap, self.base * 2 ** (failures - 1))

    def exhausted(self, failures: int) -> bool:
        return failures >= max(1, self.attempts)


@dataclass(frozen=True)
class RateLimit:
    """How long a peer may make us wait: `waits` times, each at most `cap` seconds."""

    waits: int = 3
    cap: float = 900.0


def gave_up(
    problem: object,
    attempts: int,
    *,
    error: type[DeliveryError] = DeliveryError,
    advice: str = "try again later",
) -> DeliveryError:
    """The transient error after the last attempt."""
    noun = "attempt" if attempts == 1 else "attempts"
    return error(f"{problem} (gave up after {attempts} {noun}); {advice}", permanent=False)


# -- what a peer asks for, read from its answer -------------------------------------------------


def retry_after(headers: Mapping[str, str], clock: Callable[[], float]) -> float | None:
    """`Retry-After` in seconds (delta-seconds or an HTTP date); None if absent or unreadable."""
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - clock())
    except (TypeError, ValueError):
        return None


def until_epoch(value: str | None, clock: Callable[[], float]) -> float | None:
    """Seconds from now until the epoch time `value` (X's `x-rate-limit-reset`), or None."""
    if not value:
        return None
    try:
        return max(0.0, float(value) - clock())
    except ValueError:
        return None


# -- a judge's verdict on one answer ------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """What to do with an answer: `done` (return it), `again` (try at once: the judge fixed the
    cause, e.g. refreshed a token), `wait` seconds (the peer asked), or a `problem` that may pass
    (back off and try again). A refusal is not a verdict: the judge raises it."""

    done: bool = False
    again: bool = False
    wait: float | None = None
    reason: str = ""
    problem: str = ""


DONE = Verdict(done=True)
AGAIN = Verdict(again=True)


def wait(seconds: float, reason: str) -> Verdict:
    return Verdict(wait=seconds, reason=reason)


def failed(problem: str) -> Verdict:
    return Verdict(problem=problem)


Judge = Callable[["httpx.Response", int], Verdict]


@dataclass(frozen=True)
class HttpRetry:
    """The retry loop of one HTTP peer. `peer` names it in messages ("X", "the forum")."""

    peer: str
    backoff: Backoff = Backoff()
    rate: RateLimit = RateLimit()
    sleep: Callable[[float], None] = time.sleep
    error: type[DeliveryError] = DeliveryError
    advice: str = "try again later"
    log: logging.Logger = log

    def request(
        self,
        send: Callable[[], httpx.Response],
        *,
        what: str,
        judge: Judge,
        post: bool = False,
        lookup: Callable[[], T | None] | None = None,
    ) -> httpx.Response | T:
        """`send()` until `judge` says done; a lookup's find after a lost `POST` answer instead.

        `judge(response, agains)` gets how many times it already answered `AGAIN` in this call.
        `post`: a timeout may mean the request was applied (then `lookup`, if any, runs before
        the next try)."""
        import httpx

        failures = waits = agains = 0
        uncertain = False
        while True:
            try:
                response = send()
            except httpx.TimeoutException:
                uncertain = uncertain or post
                verdict = failed("timed out")
            except httpx.TransportError as exc:
                verdict = failed(f"connection failed ({type(exc).__name__})")
            else:
                try:
                    verdict = judge(response, agains)
                except DuplicatePost:
                    found = self._look(lookup) if uncertain and lookup is not None else None
                    if found is None:
                        raise
                    return found
            if verdict.done:
                return response
            if verdict.again:
                agains += 1
                continue
            if verdict.wait is not None:
                waits += 1
                seconds = verdict.wait
                if waits > self.rate.waits or seconds > self.rate.cap:
                    raise self.error(
                        f"{self.peer} keeps asking to wait ({verdict.reason}, {seconds:.0f} s; "
                        f"this run waits at most {self.rate.cap:.0f} s, {self.rate.waits} times) "
                        f"while {what}; resume later",
                        permanent=False,
                    )
                self.log.warning(
                    "%s: %s while %s; waiting %.0f s", self.peer, verdict.reason, what, seconds
                )
                self.sleep(seconds)
                continue
            failures += 1
            if self.backoff.exhausted(failures):
                raise gave_up(
                    f"{self.peer} {verdict.problem} while {what}",
                    failures,
                    error=self.error,
                    advice=self.advice,
                )
            delay = self.backoff.delay(failures)
            self.log.warning(
                "%s: %s while %s; retrying in %.1f s", self.peer, verdict.problem, what, delay
            )
            self.sleep(delay)
            if uncertain and lookup is not None:
                found = self._look(lookup)
                if found is not None:
                    return found

    def _look(self, lookup: Callable[[], T | None]) -> T | None:
        """Did the earlier attempt go out? A lookup that fails says nothing: we try again."""
        try:
            found = lookup()
        except DeliveryError as exc:
            self.log.warning("%s: could not check for an earlier post: %s", self.peer, exc)
            return None
        if found is not None:
            self.log.info("%s: the earlier attempt did go out; not posting again", self.peer)
        return found


def json_object(response: Any) -> dict[str, Any]:
    """The answer's JSON object, or {} for anything else (an HTML page, a list, nothing)."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def json_rows(response: Any) -> list[dict[str, Any]]:
    """The objects of the answer's JSON array, or [] for anything else."""
    try:
        body = response.json()
    except ValueError:
        return []
    return [row for row in body if isinstance(row, dict)] if isinstance(body, list) else []
