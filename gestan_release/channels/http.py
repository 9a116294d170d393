"""What the HTTP channels (X, the forum) share: one `httpx.Client` with our User-Agent, the retry
policy of `core.retry`, and a context manager. Each channel says how to judge an answer
(`_judge`): what is done, what to wait for, what may pass, what is refused (scrubbed)."""

from __future__ import annotations

import time
from abc import abstractmethod
from collections.abc import Callable
from typing import Any

import httpx

from gestan_release.channels.base import Closing, Receipt
from gestan_release.core.retry import DONE, Backoff, HttpRetry, RateLimit, Verdict
from gestan_release.core.retry import log as retry_log


class HttpChannel(Closing):
    """A channel's HTTP client: requests with retries, waits and lookups (see `retry`)."""

    peer = "the peer"

    def __init__(
        self,
        base_url: str,
        *,
        headers: dict[str, str] | None = None,
        auth: httpx.Auth | None = None,
        timeout: float,
        transport: httpx.BaseTransport | None,
        backoff: Backoff,
        rate: RateLimit,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        logger: Any = None,
    ) -> None:
        self._clock = clock
        self._retry = HttpRetry(self.peer, backoff, rate, sleep, log=logger or retry_log)
        self._client = httpx.Client(
            base_url=base_url,
            auth=auth,
            timeout=timeout,
            transport=transport,
            headers={"User-Agent": "gestan-release", **(headers or {})},
        )

    def _request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        json: Any = None,
        params: dict[str, str] | None = None,
        lookup: Callable[[], Receipt | None] | None = None,
        accept: tuple[int, ...] = (),
    ) -> Any:
        """The answer (2xx, or a status in `accept`), or the receipt `lookup` found after a lost
        `POST` answer; a `DeliveryError` when refused or out of tries."""

        def judge(response: httpx.Response, agains: int) -> Verdict:
            if 200 <= response.status_code < 300 or response.status_code in accept:
                return DONE
            return self._judge(response, agains, what)

        return self._retry.request(
            lambda: self._client.request(method, path, json=json, params=params),
            what=what,
            judge=judge,
            post=method == "POST",
            lookup=lookup,
        )

    @abstractmethod
    def _judge(self, response: httpx.Response, agains: int, what: str) -> Verdict:
        """A non-2xx answer: wait, try again, or raise the peer's refusal."""

    def close(self) -> None:
        self._client.close()
