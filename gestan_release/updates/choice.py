"""The choice of an update: pure functions of the manifests, no I/O. Which update an install gets
(`choose_update`, and the server's cached `/v1/check`) follows these rules:

- the highest non-yanked release above the install's version that carries its platform, on its
  channel; a channel other than `stable` also sees the `stable` releases (a nightly tester is never
  left behind the public version);
- a release whose `min_version` is above the install's version is out of reach: the install gets
  the best release it *can* take instead — a stepping stone — and goes on from there next time;
- a staged rollout (1–99 %) is decided by a hash of (install_id, version): the same install always
  gets the same answer for a release, and the early group differs from release to release.
  Critical releases and manual checks (`interactive`) skip a staged rollout; `rollout: 0` halts a
  release for everyone;
- the answer is `critical` if any release it jumps over (or itself) is critical, so that a later
  optional U sub-version never hides an earlier flash fix.

The question itself, a `/v1/check` query string, is read by `parse_check` (`BadQuery` if it is
not one).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from gestan_release.core.validation import excerpt
from gestan_release.history.versions import Version
from gestan_release.updates.manifest import (
    CHANNEL_RE,
    INSTALL_ID_RE,
    PLATFORM_RE,
    STABLE,
    find_release,
)


@dataclass(frozen=True)
class Candidate:
    """A release as `choose_update` sees it, for one platform."""

    version: Version
    channel: str
    critical: bool
    rollout: int
    min_version: Version | None
    entry: Mapping[str, Any]


@dataclass(frozen=True)
class Choice:
    target: Candidate
    critical: bool


def visible_channels(channel: str) -> tuple[str, ...]:
    return (channel,) if channel == STABLE else (channel, STABLE)


def candidates_for(
    manifests: Mapping[str, Mapping[str, Any]], channel: str, platform: str
) -> list[Candidate]:
    """The non-yanked releases an install of `channel` on `platform` may get, highest first."""
    seen: dict[Version, Candidate] = {}
    for name in visible_channels(channel):
        manifest = manifests.get(name)
        if not manifest:
            continue
        for r in manifest["releases"]:
            v = Version.parse(r["version"])
            if r["yanked"] or platform not in r["artifacts"] or v in seen:
                continue
            mv = r.get("min_version")
            seen[v] = Candidate(
                v, name, r["critical"], r["rollout"], Version.parse(mv) if mv else None, r
            )
    return sorted(seen.values(), key=lambda c: c.version, reverse=True)


def in_rollout(install_id: str, version: str, percent: int) -> bool:
    """Whether this install is in the first `percent` % of `version`'s staged rollout.

    Sticky (a pure function of install and version), monotonic in `percent`, and independent from
    one version to the next, so the same installs are not always the first ones.
    """
    if percent >= 100:
        return True
    if percent <= 0:
        return False
    digest = hashlib.sha256(f"{install_id}\x00{version}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 10_000 < percent * 100


def offered(c: Candidate, current: Version, install_id: str, interactive: bool) -> bool:
    """Whether `c` may be offered to this install, taken on its own."""
    if c.version <= current or c.rollout <= 0:
        return False
    if c.min_version is not None and current < c.min_version:
        return False
    if c.rollout >= 100 or c.critical or interactive:
        return True
    return in_rollout(install_id, str(c.version), c.rollout)


def choose_update(
    candidates: Sequence[Candidate], current: Version, install_id: str, *, interactive: bool = False
) -> Choice | None:
    """The update this install should take (`candidates` highest first), or None if up to date."""
    for c in candidates:
        if c.version <= current:
            return None
        if offered(c, current, install_id, interactive):
            return Choice(c, is_critical_jump(candidates, current, c.version))
    return None


def is_critical_jump(candidates: Iterable[Candidate], current: Version, target: Version) -> bool:
    """True if any release in (current, target] is critical: what the install would skip or take."""
    return any(c.critical and current < c.version <= target for c in candidates)


def current_yank(
    manifests: Mapping[str, Mapping[str, Any]], channel: str, current: Version
) -> tuple[bool, str | None]:
    """Whether the version an install runs was yanked, and why."""
    text = str(current)
    for name in visible_channels(channel):
        manifest = manifests.get(name)
        r = find_release(manifest, text) if manifest else None
        if r is not None:
            return bool(r["yanked"]), r.get("yank_reason")
    return False, None


def check_answer(
    choice: Choice | None,
    *,
    manifests: Mapping[str, Mapping[str, Any]],
    channel: str,
    platform: str,
    current: Version,
) -> dict[str, Any]:
    """The signed statement of a `/v1/check` answer: the release to take, or `"version": null`.

    The server sends it as the body of a 200, or — up to date and current version not yanked —
    as a 204 with the statement in a header, so that "nothing new" is signed too (else an attacker
    could answer 204 forever: a freeze attack). It echoes the request, so that an answer cannot
    be replayed to another kind of install, and carries the serials and the earliest expiry of the
    manifests it was computed from, which the client checks against rollback and freeze.
    """
    yanked, reason = current_yank(manifests, channel, current)
    used = [manifests[n] for n in visible_channels(channel) if manifests.get(n)]
    expiries = [m["expires"] for m in used if m.get("expires")]
    common = {
        "serial": manifests[channel]["serial"] if manifests.get(channel) else 0,
        "serials": {m["channel"]: m["serial"] for m in used},
        "expires": min(expiries) if expiries else None,
        "current_yanked": yanked,
        "current_yank_reason": reason,
        "request": {"channel": channel, "platform": platform, "version": str(current)},
    }
    if choice is None:
        return {"version": None, "critical": False, **common}
    entry = dict(choice.target.entry)
    return {
        **entry,
        "channel": choice.target.channel,
        "artifact": entry["artifacts"][platform],
        **common,
        "critical": choice.critical,
    }


class BadQuery(ValueError):
    """A `/v1/check` query string that is not one (answered 400)."""


def parse_check(query_string: bytes) -> tuple[str, str, str, str, bool]:
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
