"""Running a flow of `flows/` in this process: what `release`, `hotfix`, `nightly`, `resume`
and the demo do (with no `PREFECT_API_URL`, Prefect starts a temporary local server).

It sits above `flows/` and below the commands, so that the commands and the demo both use it
without importing each other. Prefect and the flows are imported inside `run_flow` (start-up time).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gestan_release.terminal.console import View


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
    from gestan_release.prefect.logs import prefect_terminal
    from gestan_release.prefect.runs import flow_result, quiet_expected_errors

    quiet_expected_errors()
    fn = _flow(name)
    if view is None:
        return flow_result(fn(**params, return_state=True))
    with view.watching(tame=prefect_terminal) as display:
        if not os.environ.get("PREFECT_API_URL"):
            display.running("starting a temporary Prefect server (PREFECT_API_URL is not set)")
        state = fn(**params, return_state=True)
    return flow_result(state, with_run=view.format == "json")
