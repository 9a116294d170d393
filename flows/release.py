"""Cut a full version from `main` and run the whole pipeline."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.common import cut


@flow(name="release", description="Cut a full version (minor or major bump) from main.")
def release(
    repo: str = ".",
    bump: str = "minor",
    ref: str | None = None,
    dry_run: bool = False,
    allow_missing: list[int] | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    return cut(
        repo, "full", ref, bump=bump, dry_run=dry_run, allow_missing=allow_missing, reason=reason
    )
