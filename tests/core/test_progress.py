"""The progress reporter interface: no-op default, milestones for logs, the step lines of a
release from its tasks' results, and the fan-outs that report through it."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

from gestan_release.core import progress
from gestan_release.core.progress import NULL, CountingTracker, describe, logged, milestones, using
from gestan_release.release.delivery import StepResult
from gestan_release.release.plan import Branch


@dataclass
class Recorder:
    """A Progress that remembers every call."""

    calls: list[tuple] = field(default_factory=list)
    trackers: list[CountingTracker] = field(default_factory=list)

    def track(self, label: str, total: int | None) -> CountingTracker:
        tracker = CountingTracker(label, total)
        self.trackers.append(tracker)
        return tracker

    def step(self, name: str, outcome: str, *, status: str = "ok") -> None:
        self.calls.append(("step", name, outcome, status))

    def running(self, name: str, attempt: int = 1) -> None:
        self.calls.append(("running", name, attempt))

    def warn(self, message: str) -> None:
        self.calls.append(("warn", message))


def test_null_progress_does_nothing_and_is_the_default() -> None:
    assert progress.current() is NULL
    with NULL.track("mail", 3) as bar:
        bar.advance()
        bar.advance(failed=True)
    NULL.step("git", "3 done")
    NULL.warn("nothing")


def test_using_installs_a_reporter_for_the_block_only() -> None:
    recorder = Recorder()
    with using(recorder):
        assert progress.current() is recorder
        with using(NULL):
            assert progress.current() is NULL
        assert progress.current() is recorder
    assert progress.current() is NULL


def test_milestones_about_every_tenth_of_a_big_fan_out() -> None:
    due = milestones(300)
    assert [n for n in range(1, 301) if due(n)] == list(range(30, 301, 30))
    due = milestones(25)
    assert [n for n in range(1, 26) if due(n)] == [*range(2, 25, 2), 25]
    assert not any(milestones(20)(n) for n in range(1, 21))  # small: the step line is enough
    assert [n for n in range(1, 301) if milestones(None)(n)] == [100, 200, 300]


def test_logged_writes_milestones_and_passes_everything_on() -> None:
    lines: list[str] = []
    inner = Recorder()
    reporter = logged(lines.append, inner)
    with reporter.track("mail", 300) as bar:
        for n in range(300):
            bar.advance(failed=n < 2)
    assert lines[0] == "mail: 30/300, 2 failed"
    assert lines[-1] == "mail: 300/300, 2 failed" and len(lines) == 10
    assert inner.trackers[0].done == 300 and inner.trackers[0].failed == 2
    assert inner.trackers[0].closed
    reporter.step("git", "3 done")
    reporter.warn("careful")
    assert inner.calls == [("step", "git", "3 done", "ok"), ("warn", "careful")]


def test_logged_uses_the_current_display_by_default() -> None:
    recorder = Recorder()
    with using(recorder):
        reporter = logged(lambda _line: None)
    reporter.step("X", "1 done")
    assert recorder.calls == [("step", "X", "1 done", "ok")]


def test_describe_the_steps_of_a_release() -> None:
    ok = StepResult("mail", done=3, skipped=1)
    assert describe("mail", ok) == ("ok", "3 done, 1 already done")
    bad = StepResult("mail", done=2, failed=[("mail:15.5.0:bob@example.com", "550")])
    assert describe("mail", bad) == ("failed", "2 done, 1 failed")
    assert describe("forum", ("https://forum/t/1", ok)) == ("ok", "3 done, 1 already done")
    branch = Branch("release/15.4", "the maintenance branch checked out")
    assert describe("preflight", branch) == (
        "ok",
        "release/15.4 (the maintenance branch checked out)",
    )
    plan = SimpleNamespace(
        label="15.5", version="15.5.0", branch="main", previous="15.4.0", ticket_ids=[1, 2]
    )
    assert describe("plan", plan) == ("ok", "15.5 (15.5.0) from main, 2 ticket(s) since 15.4.0")
    assert describe("guard", ["x"]) == ("warn", "1 warning(s)")
    assert describe("guard", []) == ("ok", "Gestan's rules are kept")


def test_task_hooks_report_to_the_current_display() -> None:
    recorder = Recorder()
    task = SimpleNamespace(name="mail")
    state = SimpleNamespace(result=lambda: StepResult("mail", done=3))
    with using(recorder):
        progress.task_running(task, SimpleNamespace(run_count=2), state)
        progress.task_completed(task, SimpleNamespace(run_count=2), state)
        progress.task_failed(SimpleNamespace(name="plan"), None, None)
    assert recorder.calls == [
        ("running", "mail", 2),
        ("step", "mail", "3 done", "ok"),
        ("step", "plan", "failed", "failed"),
    ]
    # nobody watching: the hooks cost nothing and say nothing
    progress.task_completed(task, None, state)


def test_ticket_import_reports_each_row(tmp_path) -> None:
    from gestan_release.tickets.store import TicketStore
    from gestan_release.tickets.values import Ticket

    store = TicketStore(f"sqlite:///{tmp_path / 'gestan.db'}")
    rows = [
        Ticket(
            id=i,
            title=f"Anomalie {i}",
            priority="haute",
            reporter_name="Zoé",
            reporter_email=f"r{i}@example.com",
        )
        for i in range(1, 41)
    ]
    recorder = Recorder()
    summary = store.import_rows(rows, recorder)
    assert summary.new == 40
    [bar] = recorder.trackers
    assert (bar.label, bar.total, bar.done, bar.closed) == ("import", 40, 40, True)


def test_the_display_hooks_leave_no_line_in_the_run_log() -> None:
    import logging

    from gestan_release.prefect.runs import _DisplayHookFilter

    def rec(msg: str) -> logging.LogRecord:
        return logging.LogRecord("prefect.task_runs", logging.INFO, __file__, 1, msg, (), None)

    keep = _DisplayHookFilter()
    assert not keep.filter(rec("Running hook 'task_completed' in response to entering state"))
    assert not keep.filter(rec("Hook 'task_running' finished running successfully"))
    assert keep.filter(rec("Running hook 'notify_ops' in response to entering state 'Failed'"))
    assert keep.filter(rec("Finished in state Completed()"))
