"""`gestan-release release|hotfix|resume` as a release manager and a CI job see them: run as real
processes, under a pseudo-terminal (pexpect) and with plain pipes, against the session's Prefect
API, on the sandbox repository of flow_fixtures.

What the terminal shows (step lines, the final state of the live bars, the summary), what
`--verbose`, `--quiet`, `NO_COLOR` and `--format json` change, that an error is said once, the
exit codes, and that Prefect's API still holds every log line the terminal no longer shows.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pexpect
import pytest

pytest.register_assert_rewrite("flow_fixtures")

from fakes.smtp import FakeSmtp, ScriptedHandler  # noqa: E402
from flow_fixtures import VERSION, Sandbox, git, ok, run_flow  # noqa: E402

pytestmark = pytest.mark.slow
pytest_plugins = ("flow_fixtures",)

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
COLOUR = re.compile(r"\x1b\[[0-9;]*(3[0-9]|9[0-7]|38;[0-9;]+)m")
STEPS = [
    "preflight",
    "plan",
    "guard",
    "git",
    "build",
    "update endpoint",
    "tickets released",
    "X",
    "forum",
    "mail",
]


@dataclass
class Run:
    code: int
    out: str  # stdout (under a pseudo-terminal: stdout and stderr together)
    err: str = ""

    @property
    def text(self) -> str:
        """What the eye sees: escape codes and carriage returns left out."""
        return ANSI.sub("", self.out).replace("\r", "")


def environment(box: Sandbox, api: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    env.update(box.env, PREFECT_API_URL=api, TERM="xterm-256color", COLUMNS="120")
    env.update(extra)
    return env


def piped(box: Sandbox, api: str, *args: str, **extra: str) -> Run:
    """No terminal at all: what a CI job or `> file` gets."""
    proc = subprocess.run(
        [sys.executable, "-m", "gestan_release.cli", "--repo", str(box.path), *args],
        capture_output=True,
        text=True,
        env=environment(box, api, **extra),
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


def on_terminal(box: Sandbox, api: str, *args: str, **extra: str) -> Run:
    """A pseudo-terminal of 40 × 120: what a release manager sees."""
    child = pexpect.spawn(
        sys.executable,
        ["-m", "gestan_release.cli", "--repo", str(box.path), *args],
        env=environment(box, api, **extra),
        dimensions=(40, 120),
        encoding="utf-8",
        timeout=300,
    )
    child.expect(pexpect.EOF)
    out = child.before
    child.close()
    return Run(child.exitstatus, out)


def assert_no_prefect_noise(text: str) -> None:
    for noise in ("Task run '", "Flow run '", "Finished in state", "| INFO", "temporary server"):
        assert noise not in text, text


@pytest.fixture
def api_log() -> Any:
    """Every log the runs of this process hand to the Prefect API (sent on as usual). Read here,
    not from the server: it stores logs in the background, a while after they arrive."""
    from prefect.logging import handlers

    seen: list[dict[str, Any]] = []

    def sink(log: dict[str, Any]) -> None:
        seen.append(log)
        handlers.APILogWorker.instance().send(log)

    handlers.set_api_log_sink(sink)
    yield seen
    handlers.set_api_log_sink(None)


# --------------------------------------------------------------------------------------------
# Quiet by default, live on a terminal, plain in a pipe
# --------------------------------------------------------------------------------------------
def test_release_on_a_terminal_steps_live_bars_then_the_summary(
    sandbox: Sandbox, prefect_harness: str
) -> None:
    run = on_terminal(sandbox, prefect_harness, "release")
    assert run.code == 0, run.text
    text = run.text
    assert_no_prefect_noise(text)
    assert "✓ preflight: main (MAIN_BRANCH)" in text
    assert "✓ plan: 15.5 (15.5.0) from main, 6 ticket(s) since 15.4.0" in text
    positions = [text.index(f"✓ {step}: ") for step in STEPS]
    assert positions == sorted(positions), text  # one line per step, as they happen
    assert "✓ mail: 3 done" in text and "✓ tickets released: 1 done" in text
    # the final state of the live bars stays on screen: the forum replies and the mails
    assert re.search(r"forum\s+━+\s+4/4\s+[\d,]+/s\s+0:00:\d\d", text), text
    assert re.search(r"mail\s+━+\s+3/3\s+[\d,]+/s\s+0:00:\d\d", text), text
    # then the summary table, rendered (not raw markdown)
    summary = text.index("15.5 (15.5.0) — publiée")
    assert summary > text.index("✓ mail: 3 done")
    assert "| ---" not in text and re.search(r"mail\s+3\s+0\s+0\s+0", text[summary:])
    assert COLOUR.search(run.out)  # colours on a terminal
    assert "\x1b[?25l" in run.out  # the live display hid the cursor while it drew


def test_release_in_a_pipe_is_plain_and_line_based(sandbox: Sandbox, prefect_harness: str) -> None:
    run = piped(sandbox, prefect_harness, "release")
    assert run.code == 0, run.err
    assert "\x1b" not in run.out + run.err
    assert_no_prefect_noise(run.out + run.err)
    lines = run.out.splitlines()
    assert lines[:3] == [
        "✓ preflight: main (MAIN_BRANCH)",
        "✓ plan: 15.5 (15.5.0) from main, 6 ticket(s) since 15.4.0",
        "✓ guard: Gestan's rules are kept",
    ]
    assert [line.split(":")[0] for line in lines[3:10]] == [
        "✓ git",
        "✓ build",
        "✓ update endpoint",
        "✓ tickets released",  # as soon as installs can get the fixes (issue 9)
        "✓ X",
        "✓ forum",
        "✓ mail",
    ]
    assert lines[10] == "## 15.5 (15.5.0) — publiée"  # the summary as markdown, for a log
    assert "| mail | 3 | 0 | 0 | 0 |" in lines
    assert run.err == ""


def test_no_color_on_a_terminal_is_plain_text(sandbox: Sandbox, prefect_harness: str) -> None:
    run = on_terminal(sandbox, prefect_harness, "release", NO_COLOR="1")
    assert run.code == 0, run.text
    assert "\x1b[" not in run.out  # no colour, no live display, no cursor dance
    assert "✓ mail: 3 done" in run.out
    assert "15.5 (15.5.0) — publiée" in run.out and "─" in run.out  # still a drawn table


def test_verbose_restores_every_log_line(sandbox: Sandbox, prefect_harness: str) -> None:
    run = piped(sandbox, prefect_harness, "release", "--verbose")
    assert run.code == 0, run.err
    for line in ("Task run 'preflight-", "Finished in state Completed()", "Beginning flow run"):
        assert line in run.err
    assert "✓ mail: 3 done" in run.out  # our step lines too


def test_quiet_prints_only_the_result_line(sandbox: Sandbox, prefect_harness: str) -> None:
    run = on_terminal(sandbox, prefect_harness, "release", "--quiet")
    assert run.code == 0, run.text
    assert run.text.strip() == "15.5 (15.5.0): released, 6 ticket(s)"


# --------------------------------------------------------------------------------------------
# --format json
# --------------------------------------------------------------------------------------------
def test_json_document_alone_on_stdout_and_the_api_keeps_every_log(
    sandbox: Sandbox, prefect_harness: str
) -> None:
    run = piped(sandbox, prefect_harness, "release", "--format", "json")
    assert run.code == 0, run.err
    doc = json.loads(run.out)  # the whole of stdout is one document
    assert {k: doc[k] for k in ("command", "exit_code", "state", "version", "label", "tag")} == {
        "command": "release",
        "exit_code": 0,
        "state": "released",
        "version": VERSION,
        "label": "15.5",
        "tag": "v15.5.0",
    }
    assert doc["kind"] == "full" and doc["branch"] == "main" and doc["published"] is True
    assert doc["tickets"] == 6 and doc["left"] == [] and doc["error"] is None
    steps = {s["step"]: [s["done"], s["already_done"], s["failed"]] for s in doc["steps"]}
    assert steps == {
        "git": [3, 0, 0],
        "build": [1, 0, 0],
        "update endpoint": [1, 0, 0],
        "X": [1, 0, 0],
        "forum": [5, 0, 0],
        "mail": [3, 0, 0],
        "tickets": [1, 0, 0],
    }
    assert "publiée" in doc["summary"]
    # the steps were shown on stderr, not mixed into the document
    assert "✓ mail: 3 done" in run.err
    assert re.fullmatch(r"[0-9a-f-]{36}", doc["flow_run"]["id"]) and doc["flow_run"]["name"]

    # a nightly: the same document, for its three steps
    run = piped(sandbox, prefect_harness, "nightly", "--format", "json")
    assert run.code == 0, run.err
    doc = json.loads(run.out)
    assert (doc["command"], doc["kind"], doc["state"], doc["tag"]) == (
        "nightly",
        "nightly",
        "released",
        None,
    )
    assert doc["version"].startswith("15.6.0-nightly.") and doc["published"] is True
    assert [s["step"] for s in doc["steps"]] == ["git", "build", "update endpoint"]


def test_json_resume_after_a_refused_mail_exit_3_then_0(
    sandbox: Sandbox, prefect_harness: str
) -> None:
    handler = ScriptedHandler(refuse_rcpt={"bob@example.com": "550 5.1.1 no such mailbox"})
    with FakeSmtp.start(security="none", auth=False, handler=handler) as smtp:
        smtp_env = {
            "GESTAN_RELEASE_SMTP_ENABLED": "1",
            "GESTAN_RELEASE_SMTP_HOST": smtp.host,
            "GESTAN_RELEASE_SMTP_PORT": str(smtp.port),
            "GESTAN_RELEASE_SMTP_SECURITY": "none",
            "GESTAN_RELEASE_MAIL_FROM": "Support Gestan <support@gestan.test>",
        }
        run = piped(sandbox, prefect_harness, "release", "--format", "json", **smtp_env)
        # released (tagged, on the update endpoint, announced) but one mail left: exit 3
        assert run.code == 3, run.err
        doc = json.loads(run.out)
        assert (doc["state"], doc["published"], doc["exit_code"]) == ("incomplete", True, 3)
        assert [(d["key"], d["state"]) for d in doc["left"]] == [
            (f"mail:{VERSION}:bob@example.com", "failed")
        ]
        assert "550" in doc["left"][0]["error"]
        assert doc["error"]["type"] == "IncompleteRelease"
        assert f"resume {VERSION}" in doc["error"]["message"]
        last = run.err.strip().splitlines()[-1]
        assert last == f"gestan-release: error: {doc['error']['message']}"
        assert run.err.count(doc["error"]["message"]) == 1

        # the address is fixed on the mail server's side: resume finishes it, exit 0
        handler.refuse_rcpt.clear()
        run = piped(sandbox, prefect_harness, "resume", VERSION, **smtp_env)
        assert run.code == 0, run.err
        assert "✓ mail: 1 done, 2 already done" in run.out
        assert "15.5 (15.5.0) — publiée" in run.out
        assert [m.rcpt_tos for m in handler.messages].count(["bob@example.com"]) == 1


# --------------------------------------------------------------------------------------------
# One error, said once
# --------------------------------------------------------------------------------------------
REFUSAL = "'main' is not a maintenance branch"


def test_a_refused_hotfix_says_its_error_once_exit_1(
    sandbox: Sandbox, prefect_harness: str
) -> None:
    run = on_terminal(sandbox, prefect_harness, "hotfix", "--branch", "main")
    assert run.code == 1, run.text
    assert run.text.count(REFUSAL) == 1, run.text
    assert f"gestan-release: error: {REFUSAL}" in run.text
    assert "✗ preflight: failed" in run.text  # where it stopped, without repeating why
    assert "Traceback" not in run.text
    assert_no_prefect_noise(run.text)

    run = piped(sandbox, prefect_harness, "hotfix", "--branch", "main", "--format", "json")
    assert run.code == 1
    doc = json.loads(run.out)
    assert doc["state"] == "failed" and doc["exit_code"] == 1
    assert doc["error"]["type"] == "VersionError" and REFUSAL in doc["error"]["message"]
    assert doc["flow_run"]["id"]  # the full story is in this run
    err = run.err.strip().splitlines()
    assert err[-1].startswith(f"gestan-release: error: {REFUSAL}")
    assert run.err.count(REFUSAL) == 1


def test_the_api_gets_every_line_the_terminal_leaves_out(
    sandbox: Sandbox,
    prefect_harness: str,
    api_log: list[dict[str, Any]],
    capfd: pytest.CaptureFixture[str],
) -> None:
    from gestan_release.cli import main

    assert main(["--repo", str(sandbox.path), "release"]) == 0
    out, err = capfd.readouterr()
    assert "✓ mail: 3 done" in out and "Finished in state" not in out + err
    messages = [log["message"] for log in api_log]
    assert sum(m == "Finished in state Completed()" for m in messages) >= len(STEPS)
    assert any(m.startswith("Beginning flow run '") for m in messages)
    assert any(m == "mail: 3 done" for m in messages)  # the flow's own step lines
    assert not any("hook" in m.lower() for m in messages)  # the display's hooks leave none

    api_log.clear()
    assert main(["--repo", str(sandbox.path), "hotfix", "--branch", "main"]) == 1
    out, err = capfd.readouterr()
    assert (out + err).count(REFUSAL) == 1
    # the task's error, its state, the flow's error and its state: all in the run
    assert sum(REFUSAL in log["message"] for log in api_log) >= 4


def test_an_unexpected_error_names_the_run_where_the_traceback_is(
    sandbox: Sandbox,
    prefect_harness: str,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    api_log: list[dict[str, Any]],
) -> None:
    from gestan_release.cli import main
    from gestan_release.release import steps

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise KeyError("reporter_email")

    monkeypatch.setattr(steps, "tickets_step", broken)
    code = main(["--repo", str(sandbox.path), "release", "--format", "json"])
    out, err = capfd.readouterr()
    assert code == 4
    doc = json.loads(out)
    run_id = doc["flow_run"]["id"]
    assert doc["error"]["type"] == "FlowRunError" and doc["exit_code"] == 4
    line = f"gestan-release: error: {doc['error']['message']}"
    assert err.strip().splitlines()[-1] == line
    assert "unexpected error in flow run" in line and "KeyError: 'reporter_email'" in line
    assert f"prefect flow-run logs {run_id}" in line and "a bug" in line
    assert "Traceback" not in err
    # the traceback is where the line says
    assert any(
        log["flow_run_id"] == run_id
        and "Traceback" in log["message"]
        and "reporter_email" in log["message"]
        for log in api_log
    )


def test_usage_errors_exit_2(sandbox: Sandbox, prefect_harness: str) -> None:
    for args in (["release", "--bump", "patch"], ["release", "--quiet", "--verbose"]):
        run = piped(sandbox, prefect_harness, *args)
        assert run.code == 2 and "usage:" in run.err and run.out == ""


# --------------------------------------------------------------------------------------------
# The branch you are on
# --------------------------------------------------------------------------------------------
def test_hotfix_cuts_from_the_checked_out_maintenance_branch(
    sandbox: Sandbox, prefect_harness: str
) -> None:
    ok(run_flow("release", sandbox.path))  # 15.5: release/15.5 is now the newest
    sandbox.repo.checkout("release/15.4")  # where #107, a flash fix, waits
    run = piped(sandbox, prefect_harness, "hotfix", "--format", "json")
    assert run.code == 0, run.err
    doc = json.loads(run.out)
    assert (doc["version"], doc["branch"]) == ("15.4.2", "release/15.4")
    assert doc["branch_reason"] == "the maintenance branch checked out"
    assert "✓ preflight: release/15.4 (the maintenance branch checked out)" in run.err
    assert git(sandbox.path, "rev-parse", "v15.4.2^{commit}") == sandbox.flash

    # on main: the newest, and why; here it has nothing to ship
    sandbox.repo.checkout("main")
    run = piped(sandbox, prefect_harness, "hotfix", "--dry-run")
    assert run.code == 1
    assert (
        "✓ preflight: release/15.5 (the newest maintenance branch: main is checked out; "
        "--branch to choose another)"
    ) in run.out
    assert "already released as 15.5" in run.err


def test_tickets_import_shows_a_bar_on_a_terminal(
    sandbox: Sandbox, prefect_harness: str, tmp_path: Path
) -> None:
    rows = [
        {
            "id": 5000 + i,
            "title": f"Anomalie {i}",
            "priority": "normale",
            "reporter_name": "Zoé Lefèvre",
            "reporter_email": f"r{i}@example.com",
            "forum_url": None,
        }
        for i in range(60)
    ]
    path = tmp_path / "big.json"
    path.write_text(json.dumps(rows), encoding="utf-8")
    run = on_terminal(sandbox, prefect_harness, "tickets", "import", str(path))
    assert run.code == 0, run.text
    assert re.search(r"import\s+━+\s+60/60", run.text), run.text
    assert "imported 60 tickets (60 new, 0 updated)" in run.text
    run = piped(sandbox, prefect_harness, "tickets", "import", str(path))
    assert run.err.splitlines() == [
        *(f"  import: {n}/60" for n in range(6, 61, 6)),
        "gestan-release: imported 60 tickets (0 new, 0 updated, 60 unchanged)",
    ]
