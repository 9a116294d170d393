"""What the release flows call to update the endpoint: `publisher_for(settings)`.

Two implementations of one small protocol: `HttpPublisher` talks to `serve-updates` (retrying on
5xx and timeouts, never on 4xx), `LocalPublisher` writes the embedded store that `serve-updates
--data` serves. Both are idempotent: publishing the same release again is a success.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

from gestan_release.core.scrub import remember, scrub
from gestan_release.errors import ConfigError, DeliveryError
from gestan_release.updates.manifest import check_channel, parse_version

if TYPE_CHECKING:
    import httpx

    from gestan_release.settings import Settings
    from gestan_release.updates.store import Store


class PublishError(DeliveryError):
    """The update endpoint refused a change, or could not be reached after retries."""


class PublishConflict(PublishError):
    """A different release is already published under this version (HTTP 409)."""


class Publisher(Protocol):
    def publish(self, channel: str, entry: dict[str, Any]) -> dict[str, Any]:
        """Publish a release entry; returns `{"channel", "serial", "changed", "release"}`."""
        ...

    def set_rollout(self, channel: str, version: str, percent: int) -> dict[str, Any]: ...

    def yank(self, channel: str, version: str, reason: str) -> dict[str, Any]: ...

    def manifest(self, channel: str) -> dict[str, Any]: ...


class LocalPublisher:
    """Writes the local store directly (the embedded default, `UPDATES_URL` unset)."""

    def __init__(self, store: Store, channels: tuple[str, ...] = ()) -> None:
        self.store = store
        self.channels = channels

    def publish(self, channel: str, entry: dict[str, Any]) -> dict[str, Any]:
        from gestan_release.updates.store import ReleaseConflict

        if self.channels and channel not in self.channels:
            raise PublishError(
                f"channel {channel!r} is not one of UPDATES_CHANNELS ({', '.join(self.channels)})",
                permanent=True,
            )
        try:
            return self.store.publish(channel, entry).as_json()
        except ReleaseConflict as exc:
            raise PublishConflict(str(exc), permanent=True) from None

    def set_rollout(self, channel: str, version: str, percent: int) -> dict[str, Any]:
        return self.store.set_rollout(channel, version, percent).as_json()

    def yank(self, channel: str, version: str, reason: str) -> dict[str, Any]:
        return self.store.yank(channel, version, reason).as_json()

    def manifest(self, channel: str) -> dict[str, Any]:
        from gestan_release.updates.manifest import empty_manifest

        signed = self.store.load(check_channel(channel))
        return signed.manifest if signed else empty_manifest(channel)


class HttpPublisher:
    """Talks to the admin API of an update server."""

    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        transport: httpx.BaseTransport | None = None,
        attempts: int = 4,
        backoff: float = 0.5,
        timeout: float = 10.0,
        sleep: Any = time.sleep,
    ) -> None:
        import httpx

        from gestan_release.core.retry import Backoff, HttpRetry

        self.base_url = base_url.rstrip("/")
        self._retry = HttpRetry(
            f"the update server {self.base_url}",
            backoff=Backoff(attempts, backoff, 30.0),
            sleep=sleep,
            error=PublishError,
            advice="it may be down: try again later, nothing was half-done",
        )
        headers = {"user-agent": "gestan-release"}
        remember(token)
        if token:
            headers["authorization"] = f"Bearer {token}"
        self._client = httpx.Client(
            base_url=self.base_url, headers=headers, transport=transport, timeout=timeout
        )

    def close(self) -> None:
        self._client.close()

    def __repr__(self) -> str:  # no token here
        return f"HttpPublisher({self.base_url!r})"

    def _release_path(self, channel: str, version: str) -> str:
        check_channel(channel)
        parse_version(version)
        return f"/v1/channels/{channel}/releases/{quote(version)}"

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        from gestan_release.core import retry

        what = f"{method} {path}"

        def judge(response: httpx.Response, agains: int) -> retry.Verdict:
            status = response.status_code
            if status < 400:
                return retry.DONE
            if status == 429:
                wait = retry.retry_after(response.headers, time.time)
                return retry.wait(60.0 if wait is None else wait, "rate limited")
            if status < 500:
                raise self._refusal(f"{method} {self.base_url}{path}", response)
            return retry.failed(f"answered HTTP {status}")

        response = self._retry.request(
            lambda: self._client.request(method, path, json=body), what=what, judge=judge
        )
        try:
            return response.json()
        except ValueError:
            raise PublishError(
                f"{method} {self.base_url}{path}: HTTP {response.status_code} but the answer is "
                "not JSON; is UPDATES_URL the update server?",
                permanent=True,
            ) from None

    @staticmethod
    def _refusal(what: str, response: httpx.Response) -> PublishError:
        # What the server says is scrubbed: a proxy or a server may quote our Authorization.
        try:
            body = response.json()
            detail = str(body.get("error", "")) if isinstance(body, dict) else ""
        except ValueError:
            detail = response.text
        detail = scrub(detail[:1000])[:200]
        status = response.status_code
        if status == 409:
            return PublishConflict(f"{what}: HTTP 409 conflict: {detail}", permanent=True)
        if status == 401:
            hint = "no admin token: set GESTAN_RELEASE_UPDATES_TOKEN"
        elif status == 403:
            hint = "the admin token was refused: check GESTAN_RELEASE_UPDATES_TOKEN"
        else:
            hint = detail or response.reason_phrase
        return PublishError(f"{what}: HTTP {status}: {hint}", permanent=True)

    def publish(self, channel: str, entry: dict[str, Any]) -> dict[str, Any]:
        version = entry.get("version")
        if not isinstance(version, str):
            raise PublishError("a release entry needs its version", permanent=True)
        return self._request("PUT", self._release_path(channel, version), entry)

    def set_rollout(self, channel: str, version: str, percent: int) -> dict[str, Any]:
        return self._request("PATCH", self._release_path(channel, version), {"rollout": percent})

    def yank(self, channel: str, version: str, reason: str) -> dict[str, Any]:
        body = {"yanked": True, "reason": reason}
        return self._request("PATCH", self._release_path(channel, version), body)

    def manifest(self, channel: str) -> dict[str, Any]:
        return self._request("GET", f"/v1/channels/{check_channel(channel)}/manifest.json")


def local_store(settings: Settings, data_dir: Any = None) -> Store:
    """The embedded store, signing with the key `UPDATES_SIGNING_KEY_PEM` (environment or Secret
    block) if set, else the file `UPDATES_SIGNING_KEY` (created if missing)."""
    from pathlib import Path

    from gestan_release.updates.signing import Signer, load_key_pem
    from gestan_release.updates.store import Store

    if settings.updates_signing_key_pem:
        signer = Signer(load_key_pem(settings.updates_signing_key_pem.get_secret_value()))
        return Store(Path(data_dir) if data_dir else settings.updates_dir, signer)
    if settings.updates_signing_key is None:
        raise ConfigError("UPDATES_SIGNING_KEY is not set")
    signer = Signer.from_file(settings.updates_signing_key, create=True)
    if settings.updates_keep_nightlies < 1:
        raise ConfigError(
            f"UPDATES_KEEP_NIGHTLIES must be at least 1, not {settings.updates_keep_nightlies}"
        )
    root = Path(data_dir) if data_dir else settings.updates_dir
    return Store(root, signer, keep_nightlies=settings.updates_keep_nightlies)


def publisher_for(settings: Settings) -> Publisher:
    """The update server at `UPDATES_URL` if set, else the local store."""
    if settings.updates_url:
        if not settings.updates_token:
            raise ConfigError(
                "UPDATES_URL is set but GESTAN_RELEASE_UPDATES_TOKEN is not: the update server "
                "refuses changes without its admin token"
            )
        return HttpPublisher(settings.updates_url, settings.updates_token.get_secret_value())
    return LocalPublisher(local_store(settings), tuple(settings.updates_channels))
