"""Finish a release that stopped half-way (a failing channel, a crash)."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.common import resume_release


@flow(name="resume", description="Finish what a failed release of VERSION left undone.")
def resume(
    version: str | None = None, repo: str = ".", crashed_flow_run: str | None = None
) -> dict[str, Any]:
    """`crashed_flow_run` instead of `version`: finish the release that this (crashed) flow run
    was working on; prefect.yaml's automation passes it."""
    return resume_release(repo, version, crashed_flow_run)
