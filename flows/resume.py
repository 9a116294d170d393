"""Finish a release that stopped half-way (a failing channel, a crash)."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.common import resume_release


@flow(name="resume", description="Finish what a failed release of VERSION left undone.")
def resume(version: str, repo: str = ".") -> dict[str, Any]:
    return resume_release(repo, version)
