from __future__ import annotations

import datetime as dt

import pytest
import semver
from hypothesis import given
from hypothesis import strategies as st

from gestan_release.errors import VersionError
from gestan_release.history.versions import Kind, Version, parse_tag, release_version

numbers = st.integers(min_value=0, max_value=10_000)
days = st.dates(min_value=dt.date(2000, 1, 1), max_value=dt.date(2099, 12, 31))
releases = st.builds(Version, numbers, numbers, numbers)
nightlies = st.builds(
    lambda ma, mi, d, n: Version(ma, mi, 0, d.strftime("%Y%m%d"), n),
    numbers,
    numbers,
    days,
    st.integers(min_value=1, max_value=50),
)
versions = st.one_of(releases, nightlies)


@given(releases)
def test_next_u_is_above(v: Version) -> None:
    assert v.next_u() > v
    assert v.next_u().is_u
    assert v.next_u().line == v.line


@given(releases, st.integers(min_value=1, max_value=200), st.sampled_from(["minor", "major"]))
def test_next_full_is_above_every_u_of_the_current_one(v: Version, u: int, bump: str) -> None:
    full = Version(v.major, v.minor, 0)
    nxt = full.next_full(bump)
    assert nxt > Version(v.major, v.minor, u)
    assert nxt.kind is Kind.FULL


@given(releases, days, st.integers(min_value=1, max_value=50))
def test_nightly_sorts_below_the_full_version_it_precedes(v: Version, day: dt.date, n: int) -> None:
    nightly = v.next_nightly(day, [Version(0, 0, 0, day.strftime("%Y%m%d"), n)])
    full = v.next_full("minor")
    assert nightly < full
    assert nightly > v
    assert nightly.base() == full


@given(versions)
def test_parse_format_roundtrip(v: Version) -> None:
    assert Version.parse(str(v)) == v


def as_semver(v: Version) -> semver.Version:
    """The oracle: the semver library's reading of the same version (see README, design notes)."""
    return semver.Version.parse(str(v))


@given(versions, versions)
def test_ordering_is_semver_precedence(a: Version, b: Version) -> None:
    assert (a < b) == (as_semver(a) < as_semver(b))
    assert (a == b) == (as_semver(a).compare(as_semver(b)) == 0)


def test_labels() -> None:
    assert Version.parse("15.4.0").label == "15.4"
    assert Version.parse("15.4.1").label == "15.4 U1"
    assert Version.parse("15.4.12").label == "15.4 U12"
    assert Version.parse("15.5.0-nightly.20261127").label == "15.5 nightly 2026-11-27"
    assert Version.parse("15.5.0-nightly.20261127.2").label == "15.5 nightly 2026-11-27 (2)"
    assert Version.parse("15.4.1").branch == "release/15.4"


def test_nightly_same_day_gets_a_rank() -> None:
    day = dt.date(2026, 11, 27)
    v = Version.parse("15.4.2")
    first = v.next_nightly(day)
    assert str(first) == "15.5.0-nightly.20261127"
    second = v.next_nightly(day, [first])
    assert str(second) == "15.5.0-nightly.20261127.2"
    assert str(v.next_nightly(day, [first, second])) == "15.5.0-nightly.20261127.3"
    assert first < second < Version.parse("15.5.0")
    # another day starts again
    assert str(v.next_nightly(dt.date(2026, 11, 28), [first, second])) == "15.5.0-nightly.20261128"


@pytest.mark.parametrize(
    "text",
    [
        "15.4",
        "15.4.1.2",
        "v15.4.1",
        "15.04.1",
        "15.4.1-rc.1",
        "15.4.1+build",
        "15.5.0-nightly.2026",
        "15.5.0-nightly.20261399",
        "15.5.1-nightly.20261127",
        "15.5.0-nightly.20261127.1",
        "",
    ],
)
def test_outside_the_scheme_is_refused(text: str) -> None:
    with pytest.raises(VersionError, match=r"not a Gestan version|not a date|X\.Y\.0"):
        Version.parse(text)


def test_tags() -> None:
    assert parse_tag("v15.4.1") == Version(15, 4, 1)
    assert parse_tag("gestan-15.4.1", prefix="gestan-") == Version(15, 4, 1)
    with pytest.raises(VersionError, match="'build-12' is not a release tag"):
        parse_tag("build-12")
    with pytest.raises(VersionError, match=r"'v15\.4' is not a release tag"):
        parse_tag("v15.4")
    assert release_version("v15.4.1") == Version(15, 4, 1)
    assert release_version("v15.5.0-nightly.20261127") is None
    assert release_version("v15.4.1-rc1") is None
    assert release_version("build-1") is None
    assert str(Version(15, 4, 1).tag()) == "v15.4.1"


def test_semver_library_agrees_on_nightly_rank() -> None:
    assert semver.Version.parse("15.5.0-nightly.20261127") < semver.Version.parse(
        "15.5.0-nightly.20261127.2"
    )
