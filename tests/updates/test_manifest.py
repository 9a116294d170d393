"""Pure logic of the update endpoint: entries, canonical JSON, choosing an update."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gestan_release.history.versions import Version
from gestan_release.updates.choice import (
    Candidate,
    candidates_for,
    check_answer,
    choose_update,
    in_rollout,
)
from gestan_release.updates.manifest import (
    ManifestError,
    canonical,
    check_channel,
    next_serial,
    normalize_entry,
    same_release,
    with_release,
)

SHA = "ab" * 32
NOW = dt.datetime(2026, 11, 27, 10, 0, tzinfo=dt.UTC)


def art(platform: str = "win64") -> dict:
    return {platform: {"url": f"https://dl.gestan.fr/{platform}.exe", "sha256": SHA, "size": 42}}


def entry(version: str, **fields) -> dict:
    return normalize_entry({"version": version, "artifacts": art(), **fields}, now=NOW)


def manifest(channel: str, *entries: dict) -> dict:
    m = {"channel": channel, "serial": 7, "expires": "2026-12-04T10:00:00Z", "releases": []}
    for e in entries:
        m = with_release(m, e)
    return m


def choose(manifests, current, install="i-1", channel="stable", platform="win64", **kw):
    cands = candidates_for(manifests, channel, platform)
    choice = choose_update(cands, Version.parse(current), install, **kw)
    return choice


# -- entries --------------------------------------------------------------------------------------
def test_entry_defaults_follow_interfaces():
    e = normalize_entry({"version": "15.4.2", "artifacts": art()}, now=NOW)
    assert e == {
        "version": "15.4.2",
        "label": "15.4 U2",
        "kind": "u",
        "published_at": "2026-11-27T10:00:00Z",
        "critical": False,
        "min_version": None,
        "rollout": 100,
        "artifacts": art(),
        "notes_url": None,
        "yanked": False,
        "yank_reason": None,
    }
    assert normalize_entry({"version": "15.5.0-nightly.20261127", "artifacts": art()})["kind"] == (
        "nightly"
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"version": "15.4"}, "not a Gestan version"),
        ({"artifacts": {}}, "artifacts is required"),
        ({"artifacts": {"win64": {"url": "ftp://x", "sha256": SHA, "size": 1}}}, "http"),
        ({"artifacts": {"win64": {"url": "https://x", "sha256": "zz", "size": 1}}}, "sha256"),
        ({"artifacts": {"win64": {"url": "https://x", "sha256": SHA, "size": -1}}}, "size"),
        ({"artifacts": {"../x": {"url": "https://x", "sha256": SHA, "size": 1}}}, "platform"),
        ({"rollout": 101}, "rollout"),
        ({"rollout": True}, "rollout"),
        ({"critical": "yes"}, "critical"),
        ({"kind": "full"}, "is a u version"),
        ({"min_version": "15.4.2"}, "below the release"),
        ({"surprise": 1}, "unknown field"),
        ({"published_at": "yesterday"}, "ISO 8601"),
    ],
)
def test_bad_entries_are_refused_with_a_reason(fields, message):
    raw = {"version": "15.4.2", "artifacts": art(), **fields}
    with pytest.raises(ManifestError, match=message):
        normalize_entry(raw)


def test_url_version_and_body_version_must_agree():
    assert normalize_entry({"artifacts": art()}, version="15.4.2")["version"] == "15.4.2"
    with pytest.raises(ManifestError, match="URL names"):
        normalize_entry({"version": "15.4.3", "artifacts": art()}, version="15.4.2")


@pytest.mark.parametrize("name", ["..", "../etc", "Stable", "a/b", "", "x" * 40, "stable\n"])
def test_unsafe_channel_names_are_refused(name):
    with pytest.raises(ManifestError):
        check_channel(name)


def test_same_release_ignores_rollout_yank_and_publication_time():
    a = entry("15.4.2")
    assert same_release(a, {**a, "rollout": 10, "yanked": True, "published_at": "2020-01-01"})
    assert not same_release(a, {**a, "critical": True})
    assert not same_release(a, {**a, "artifacts": art("mac")})


# -- canonical JSON -------------------------------------------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(st.text(), json_values, max_size=6))
def test_canonical_is_independent_of_key_order_and_round_trips(doc):
    reordered = dict(reversed(list(doc.items())))
    assert canonical(doc) == canonical(reordered)
    assert json.loads(canonical(doc)) == doc
    assert b" " not in canonical({"a": [1, 2], "b": {"c": None}})


def test_canonical_refuses_floats_that_are_not_json():
    with pytest.raises(ValueError):
        canonical({"x": float("nan")})


@given(st.integers(min_value=0, max_value=2**40))
def test_next_serial_always_increases(previous):
    assert next_serial(previous, NOW) > previous


# -- rollout --------------------------------------------------------------------------------------
@given(st.text(min_size=1, max_size=20), st.integers(0, 100), st.integers(0, 100))
def test_rollout_is_sticky_and_monotonic(install, p, q):
    lo, hi = sorted((p, q))
    assert in_rollout(install, "15.4.2", lo) == in_rollout(install, "15.4.2", lo)
    if in_rollout(install, "15.4.2", lo):
        assert in_rollout(install, "15.4.2", hi)


def test_rollout_spread_and_not_always_the_same_installs_first():
    ids = [f"install-{n}" for n in range(10_000)]
    first = {i for i in ids if in_rollout(i, "15.4.2", 20)}
    second = {i for i in ids if in_rollout(i, "15.4.3", 20)}
    assert 1800 <= len(first) <= 2200
    assert 1800 <= len(second) <= 2200
    overlap = len(first & second)
    assert 250 <= overlap <= 550  # ~20 % of 20 %: independent draws, not the same group
    assert not any(in_rollout(i, "15.4.2", 0) for i in ids[:500])
    assert all(in_rollout(i, "15.4.2", 100) for i in ids[:500])


# -- choosing -------------------------------------------------------------------------------------
def test_highest_release_above_current_is_chosen():
    m = {"stable": manifest("stable", entry("15.4.0"), entry("15.4.1"), entry("15.4.2"))}
    assert str(choose(m, "15.4.0").target.version) == "15.4.2"
    assert str(choose(m, "15.4.1").target.version) == "15.4.2"
    assert choose(m, "15.4.2") is None
    assert choose(m, "16.0.0") is None


def test_yanked_and_other_platform_releases_are_never_offered():
    m = {
        "stable": manifest(
            "stable",
            entry("15.4.1"),
            entry("15.4.2", yanked=True, yank_reason="corrupts invoices"),
            normalize_entry({"version": "15.4.3", "artifacts": art("macos")}),
        )
    }
    assert str(choose(m, "15.4.0").target.version) == "15.4.1"
    assert choose(m, "15.4.0", platform="macos").target.version == Version.parse("15.4.3")


def test_stepping_stone_when_min_version_is_out_of_reach():
    m = {
        "stable": manifest(
            "stable", entry("15.3.0"), entry("15.4.0"), entry("16.0.0", min_version="15.4.0")
        )
    }
    assert str(choose(m, "15.2.0").target.version) == "15.4.0"  # the stone
    assert str(choose(m, "15.4.0").target.version) == "16.0.0"  # then the rest of the way


def test_critical_is_not_shadowed_by_a_later_optional_release():
    m = {"stable": manifest("stable", entry("15.4.1", critical=True), entry("15.4.2"))}
    choice = choose(m, "15.4.0")
    assert str(choice.target.version) == "15.4.2"
    assert choice.critical is True
    assert choose(m, "15.4.1").critical is False  # already has the flash fix


def test_critical_and_interactive_skip_a_staged_rollout_but_not_a_halt():
    m = {"stable": manifest("stable", entry("15.4.1", rollout=0), entry("15.4.2", rollout=1))}
    outside = next(i for i in (f"id-{n}" for n in range(1000)) if not in_rollout(i, "15.4.2", 1))
    assert choose(m, "15.4.0", install=outside) is None
    assert str(choose(m, "15.4.0", install=outside, interactive=True).target.version) == "15.4.2"
    crit = {"stable": manifest("stable", entry("15.4.2", rollout=1, critical=True))}
    assert choose(crit, "15.4.0", install=outside) is not None
    halted = {"stable": manifest("stable", entry("15.4.2", rollout=0, critical=True))}
    assert choose(halted, "15.4.0", install=outside, interactive=True) is None


def test_nightly_sees_stable_releases_above_it_but_stable_does_not_see_nightlies():
    m = {
        "stable": manifest("stable", entry("15.5.0")),
        "nightly": manifest("nightly", entry("15.5.0-nightly.20261127")),
    }
    assert str(choose(m, "15.4.0").target.version) == "15.5.0"
    got = choose(m, "15.5.0-nightly.20261126", channel="nightly")
    assert str(got.target.version) == "15.5.0"
    assert got.target.channel == "stable"
    assert choose(m, "15.4.0", channel="stable").target.channel == "stable"
    only_nightly = {"nightly": manifest("nightly", entry("15.5.0-nightly.20261127"))}
    assert str(choose(only_nightly, "15.4.0", channel="nightly").target.version) == (
        "15.5.0-nightly.20261127"
    )


def test_check_answer_marks_a_yanked_current_version_and_echoes_the_request():
    m = {"stable": manifest("stable", entry("15.4.1", yanked=True, yank_reason="bad"))}
    body = check_answer(
        None, manifests=m, channel="stable", platform="win64", current=Version.parse("15.4.1")
    )
    assert body["version"] is None
    assert body["current_yanked"] is True and body["current_yank_reason"] == "bad"
    assert body["request"] == {"channel": "stable", "platform": "win64", "version": "15.4.1"}
    assert body["serials"] == {"stable": 7}


# -- the rules hold for any manifest --------------------------------------------------------------
versions = st.builds(
    lambda a, b, c: f"15.{a}.{b}" if c else f"15.{a}.0-nightly.2026110{b + 1}",
    st.integers(0, 3),
    st.integers(0, 4),
    st.booleans(),
)
releases = st.lists(
    st.fixed_dictionaries(
        {
            "version": versions,
            "critical": st.booleans(),
            "rollout": st.sampled_from([0, 10, 50, 100]),
            "yanked": st.booleans(),
            "min_version": st.none() | st.sampled_from(["15.0.0", "15.1.0", "15.2.3"]),
        }
    ),
    max_size=8,
    unique_by=lambda r: r["version"],
)


def _build(rels):
    out = []
    for r in rels:
        raw = {**r, "artifacts": art()}
        if r["yanked"]:
            raw["yank_reason"] = "bad"
        if r["min_version"] and not Version.parse(r["min_version"]) < Version.parse(r["version"]):
            raw["min_version"] = None
        out.append(normalize_entry(raw, now=NOW))
    return {"stable": manifest("stable", *out)}


@settings(max_examples=300, deadline=None)
@given(releases, versions, st.text(min_size=1, max_size=8), st.booleans())
def test_choice_is_the_best_reachable_release(rels, current_text, install, interactive):
    m = _build(rels)
    current = Version.parse(current_text)
    cands: list[Candidate] = candidates_for(m, "stable", "win64")
    choice = choose_update(cands, current, install, interactive=interactive)

    def takeable(c: Candidate) -> bool:
        return (
            c.version > current
            and c.rollout > 0
            and (c.min_version is None or c.min_version <= current)
            and (
                c.rollout == 100
                or c.critical
                or interactive
                or in_rollout(install, str(c.version), c.rollout)
            )
        )

    best = max((c for c in cands if takeable(c)), key=lambda c: c.version, default=None)
    if best is None:
        assert choice is None
        return
    assert choice.target == best
    assert not best.entry["yanked"]
    skipped = [c for c in cands if current < c.version <= best.version]
    assert choice.critical == any(c.critical for c in skipped)
    # the same install asking again gets the same answer
    assert choose_update(cands, current, install, interactive=interactive) == choice
    # a manual check never offers less than an automatic one
    manual = choose_update(cands, current, install, interactive=True)
    assert manual is not None and manual.target.version >= best.version
