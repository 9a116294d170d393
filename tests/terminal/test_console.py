"""The terminal display on rich consoles writing into memory: plain lines for logs, live bars
on a terminal, nothing styled under NO_COLOR; how a run ends (summary, result line, JSON
document, exit code). The same seen through a real pseudo-terminal and real flow runs:
tests/e2e/test_terminal.py; the filter on Prefect's console handler: tests/prefect/test_logs.py."""

from __future__ import annotations

import io
import json
import re
import sys

import pytest
from rich.console import Console

from gestan_release.errors import FlowRunError, IncompleteRelease, ReleaseError
from gestan_release.terminal.console import View, exit_code_of, result_line
from gestan_release.terminal.display import TerminalDisplay, live_capable, make_console

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _colours_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")


def plain_display() -> tuple[TerminalDisplay, io.StringIO]:
    out = io.StringIO()
    return TerminalDisplay(make_console(out), live=False), out


def test_plain_display_one_line_per_step_and_milestones() -> None:
    display, out = plain_display()
    with display:
        display.running("mail")  # a first attempt prints nothing in a log
        with display.track("mail", 300) as bar:
            for n in range(300):
                bar.advance(failed=n == 0)
        display.step("mail", "299 done, 1 failed", status="failed")
        display.running("X", attempt=2)
        display.step("X", "1 done")
        display.warn("1 ticket(s) referenced in commits are not in the ticket store " + "x" * 90)
    lines = out.getvalue().splitlines()
    assert lines[:2] == ["  mail: 30/300, 1 failed", "  mail: 60/300, 1 failed"]
    assert lines[9] == "  mail: 300/300, 1 failed"
    assert lines[10:13] == ["✗ mail: 299 done, 1 failed", "↻ X: attempt 2", "✓ X: 1 done"]
    assert lines[13].startswith("⚠ 1 ticket(s)") and len(lines) == 14  # never wrapped at 80
    assert not ANSI.search(out.getvalue())


def test_live_display_keeps_the_final_state_of_each_bar() -> None:
    out = Tty()
    console = Console(file=out, force_terminal=True, width=100, color_system="truecolor")
    assert live_capable(console)
    with TerminalDisplay(console, live=True) as display:
        assert display.is_live
        display.running("forum")
        with display.track("forum", 40) as bar:
            for n in range(40):
                bar.advance(failed=n < 3)
        display.step("forum", "37 done, 3 failed", status="failed")
        one = display.track("X", 1)  # a single item gets no bar
        one.advance()
        one.close()
    text = ANSI.sub("", out.getvalue())
    final = [line for line in text.splitlines() if "40/40" in line]
    assert final, text
    assert re.search(r"forum\s+━+\s+40/40\s+3 failed\s+[\d,]+/s\s+0:00:0\d", final[-1]), final
    assert "✗ forum: 37 done, 3 failed" in text
    assert "X " not in text.replace("✗", "")  # no bar for the one tweet
    raw = out.getvalue()
    assert "\x1b[?25l" in raw and "\x1b[?25h" in raw[raw.index("✗ ") :]  # the cursor is back


def test_no_color_means_no_escape_code_and_no_live_display(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    out = Tty()
    console = make_console(out)
    assert console.is_terminal and not live_capable(console)
    view = View(out=out)
    display = view.make_display()
    assert isinstance(display, TerminalDisplay) and not display.live
    with display:
        display.step("git", "3 done")
        display.warn("careful")
    assert out.getvalue() == "✓ git: 3 done\n⚠ careful\n"


def test_view_modes() -> None:
    tty = Tty()
    assert View(out=tty).make_display().live  # a terminal: live
    assert not View(out=io.StringIO()).make_display().live  # a pipe or a file: lines
    assert not View(verbosity="verbose", out=tty).make_display().live  # interleaved with logs
    assert not isinstance(View(verbosity="quiet", out=tty).make_display(), TerminalDisplay)
    # --format json: the display goes to stderr, stdout is the document's
    err = io.StringIO()
    display = View("json", out=tty, err=err).make_display()
    assert display.console.file is err


RELEASED = {
    "version": "15.5.0",
    "label": "15.5",
    "tag": "v15.5.0",
    "kind": "full",
    "branch": "main",
    "state": "released",
    "published": True,
    "tickets": 6,
    "steps": [{"step": "mail", "done": 3, "already_done": 0, "pending_approval": 0, "failed": 0}],
    "left": [],
    "warnings": [],
    "summary": "## 15.5 (15.5.0) — publiée\n\n| étape | fait |\n| --- | ---: |\n| mail | 3 |\n",
    "flow_run": {"id": "0c1d", "name": "jovial-mustang", "url": None},
}
LEFT = [{"key": "mail:15.5.0:bob@example.com", "channel": "mail", "state": "failed"}]
INCOMPLETE = RELEASED | {"state": "incomplete", "left": LEFT}


def test_exit_codes() -> None:
    assert exit_code_of(None) == 0
    assert exit_code_of(ReleaseError("refused")) == 1
    assert exit_code_of(IncompleteRelease("mail failed", INCOMPLETE)) == 3
    assert exit_code_of(IncompleteRelease("stopped", INCOMPLETE | {"published": False})) == 1
    assert exit_code_of(IncompleteRelease("unpickled, no outcome")) == 1
    assert exit_code_of(FlowRunError("bug")) == 4


def test_result_lines() -> None:
    assert result_line(RELEASED) == "15.5 (15.5.0): released, 6 ticket(s)"
    assert result_line(INCOMPLETE, IncompleteRelease("x", INCOMPLETE)) == (
        "15.5 (15.5.0): incomplete, published, 1 delivery(ies) left"
    )
    assert result_line({"version": "15.5.0", "label": "15.5", "dry_run": "…"}) == (
        "15.5 (15.5.0): dry run, nothing changed"
    )
    assert result_line({}, ReleaseError("refused")) == ""  # the error line says it all


def test_outcome_json_is_one_document_and_nothing_else() -> None:
    out, err = io.StringIO(), io.StringIO()
    error = IncompleteRelease("15.5 is incomplete: mail: 2 done, 1 failed", INCOMPLETE)
    code = View("json", out=out, err=err).outcome("release", INCOMPLETE, error)
    assert code == 3
    doc = json.loads(out.getvalue())
    assert doc["exit_code"] == 3 and doc["state"] == "incomplete" and doc["published"] is True
    assert doc["left"] == LEFT and doc["steps"][0]["done"] == 3
    assert doc["error"] == {
        "type": "IncompleteRelease",
        "message": "15.5 is incomplete: mail: 2 done, 1 failed",
    }
    assert doc["flow_run"]["name"] == "jovial-mustang"
    assert err.getvalue() == ""
    # a refusal before anything happened: still one document, with the run to look at
    refused = ReleaseError("15.5 would fix no ticket")
    refused.flow_run = {"id": "9f", "name": "calm-otter", "url": None}
    out = io.StringIO()
    assert View("json", out=out).outcome("hotfix", {}, refused) == 1
    doc = json.loads(out.getvalue())
    assert (doc["state"], doc["version"], doc["flow_run"]["id"]) == ("failed", None, "9f")


def test_outcome_text_and_quiet() -> None:
    out = io.StringIO()
    assert View(out=out).outcome("release", RELEASED) == 0
    assert out.getvalue() == RELEASED["summary"]  # raw markdown in a file or a pipe
    out = io.StringIO()
    assert View(verbosity="quiet", out=out).outcome("release", RELEASED) == 0
    assert out.getvalue() == "15.5 (15.5.0): released, 6 ticket(s)\n"
    out = Tty()
    View(out=out).outcome("release", RELEASED)  # a terminal: the markdown rendered
    text = ANSI.sub("", out.getvalue())
    assert "15.5 (15.5.0) — publiée" in text and "─────" in text and "| ---" not in text


def test_the_cli_modules_do_not_load_rich_or_prefect_for_read_only_commands() -> None:
    import subprocess

    code = (
        "import sys, gestan_release.cli as c; c.build_parser(); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('rich', 'prefect', 'sqlalchemy', 'httpx') or m == 'gestan_release.terminal.console'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
