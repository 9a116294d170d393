"""The embedded store: one signed manifest per channel in a directory of JSON files.

`<root>/channels/<channel>.json` holds `{"manifest": {...}, "signature": "<base64>"}`. Every change
takes an exclusive lock on `<root>/.lock` (so that concurrent publishes, from threads or processes,
lose nothing), raises the serial, sets a new expiry, signs the canonical bytes and replaces the file
atomically (temporary file, fsync, rename, fsync of the directory): a crash leaves the old manifest
or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gestan_release.updates import UpdatesError
from gestan_release.updates.manifest import (
    KEEP_NIGHTLIES,
    MUTABLE_FIELDS,
    ManifestError,
    canonical,
    check_channel,
    check_publishable,
    empty_manifest,
    find_release,
    format_time,
    next_serial,
    normalize_entry,
    parse_time,
    parse_version,
    retained,
    same_release,
    utc_now,
    with_release,
)
from gestan_release.updates.signing import Signer, verify

DEFAULT_TTL = dt.timedelta(days=7)


class ReleaseConflict(UpdatesError):
    """A different release is already published under this version."""


class ReleaseNotFound(UpdatesError):
    """No release of that version on that channel."""


class StoreCorrupt(UpdatesError):
    """A stored manifest cannot be read or its signature does not match the signing key."""


@dataclass(frozen=True)
class SignedManifest:
    """A manifest with the exact bytes that were signed, their signature and an ETag."""

    manifest: dict[str, Any]
    body: bytes
    signature: str

    @property
    def channel(self) -> str:
        return self.manifest["channel"]

    @property
    def serial(self) -> int:
        return self.manifest["serial"]

    @property
    def etag(self) -> str:
        return f'"{self.serial}-{hashlib.sha256(self.body).hexdigest()[:16]}"'


@dataclass(frozen=True)
class Change:
    """What a publish, rollout or yank did: the entry as stored, and whether anything changed."""

    channel: str
    serial: int
    release: dict[str, Any]
    changed: bool

    def as_json(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "serial": self.serial,
            "changed": self.changed,
            "release": self.release,
        }


_process_lock = threading.Lock()


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace `path` with `data` so that readers see the old bytes or the new ones, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class Store:
    """The signed manifests of every channel under `root`."""

    def __init__(
        self,
        root: Path,
        signer: Signer,
        *,
        ttl: dt.timedelta = DEFAULT_TTL,
        clock: Callable[[], dt.datetime] = utc_now,
        keep_nightlies: int = KEEP_NIGHTLIES,
    ) -> None:
        self.root = Path(root)
        self.signer = signer
        self.ttl = ttl
        self.clock = clock
        self.keep_nightlies = keep_nightlies

    # -- reading ----------------------------------------------------------------------------------
    def path(self, channel: str) -> Path:
        return self.root / "channels" / f"{check_channel(channel)}.json"

    def channels(self) -> list[str]:
        folder = self.root / "channels"
        if not folder.is_dir():
            return []
        names = (p.stem for p in folder.glob("*.json") if not p.name.startswith("."))
        return sorted(n for n in names if _valid_channel(n))

    def load(self, channel: str) -> SignedManifest | None:
        """The channel's signed manifest, or None if nothing was ever published there."""
        path = self.path(channel)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            stored = json.loads(raw)
            manifest, signature = stored["manifest"], stored["signature"]
        except (ValueError, KeyError, TypeError):
            raise StoreCorrupt(
                f"{path} is not a stored manifest; restore it from a backup"
            ) from None
        body = canonical(manifest)
        if manifest.get("channel") != channel or not verify(
            self.signer.public_key, body, signature
        ):
            raise StoreCorrupt(
                f"{path}: the signature does not match the signing key in use; "
                f"was the key replaced, or the file edited by hand?"
            )
        return SignedManifest(manifest, body, signature)

    def load_all(self) -> dict[str, SignedManifest]:
        out = {}
        for channel in self.channels():
            signed = self.load(channel)
            if signed is not None:
                out[channel] = signed
        return out

    def fingerprint(self) -> tuple[tuple[str, int, int], ...]:
        """Cheap change detection for a server that shares the directory with other writers."""
        out = []
        folder = self.root / "channels"
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(folder):
                if entry.name.endswith(".json") and not entry.name.startswith("."):
                    st = entry.stat()
                    out.append((entry.name, st.st_mtime_ns, st.st_ino))
        return tuple(sorted(out))

    # -- changing ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with _process_lock, open(self.root / ".lock", "a+b") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def _write(self, manifest: dict[str, Any], previous_serial: int) -> SignedManifest:
        now = self.clock()
        manifest = {
            **manifest,
            "serial": next_serial(previous_serial, now),
            "expires": format_time(now + self.ttl),
        }
        body = canonical(manifest)
        signature = self.signer.sign(body)
        stored = json.dumps({"manifest": manifest, "signature": signature}, ensure_ascii=False)
        atomic_write(self.path(manifest["channel"]), stored.encode("utf-8"))
        return SignedManifest(manifest, body, signature)

    def _mutate(
        self, channel: str, change: Callable[[dict[str, Any]], tuple[dict[str, Any] | None, Any]]
    ) -> tuple[SignedManifest, Any]:
        """Apply `change` to the manifest under the lock; it returns (new or None, result)."""
        with self._locked():
            current = self.load(channel)
            manifest = current.manifest if current else empty_manifest(channel)
            new, result = change(manifest)
            if new is None:
                assert current is not None
                return current, result
            return self._write(new, manifest["serial"]), result

    def publish(self, channel: str, raw: dict[str, Any], version: str | None = None) -> Change:
        """Add a release; the same release again changes nothing, a different one is refused."""
        entry = normalize_entry(raw, version=version, now=self.clock())
        check_publishable(channel, parse_version(entry["version"]))

        def change(manifest: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any]]:
            existing = find_release(manifest, entry["version"])
            if existing is None:
                new = with_release(manifest, entry)
                new["releases"] = retained(new["releases"], self.keep_nightlies)
                if find_release(new, entry["version"]) is None:
                    # An old nightly published again (a resumed flow): already past retention.
                    return None, entry
                return new, entry
            if same_release(existing, entry):
                return None, existing
            differing = [
                k for k in entry if k not in MUTABLE_FIELDS and existing.get(k) != entry[k]
            ]
            raise ReleaseConflict(
                f"{entry['version']} is already published on {channel} with a different "
                f"{', '.join(differing)}; publish a new version instead (a published version "
                f"never changes, only its rollout and yank)"
            )

        signed, release = self._mutate(channel, change)
        changed = release is entry and find_release(signed.manifest, entry["version"]) is not None
        return Change(channel, signed.serial, release, changed)

    def _update_release(self, channel: str, version: str, **fields: Any) -> Change:
        parse_version(version)

        def change(manifest: dict[str, Any]) -> tuple[dict[str, Any] | None, tuple[dict, bool]]:
            existing = find_release(manifest, version)
            if existing is None:
                raise ReleaseNotFound(f"no release {version} on channel {channel}")
            updated = {**existing, **fields}
            if updated == existing:
                return None, (existing, False)
            return with_release(manifest, updated), (updated, True)

        signed, (release, changed) = self._mutate(channel, change)
        return Change(channel, signed.serial, release, changed)

    def set_rollout(self, channel: str, version: str, percent: int) -> Change:
        if not isinstance(percent, int) or isinstance(percent, bool) or not 0 <= percent <= 100:
            raise ManifestError(f"rollout must be a whole percentage 0–100, not {percent!r}")
        return self._update_release(channel, version, rollout=percent)

    def yank(self, channel: str, version: str, reason: str) -> Change:
        if not isinstance(reason, str) or not reason.strip() or len(reason) > 500:
            raise ManifestError("a yank needs a reason (at most 500 characters) for the installs")
        return self._update_release(channel, version, yanked=True, yank_reason=reason)

    def unyank(self, channel: str, version: str) -> Change:
        return self._update_release(channel, version, yanked=False, yank_reason=None)

    def refresh(self, *, force: bool = False) -> list[str]:
        """Re-sign the manifests that are past half their lifetime (new serial, new expiry).

        The server does this by itself; a static export must be re-run at least that often.
        """
        done = []
        for channel in self.channels():

            def change(manifest: dict[str, Any]) -> tuple[dict[str, Any] | None, None]:
                expires = manifest.get("expires")
                left = parse_time(expires) - self.clock() if expires else dt.timedelta(0)
                return (manifest if force or left < self.ttl / 2 else None), None

            before = self.load(channel)
            after, _ = self._mutate(channel, change)
            if before is None or after.serial != before.serial:
                done.append(channel)
        return done

    def export(self, to: Path, channels: list[str] | None = None) -> list[Path]:
        """Write `v1/channels/<c>/manifest.json` and `.sig` under `to`, as the server does."""
        self.refresh()
        written = []
        for channel in channels or self.channels():
            signed = self.load(channel)
            if signed is None:
                raise ReleaseNotFound(f"nothing was ever published on channel {channel}")
            folder = Path(to) / "v1" / "channels" / channel
            atomic_write(folder / "manifest.json", signed.body)
            atomic_write(folder / "manifest.json.sig", signed.signature.encode("ascii"))
            written += [folder / "manifest.json", folder / "manifest.json.sig"]
        return written


def _valid_channel(name: str) -> bool:
    try:
        check_channel(name)
    except ManifestError:
        return False
    return True
