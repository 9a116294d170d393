"""Take triaged bug reports in from the forum, then acknowledge them: the support's runbook every
15 minutes of the support's hours (see prefect.yaml). Logic in `support.intake` / `.acks`."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.utilities.annotations import quote

from flows.common import OPTS, RETRY, load_settings
from gestan_release.core import progress
from gestan_release.errors import DeliveryError
from gestan_release.settings import Settings


@task(name="sync", **OPTS, **RETRY)
def sync_step(settings: Settings, full: bool) -> Any:
    """Read the bug categories; a retry resumes after the last page written."""
    from gestan_release.channels.forum_reader import ForumReader
    from gestan_release.support.intake import sync
    from gestan_release.support.intake_store import IntakeStore

    store = IntakeStore(settings.database_url)
    with ForumReader.from_settings(settings) as reader:
        return sync(
            settings,
            reader,
            store,
            full=True if full else None,
            progress=progress.logged(get_run_logger().info),
        )


@task(name="acknowledge", **OPTS, **RETRY)
def ack_step(settings: Settings) -> Any:
    """One acknowledgement per new ticket, one update per raised priority, never twice."""
    from gestan_release.store.ledger import Ledger
    from gestan_release.support.acks import run_ack
    from gestan_release.support.intake_store import IntakeStore

    url = settings.database_url
    return run_ack(settings, IntakeStore(url), Ledger(url), None)


@flow(name="intake", description="Take triaged bug reports in from the forum; acknowledge them.")
def intake(repo: str = ".", full: bool = False, ack: bool = True) -> dict[str, Any]:
    from gestan_release.store.db import ensure_state_dir
    from gestan_release.support.intake import summary_markdown

    settings = load_settings(repo)
    ensure_state_dir(settings)
    summary = sync_step(quote(settings), full)
    acks = ack_step(quote(settings)) if ack else None
    logger = get_run_logger()
    logger.info(summary.line())
    if acks is not None:
        logger.info(acks.line())
    text = summary_markdown(summary, acks)
    create_markdown_artifact(text, key="intake", description="Signalements pris en compte")
    if acks is not None and acks.failed:
        # Recorded in the ledger; the next run (or `gestan-release tickets ack`) sends them.
        raise DeliveryError(f"{acks.line()}; the next run sends what failed, once")
    return {
        "summary": summary.line(),
        "acks": acks.line() if acks else None,
        "failed": [key for key, _ in acks.failed] if acks else [],
        "markdown": text,
    }
