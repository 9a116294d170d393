"""Prefect's console handler while a flow runs in this process: what a release manager reads in
the terminal (`terminal.console.View` draws the rest).

Prefect keeps recording everything in its API/UI; only what reaches the terminal changes. By
default Prefect's console handler shows WARNING and above, the run's own warnings are printed as
our lines, and the records that report the run's failure (task log, task state, flow log) are
left out: the CLI says the error once at the end. `--verbose` restores every log line, `--quiet`
prints only the result line. Prefect is imported inside the functions.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from gestan_release.terminal.console import QUIET, VERBOSE
from gestan_release.terminal.display import TerminalDisplay

RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")


class _TerminalFilter(logging.Filter):
    """On Prefect's console handler only (the API handler still gets every record): what a
    release manager reads in the terminal."""

    def __init__(self, handler: logging.Handler, display: Any, threshold: int) -> None:
        super().__init__()
        self.handler = handler
        self.display = display
        self.threshold = threshold

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < self.threshold:
            return False
        from_run = record.name.startswith(RUN_LOGGERS)
        if from_run and record.levelno >= logging.ERROR:
            # The task's exception, its state, the flow's exception and state: four copies of
            # the error that the CLI says once (with the run to look at when it is a bug).
            return False
        if from_run and isinstance(self.display, TerminalDisplay):
            self.display.warn(record.getMessage())
            return False
        if isinstance(self.display, TerminalDisplay) and self.display.is_live:
            self.display.log(self.handler.format(record))
            return False
        return True


class _AfterRun(logging.Filter):
    """Left on the console handler after a run: the temporary server's "Stopping…" notice,
    logged at exit, is not news either."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name == "prefect" and record.levelno < logging.WARNING)


_AFTER_RUN = _AfterRun()


def _console_handlers() -> list[logging.Handler]:
    from prefect.logging.configuration import ensure_logging_setup
    from prefect.logging.handlers import PrefectConsoleHandler

    ensure_logging_setup()
    handlers: list[logging.Handler] = []
    loggers = [logging.getLogger()] + [
        lg for lg in logging.root.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    for lg in loggers:
        for h in lg.handlers:
            if isinstance(h, PrefectConsoleHandler) and h not in handlers:
                handlers.append(h)
    return handlers


@contextlib.contextmanager
def prefect_terminal(verbosity: str, display: Any) -> Iterator[None]:
    """Prefect's console output for the duration of a run: WARNING and no failure copies by
    default, ERROR when quiet, everything when verbose. Filters, not handler levels: Prefect
    may re-apply its logging configuration (and the handler levels) while a run starts."""
    handlers = _console_handlers()
    for h in handlers:
        h.removeFilter(_AFTER_RUN)
    if verbosity == VERBOSE:
        yield
        return
    threshold = logging.ERROR if verbosity == QUIET else logging.WARNING
    filters = [(h, _TerminalFilter(h, display, threshold)) for h in handlers]
    for h, f in filters:
        h.addFilter(f)
    try:
        yield
    finally:
        for h, f in filters:
            h.removeFilter(f)
            h.addFilter(_AFTER_RUN)
