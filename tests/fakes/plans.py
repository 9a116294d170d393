"""A plan of a U sub-version with no ticket, for tests that drive deliveries by hand."""

from __future__ import annotations

from gestan_release.release.plan import Plan


def u_plan(version: str = "15.4.1") -> Plan:
    return Plan(
        kind="u",
        version=version,
        branch="release/15.4",
        commit="c" * 40,
        previous="15.4.0",
        from_ref="v15.4.0",
        channel="stable",
        date="2026-11-27",
        changelog={"from": "v15.4.0", "to": "c" * 40, "previous_version": "15.4.0",
                   "tickets": [], "unknown": [], "reverted": []},
    )  # fmt: skip
