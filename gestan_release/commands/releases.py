"""`release`, `hotfix`, `nightly`, `resume`, `status`, `demo`, `on-tag`.

The first four run the Prefect flows of `flows/` in this process through `flowrun` (with no
`PREFECT_API_URL`, Prefect starts a temporary local server); Prefect is imported only inside the
handlers.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from gestan_release.commands import add_format, add_output_options, command, note, settings_from
from gestan_release.errors import GestanReleaseError


def register(sub: argparse._SubParsersAction) -> None:
    p = command(sub, "release", cmd_release)
    p.add_argument("--bump", choices=("minor", "major"), default="minor")
    p.add_argument("--ref", metavar="REF", help="branch to release (default: MAIN_BRANCH)")
    p.add_argument("--dry-run", action="store_true", help="show everything, change nothing")
    p.add_argument(
        "--allow-missing",
        type=int,
        nargs="+",
        metavar="ID",
        help="let these flash tickets of a U version be missing from this version (needs --reason)",
    )
    p.add_argument("--reason", help="why --allow-missing is right; recorded in the ledger")
    add_output_options(p)

    p = command(sub, "hotfix", cmd_hotfix)
    p.add_argument(
        "--branch",
        metavar="release/X.Y",
        help="the maintenance branch (default: the checked-out one if it is one, else the newest)",
    )
    p.add_argument("--dry-run", action="store_true", help="show everything, change nothing")
    add_output_options(p)

    p = command(sub, "nightly", cmd_nightly)
    p.add_argument("--ref", metavar="REF")
    add_output_options(p)

    p = command(sub, "resume", cmd_resume)
    p.add_argument("version", metavar="VERSION")
    add_output_options(p)

    p = command(sub, "status", cmd_status)
    add_format(p, "table", "json")

    p = command(sub, "demo", cmd_demo)
    p.add_argument(
        "--dir", metavar="DIR", help="where to build it (default: a new temporary directory)"
    )

    p = command(sub, "on-tag", cmd_on_tag)
    p.add_argument("tag", metavar="TAG")


# --------------------------------------------------------------------------------------------
def _run(args: argparse.Namespace, name: str, **params: Any) -> int:
    """Run the flow, show how it ended, and say the exit code (README: exit codes)."""
    from gestan_release.prefect.flowrun import run_flow
    from gestan_release.terminal.console import View

    view = View.from_args(args)
    try:
        result = run_flow(name, view, repo=str(args.repo), **params)
    except GestanReleaseError as exc:
        # The error line itself is printed once, by the CLI's main; here only the summary or
        # the JSON document of what happened before it.
        view.outcome(name, getattr(exc, "outcome", {}) or {}, exc)
        raise
    return view.outcome(name, result)


def cmd_release(args: argparse.Namespace) -> int:
    """cut a full version from main and run the whole pipeline

    Cut a full version (minor bump by default) from main: gather the fixed tickets, check that
    every flash fix shipped in a U version of the previous line is in it, tag it, create its
    release/X.Y branch, build, publish to the update endpoint, announce it on X and the forum, mail
    every reporter. Safe to run again: what was done is skipped, what failed is retried."""
    return _run(
        args,
        "release",
        bump=args.bump,
        ref=args.ref,
        dry_run=args.dry_run,
        allow_missing=args.allow_missing,
        reason=args.reason,
    )


def cmd_hotfix(args: argparse.Namespace) -> int:
    """cut the next U sub-version from a maintenance branch

    Cut the next U sub-version (15.4 U1 = 15.4.1) from a maintenance branch release/X.Y and run the
    whole pipeline. Without --branch: the checked-out branch when it is a maintenance branch, else
    the newest one (the first step line says which and why). Refused when it fixes no ticket."""
    return _run(args, "hotfix", branch=args.branch, dry_run=args.dry_run)


def cmd_nightly(args: argparse.Namespace) -> int:
    """publish a nightly pre-release to the nightly channel

    Build main (or --ref) as a nightly pre-release of the next full version
    (15.5.0-nightly.20261127) and publish it on the nightly update channel. No git tag, no
    announcement, no mail."""
    return _run(args, "nightly", ref=args.ref)


def cmd_resume(args: argparse.Namespace) -> int:
    """finish what a failed release left undone

    Run the undone side effects of a release recorded in the ledger, once each."""
    return _run(args, "resume", version=args.version)


def cmd_status(args: argparse.Namespace) -> int:
    """last releases, undone deliveries, fixed tickets not yet released

    Show the last releases, the deliveries left undone, the tickets fixed on main but not released
    (by priority), and flash fixes on a maintenance branch not yet shipped (a U version is
    recommended)."""
    from gestan_release.support.status import render_status, status

    data = status(settings_from(args))
    if args.format == "json":
        print(json.dumps(data, ensure_ascii=False, indent=2, default=str))
    else:
        render_status(data)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """build a sandbox and run a full release then a U hotfix in it

    Build a sandbox (a repository with a realistic history across two full versions, tickets of all
    four priorities, a maintenance branch with a flash fix), then run a full release and a U hotfix
    on the embedded default (outbox, local update store). Nothing leaves the machine."""
    from gestan_release.demo import run_demo

    run_demo(args.dir)
    return 0


def cmd_on_tag(args: argparse.Namespace) -> int:
    """emit the Prefect event that starts the matching deployment (git hook, CI)

    Check that TAG is a release tag of this repository and emit the Prefect event
    `gestan.release.tagged`; the trigger in prefect.yaml starts the hotfix or release deployment,
    which adopts the tag. Needs PREFECT_API_URL."""
    from gestan_release.prefect.runs import emit_tag_event

    settings = settings_from(args)
    event = emit_tag_event(settings, args.tag)
    note(f"emitted {event['event']} for {args.tag} ({event['deployment']} deployment)")
    return 0
