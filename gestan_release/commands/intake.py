"""`tickets sync`, `tickets ack [ID…]` (registered under `tickets`) and `report`.

Plain functions, no Prefect: a sync with nothing new must answer within a second (the `intake`
flow of `flows/` runs the same functions on a schedule, with a summary artifact).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from gestan_release.commands import command, note, settings_from, warn


def register_tickets(sub: Any) -> None:
    """The `tickets sync` and `tickets ack` actions (called by commands/tickets.py)."""
    p = command(sub, "sync", cmd_sync)
    p.add_argument(
        "--full",
        action="store_true",
        help="re-read every discussion (finds re-tags and deletions the incremental read misses)",
    )
    p.add_argument("--no-ack", action="store_true", help="take reports in, send no mail")

    p = command(sub, "ack", cmd_ack)
    p.add_argument("ids", nargs="*", type=int, metavar="ID", help="only these tickets")


def register(sub: Any) -> None:
    p = command(sub, "report", cmd_report)
    p.add_argument(
        "--out",
        metavar="FILE",
        help="where to write it (default: <STATE_DIR>/reports/promesses-<date>.html)",
    )
    p.add_argument(
        "--since",
        metavar="DATE",
        help="only tickets acknowledged/reported and releases since DATE (YYYY-MM-DD)",
    )


def _stores(settings: Any, store: Any = None) -> tuple[Any, Any]:
    """The intake store (`store` opened, or a new one) and the ledger, the state directory made
    and the schema migrated."""
    from gestan_release.store.ledger import Ledger
    from gestan_release.support.intake_cursors import LazyIntakeStore

    intake = (store if store is not None else LazyIntakeStore(settings)).open()
    return intake, Ledger(intake.url)


def _print_ack(result: Any) -> int:
    for tid, priority in result.acknowledged:
        note(f"acknowledged #{tid} ({priority})")
    for tid, old, new in result.raised:
        note(f"#{tid}: priority raised {old} → {new}, update mailed")
    for tid, why in result.refused:
        warn(f"#{tid} not acknowledged: {why}")
    for key, error in result.failed:
        warn(f"{key} failed: {error}")
    note(result.line())
    return 1 if result.failed or result.refused else 0


def cmd_sync(args: argparse.Namespace) -> int:
    """take the triaged bug reports in from the forum, then acknowledge them

    Read the discussions of the bug-report categories (FORUM_BUG_CATEGORIES) of the Vanilla forum
    (FORUM_BASE_URL, FORUM_TOKEN of an administrator, to read the reporters' e-mail addresses). A
    discussion tagged with a priority (FORUM_PRIORITY_TAGS) becomes a ticket, or updates its
    priority; one without is listed 'à trier'. Incremental and safe to interrupt: the next run goes
    on where this one stopped. Then sends the acknowledgement mail of every new ticket (once),
    unless --no-ack."""
    from gestan_release.channels.forum_reader import ForumReader
    from gestan_release.support.acks import AckResult, run_ack
    from gestan_release.support.intake import sync
    from gestan_release.support.intake_cursors import LazyIntakeStore, ack_outlook
    from gestan_release.terminal.console import View

    # Opened when there is something to write: a re-sync with nothing new reads its cursors with
    # the stdlib and never imports SQLAlchemy (issue 10: within a second).
    settings = settings_from(args)
    store = LazyIntakeStore(settings)
    with (
        ForumReader.from_settings(settings) as reader,
        View(out=sys.stderr).watching() as display,
    ):
        summary = sync(settings, reader, store, full=True if args.full else None, progress=display)
    for tid, old, new in summary.reprioritised:
        note(f"#{tid}: priority {old} → {new}")
    for tid, reason in summary.set_aside:
        warn(f"#{tid} set aside: {reason}")
    for tid, reason in summary.deleted:
        warn(f"#{tid}: {reason}")
    note(summary.line())
    if args.no_ack:
        return 0
    outlook = ack_outlook(settings.database_url or "", settings.ack_max_age_days)
    if outlook is not None and not outlook.due:
        # Nothing to mail: the step's answer without opening the stores and the mail channels
        # (their settings are checked when there is something to send).
        return _print_ack(AckResult(too_old=outlook.too_old))
    return _print_ack(run_ack(settings, *_stores(settings, store), None))


def cmd_ack(args: argparse.Namespace) -> int:
    """send the acknowledgement mail (once per ticket)

    Send the 'prise en compte' mail (priority, what it means, planned delay) to the reporter of
    each forum-tracked open ticket not yet acknowledged, or of the tickets ID…, once, through SMTP
    or the Maildir outbox; mail one short update for a priority raised since. Its Message-ID is
    stored so the 'fixed' mail threads under it."""
    from gestan_release.support.acks import run_ack

    settings = settings_from(args)
    return _print_ack(run_ack(settings, *_stores(settings), args.ids or None))


def cmd_report(args: argparse.Namespace) -> int:
    """Gestan's promises measured, as one self-contained HTML page with charts

    Per priority: open tickets and their age, time from acknowledgement to the first release with
    the fix (median, p90); flash shipped in a U and 'always in the next full version' kept or
    overridden; haute versions waited against '3 ou 4 en moyenne'; normale/basse backlog; the trend
    over recent releases. One HTML file, charts included (no network needed to open it)."""
    import datetime as dt
    from pathlib import Path

    from gestan_release.errors import ConfigError
    from gestan_release.support.promise_facts import load_facts
    from gestan_release.support.promises import measure
    from gestan_release.support.report import write_report

    since = None
    if args.since:
        try:
            since = dt.date.fromisoformat(args.since)
        except ValueError:
            raise ConfigError(
                f"--since {args.since!r} is not a date: write it YYYY-MM-DD"
            ) from None
    settings = settings_from(args)
    assert settings.state_dir is not None
    now = dt.datetime.now(dt.UTC)
    facts = load_facts(settings.database_url or "", since=since)
    promises = measure(facts, now=now, settings=settings)
    out = (
        Path(args.out)
        if args.out
        else settings.state_dir / "reports" / (f"promesses-{now:%Y-%m-%d}.html")
    )
    write_report(promises, out)
    note(f"report written to {out}")
    print(out)
    return 0
