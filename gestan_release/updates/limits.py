"""Connection limits of the update server: a few hundred idle sockets must not starve real installs.

uvicorn alone has no timeout for a request head that never comes (a socket opened and left idle,
or headers sent a byte every few seconds — "slowloris") and no cap on open connections: under a
low descriptor limit the server stops accepting and real clients wait. `guarded(protocol, limits)`
wraps uvicorn's HTTP protocol (httptools or h11) with:

- `request_timeout` (10 s): from the moment a connection opens, or an answer completes on a
  kept-alive one, to the end of the next request head; past it the connection is closed, whatever
  trickle of bytes it received;
- `max_header_bytes` (16 KiB): a request head larger than that is answered `431` and closed (h11 is
  also given it as `h11_max_incomplete_event_size`);
- `max_connections` (1,000, and never more than the descriptor limit allows): when a new connection
  would pass it, the connections that have waited longest without a request in progress are closed
  first, so a client that asks something is served, and accepting never fails for lack of
  descriptors;
- `keep_alive` (5 s, uvicorn's `timeout_keep_alive`): an idle kept-alive connection is closed.

uvicorn's `limit_concurrency` is set just above `max_connections`: should every connection be busy
at once, a new request gets a quick `503` instead of a wait.
"""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

_DESCRIPTORS_KEPT = 64  # for the listening socket, the store's files, logs, the executor


@dataclass(frozen=True)
class Limits:
    max_connections: int = 1000
    request_timeout: float = 10.0
    keep_alive: float = 5.0
    max_header_bytes: int = 16 * 1024

    def connections(self) -> int:
        """`max_connections`, lowered to what the process's descriptor limit can hold."""
        try:
            import resource

            soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        except (ImportError, OSError, ValueError):
            return self.max_connections
        if soft == resource.RLIM_INFINITY:
            return self.max_connections
        return max(8, min(self.max_connections, soft - _DESCRIPTORS_KEPT))


_TOO_LARGE = json.dumps({"error": "request header fields too large"}).encode()
_431 = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_TOO_LARGE), _TOO_LARGE)
)


class _Waiting:
    """The connections of one server without a request in progress, oldest first, with the time
    they started waiting; one timer sweeps those past `timeout` (no timer per request)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self.loop = loop
        self.timeout = timeout
        self.interval = min(1.0, timeout / 2)
        self.since: OrderedDict[Any, float] = OrderedDict()
        self.timer: asyncio.TimerHandle | None = None

    def add(self, conn: Any) -> None:
        self.since[conn] = self.loop.time()
        self.since.move_to_end(conn)
        if self.timer is None:
            self.timer = self.loop.call_later(self.interval, self._sweep)

    def _sweep(self) -> None:
        self.timer = None
        deadline = self.loop.time() - self.timeout
        while self.since:
            conn, since = next(iter(self.since.items()))
            if since > deadline:
                break
            conn._drop()
        if self.since:
            self.timer = self.loop.call_later(self.interval, self._sweep)


def guarded(base: type[asyncio.Protocol], limits: Limits) -> type[asyncio.Protocol]:
    """A subclass of uvicorn's HTTP protocol `base` that enforces `limits` (module docstring)."""
    max_connections = limits.connections()
    timeout = limits.request_timeout
    max_head = limits.max_header_bytes

    class Guarded(base):  # type: ignore[valid-type, misc]
        _head = 0

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            state = self.server_state
            waiting = getattr(state, "gestan_waiting", None)
            if waiting is None:
                waiting = state.gestan_waiting = _Waiting(self.loop, timeout)
            self._waiting = waiting
            waiting.add(self)
            excess = len(self.connections) - max_connections
            while excess > 0:
                oldest = next(iter(waiting.since))
                if oldest is self:
                    break
                oldest._drop()
                excess -= 1

        def _busy(self) -> bool:
            cycle = self.cycle
            return cycle is not None and not cycle.response_complete

        def _drop(self) -> None:
            """Close a connection that has no request in progress."""
            self._waiting.since.pop(self, None)
            if not self._busy() and not self.transport.is_closing():
                self._close()

        def _close(self) -> None:
            self.transport.close()
            # Counted out now, not when the loop gets to `connection_lost`: uvicorn's concurrency
            # limit must see only the connections that are still open.
            self.connections.discard(self)

        def data_received(self, data: bytes) -> None:
            since = self._waiting.since
            waiting = self in since
            if waiting:
                self._head += len(data)
            super().data_received(data)
            if not waiting:
                return
            if self._busy():
                since.pop(self, None)  # a request started: no more head to wait for
            elif self._head > max_head and not self.transport.is_closing():
                since.pop(self, None)
                self.transport.write(_431)
                self._close()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if self.transport.is_closing() or self._busy():
                return  # closing, or a pipelined request already started
            self._head = 0
            self._waiting.add(self)

        def connection_lost(self, exc: Exception | None) -> None:
            self._waiting.since.pop(self, None)
            super().connection_lost(exc)

    Guarded.__name__ = f"Guarded{base.__name__}"
    Guarded.__qualname__ = Guarded.__name__
    return Guarded


def protocol_class(http: str | type[asyncio.Protocol] = "auto") -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol class for `http` ("auto", "h11", "httptools" or a class)."""
    if not isinstance(http, str):
        return http
    from uvicorn.config import HTTP_PROTOCOLS
    from uvicorn.importer import import_from_string

    return import_from_string(HTTP_PROTOCOLS.get(http, http))


def uvicorn_options(limits: Limits, http: str | type[asyncio.Protocol] = "auto") -> dict[str, Any]:
    """The uvicorn settings that enforce `limits`."""
    return {
        "http": guarded(protocol_class(http), limits),
        "timeout_keep_alive": limits.keep_alive,
        # 503 only when more connections than the cap are busy at once (none could be closed).
        "limit_concurrency": limits.connections() + 1,
        "h11_max_incomplete_event_size": limits.max_header_bytes,
    }
