"""Gestan's version scheme on top of semantic versions.

- full version: MINOR (or MAJOR) bump from `main`, `15.4.0`, shown "15.4";
- U sub-version: PATCH bump on `release/15.4`, `15.4.1`, shown "15.4 U1";
- nightly: pre-release of the next full version, `15.5.0-nightly.20261127`, then
  `15.5.0-nightly.20261127.2` for a second one the same day.

Ordering is semver precedence, so a nightly sorts before the full version it precedes.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from functools import total_ordering

from gestan_release.core.validation import excerpt
from gestan_release.errors import VersionError

# ASCII digits only (`\d` would take "١٥" for 15) and at most 9 per number: a version part is
# never a 5,000-digit integer (which `int()` refuses with a ValueError, not a VersionError).
_VERSION_RE = re.compile(
    r"^(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})"
    r"(?:-nightly\.([0-9]{8})(?:\.([2-9]|[1-9][0-9]{1,8}))?)?\Z"
)


class Kind(StrEnum):
    FULL = "full"
    U = "u"
    NIGHTLY = "nightly"


@total_ordering
@dataclass(frozen=True)
class Version:
    """A release version; `nightly` is the build date (YYYYMMDD), `nightly_n` its same-day rank."""

    major: int
    minor: int
    patch: int
    nightly: str | None = None
    nightly_n: int = 1

    # -- reading and writing -------------------------------------------------------------------
    @classmethod
    def parse(cls, text: str) -> Version:
        """Parse `15.4.1` or `15.5.0-nightly.20261127[.N]`; anything else is a VersionError."""
        m = _VERSION_RE.match(text.strip())
        if not m:
            raise VersionError(
                f"{excerpt(text)} is not a Gestan version: expected MAJOR.MINOR.PATCH (15.4.1) "
                f"or a nightly (15.5.0-nightly.20261127)"
            )
        major, minor, patch, night, n = m.groups()
        if night is not None:
            try:
                dt.datetime.strptime(night, "%Y%m%d")
            except ValueError:
                raise VersionError(f"{text!r}: {night} is not a date (YYYYMMDD)") from None
            if int(patch) != 0:
                raise VersionError(f"{text!r}: a nightly precedes a full version, X.Y.0")
        return cls(int(major), int(minor), int(patch), night, int(n) if n else 1)

    def __str__(self) -> str:
        base = f"{self.major}.{self.minor}.{self.patch}"
        if self.nightly is None:
            return base
        suffix = f".{self.nightly_n}" if self.nightly_n > 1 else ""
        return f"{base}-nightly.{self.nightly}{suffix}"

    def tag(self, prefix: str = "v") -> str:
        return f"{prefix}{self}"

    # -- Gestan's words ------------------------------------------------------------------------
    @property
    def kind(self) -> Kind:
        if self.nightly is not None:
            return Kind.NIGHTLY
        return Kind.U if self.patch else Kind.FULL

    @property
    def is_u(self) -> bool:
        return self.kind is Kind.U

    @property
    def is_nightly(self) -> bool:
        return self.nightly is not None

    @property
    def line(self) -> tuple[int, int]:
        """The full version this belongs to: (15, 4) for 15.4.0 and 15.4 U2."""
        return (self.major, self.minor)

    @property
    def branch(self) -> str:
        """The maintenance branch of this version's line."""
        return f"release/{self.major}.{self.minor}"

    @property
    def label(self) -> str:
        """How Gestan says it: "15.4", "15.4 U1", "15.5 nightly 2026-11-27"."""
        base = f"{self.major}.{self.minor}"
        if self.nightly is not None:
            day = f"{self.nightly[:4]}-{self.nightly[4:6]}-{self.nightly[6:]}"
            rank = f" ({self.nightly_n})" if self.nightly_n > 1 else ""
            return f"{base} nightly {day}{rank}"
        return f"{base} U{self.patch}" if self.patch else base

    # -- ordering: semver precedence -----------------------------------------------------------
    def _key(self) -> tuple:
        # Semver precedence for the versions this scheme admits, as a tuple: sorting thousands of
        # tags costs nothing, and no import. The semver library is the oracle of the property
        # test that proves it (tests/history/test_versions.py); see the README's design notes.
        if self.nightly is None:
            return (self.major, self.minor, self.patch, 1, "", 0)
        return (self.major, self.minor, self.patch, 0, self.nightly, self.nightly_n)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() < other._key()

    # -- what comes next -----------------------------------------------------------------------
    def next_full(self, bump: str = "minor") -> Version:
        """The next full version after this one (the MINOR or MAJOR bump)."""
        if bump == "minor":
            return Version(self.major, self.minor + 1, 0)
        if bump == "major":
            return Version(self.major + 1, 0, 0)
        raise VersionError(f"unknown bump {bump!r}: use minor or major")

    def next_u(self) -> Version:
        """The next U sub-version on this version's maintenance line."""
        if self.is_nightly:
            raise VersionError(f"{self} is a nightly: a U sub-version follows a released version")
        return Version(self.major, self.minor, self.patch + 1)

    def next_nightly(self, day: dt.date, existing: Iterable[Version] = ()) -> Version:
        """A nightly of the full version after this one; `.N` when others exist that day."""
        target = self.next_full("minor") if not self.is_nightly else self.base()
        stamp = day.strftime("%Y%m%d")
        taken = [
            v.nightly_n
            for v in existing
            if v.nightly == stamp and (v.major, v.minor, v.patch) == target.triple
        ]
        n = max(taken) + 1 if taken else 1
        return Version(target.major, target.minor, target.patch, stamp, n)

    def base(self) -> Version:
        return Version(self.major, self.minor, self.patch)

    @property
    def triple(self) -> tuple[int, int, int]:
        return (self.major, self.minor, self.patch)


def parse(text: str) -> Version:
    return Version.parse(text)


def parse_tag(tag: str, prefix: str = "v") -> Version:
    """The version a tag names; a clear VersionError when the tag is outside the scheme."""
    if not tag.startswith(prefix):
        raise VersionError(
            f"tag {tag!r} is not a release tag: release tags are {prefix!r} + version, "
            f"e.g. {prefix}15.4.1"
        )
    try:
        return Version.parse(tag[len(prefix) :])
    except VersionError:
        raise VersionError(
            f"tag {excerpt(tag)} is not a release tag: expected {prefix}MAJOR.MINOR.PATCH "
            f"(e.g. {prefix}15.4.1)"
        ) from None


def release_version(tag: str, prefix: str = "v") -> Version | None:
    """The version of a *release* tag (full or U), or None for nightlies and foreign tags."""
    if not tag.startswith(prefix):
        return None
    m = _VERSION_RE.match(tag[len(prefix) :])
    if not m or m.group(4) is not None:
        return None
    return Version(int(m.group(1)), int(m.group(2)), int(m.group(3)))
