"""Release entries and manifests: validated, canonical, signed over `canonical(...)`; pure
functions, no I/O. A manifest is `{"channel", "serial", "expires", "releases"}`; which update an
install gets from it is `updates.choice`.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from gestan_release.core.validation import excerpt
from gestan_release.errors import VersionError
from gestan_release.history.versions import Kind, Version
from gestan_release.updates import UpdatesError

STABLE = "stable"
CHANNEL_RE = re.compile(r"^[a-z][a-z0-9-]{0,31}\Z")
PLATFORM_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}\Z")
INSTALL_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}\Z")
_SHA256_RE = re.compile(r"^[0-9a-fA-F]{64}\Z")
_URL_RE = re.compile(r"^https?://[^\s]{1,2040}\Z")

ENTRY_FIELDS = (
    "version",
    "label",
    "kind",
    "published_at",
    "critical",
    "min_version",
    "rollout",
    "artifacts",
    "notes_url",
    "yanked",
    "yank_reason",
)
# Changed only through PATCH (rollout, yank) or set once (published_at): a second PUT of the same
# release that differs only there is the same release, not a conflict.
MUTABLE_FIELDS = frozenset({"rollout", "yanked", "yank_reason", "published_at"})
MAX_ARTIFACTS = 16
MAX_TEXT = 500
KEEP_NIGHTLIES = 30  # default of UPDATES_KEEP_NIGHTLIES: nightlies a manifest keeps
_EARLIEST = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
_LATEST = dt.datetime(9000, 1, 1, tzinfo=dt.UTC)


class ManifestError(UpdatesError):
    """A release entry, a channel or a version name is not acceptable."""


# -- names ----------------------------------------------------------------------------------------
def _checked(kind: str, name: object, pattern: re.Pattern[str], rule: str) -> str:
    if not isinstance(name, str) or not pattern.match(name):
        raise ManifestError(f"{kind} {excerpt(name)} is not valid: use {rule}")
    return name


def check_channel(name: object) -> str:
    """The channel name, if it is a safe one (lower-case word, no path tricks)."""
    rule = "lower-case letters, digits and '-', starting with a letter (e.g. stable, nightly)"
    return _checked("channel", name, CHANNEL_RE, rule)


def check_platform(name: object) -> str:
    rule = "lower-case letters, digits, '_' and '-' (e.g. win64)"
    return _checked("platform", name, PLATFORM_RE, rule)


def parse_version(text: object, what: str = "version") -> Version:
    if not isinstance(text, str):
        raise ManifestError(f"{what} must be a string like 15.4.1, not {excerpt(text)}")
    try:
        v = Version.parse(text)
    except VersionError as exc:
        raise ManifestError(f"{what}: {exc}") from None
    if str(v) != text:
        raise ManifestError(f"{what} {excerpt(text)} is not written canonically: use {v}")
    return v


# -- time -----------------------------------------------------------------------------------------
def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def format_time(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> dt.datetime:
    """An ISO 8601 time between the years 2000 and 9000, in UTC; naive times are taken as UTC.
    (`9999-12-31T23:59:59-23:59` parses, but its UTC is past year 9999: refused, not a crash.)"""
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        when = when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)
    except (ValueError, AttributeError, TypeError, OverflowError):
        raise ManifestError(
            f"{excerpt(text)} is not an ISO 8601 time (e.g. 2026-11-27T10:00:00Z)"
        ) from None
    if not _EARLIEST <= when < _LATEST:
        raise ManifestError(f"{excerpt(text)} is not a time between the years 2000 and 9000")
    return when


# -- canonical JSON -------------------------------------------------------------------------------
def canonical(document: Any) -> bytes:
    """The one byte encoding that is signed: sorted keys, no spaces, UTF-8. No floats allowed."""
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


# -- release entries ------------------------------------------------------------------------------
def _url(value: object, what: str) -> str:
    if not isinstance(value, str) or not _URL_RE.match(value):
        raise ManifestError(f"{what} must be an http(s) URL, not {excerpt(value)}")
    return value


def _bool(entry: Mapping[str, Any], name: str, default: bool = False) -> bool:
    value = entry.get(name, default)
    if not isinstance(value, bool):
        raise ManifestError(f"{name} must be true or false, not {excerpt(value)}")
    return value


def _text(value: object, what: str, *, optional: bool = True) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_TEXT:
        raise ManifestError(f"{what} must be a non-empty text of at most {MAX_TEXT} characters")
    return value


def _artifacts(value: object) -> dict[str, dict[str, Any]]:
    if not isinstance(value, dict) or not value:
        raise ManifestError(
            'artifacts is required: {"win64": {"url": "https://…", "sha256": "…", "size": 123}}'
        )
    if len(value) > MAX_ARTIFACTS:
        raise ManifestError(f"at most {MAX_ARTIFACTS} platforms per release")
    out: dict[str, dict[str, Any]] = {}
    for platform, art in value.items():
        check_platform(platform)
        where = f"artifact {excerpt(platform)}"
        if not isinstance(art, dict) or set(art) != {"url", "sha256", "size"}:
            raise ManifestError(
                f"artifact {excerpt(platform)} must have exactly url, sha256 and size"
            )
        sha = art["sha256"]
        if not isinstance(sha, str) or not _SHA256_RE.match(sha):
            raise ManifestError(
                f"artifact {excerpt(platform)}: sha256 must be 64 hexadecimal digits"
            )
        size = art["size"]
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ManifestError(
                f"artifact {excerpt(platform)}: size must be a byte count (integer ≥ 0)"
            )
        out[platform] = {
            "url": _url(art["url"], f"{where} url"),
            "sha256": sha.lower(),
            "size": size,
        }
    return out


def normalize_entry(
    raw: Mapping[str, Any], *, version: str | None = None, now: dt.datetime | None = None
) -> dict[str, Any]:
    """A complete, validated release entry from `raw`, defaults filled in (see docs/reference.md).

    `version` is the one named by the URL, if any: the body may omit it but must not contradict it.
    """
    if not isinstance(raw, Mapping):
        raise ManifestError("a release entry must be a JSON object")
    unknown = sorted(set(raw) - set(ENTRY_FIELDS))
    if unknown:
        raise ManifestError(
            f"unknown field(s) {', '.join(excerpt(u, 20) for u in unknown[:5])} in the entry; "
            f"known: {', '.join(ENTRY_FIELDS)}"
        )
    text = raw.get("version", version)
    if version is not None and text != version:
        raise ManifestError(
            f"the body names version {excerpt(text)} but the URL names {excerpt(version)}"
        )
    v = parse_version(text)
    kind = raw.get("kind", v.kind.value)
    if kind != v.kind.value:
        raise ManifestError(f"{v} is a {v.kind.value} version, not {excerpt(kind)}")
    min_version = raw.get("min_version")
    if min_version is not None and not parse_version(min_version, "min_version") < v:
        raise ManifestError(
            f"min_version {excerpt(min_version)} must be below the release itself ({v})"
        )
    rollout = raw.get("rollout", 100)
    if not isinstance(rollout, int) or isinstance(rollout, bool) or not 0 <= rollout <= 100:
        raise ManifestError(f"rollout must be a whole percentage 0–100, not {excerpt(rollout)}")
    published = raw.get("published_at")
    published_at = format_time(
        parse_time(published) if published is not None else (now or utc_now())
    )
    yanked = _bool(raw, "yanked")
    return {
        "version": str(v),
        "label": _text(raw.get("label", v.label), "label", optional=False),
        "kind": kind,
        "published_at": published_at,
        "critical": _bool(raw, "critical"),
        "min_version": min_version,
        "rollout": rollout,
        "artifacts": _artifacts(raw.get("artifacts")),
        "notes_url": None if raw.get("notes_url") is None else _url(raw["notes_url"], "notes_url"),
        "yanked": yanked,
        "yank_reason": _text(raw.get("yank_reason"), "yank_reason") if yanked else None,
    }


def same_release(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two entries are the same release (rollout, yank and publication time aside)."""
    return all(a.get(k) == b.get(k) for k in ENTRY_FIELDS if k not in MUTABLE_FIELDS)


# -- manifests ------------------------------------------------------------------------------------
def empty_manifest(channel: str) -> dict[str, Any]:
    return {"channel": check_channel(channel), "serial": 0, "expires": None, "releases": []}


def with_release(manifest: Mapping[str, Any], entry: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest with `entry` added or replaced, releases kept in version order."""
    others = [r for r in manifest["releases"] if r["version"] != entry["version"]]
    releases = sorted([*others, dict(entry)], key=lambda r: Version.parse(r["version"]))
    return {**manifest, "releases": releases}


def check_publishable(channel: str, version: Version) -> None:
    """A pre-release (nightly) is never published on `stable`: stable installs would take it."""
    if channel == STABLE and version.is_nightly:
        raise ManifestError(
            f"{version} is a nightly (a pre-release): it goes on the nightly channel, never on "
            f"{STABLE}, whose installs would be offered it"
        )


def retained(releases: Sequence[Mapping[str, Any]], keep_nightlies: int) -> list[dict[str, Any]]:
    """The releases a manifest keeps, so that it never grows without end: at about 400 nightlies
    the nightly manifest passed the clients' 256 KiB limit and installs got nothing.

    Full versions and U sub-versions are all kept (a few dozen a year; an old one may still be
    yanked, and installs running it told). Of the nightlies, what clients still need:
    - the last `keep_nightlies` (UPDATES_KEEP_NIGHTLIES);
    - the latest of each line (15.5.0-nightly…, 15.6.0-nightly…);
    - every nightly from the newest one offered to everybody (not yanked, rollout 100) upwards,
      so that a staged or halted newest nightly leaves the others something to take;
    - every nightly named as a kept release's `min_version` (a stepping stone).
    An install more than `keep_nightlies` nightlies behind jumps to the newest, which holds every
    fix; it is not told that a nightly it skips was critical.
    """
    parsed = sorted(((Version.parse(r["version"]), r) for r in releases), key=lambda p: p[0])
    nightlies = [(v, r) for v, r in parsed if v.kind is Kind.NIGHTLY]
    keep = {v for v, _ in parsed if v.kind is not Kind.NIGHTLY}
    keep.update(v for v, _ in nightlies[-keep_nightlies:] if keep_nightlies > 0)
    latest: dict[tuple[int, int], Version] = {}
    for v, _ in nightlies:
        latest[v.line] = v
    keep.update(latest.values())
    for v, r in reversed(nightlies):
        if r.get("yanked"):
            continue
        keep.add(v)
        if r.get("rollout", 100) >= 100:
            break
    published = {v for v, _ in parsed}
    for v, r in parsed:
        if v in keep and r.get("min_version"):
            stone = Version.parse(r["min_version"])
            if stone in published:
                keep.add(stone)
    return [dict(r) for v, r in parsed if v in keep]


def find_release(manifest: Mapping[str, Any], version: str) -> dict[str, Any] | None:
    for r in manifest["releases"]:
        if r["version"] == version:
            return r
    return None


def next_serial(previous: int, now: dt.datetime | None = None) -> int:
    """A serial above `previous` and not below the Unix time, so that even a store restored from an
    old backup never goes back to a serial that clients have already seen."""
    return max(previous + 1, int((now or utc_now()).timestamp()))
