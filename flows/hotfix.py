"""Cut the next U sub-version from a maintenance branch `release/X.Y`."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.common import cut


@flow(name="hotfix", description="Cut the next U sub-version from release/X.Y (default: newest).")
def hotfix(repo: str = ".", branch: str | None = None, dry_run: bool = False) -> dict[str, Any]:
    return cut(repo, "u", branch, dry_run=dry_run)
