"""Shared pieces of the HTTP fakes of X and Vanilla: the published OpenAPI documents (loaded from
`tests/contracts`, copied unchanged with their sources), request/response validation with
openapi-core, and a small threaded HTTP server on loopback that scripted answers can override.

Every request a fake receives is validated against the OpenAPI document; a mismatch is recorded in
`server.validation_errors` (and answered 400, as a strict server would). The fixtures that start a
fake assert at teardown that nothing was recorded, so a request that does not match the contract
fails the test. The fakes' own successful answers are validated too, so the fakes stay faithful.
"""

from __future__ import annotations

import abc
import contextlib
import functools
import json
import re
import select
import socket
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from openapi_core import Config, OpenAPI
from openapi_core.testing import MockRequest, MockResponse

# The documents are published contracts: skip openapi-spec-validator's check of the whole
# document (~4 s for X's) and validate the traffic only.
_CONFIG = Config(spec_validator_cls=None)

X_SPEC_HOST = "https://api.x.com"
VANILLA_SPEC_HOST = "https://forum.vanilla.test"

# The Vanilla operations the forum channel uses: (path in the assembled document, fragment file).
VANILLA_PATHS = {
    "/discussions": "vanilla/openapi/discussions.yml",
    "/discussions/{id}": "vanilla/openapi/discussions.yml",
    "/discussions/{id}/edit": "vanilla/openapi/discussions.yml",
    "/comments": "vanilla/openapi/comments.yml",
    "/comments/{id}": "vanilla/openapi/comments.yml",
    "/comments/{id}/edit": "vanilla/openapi/comments.yml",
    "/categories": "vanilla/openapi/categories.yml",
    "/users/me": "dashboard/openapi/users.yml",
    # The intake (tickets sync) reads tags and reporters.
    "/tags": "vanilla/openapi/tags.yml",
    "/users": "dashboard/openapi/users.yml",
    "/users/{id}": "dashboard/openapi/users.yml",
}


@functools.lru_cache(maxsize=4)
def x_openapi(contracts: Path) -> OpenAPI:
    """The X API v2 document, `contracts/x-api-v2/openapi.json`, as published."""
    data = json.loads((contracts / "x-api-v2" / "openapi.json").read_text(encoding="utf-8"))
    return OpenAPI.from_dict(data, config=_CONFIG)


def _pointer(path: str) -> str:
    return path.replace("~", "~0").replace("/", "~1")


@functools.lru_cache(maxsize=4)
def vanilla_openapi(contracts: Path) -> OpenAPI:
    """Vanilla's fragments have no `info` and are split over files; this assembles a minimal
    OpenAPI 3 document whose paths `$ref` the real fragments (relative refs resolve against the
    kept folder layout: base URI = `vanilla-openapi/applications/`)."""
    root = contracts / "vanilla-openapi" / "applications"
    document = {
        "openapi": "3.0.2",
        "info": {
            "title": "Vanilla API v2 (assembled from the published fragments)",
            "version": "2",
        },
        "servers": [{"url": f"{VANILLA_SPEC_HOST}/api/v2"}],
        "paths": {
            path: {"$ref": f"{fragment}#/paths/{_pointer(path)}"}
            for path, fragment in VANILLA_PATHS.items()
        },
    }
    return OpenAPI.from_dict(document, base_uri=(root / "assembled.json").as_uri(), config=_CONFIG)


def describe(exc: Exception) -> str:
    """An openapi-core error with its schema errors (they hide in __cause__)."""
    parts = [f"{type(exc).__name__}: {str(exc)[:300]}"]
    cause = exc.__cause__
    while cause is not None:
        for err in getattr(cause, "schema_errors", ()) or ():
            parts.append(f"  - {str(getattr(err, 'message', err))[:300]}")
        if not getattr(cause, "schema_errors", None):
            parts.append(f"  caused by {type(cause).__name__}: {str(cause)[:300]}")
        cause = cause.__cause__
    return "\n".join(parts)


# -- requests, replies, scripts --------------------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]  # lower-case names
    body: bytes
    raw_target: str  # path?query as received

    @property
    def args(self) -> dict[str, str]:
        return dict(self.query)

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip()


@dataclass
class Reply:
    status: int
    body: Any = None  # JSON-able; bytes are sent as is
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"

    def encoded(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        return json.dumps(self.body).encode("utf-8")


@dataclass
class Scripted:
    """A one-shot answer for the next request matching `method` and `path` (a regex on the path).

    `reply` is sent instead of the normal behaviour; with `apply=True` the request is handled
    normally (e.g. the post is created) and `reply`, if any, replaces the answer. `hang` never
    answers: the server holds the request until the client gives up (its timeout) and hangs up,
    so the client times out whatever the machine's load, with no delay to race. `respond` builds
    the reply from the request instead (a hostile peer that echoes what it was sent)."""

    method: str
    path: str
    reply: Reply | None = None
    hang: bool = False
    apply: bool = False
    respond: Callable[[Request], Reply] | None = None


class FakeHTTPServer(abc.ABC):
    """A threaded HTTP server on 127.0.0.1 with OpenAPI validation and scripted answers.

    Subclasses implement `dispatch(request) -> Reply` and may list paths that are not in the
    OpenAPI document (`unvalidated`, validated by hand in the subclass)."""

    spec_host = "http://spec.invalid"
    path_prefix = ""
    unvalidated: tuple[str, ...] = ()
    # The fake's own 200/201 answers are checked too; a benchmark may turn that off (requests are
    # always validated) so that it measures the client rather than openapi-core.
    validate_responses = True

    def __init__(self, openapi: OpenAPI, clock: Callable[[], float] = time.time) -> None:
        self.openapi = openapi
        self.clock = clock
        self.requests: list[Request] = []
        self.validation_errors: list[str] = []
        self.scripts: list[Scripted] = []
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # lifecycle
    def start(self) -> FakeHTTPServer:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: without TCP_NODELAY, Nagle's algorithm and
            # the client's delayed ACK hold every answer back ~40 ms.
            disable_nagle_algorithm = True

            def _any(self) -> None:
                fake._serve(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeHTTPServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # scripting
    def script(self, *scripts: Scripted) -> None:
        with self._lock:
            self.scripts.extend(scripts)

    def _take_script(self, request: Request) -> Scripted | None:
        with self._lock:
            for i, script in enumerate(self.scripts):
                if script.method.upper() == request.method and re.fullmatch(
                    script.path, request.path
                ):
                    return self.scripts.pop(i)
        return None

    def calls(self, method: str, path_regex: str) -> list[Request]:
        return [r for r in self.requests if r.method == method and re.fullmatch(path_regex, r.path)]

    # handling
    @abc.abstractmethod
    def dispatch(self, request: Request) -> Reply:
        """The fake service's answer to a valid request (each fake implements its routes)."""

    def _mock_request(self, request: Request) -> MockRequest:
        return MockRequest(
            self.spec_host,
            request.method,
            request.path,
            args=request.query,
            headers=request.headers,
            data=request.body or None,
            content_type=request.content_type or "application/json",
        )

    def _validate_request(self, request: Request) -> list[str]:
        if any(re.fullmatch(p, request.path) for p in self.unvalidated):
            return []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Unsupported scheme type" for oauth2 security
            errors = list(self.openapi.iter_request_errors(self._mock_request(request)))
        return [f"{request.method} {request.raw_target}: {describe(e)}" for e in errors]

    def _validate_response(self, request: Request, reply: Reply) -> list[str]:
        if any(re.fullmatch(p, request.path) for p in self.unvalidated):
            return []
        response = MockResponse(
            reply.encoded(), reply.status, reply.headers, content_type=reply.content_type
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            errors = list(self.openapi.iter_response_errors(self._mock_request(request), response))
        return [
            f"fake's answer {reply.status} to {request.method} {request.raw_target}: {describe(e)}"
            for e in errors
        ]

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        split = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        request = Request(
            method=handler.command.upper(),
            path=split.path,
            query=parse_qsl(split.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in handler.headers.items()},
            body=body,
            raw_target=handler.path,
        )
        with self._lock:
            self.requests.append(request)
        errors = self._validate_request(request)
        script = self._take_script(request)
        if errors:
            with self._lock:
                self.validation_errors.extend(errors)
            reply = Reply(400, {"message": "request does not match the OpenAPI document"})
        elif script is not None and script.respond is not None:
            reply = script.respond(request)
        elif script is not None and not script.apply:
            reply = script.reply or Reply(500, {"message": "scripted"})
        else:
            with self._lock:
                reply = self.dispatch(request)
            # 200/201 are in the documents; Vanilla's 202 (pre-moderation) is not (CHANNELS.md).
            if (
                reply.status in (200, 201)
                and self.validate_responses
                and not (script and script.reply)
            ):
                problems = self._validate_response(request, reply)
                with self._lock:
                    self.validation_errors.extend(problems)
            if script is not None and script.reply is not None:
                reply = script.reply
        if script is not None and script.hang:
            self._wait_for_hangup(handler)
            handler.close_connection = True
            return
        data = reply.encoded()
        try:
            handler.send_response(reply.status)
            handler.send_header("Content-Type", reply.content_type)
            handler.send_header("Content-Length", str(len(data)))
            for name, value in reply.headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout)

    def _wait_for_hangup(self, handler: BaseHTTPRequestHandler) -> None:
        """Until the client closes the connection (or sends anything more), or the fake stops."""
        sock = handler.connection
        while not self._stopping.is_set():
            readable, _, _ = select.select([sock], [], [], 0.05)
            if readable:
                with contextlib.suppress(OSError):
                    sock.recv(1, socket.MSG_PEEK)
                return


class FakeClock:
    """Time shared by a fake server and the sender under test: `sleep` advances it instantly."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
