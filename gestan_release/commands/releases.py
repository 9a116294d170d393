"""`release`, `hotfix`, `nightly`, `resume`, `status`, `demo`, `on-tag`.

The first four run the Prefect flows of `flows/` in this process (with no `PREFECT_API_URL`,
Prefect starts a temporary local server). Prefect is imported only here, inside the handlers.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import TYPE_CHECKING, Any

from gestan_release.commands import add_format, add_output_options, command, note, settings_from
from gestan_release.errors import GestanReleaseError

if TYPE_CHECKING:
    from gestan_release.console import View


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
def _prefect_env() -> None:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    # The temporary local server (no PREFECT_API_URL) may start slowly on a busy machine.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


def _flow(name: str) -> Any:
    if name == "release":
        from flows.release import release as fn
    elif name == "hotfix":
        from flows.hotfix import hotfix as fn
    elif name == "nightly":
        from flows.nightly import nightly as fn
    else:
        from flows.resume import resume as fn
    return fn


def run_flow(name: str, view: View | None = None, **params: Any) -> dict[str, Any]:
    """Run one of the flows of `flows/` in this process and return its result; shown through
    `view` (steps, bars, Prefect's console tamed) when given. Raises the run's expected error,
    or FlowRunError naming the run when it failed on a bug."""
    _prefect_env()
    from gestan_release.prefect_support import flow_result, quiet_expected_errors

    quiet_expected_errors()
    fn = _flow(name)
    if view is None:
        return flow_result(fn(**params, return_state=True))
    with view.watching() as display:
        if not os.environ.get("PREFECT_API_URL"):
            display.running("starting a temporary Prefect server (PREFECT_API_URL is not set)")
        state = fn(**params, return_state=True)
    return flow_result(state, with_run=view.format == "json")


def _run(args: argparse.Namespace, name: str, **params: Any) -> int:
    """Run the flow, show how it ended, and say the exit code (README: exit codes)."""
    from gestan_release.console import View

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
    from gestan_release.status import render_status, status

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
    from gestan_release.prefect_support import emit_tag_event

    settings = settings_from(args)
    event = emit_tag_event(settings, args.tag)
    note(f"emitted {event['event']} for {args.tag} ({event['deployment']} deployment)")
    return 0
