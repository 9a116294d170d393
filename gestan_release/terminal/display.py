"""The terminal display of a run: one line per step, and live bars for long fan-outs when the
stream is a terminal (milestone lines in a log otherwise), drawn with rich.

`console.View` decides what a command shows and tames Prefect's own console; this module only
draws. Colours and live displays are off when the stream is not a terminal or `NO_COLOR` is set.
rich is imported inside the functions: read-only commands load this module without it.
"""

from __future__ import annotations

import os
from typing import Any, TextIO

from gestan_release.core.progress import CountingTracker, Tracker, milestones

_SYMBOLS = {"ok": ("✓", "green"), "warn": ("⚠", "yellow"), "failed": ("✗", "red")}
_SYMBOLS["skipped"] = ("–", "dim")


def no_color() -> bool:
    """https://no-color.org: set and not empty."""
    return bool(os.environ.get("NO_COLOR"))


def make_console(stream: TextIO) -> Any:
    """A rich console on `stream`: no styling at all under NO_COLOR (not even bold)."""
    from rich.console import Console

    options: dict[str, Any] = {"file": stream, "highlight": False, "emoji": False}
    if no_color():
        options["color_system"] = None
    console = Console(**options)
    if not console.is_terminal:  # a log file or a pipe: never wrap a line to fit 80 columns
        console = Console(**options, width=100_000)
    return console


def live_capable(console: Any) -> bool:
    return bool(console.is_terminal and not console.is_dumb_terminal and not no_color())


# --------------------------------------------------------------------------------------------
# The display: a Progress for the terminal
# --------------------------------------------------------------------------------------------
class _PlainTracker(CountingTracker):
    """Milestone lines (about every tenth) for a log that is read later."""

    def __init__(self, display: TerminalDisplay, label: str, total: int | None) -> None:
        super().__init__(label, total)
        self._display = display
        self._due = milestones(total)

    def advance(self, n: int = 1, *, failed: bool = False) -> None:
        before = self.done
        super().advance(n, failed=failed)
        if any(self._due(k) for k in range(before + 1, self.done + 1)):
            self._display.line(f"  {self.label}: {self.counts()}", style="dim")


class _BarTracker(CountingTracker):
    """A live bar; when closed its final state stays on screen above the live region."""

    def __init__(self, display: TerminalDisplay, label: str, total: int | None) -> None:
        super().__init__(label, total)
        self._display = display
        self._bars = display._bars
        self._id = self._bars.add_task(label, total=total, failed="")

    def advance(self, n: int = 1, *, failed: bool = False) -> None:
        super().advance(n, failed=failed)
        self._bars.update(
            self._id, advance=n, failed=f"{self.failed} failed" if self.failed else ""
        )

    def close(self) -> None:
        if self.closed:
            return
        super().close()
        task = next((t for t in self._bars.tasks if t.id == self._id), None)
        if task is None:
            return
        if task.total is None:
            self._bars.update(self._id, total=self.done, completed=self.done)
        final = self._bars.make_tasks_table([task])
        self._bars.remove_task(self._id)
        self._display.console.print(final)


class _Activity:
    """The spinner line under the bars: what is running now (nothing when idle)."""

    def __init__(self) -> None:
        from rich.spinner import Spinner

        self.spinner = Spinner("dots", text="", style="cyan")
        self.text = ""

    def set(self, text: str) -> None:
        from rich.text import Text

        self.text = text
        self.spinner.update(text=Text(text))

    def __rich__(self) -> Any:
        from rich.text import Text

        return self.spinner if self.text else Text("")


def _rate_column() -> Any:
    from rich.progress import ProgressColumn
    from rich.text import Text

    class RateColumn(ProgressColumn):
        """Items per second (the average once finished)."""

        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            return Text(f"{speed:,.0f}/s" if speed else "", style="progress.data.speed")

    return RateColumn()


class TerminalDisplay:
    """`Progress` on a rich console: live (bars and a spinner) on a terminal, plain lines
    otherwise. Use as a context manager: the live region exists between enter and exit."""

    def __init__(self, console: Any, *, live: bool) -> None:
        self.console = console
        self.live = live
        self._live: Any = None
        self._bars: Any = None
        self._activity: _Activity | None = None

    # -- lifetime ------------------------------------------------------------------------
    def __enter__(self) -> TerminalDisplay:
        if self.live:
            from rich.console import Group
            from rich.live import Live
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as Bars

            self._bars = Bars(
                TextColumn("  {task.description}"),
                BarColumn(bar_width=30),
                MofNCompleteColumn(),
                TextColumn("[red]{task.fields[failed]}"),
                _rate_column(),
                TimeElapsedColumn(),
                console=self.console,
                auto_refresh=False,
            )
            self._activity = _Activity()
            self._live = Live(
                Group(self._bars, self._activity),
                console=self.console,
                refresh_per_second=4,
                transient=True,
            )
            self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            for task in list(self._bars.tasks):  # a fan-out cut short: keep where it stopped
                self.console.print(self._bars.make_tasks_table([task]))
                self._bars.remove_task(task.id)
            self._activity.set("")
            self._live.stop()
            self._live = None

    @property
    def is_live(self) -> bool:
        return self._live is not None

    # -- Progress ------------------------------------------------------------------------
    def track(self, label: str, total: int | None) -> Tracker:
        if self.is_live and (total is None or total > 1):
            return _BarTracker(self, label, total)
        if self.is_live:
            return CountingTracker(label, total)  # one item: its step line says it all
        return _PlainTracker(self, label, total)

    def step(self, name: str, outcome: str, *, status: str = "ok") -> None:
        from rich.text import Text

        symbol, style = _SYMBOLS.get(status, _SYMBOLS["ok"])
        text = Text()
        text.append(f"{symbol} ", style=style)
        text.append(name, style="bold")
        text.append(f": {outcome}")
        if self._activity is not None:
            self._activity.set("")
        self.console.print(text)

    def running(self, name: str, attempt: int = 1) -> None:
        if attempt > 1:
            self.line(f"↻ {name}: attempt {attempt}", style="yellow")
        if self._activity is not None:
            self._activity.set(f"{name} …" if attempt <= 1 else f"{name} (attempt {attempt}) …")

    def warn(self, message: str) -> None:
        self.line(f"⚠ {message}", style="yellow")

    # -- plain output above the live region ----------------------------------------------
    def line(self, text: str, style: str | None = None) -> None:
        from rich.text import Text

        self.console.print(Text(text, style=style or ""))

    def log(self, text: str) -> None:
        """A log record of another library, printed as it was formatted."""
        from rich.text import Text

        self.console.print(Text(text), soft_wrap=True)
