"""The update-check server: a plain ASGI app (every desktop install asks it, so the hot path is
a few dictionary look-ups) served by uvicorn.

Answers are cached: per (channel, platform, version) the releases an install could be offered are
worked out once (`_plan`), and per (channel, platform, version, target) the signed answer body is
built once. A request then costs a query-string split, at most a hash per staged release, and a
dictionary look-up. Every change to the store (this server's admin API, or a local publisher
writing the same directory, noticed within a second) drops the caches.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from gestan_release.updates import UpdatesError
from gestan_release.updates.limits import Limits, uvicorn_options
from gestan_release.updates.manifest import (
    CHANNEL_RE,
    INSTALL_ID_RE,
    PLATFORM_RE,
    Candidate,
    Choice,
    ManifestError,
    candidates_for,
    canonical,
    check_answer,
    check_channel,
    in_rollout,
    is_critical_jump,
    parse_time,
    parse_version,
)
from gestan_release.updates.store import ReleaseConflict, ReleaseNotFound, SignedManifest, Store
from gestan_release.validation import excerpt, json_too_deep
from gestan_release.versions import Version

log = logging.getLogger("gestan_release.updates.server")

MAX_BODY = 64 * 1024
MAX_JSON_DEPTH = 8  # a release entry nests three levels deep
MAX_BACKOFF = 300.0  # seconds between two attempts to write a store that cannot be written
MANIFEST_CACHE_CONTROL = b"public, max-age=60, must-revalidate"
_CACHE_LIMIT = 100_000
_JSON = (b"content-type", b"application/json")
_NO_STORE = (b"cache-control", b"no-store")


@dataclass(frozen=True)
class _Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


@dataclass(frozen=True)
class _Step:
    """One release above the install's version that it may reach, highest first."""

    candidate: Candidate
    staged: bool  # decided per install (partial rollout, not critical)
    version_text: str


def _error(status: int, message: str, extra: Iterable[tuple[bytes, bytes]] = ()) -> _Answer:
    body = json.dumps({"error": message}).encode()
    return _Answer(status, [_JSON, _NO_STORE, *extra], body)


_NOT_FOUND = _error(404, "not found")
_READ = b"GET, HEAD"
_ADMIN = b"PUT, PATCH"


def _not_allowed(allow: bytes) -> _Answer:
    return _error(405, "method not allowed", [(b"allow", allow)])


class _StoreHealth:
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


class BadQuery(ValueError):
    pass


class UpdateServer:
    """The ASGI application of `gestan-release serve-updates`."""

    def __init__(
        self,
        store: Store,
        *,
        token: str | None,
        channels: Iterable[str] = (),
        poll_interval: float = 1.0,
        max_body: int = MAX_BODY,
        clock: Any = time.monotonic,
    ) -> None:
        self.store = store
        self._token = token.encode() if token else None
        self._configured = {check_channel(c) for c in channels}
        self.poll_interval = poll_interval
        self.max_body = max_body
        self.clock = clock
        self.health = _StoreHealth(clock)
        self._next_poll = 0.0
        self._fingerprint: Any = None
        self._refreshing = False
        self.refresh_future: Any = None  # the re-signing in progress, if any (tests await it)
        self._bugs_logged: set[tuple[str, str]] = set()
        self._read_problem: str | None = None
        self._reload()

    # -- state -------------------------------------------------------------------------------------
    def _reload(self) -> None:
        self._fingerprint = self.store.fingerprint()
        signed = self.store.load_all()
        self._signed: dict[str, SignedManifest] = signed
        self._manifests = {c: s.manifest for c, s in signed.items()}
        self._known = self._configured | set(signed)
        self._candidates: dict[tuple[str, str], list[Candidate]] = {}
        self._plans: dict[tuple[str, str, str], tuple[Version, list[_Step]]] = {}
        self._answers: dict[tuple[str, str, str, str | None], _Answer] = {}
        self._manifest_answers = {c: self._manifest_answer(s) for c, s in signed.items()}
        expiries = [parse_time(m["expires"]) for m in self._manifests.values() if m.get("expires")]
        self._refresh_due = min(expiries) - self.store.ttl / 2 if expiries else None

    def _maybe_reload(self) -> None:
        now = self.clock()
        if now < self._next_poll:
            return
        self._next_poll = now + self.poll_interval
        try:
            if self.store.fingerprint() != self._fingerprint:
                self._reload()
            if self._read_problem is not None:
                log.warning("update store read again")
                self._read_problem = None
        except (UpdatesError, OSError) as exc:  # keep serving what we had; say why, once
            problem = str(exc)
            if problem != self._read_problem:
                log.error("update store not reloaded (serving what was loaded): %s", problem)
            self._read_problem = problem
        if (
            self._refresh_due is not None
            and self.store.clock() >= self._refresh_due
            and not self._refreshing
            and self.health.due()
        ):
            self._refreshing = True
            self.refresh_future = asyncio.get_running_loop().run_in_executor(None, self._refresh)

    def _refresh(self) -> None:
        try:
            self.store.refresh()
        except (OSError, UpdatesError) as exc:  # expected: a full disk, a read-only store
            self.health.failed("re-signing the expiring manifests", exc)
        except Exception as exc:  # a bug: its traceback once, then backing off like the others
            if self.health.problem is None:
                log.exception("could not re-sign the expiring manifests")
            self.health.failed("re-signing the expiring manifests", exc)
        else:
            self.health.ok()
        finally:
            self._refreshing = False
            self._next_poll = 0.0

    # -- ASGI --------------------------------------------------------------------------------------
    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await _lifespan(receive, send)
            return
        if kind != "http":
            return
        method = scope["method"]
        try:
            self._maybe_reload()
            path = scope["path"]
            if path == "/v1/check":
                if method == "GET" or method == "HEAD":
                    answer = self.check(scope["query_string"])
                else:
                    answer = _not_allowed(_READ)
            elif path.startswith("/v1/channels/"):
                answer = await self._channels(scope, receive, method, path)
            elif path == "/healthz":
                ok = method in ("GET", "HEAD")
                answer = _Answer(200, [_NO_STORE], b"ok") if ok else _not_allowed(_READ)
            else:
                answer = _NOT_FOUND
        except Exception as exc:  # a bug: one line per kind of failure, never a flood
            answer = self._bug(scope, exc)
        headers = answer.headers
        if answer.status not in (204, 304):
            headers = [*headers, (b"content-length", b"%d" % len(answer.body))]
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else answer.body})

    def _bug(self, scope: dict, exc: Exception) -> _Answer:
        where = exc.__traceback__
        while where is not None and where.tb_next is not None:
            where = where.tb_next
        site = f"{where.tb_frame.f_code.co_filename}:{where.tb_lineno}" if where else "?"
        key = (type(exc).__name__, site)
        if key not in self._bugs_logged and len(self._bugs_logged) < 100:
            self._bugs_logged.add(key)
            log.error(
                "internal error answering %s %s (logged once per kind): %s",
                scope.get("method"),
                excerpt(scope.get("path", ""), 80),
                excerpt(f"{type(exc).__name__}: {exc}", 300),
                exc_info=exc,
            )
        return _error(500, "internal error")

    # -- GET /v1/check -----------------------------------------------------------------------------
    def check(self, query_string: bytes) -> _Answer:
        try:
            channel, platform, version_text, install_id, interactive = _parse_check(query_string)
        except BadQuery as exc:
            return _error(400, str(exc))
        if channel not in self._known:
            return _error(400, f"unknown channel {excerpt(channel)}")
        plan_key = (channel, platform, version_text)
        plan = self._plans.get(plan_key)
        if plan is None:
            try:
                current = parse_version(version_text)
            except ManifestError as exc:
                return _error(400, str(exc))
            plan = self._plan(channel, platform, current)
            if len(self._plans) > _CACHE_LIMIT:
                self._plans.clear()
            self._plans[plan_key] = plan
        target: _Step | None = None
        for step in plan[1]:
            if (
                not step.staged
                or interactive
                or in_rollout(install_id, step.version_text, step.candidate.rollout)
            ):
                target = step
                break
        answer_key = (channel, platform, version_text, target.version_text if target else None)
        answer = self._answers.get(answer_key)
        if answer is None:
            answer = self._check_answer(channel, platform, plan[0], target)
            if len(self._answers) > _CACHE_LIMIT:
                self._answers.clear()
            self._answers[answer_key] = answer
        return answer

    def _plan(self, channel: str, platform: str, current: Version) -> tuple[Version, list[_Step]]:
        key = (channel, platform)
        candidates = self._candidates.get(key)
        if candidates is None:
            candidates = self._candidates[key] = candidates_for(self._manifests, channel, platform)
        steps = []
        for c in candidates:
            if c.version <= current:
                break
            if c.rollout <= 0 or (c.min_version is not None and current < c.min_version):
                continue
            staged = c.rollout < 100 and not c.critical
            steps.append(_Step(c, staged, str(c.version)))
            if not staged:
                break  # everyone takes this one: nothing below it can be chosen
        return current, steps

    def _check_answer(
        self, channel: str, platform: str, current: Version, target: _Step | None
    ) -> _Answer:
        candidates = self._candidates[(channel, platform)]
        choice = None
        if target is not None:
            critical = is_critical_jump(candidates, current, target.candidate.version)
            choice = Choice(target.candidate, critical)
        body = check_answer(
            choice, manifests=self._manifests, channel=channel, platform=platform, current=current
        )
        data = canonical(body)
        signature = (b"x-gestan-signature", self.store.signer.sign(data).encode("ascii"))
        if body["version"] is None and not body["current_yanked"]:
            # Up to date: no body, but the signed statement rides in a header (ASCII only).
            return _Answer(204, [_NO_STORE, (b"x-gestan-statement", data), signature], b"")
        return _Answer(200, [_JSON, _NO_STORE, signature], data)

    # -- /v1/channels/… ----------------------------------------------------------------------------
    async def _channels(self, scope: dict, receive: Any, method: str, path: str) -> _Answer:
        parts = path[len("/v1/channels/") :].split("/")
        if len(parts) == 2 and parts[1] in ("manifest.json", "manifest.json.sig"):
            if method not in ("GET", "HEAD"):
                return _not_allowed(_READ)
            return self._manifest(scope, parts[0], parts[1].endswith(".sig"))
        if len(parts) == 3 and parts[1] == "releases":
            if method not in ("PUT", "PATCH"):
                return _not_allowed(_ADMIN)
            return await self._admin(scope, receive, method, parts[0], parts[2])
        return _NOT_FOUND

    def _manifest(self, scope: dict, channel: str, signature: bool) -> _Answer:
        if not CHANNEL_RE.match(channel):
            return _error(400, f"channel {excerpt(channel)} is not valid")
        answers = self._manifest_answers.get(channel)
        if answers is None:
            return _error(404, f"nothing published on channel {excerpt(channel)}")
        full, sig, etag = answers
        if signature:
            return sig
        for name, value in scope["headers"]:
            if name == b"if-none-match" and _etag_matches(value, etag):
                return _Answer(
                    304, [(b"etag", etag), (b"cache-control", MANIFEST_CACHE_CONTROL)], b""
                )
        return full

    @staticmethod
    def _manifest_answer(signed: SignedManifest) -> tuple[_Answer, _Answer, bytes]:
        etag = signed.etag.encode()
        common = [(b"etag", etag), (b"cache-control", MANIFEST_CACHE_CONTROL)]
        full = _Answer(200, [_JSON, *common], signed.body)
        sig = _Answer(200, [(b"content-type", b"text/plain"), *common], signed.signature.encode())
        return full, sig, etag

    # -- PUT / PATCH -------------------------------------------------------------------------------
    def _authorize(self, scope: dict) -> _Answer | None:
        given = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                given = value
        if not given or not given.lower().startswith(b"bearer "):
            return _error(401, "a Bearer token is required", [(b"www-authenticate", b"Bearer")])
        if self._token is None:
            return _error(403, "the admin API is disabled: the server has no UPDATES_TOKEN")
        if not hmac.compare_digest(given[7:].strip(), self._token):
            return _error(403, "wrong token")
        return None

    async def _admin(
        self, scope: dict, receive: Any, method: str, channel: str, version: str
    ) -> _Answer:
        refused = self._authorize(scope)
        if refused is not None:
            return refused
        try:
            check_channel(channel)
            parse_version(version)
        except ManifestError as exc:
            return _error(400, str(exc))
        if channel not in self._known:
            return _error(
                400,
                f"unknown channel {excerpt(channel)}; configured: {', '.join(sorted(self._known))}",
            )
        try:
            body = await self._read_body(scope, receive)
        except _TooLarge:
            return _error(413, f"request body over {self.max_body} bytes")
        if json_too_deep(body, MAX_JSON_DEPTH):
            return _error(400, f"the body nests deeper than {MAX_JSON_DEPTH} levels")
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):
            return _error(400, "the body must be JSON")
        if not isinstance(payload, dict):
            return _error(400, "the body must be a JSON object")
        try:
            if method == "PUT":
                change = await asyncio.to_thread(self.store.publish, channel, payload, version)
                status = 201 if change.changed else 200
            else:
                change = await asyncio.to_thread(self._patch, channel, version, payload)
                status = 200
        except ReleaseConflict as exc:
            return _error(409, str(exc))
        except ReleaseNotFound as exc:
            return _error(404, str(exc))
        except ManifestError as exc:
            return _error(400, str(exc))
        except (OSError, UpdatesError) as exc:  # a full disk, a read-only or corrupt store
            self.health.failed(f"{method} {channel}/{version}", exc)
            return _error(503, "the update store cannot be written now; try again later")
        self.health.ok()
        self._reload()
        return _Answer(status, [_JSON, _NO_STORE], json.dumps(change.as_json()).encode())

    def _patch(self, channel: str, version: str, payload: dict[str, Any]) -> Any:
        keys = set(payload)
        if keys == {"rollout"}:
            return self.store.set_rollout(channel, version, payload["rollout"])
        if keys == {"yanked", "reason"} and payload["yanked"] is True:
            return self.store.yank(channel, version, payload["reason"])
        if keys == {"yanked"} and payload["yanked"] is False:
            return self.store.unyank(channel, version)
        raise ManifestError(
            'PATCH takes {"rollout": 0-100}, {"yanked": true, "reason": "…"} or {"yanked": false}'
        )

    async def _read_body(self, scope: dict, receive: Any) -> bytes:
        for name, value in scope["headers"]:
            if name == b"content-length" and (not value.isdigit() or int(value) > self.max_body):
                raise _TooLarge
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _TooLarge
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)


class _TooLarge(Exception):
    pass


def _parse_check(query_string: bytes) -> tuple[str, str, str, str, bool]:
    """channel, platform, version, install_id, interactive from a `/v1/check` query string."""
    params: dict[str, str] = {}
    for pair in query_string.decode("latin-1").split("&"):
        if not pair:
            continue
        name, _, value = pair.partition("=")
        if "%" in value or "+" in value:
            value = unquote_plus(value)
        if name in params:
            raise BadQuery(f"parameter {excerpt(name)} given twice")
        params[name] = value
    try:
        channel = params.pop("channel")
        platform = params.pop("platform")
        version = params.pop("version")
        install_id = params.pop("install_id")
    except KeyError as exc:
        raise BadQuery(
            f"missing parameter {exc.args[0]!r}: /v1/check needs version, channel, platform "
            f"and install_id"
        ) from None
    interactive = params.pop("interactive", "0")
    if params:
        names = ", ".join(excerpt(n, 20) for n in sorted(params)[:5])
        raise BadQuery(f"unknown parameter(s) {names}")
    if not CHANNEL_RE.match(channel):
        raise BadQuery(f"channel {excerpt(channel)} is not valid")
    if not PLATFORM_RE.match(platform):
        raise BadQuery(f"platform {excerpt(platform)} is not valid")
    if not INSTALL_ID_RE.match(install_id):
        raise BadQuery("install_id must be 1–128 letters, digits, '.', '_', ':' or '-'")
    if interactive not in ("0", "1"):
        raise BadQuery("interactive must be 0 or 1")
    return channel, platform, version, install_id, interactive == "1"


def _etag_matches(header: bytes, etag: bytes) -> bool:
    for part in header.split(b","):
        tag = part.strip()
        if tag == b"*" or tag.removeprefix(b"W/") == etag:
            return True
    return False


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def uvicorn_config(
    app: UpdateServer, host: str, port: int, *, limits: Limits | None = None, **extra: Any
) -> Any:
    """uvicorn settings for the update server: one worker, no access log (installs' ids are not
    logged), httptools and uvloop when installed, and the connection limits of
    `gestan_release.updates.limits` (request-head timeout, header size cap, connection cap)."""
    import uvicorn

    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": "warning",
        "access_log": False,
        "server_header": False,
        "loop": "auto",
        "lifespan": "on",
        "backlog": 4096,
        **uvicorn_options(limits or Limits(), extra.pop("http", "auto")),
        **extra,
    }
    return uvicorn.Config(app, **options)


def serve(app: UpdateServer, host: str, port: int, limits: Limits | None = None) -> None:
    """Run the server until interrupted."""
    import uvicorn

    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.Server(uvicorn_config(app, host, port, limits=limits)).run()
