"""Publish a nightly pre-release of `main` on the `nightly` channel: no tag, no post, no mail."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from flows.common import OPTS, cut, load_settings
from gestan_release.errors import GestanReleaseError


@task(name="promises report", **OPTS)
def promises_report(repo: str) -> str | None:
    """Gestan's promises measured: the HTML report under STATE_DIR/reports and its summary as an
    artifact. A report that cannot be made never fails the nightly build."""
    from gestan_release.support.report import nightly_report

    try:
        path, text = nightly_report(load_settings(repo))
    except GestanReleaseError as exc:
        get_run_logger().warning(f"promises report not made: {exc}")
        return None
    create_markdown_artifact(text, key="promesses", description="Promesses du support")
    return str(path)


@flow(name="nightly", description="Build main and publish it to the nightly update channel.")
def nightly(repo: str = ".", ref: str | None = None) -> dict[str, Any]:
    result = cut(repo, "nightly", ref)
    result["report"] = promises_report(repo)
    return result
