"""The update server's admin API: `PUT` (publish) and `PATCH` (rollout, yank) of
`/v1/channels/{channel}/releases/{version}`, behind the Bearer token `UPDATES_TOKEN`.

Apart from the check server because it is another job: slow, rare, authenticated writes (a
streamed body cap, a JSON depth limit, the store written in a thread), where `/v1/check` is a few
dictionary look-ups. Every refusal is a one-line JSON error.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import Callable
from typing import Any

from gestan_release.core.validation import excerpt, json_too_deep
from gestan_release.updates import UpdatesError
from gestan_release.updates.answers import JSON, NO_STORE, Answer, StoreHealth, error
from gestan_release.updates.manifest import ManifestError, check_channel, parse_version
from gestan_release.updates.store import ReleaseConflict, ReleaseNotFound, Store

MAX_BODY = 64 * 1024
MAXJSON_DEPTH = 8  # a release entry nests three levels deep


class AdminApi:
    """Changes to the store through HTTP; `changed()` is called after each one (the check
    server drops its caches), `known()` gives the channels that may be written."""

    def __init__(
        self,
        store: Store,
        token: str | None,
        *,
        health: StoreHealth,
        known: Callable[[], set[str]],
        changed: Callable[[], None],
        max_body: int = MAX_BODY,
    ) -> None:
        self.store = store
        self._token = token.encode() if token else None
        self.health = health
        self._known = known
        self._changed = changed
        self.max_body = max_body

    def _authorize(self, scope: dict) -> Answer | None:
        given = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                given = value
        if not given or not given.lower().startswith(b"bearer "):
            return error(401, "a Bearer token is required", [(b"www-authenticate", b"Bearer")])
        if self._token is None:
            return error(403, "the admin API is disabled: the server has no UPDATES_TOKEN")
        if not hmac.compare_digest(given[7:].strip(), self._token):
            return error(403, "wrong token")
        return None

    async def answer(
        self, scope: dict, receive: Any, method: str, channel: str, version: str
    ) -> Answer:
        refused = self._authorize(scope)
        if refused is not None:
            return refused
        try:
            check_channel(channel)
            parse_version(version)
        except ManifestError as exc:
            return error(400, str(exc))
        known = self._known()
        if channel not in known:
            return error(
                400,
                f"unknown channel {excerpt(channel)}; configured: {', '.join(sorted(known))}",
            )
        try:
            body = await self._read_body(scope, receive)
        except _TooLarge:
            return error(413, f"request body over {self.max_body} bytes")
        if json_too_deep(body, MAXJSON_DEPTH):
            return error(400, f"the body nests deeper than {MAXJSON_DEPTH} levels")
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):
            return error(400, "the body must be JSON")
        if not isinstance(payload, dict):
            return error(400, "the body must be a JSON object")
        try:
            if method == "PUT":
                change = await asyncio.to_thread(self.store.publish, channel, payload, version)
                status = 201 if change.changed else 200
            else:
                change = await asyncio.to_thread(self._patch, channel, version, payload)
                status = 200
        except ReleaseConflict as exc:
            return error(409, str(exc))
        except ReleaseNotFound as exc:
            return error(404, str(exc))
        except ManifestError as exc:
            return error(400, str(exc))
        except (OSError, UpdatesError) as exc:  # a full disk, a read-only or corrupt store
            self.health.failed(f"{method} {channel}/{version}", exc)
            return error(503, "the update store cannot be written now; try again later")
        self.health.ok()
        self._changed()
        return Answer(status, [JSON, NO_STORE], json.dumps(change.as_json()).encode())

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
