"""Publish a nightly pre-release of `main` on the `nightly` channel: no tag, no post, no mail."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.common import cut


@flow(name="nightly", description="Build main and publish it to the nightly update channel.")
def nightly(repo: str = ".", ref: str | None = None) -> dict[str, Any]:
    return cut(repo, "nightly", ref)
