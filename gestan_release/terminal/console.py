"""The terminal while a release runs: one line per step, live bars for long fan-outs, then the
summary table; or one JSON document; or only the result line.

`--verbose` adds every log line of Prefect and of the run, `--quiet` prints only the result
line (what Prefect's console handler lets through is `prefect.logs`). Colours and live displays
are off when the stream is not a terminal or `NO_COLOR` is set, so CI logs stay plain and
line-based.

Where it goes: in text mode the display and the summary go to stdout; with `--format json` stdout
holds the JSON document alone and the display goes to stderr. Errors always go to stderr.

The drawing itself (step lines, bars) is `terminal.display`; taming Prefect's console handler
while a flow runs is `prefect.logs` (the flow runner passes it to `View.watching`). rich is
imported inside the functions: this module is loaded by read-only commands.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from gestan_release.core import progress as progress_mod
from gestan_release.core.progress import NULL, Progress
from gestan_release.terminal.display import TerminalDisplay, live_capable, make_console

QUIET, NORMAL, VERBOSE = "quiet", "normal", "verbose"
# What `View.watching` enters around the work besides the display: (verbosity, display) -> cm.
Taming = Callable[[str, Progress], contextlib.AbstractContextManager[object]]


# --------------------------------------------------------------------------------------------
# What a command shows: options, display, outcome
# --------------------------------------------------------------------------------------------
@dataclass
class View:
    """How one command shows its run: text or JSON, quiet, normal or verbose."""

    format: str = "text"
    verbosity: str = NORMAL
    out: TextIO | None = None
    err: TextIO | None = None
    display: Any = field(default=None, init=False)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> View:
        verbosity = (
            QUIET
            if getattr(args, "quiet", False)
            else VERBOSE
            if getattr(args, "verbose", False)
            else NORMAL
        )
        return cls(getattr(args, "format", "text"), verbosity)

    @property
    def stdout(self) -> TextIO:
        return self.out or sys.stdout

    @property
    def stderr(self) -> TextIO:
        return self.err or sys.stderr

    def _display_stream(self) -> TextIO:
        return self.stderr if self.format == "json" else self.stdout

    def make_display(self) -> Progress:
        if self.verbosity == QUIET:
            return NULL
        console = make_console(self._display_stream())
        # --verbose interleaves Prefect's lines: a live region would be torn by them.
        return TerminalDisplay(console, live=self.verbosity == NORMAL and live_capable(console))

    @contextlib.contextmanager
    def watching(self, *, tame: Taming | None = None) -> Iterator[Progress]:
        """The display for the duration of the work; `tame(verbosity, display)` (Prefect's
        console handler, `prefect.logs.prefect_terminal`) is entered inside it when given."""
        display = self.make_display()
        self.display = display
        with contextlib.ExitStack() as stack:
            if isinstance(display, TerminalDisplay):
                stack.enter_context(display)
            if tame is not None:
                stack.enter_context(tame(self.verbosity, display))
            stack.enter_context(progress_mod.using(display))
            yield display

    # -- the end of a run ----------------------------------------------------------------
    def outcome(self, command: str, result: dict[str, Any], error: Exception | None = None) -> int:
        """Show how the run ended (summary, result line or JSON); return the exit code."""
        code = exit_code_of(error)
        if self.format == "json":
            doc = json_document(command, result, error, code)
            self.stdout.write(json.dumps(doc, ensure_ascii=False, indent=2, default=str) + "\n")
            self.stdout.flush()
            return code
        if self.verbosity == QUIET:
            line = result_line(result, error)
            if line:
                self.stdout.write(line + "\n")
            return code
        text = result.get("dry_run") or result.get("summary")
        if text:
            console = make_console(self.stdout)
            if console.is_terminal:
                from rich.markdown import Markdown

                console.print(Markdown(text))
            else:
                self.stdout.write(text)
            self.stdout.flush()
        return code


def exit_code_of(error: BaseException | None) -> int:
    if error is None:
        return 0
    return int(getattr(error, "exit_code", 1))


def result_line(result: dict[str, Any], error: BaseException | None = None) -> str:
    """One line that says how it ended (the error itself goes to stderr)."""
    if not result.get("version"):
        return ""
    name = f"{result.get('label', result['version'])} ({result['version']})"
    if result.get("dry_run"):
        return f"{name}: dry run, nothing changed"
    state = result.get("state", "released" if error is None else "failed")
    if state == "released":
        return f"{name}: released, {result.get('tickets', 0)} ticket(s)"
    left = len(result.get("left", []))
    published = "published, " if result.get("published") else "not published, "
    return f"{name}: {state}, {published}{left} delivery(ies) left"


def json_document(
    command: str, result: dict[str, Any], error: BaseException | None, code: int
) -> dict[str, Any]:
    """The `--format json` document of release, hotfix, nightly and resume (README)."""
    doc: dict[str, Any] = {
        "command": command,
        "exit_code": code,
        "state": result.get("state") or ("failed" if error is not None else "released"),
        "version": result.get("version"),
        "label": result.get("label"),
        "tag": result.get("tag"),
        "kind": result.get("kind"),
        "branch": result.get("branch"),
        "branch_reason": result.get("branch_reason"),
        "published": result.get("published"),
        "tickets": result.get("tickets"),
        "steps": result.get("steps", []),
        "left": result.get("left", []),
        "warnings": result.get("warnings", []),
        "flow_run": result.get("flow_run") or getattr(error, "flow_run", None),
        "error": None,
    }
    if result.get("dry_run"):
        doc["preview"] = result["dry_run"]
    if result.get("summary"):
        doc["summary"] = result["summary"]
    if error is not None:
        doc["error"] = {"type": type(error).__name__, "message": str(error)}
    return doc
