"""The filter on Prefect's console handler while a flow runs in this process: the run's warnings
as our lines, the copies of a failure dropped, other records above a live display."""

from __future__ import annotations

import io
import logging
import re

from rich.console import Console

from gestan_release.errors import ReleaseError
from gestan_release.prefect.logs import _TerminalFilter
from gestan_release.terminal.display import TerminalDisplay, make_console

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def record(name: str, level: int, msg: str, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, None) if exc else None
    return logging.LogRecord(name, level, __file__, 1, msg, (), exc_info)


def test_terminal_filter_says_warnings_and_drops_the_copies_of_the_failure() -> None:
    out = io.StringIO()
    display = TerminalDisplay(make_console(out), live=False)
    handler = logging.StreamHandler(io.StringIO())
    keep = _TerminalFilter(handler, display, logging.WARNING)
    error = ReleaseError("15.5 would fix no ticket")
    # the four copies of a failing run's error: said once by the CLI instead
    assert not keep.filter(record("prefect.task_runs", logging.ERROR, "failed", error))
    assert not keep.filter(record("prefect.task_runs", logging.ERROR, "Finished in state Failed"))
    assert not keep.filter(record("prefect.flow_runs", logging.ERROR, "Encountered exception"))
    # INFO (task finished, temporary server) only in the API
    assert not keep.filter(record("prefect.task_runs", logging.INFO, "Finished in state Completed"))
    assert not keep.filter(record("prefect", logging.INFO, "Starting temporary server"))
    # the run's warnings become our lines; other libraries' warnings pass as they are
    assert not keep.filter(record("prefect.task_runs", logging.WARNING, "#999 unknown"))
    assert out.getvalue() == "⚠ #999 unknown\n"
    assert keep.filter(record("prefect.client", logging.WARNING, "slow API"))
    # --quiet: errors only
    quiet = _TerminalFilter(handler, None, logging.ERROR)
    assert not quiet.filter(record("prefect.client", logging.WARNING, "slow API"))
    assert quiet.filter(record("prefect.client", logging.ERROR, "API unreachable"))


def test_terminal_filter_prints_other_records_above_a_live_display() -> None:
    out = Tty()
    console = Console(file=out, force_terminal=True, width=100)
    handler = logging.StreamHandler(io.StringIO())
    handler.setFormatter(logging.Formatter("%(levelname)s | %(name)s - %(message)s"))
    with TerminalDisplay(console, live=True) as display:
        keep = _TerminalFilter(handler, display, logging.WARNING)
        assert not keep.filter(record("prefect.client", logging.WARNING, "slow API"))
    assert "WARNING | prefect.client - slow API" in ANSI.sub("", out.getvalue())
    assert handler.stream.getvalue() == ""
