"""The update-check server: a plain ASGI app (every desktop install asks it, so the hot path is
a few dictionary look-ups) served by uvicorn.

Answers are cached: per (channel, platform, version) the releases an install could be offered are
worked out once (`_plan`), and per (channel, platform, version, target) the signed answer body is
built once. A request then costs a query-string split, at most a hash per staged release, and a
dictionary look-up. Every change to the store (this server's admin API, or a local publisher
writing the same directory, noticed within a second) drops the caches. The admin API (PUT,
PATCH) is `updates.admin`; the pieces of an answer both use are `updates.answers`; the query and
the choice it leads to are `updates.choice`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from gestan_release.core.validation import excerpt
from gestan_release.history.versions import Version
from gestan_release.updates import UpdatesError
from gestan_release.updates.admin import MAX_BODY, AdminApi
from gestan_release.updates.answers import (
    ADMIN,
    JSON,
    NO_STORE,
    NOT_FOUND,
    READ,
    Answer,
    StoreHealth,
    error,
    not_allowed,
)
from gestan_release.updates.choice import (
    BadQuery,
    Candidate,
    Choice,
    candidates_for,
    check_answer,
    in_rollout,
    is_critical_jump,
    parse_check,
)
from gestan_release.updates.limits import Limits, uvicorn_options
from gestan_release.updates.manifest import (
    CHANNEL_RE,
    ManifestError,
    canonical,
    check_channel,
    parse_time,
    parse_version,
)
from gestan_release.updates.store import SignedManifest, Store

log = logging.getLogger("gestan_release.updates.server")

MANIFEST_CACHE_CONTROL = b"public, max-age=60, must-revalidate"
_CACHE_LIMIT = 100_000


@dataclass(frozen=True)
class _Step:
    """One release above the install's version that it may reach, highest first."""

    candidate: Candidate
    staged: bool  # decided per install (partial rollout, not critical)
    version_text: str


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
        self._configured = {check_channel(c) for c in channels}
        self.poll_interval = poll_interval
        self.max_body = max_body
        self.clock = clock
        self.health = StoreHealth(clock)
        self.admin = AdminApi(
            store,
            token,
            health=self.health,
            known=lambda: self._known,
            changed=self._reload,
            max_body=max_body,
        )
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
        self._answers: dict[tuple[str, str, str, str | None], Answer] = {}
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
                    answer = not_allowed(READ)
            elif path.startswith("/v1/channels/"):
                answer = await self._channels(scope, receive, method, path)
            elif path == "/healthz":
                ok = method in ("GET", "HEAD")
                answer = Answer(200, [NO_STORE], b"ok") if ok else not_allowed(READ)
            else:
                answer = NOT_FOUND
        except Exception as exc:  # a bug: one line per kind of failure, never a flood
            answer = self._bug(scope, exc)
        headers = answer.headers
        if answer.status not in (204, 304):
            headers = [*headers, (b"content-length", b"%d" % len(answer.body))]
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else answer.body})

    def _bug(self, scope: dict, exc: Exception) -> Answer:
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
        return error(500, "internal error")

    # -- GET /v1/check -----------------------------------------------------------------------------
    def check(self, query_string: bytes) -> Answer:
        try:
            channel, platform, version_text, install_id, interactive = parse_check(query_string)
        except BadQuery as exc:
            return error(400, str(exc))
        if channel not in self._known:
            return error(400, f"unknown channel {excerpt(channel)}")
        plan_key = (channel, platform, version_text)
        plan = self._plans.get(plan_key)
        if plan is None:
            try:
                current = parse_version(version_text)
            except ManifestError as exc:
                return error(400, str(exc))
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
    ) -> Answer:
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
            return Answer(204, [NO_STORE, (b"x-gestan-statement", data), signature], b"")
        return Answer(200, [JSON, NO_STORE, signature], data)

    # -- /v1/channels/… ----------------------------------------------------------------------------
    async def _channels(self, scope: dict, receive: Any, method: str, path: str) -> Answer:
        parts = path[len("/v1/channels/") :].split("/")
        if len(parts) == 2 and parts[1] in ("manifest.json", "manifest.json.sig"):
            if method not in ("GET", "HEAD"):
                return not_allowed(READ)
            return self._manifest(scope, parts[0], parts[1].endswith(".sig"))
        if len(parts) == 3 and parts[1] == "releases":
            if method not in ("PUT", "PATCH"):
                return not_allowed(ADMIN)
            return await self.admin.answer(scope, receive, method, parts[0], parts[2])
        return NOT_FOUND

    def _manifest(self, scope: dict, channel: str, signature: bool) -> Answer:
        if not CHANNEL_RE.match(channel):
            return error(400, f"channel {excerpt(channel)} is not valid")
        answers = self._manifest_answers.get(channel)
        if answers is None:
            return error(404, f"nothing published on channel {excerpt(channel)}")
        full, sig, etag = answers
        if signature:
            return sig
        for name, value in scope["headers"]:
            if name == b"if-none-match" and _etag_matches(value, etag):
                return Answer(
                    304, [(b"etag", etag), (b"cache-control", MANIFEST_CACHE_CONTROL)], b""
                )
        return full

    @staticmethod
    def _manifest_answer(signed: SignedManifest) -> tuple[Answer, Answer, bytes]:
        etag = signed.etag.encode()
        common = [(b"etag", etag), (b"cache-control", MANIFEST_CACHE_CONTROL)]
        full = Answer(200, [JSON, *common], signed.body)
        sig = Answer(200, [(b"content-type", b"text/plain"), *common], signed.signature.encode())
        return full, sig, etag


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
