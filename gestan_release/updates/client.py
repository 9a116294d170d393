"""The reference desktop client: what a Gestan install must check before trusting the update server.

It pins the Ed25519 public key and refuses, with an `UpdateRefused`:
- an answer or a manifest whose signature does not verify (tampering, a wrong server);
- an answer meant for another channel, platform or version (mix-and-match);
- a serial lower than the last one it saw for a channel (rollback to an older manifest);
- an expired answer or manifest (freeze: an attacker replaying a stale "nothing new");
- a response larger than its limit (endless data);
- a downloaded artifact whose size or sha256 differs from the signed entry.

The last serial seen per channel is kept in a small JSON state file.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from gestan_release.updates import UpdatesError
from gestan_release.updates.manifest import parse_time, utc_now
from gestan_release.updates.signing import load_public_key, verify
from gestan_release.updates.store import atomic_write

MAX_RESPONSE = 256 * 1024


class UpdateRefused(UpdatesError):
    """The client refused what the server (or someone in between) sent."""


class BadSignature(UpdateRefused):
    pass


class RollbackRefused(UpdateRefused):
    pass


class ExpiredAnswer(UpdateRefused):
    pass


class OversizedResponse(UpdateRefused):
    pass


class MismatchedAnswer(UpdateRefused):
    pass


class ArtifactMismatch(UpdateRefused):
    pass


@dataclass(frozen=True)
class CheckResult:
    """What a check found: the release to take (None when up to date) and whether the running
    version was yanked."""

    offer: dict[str, Any] | None
    critical: bool = False
    current_yanked: bool = False
    current_yank_reason: str | None = None
    statement: dict[str, Any] = field(default_factory=dict)

    @property
    def version(self) -> str | None:
        return self.offer["version"] if self.offer else None


class UpdateClient:
    """One desktop install: its version, channel, platform and id, and the pinned public key."""

    def __init__(
        self,
        base_url: str,
        public_key: str | bytes,
        *,
        version: str,
        channel: str = "stable",
        platform: str = "win64",
        install_id: str,
        state_path: Path,
        max_response: int = MAX_RESPONSE,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], dt.datetime] = utc_now,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.public_key = load_public_key(public_key)
        self.version = version
        self.channel = channel
        self.platform = platform
        self.install_id = install_id
        self.state_path = Path(state_path)
        self.max_response = max_response
        self.clock = clock
        self._http = httpx.Client(timeout=timeout, transport=transport, follow_redirects=False)

    def close(self) -> None:
        self._http.close()

    # -- state: the highest serial seen per channel ------------------------------------------------
    def seen_serials(self) -> dict[str, int]:
        try:
            return dict(json.loads(self.state_path.read_text())["serials"])
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return {}

    def _remember(self, serials: dict[str, int]) -> None:
        seen = self.seen_serials()
        for channel, serial in serials.items():
            seen[channel] = max(serial, seen.get(channel, 0))
        atomic_write(self.state_path, json.dumps({"serials": seen}).encode())

    def _check_fresh(self, serials: dict[str, Any], expires: Any, what: str) -> None:
        seen = self.seen_serials()
        for channel, serial in serials.items():
            if not isinstance(serial, int) or serial < seen.get(channel, 0):
                raise RollbackRefused(
                    f"{what}: serial {serial} of channel {channel} is older than the last one seen "
                    f"({seen.get(channel)}); refusing a rollback"
                )
        if not isinstance(expires, str) or parse_time(expires) <= self.clock():
            raise ExpiredAnswer(f"{what}: expired ({expires}); refusing a stale answer")

    # -- HTTP --------------------------------------------------------------------------------------
    def _get(self, url: str, params: dict[str, str] | None = None) -> tuple[httpx.Response, bytes]:
        """GET with a hard cap on the body size, whatever Content-Length claims."""
        with self._http.stream("GET", url, params=params) as response:
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > self.max_response:
                raise OversizedResponse(
                    f"{url}: {declared} bytes announced, limit {self.max_response}"
                )
            chunks, size = [], 0
            for chunk in response.iter_raw():
                size += len(chunk)
                if size > self.max_response:
                    raise OversizedResponse(f"{url}: more than {self.max_response} bytes; refused")
                chunks.append(chunk)
        return response, b"".join(chunks)

    def check(self, *, interactive: bool = False) -> CheckResult:
        """Ask whether an update exists; every answer is verified before it is believed."""
        params = {
            "version": self.version,
            "channel": self.channel,
            "platform": self.platform,
            "install_id": self.install_id,
        }
        if interactive:
            params["interactive"] = "1"
        url = f"{self.base_url}/v1/check"
        response, body = self._get(url, params)
        if response.status_code == 204:
            data = response.headers.get("x-gestan-statement", "").encode("ascii")
        elif response.status_code == 200:
            data = body
        else:
            raise UpdatesError(f"update check failed: HTTP {response.status_code}")
        if not verify(self.public_key, data, response.headers.get("x-gestan-signature", "")):
            raise BadSignature("the update answer is not signed by the pinned key; ignored")
        statement = json.loads(data)
        expected = {"channel": self.channel, "platform": self.platform, "version": self.version}
        if statement.get("request") != expected:
            raise MismatchedAnswer("the update answer was made for another install; ignored")
        self._check_fresh(statement.get("serials", {}), statement.get("expires"), "update answer")
        self._remember(statement["serials"])
        offer = statement if statement.get("version") else None
        if offer is not None and offer["artifact"] != offer["artifacts"].get(self.platform):
            raise MismatchedAnswer("the update answer names an artifact of another platform")
        return CheckResult(
            offer=offer,
            critical=bool(statement.get("critical")),
            current_yanked=bool(statement.get("current_yanked")),
            current_yank_reason=statement.get("current_yank_reason"),
            statement=statement,
        )

    def fetch_manifest(self, channel: str | None = None) -> dict[str, Any]:
        """The channel's manifest (from the server or a static mirror), verified."""
        channel = channel or self.channel
        url = f"{self.base_url}/v1/channels/{channel}/manifest.json"
        response, body = self._get(url)
        sig_response, signature = self._get(url + ".sig")
        if response.status_code != 200 or sig_response.status_code != 200:
            raise UpdatesError(f"{url}: HTTP {response.status_code}/{sig_response.status_code}")
        if not verify(self.public_key, body, signature.strip()):
            raise BadSignature(f"{url}: not signed by the pinned key; ignored")
        manifest = json.loads(body)
        if manifest.get("channel") != channel:
            raise MismatchedAnswer(f"{url}: manifest of channel {manifest.get('channel')!r}")
        self._check_fresh({channel: manifest.get("serial")}, manifest.get("expires"), url)
        self._remember({channel: manifest["serial"]})
        return manifest

    def download(self, offer: dict[str, Any], dest: Path) -> Path:
        """Download the offered artifact to `dest`, keeping it only if size and sha256 match."""
        artifact = offer["artifact"]
        expected_size, expected_sha = artifact["size"], artifact["sha256"]
        dest = Path(dest)
        partial = dest.with_name(dest.name + ".part")
        digest, size = hashlib.sha256(), 0
        try:
            with self._http.stream("GET", artifact["url"]) as response, partial.open("wb") as fh:
                if response.status_code != 200:
                    raise UpdatesError(f"download failed: HTTP {response.status_code}")
                for chunk in response.iter_raw():
                    size += len(chunk)
                    if size > expected_size:
                        raise ArtifactMismatch(
                            f"the download is larger than the signed size ({expected_size} bytes)"
                        )
                    digest.update(chunk)
                    fh.write(chunk)
            if size != expected_size or digest.hexdigest() != expected_sha:
                raise ArtifactMismatch(
                    "the downloaded file does not match the signed sha256/size; deleted"
                )
            os.replace(partial, dest)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
            raise
        return dest
