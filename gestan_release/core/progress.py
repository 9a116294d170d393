"""How long work tells whoever watches it what it is doing: a small reporter interface.

Plain functions of `gestan_release` that fan out (the mails and forum replies of a release, the
import of a big ticket file, the intake sync) take a `progress: Progress` argument, `NULL` by
default, and use it like this::

    with progress.track("mail", total=len(mails)) as bar:
        for mail in mails:
            ...
            bar.advance(failed=not sent)

`total=None` when the count is not known in advance (pages of a forum). Steps of a flow report one
line each with `progress.step(name, outcome)`. The terminal display (`terminal.console`)
implements it with rich live bars or plain lines; `logged(...)` writes milestones to a logger (the
Prefect run log); `NULL` does nothing, so the functions cost nothing extra when nobody watches.

The flows do not pass a reporter through Prefect: the CLI installs its display with `using(...)`
for the duration of a run, and the flows read it with `current()` (a worker has none: `NULL`).
The task hooks at the bottom turn Prefect's task states into step lines.

This module imports nothing heavy: read-only commands may load it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, Protocol


class Tracker(Protocol):
    """One fan-out in progress: advance it per item, close it at the end (or use `with`)."""

    def advance(self, n: int = 1, *, failed: bool = False) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> Tracker: ...

    def __exit__(self, *exc: object) -> None: ...


class Progress(Protocol):
    """Whoever watches: the terminal, a log, or nobody."""

    def track(self, label: str, total: int | None) -> Tracker:
        """Start a fan-out of `total` items (None: unknown)."""
        ...

    def step(self, name: str, outcome: str, *, status: str = "ok") -> None:
        """One step finished: `status` is ok, warn, failed or skipped."""
        ...

    def running(self, name: str, attempt: int = 1) -> None:
        """A step started (or, attempt > 1, started again after a failure)."""
        ...

    def warn(self, message: str) -> None:
        """Something the user should read now (it stays in the logs too)."""
        ...


class NullTracker:
    """A tracker that does nothing."""

    def advance(self, n: int = 1, *, failed: bool = False) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> NullTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class NullProgress:
    """Nobody watches: every call is a no-op."""

    def track(self, label: str, total: int | None) -> Tracker:
        return NullTracker()

    def step(self, name: str, outcome: str, *, status: str = "ok") -> None:
        pass

    def running(self, name: str, attempt: int = 1) -> None:
        pass

    def warn(self, message: str) -> None:
        pass


NULL: Progress = NullProgress()


class CountingTracker(NullTracker):
    """Counts done and failed items; the base of the real trackers."""

    def __init__(self, label: str, total: int | None) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self.failed = 0
        self.closed = False

    def advance(self, n: int = 1, *, failed: bool = False) -> None:
        self.done += n
        if failed:
            self.failed += n

    def close(self) -> None:
        self.closed = True

    def counts(self) -> str:
        """`30/300` (or `30` when the total is unknown), plus the failures."""
        text = f"{self.done}/{self.total}" if self.total is not None else str(self.done)
        return text + (f", {self.failed} failed" if self.failed else "")


def milestones(total: int | None, every: int = 10) -> Callable[[int], bool]:
    """Which counts deserve a line in a plain log: about every tenth of a big fan-out, and the
    last; small ones (≤ 20 items) only get their final step line."""
    if total is None:
        return lambda n: n % 100 == 0
    if total <= 20:
        return lambda n: False
    step = max(1, total // every)
    return lambda n: n % step == 0 or n == total


class _LoggedTracker(CountingTracker):
    def __init__(self, label: str, total: int | None, log: Callable[[str], None], inner: Tracker):
        super().__init__(label, total)
        self._log = log
        self._inner = inner
        self._due = milestones(total)

    def advance(self, n: int = 1, *, failed: bool = False) -> None:
        before = self.done
        super().advance(n, failed=failed)
        self._inner.advance(n, failed=failed)
        if any(self._due(k) for k in range(before + 1, self.done + 1)):
            self._log(f"{self.label}: {self.counts()}")

    def close(self) -> None:
        super().close()
        self._inner.close()


class Logged:
    """Milestones of each fan-out written to `log` (e.g. a Prefect run logger's `info`), every
    call also passed on to `inner` (the terminal display, when there is one)."""

    def __init__(self, log: Callable[[str], None], inner: Progress = NULL) -> None:
        self._log = log
        self._inner = inner

    def track(self, label: str, total: int | None) -> Tracker:
        return _LoggedTracker(label, total, self._log, self._inner.track(label, total))

    def step(self, name: str, outcome: str, *, status: str = "ok") -> None:
        self._inner.step(name, outcome, status=status)

    def running(self, name: str, attempt: int = 1) -> None:
        self._inner.running(name, attempt)

    def warn(self, message: str) -> None:
        self._inner.warn(message)


def logged(log: Callable[[str], None], inner: Progress | None = None) -> Progress:
    return Logged(log, current() if inner is None else inner)


# --------------------------------------------------------------------------------------------
# The reporter of this process (set by the CLI around a flow run)
# --------------------------------------------------------------------------------------------
_current: Progress = NULL


def current() -> Progress:
    """The display installed by `using`, else NULL."""
    return _current


@contextlib.contextmanager
def using(progress: Progress) -> Iterator[Progress]:
    global _current
    previous, _current = _current, progress
    try:
        yield progress
    finally:
        _current = previous


# --------------------------------------------------------------------------------------------
# Steps of a release as lines: Prefect task hooks (plain functions; Prefect is not imported)
# --------------------------------------------------------------------------------------------
def describe(step: str, value: Any) -> tuple[str, str]:
    """(status, outcome) of a finished release step, from what its task returned."""
    if isinstance(value, tuple) and value and hasattr(value[-1], "line"):
        value = value[-1]  # (commit, StepResult), (url, StepResult)…
    if hasattr(value, "line") and hasattr(value, "ok"):  # a StepResult
        line = value.line().split(": ", 1)[-1]
        if not value.ok:
            return "failed", line
        return "ok", line
    if step == "preflight" and isinstance(value, str):
        reason = getattr(value, "reason", None)
        return "ok", f"{value} ({reason})" if reason else str(value)
    if step == "plan" and hasattr(value, "ticket_ids"):
        since = f" since {value.previous}" if value.previous else ""
        return "ok", (
            f"{value.label} ({value.version}) from {value.branch}, "
            f"{len(value.ticket_ids)} ticket(s){since}"
        )
    if step == "guard" and isinstance(value, list):
        if value:
            return "warn", f"{len(value)} warning(s)"
        return "ok", "Gestan's rules are kept"
    if step == "dry run":
        return "ok", "nothing changed, preview below"
    return "ok", "done"


def task_running(task: Any, task_run: Any, state: Any) -> None:
    current().running(task.name, getattr(task_run, "run_count", 1) or 1)


def task_completed(task: Any, task_run: Any, state: Any) -> None:
    display = current()
    if display is NULL:
        return
    status, outcome = describe(task.name, _value(state))
    display.step(task.name, outcome, status=status)


def _value(state: Any) -> Any:
    # The result record already in memory: `state.result()` would cost ~10 ms per task.
    data = getattr(state, "data", None)
    if hasattr(data, "metadata") and hasattr(data, "result"):
        return data.result
    return state.result()


def task_failed(task: Any, task_run: Any, state: Any) -> None:
    # The error itself is said once, by whoever reports the run's end (the CLI's error line).
    current().step(task.name, "failed", status="failed")


HOOK_NAMES = ("task_running", "task_completed", "task_failed")
TASK_HOOKS: dict[str, list[Callable[..., None]]] = {
    "on_running": [task_running],
    "on_completion": [task_completed],
    "on_failure": [task_failed],
}
