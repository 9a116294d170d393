"""`approve`, `reject`: answer a release waiting at the approval gate (APPROVAL=required)."""

from __future__ import annotations

import argparse
import os

from gestan_release.commands import command, note
from gestan_release.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = command(sub, "approve", cmd_approve)
    p.add_argument("version", metavar="VERSION")
    p.add_argument("--by", help="who approves (default: user@host), recorded in the ledger")

    p = command(sub, "reject", cmd_reject)
    p.add_argument("version", metavar="VERSION")
    p.add_argument("--reason", required=True, help="why (shown in the run and its log)")
    p.add_argument("--by", help="who rejects (default: user@host)")


def _needs_server() -> None:
    if not os.environ.get("PREFECT_API_URL"):
        raise ConfigError(
            "approve and reject talk to the Prefect server of the waiting run: set "
            "PREFECT_API_URL (e.g. http://127.0.0.1:4200/api)"
        )


def cmd_approve(args: argparse.Namespace) -> int:
    """approve a release waiting at the approval gate

    With APPROVAL=required a release pauses after its approval request (the artifact `approval-X-
    Y-Z` of its flow run) until someone answers. This approves it: the flow run goes on and ships.
    Needs PREFECT_API_URL (the server of the run)."""
    from gestan_release.prefect.cockpit import answer

    _needs_server()
    run_id = answer(args.version, True, by=args.by)
    note(f"approved {args.version}: flow run {run_id} goes on")
    return 0


def cmd_reject(args: argparse.Namespace) -> int:
    """reject a release waiting at the approval gate

    Reject a release waiting at the approval gate: its flow run ends Failed with REASON and nothing
    is shipped; the next run plans the release afresh."""
    from gestan_release.prefect.cockpit import answer

    _needs_server()
    run_id = answer(args.version, False, args.reason, by=args.by)
    note(f"rejected {args.version}: flow run {run_id} stops, nothing shipped")
    return 0
