"""What the update server's two parts share: an HTTP answer as the server sends it, JSON errors,
and the health of the store's writes (after a failure the next write waits, and only a change
of state is logged)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("gestan_release.updates.server")

MAX_BACKOFF = 300.0  # seconds between two attempts to write a store that cannot be written
JSON = (b"content-type", b"application/json")
NO_STORE = (b"cache-control", b"no-store")


@dataclass(frozen=True)
class Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


def error(status: int, message: str, extra: Iterable[tuple[bytes, bytes]] = ()) -> Answer:
    body = json.dumps({"error": message}).encode()
    return Answer(status, [JSON, NO_STORE, *extra], body)


NOT_FOUND = error(404, "not found")
READ = b"GET, HEAD"
ADMIN = b"PUT, PATCH"


def not_allowed(allow: bytes) -> Answer:
    return error(405, "method not allowed", [(b"allow", allow)])


class StoreHealth:
    """Whether the store can be written: after a failure the next attempt waits (doubling, at most
    `MAX_BACKOFF`), and only a change of state is logged — one line, not a traceback per request."""

    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self.failures = 0
        self.problem: str | None = None
        self.next_attempt = 0.0

    def due(self) -> bool:
        return self.clock() >= self.next_attempt

    def failed(self, what: str, exc: BaseException) -> None:
        problem = f"{type(exc).__name__}: {getattr(exc, 'strerror', None) or exc}"
        self.failures += 1
        wait = min(MAX_BACKOFF, 2.0 ** (self.failures - 1))
        self.next_attempt = self.clock() + wait
        if problem != self.problem:
            log.error(
                "the update store cannot be written (%s while %s); serving the signed manifests "
                "as they are, trying again with a growing delay (at most %.0f s)",
                problem,
                what,
                MAX_BACKOFF,
            )
        self.problem = problem

    def ok(self) -> None:
        if self.problem is not None:
            log.warning("the update store can be written again (%d failed attempts)", self.failures)
        self.failures, self.problem, self.next_attempt = 0, None, 0.0
