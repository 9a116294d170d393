"""The release lock (a lease row with a heartbeat) on SQLite and PostgreSQL: exclusive, freed by its
holder, taken over when its holder's process is gone (this host) or its lease ran out (any host),
and exactly one winner when processes race for it. Clocks and sleeps are injected: no test waits.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gestan_release.errors import ReleaseError
from gestan_release.release.lock import ReleaseLock, holder_id
from gestan_release.store import db
from gestan_release.store.ledger import Ledger
from gestan_release.store.tables import LockRecord

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


class FakeTime:
    """A wall clock and a monotonic clock that move only when the test (or `sleep`) says so."""

    def __init__(self) -> None:
        self.now = T0
        self.mono = 1000.0
        self.slept: list[float] = []
        self.on_sleep = None

    def clock(self) -> datetime:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(seconds)
        if self.on_sleep is not None:
            self.on_sleep()

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        self.mono += seconds


@pytest.fixture
def ledger(database_url: str) -> Ledger:
    return Ledger(database_url)


@pytest.fixture
def t() -> FakeTime:
    return FakeTime()


def lock(ledger: Ledger, t: FakeTime, name: str = "repo:/r", **kw) -> ReleaseLock:
    kw.setdefault("lease", 60)
    return ReleaseLock(
        ledger.engine, name, clock=t.clock, sleep=t.sleep, monotonic=t.monotonic, **kw
    )


def row(ledger: Ledger, name: str = "repo:/r") -> LockRecord | None:
    from sqlalchemy.orm import Session

    with Session(ledger.engine) as s:
        return s.get(LockRecord, name)


def test_exclusive_per_repository_and_freed_by_its_holder(ledger: Ledger, t: FakeTime) -> None:
    a = lock(ledger, t).acquire()
    assert a.held and row(ledger).holder == a.holder
    with pytest.raises(ReleaseError, match="another release is running") as info:
        lock(ledger, t).acquire()
    assert a.holder in str(info.value) and "09:01:00 UTC" in str(info.value)
    assert lock(ledger, t, "repo:/other").acquire().held  # one lock per repository
    ReleaseLock(ledger.engine, "repo:/r", holder="someone-else:1:x").release()  # not theirs
    assert row(ledger).holder == a.holder
    a.release()
    assert row(ledger) is None and not a.held
    b = lock(ledger, t).acquire()
    assert b.holder != a.holder and row(ledger).holder == b.holder


def test_the_lock_is_freed_by_its_holder_only(ledger: Ledger) -> None:
    holder = ReleaseLock(ledger.engine, "repo:/r").acquire().holder
    with pytest.raises(ReleaseError, match="another release is running"):
        ReleaseLock(ledger.engine, "repo:/r").acquire()
    ReleaseLock(ledger.engine, "repo:/r", holder="someone-else:1:x").release()
    with pytest.raises(ReleaseError):
        ReleaseLock(ledger.engine, "repo:/r").acquire()
    ReleaseLock(ledger.engine, "repo:/r", holder=holder).release()
    assert (
        ReleaseLock(ledger.engine, "repo:/r")
        .acquire()
        .holder.startswith(f"{socket.gethostname()}:{os.getpid()}:")
    )


def test_a_second_run_waits_lock_wait_seconds(ledger: Ledger, t: FakeTime) -> None:
    a = lock(ledger, t).acquire()
    # the holder finishes while the second run is waiting: it goes on
    t.on_sleep = lambda: len(t.slept) == 3 and a.release()
    b = lock(ledger, t, wait=60).acquire()
    assert b.held and len(t.slept) == 3 and sum(t.slept) == pytest.approx(1.5)
    # nobody frees it: the waiter gives up after LOCK_WAIT (on the monotonic clock)
    t.on_sleep, t.slept = None, []
    before = t.mono
    with pytest.raises(ReleaseError, match="another release is running"):
        lock(ledger, t, wait=5).acquire()
    assert t.mono - before == pytest.approx(5)


def test_the_lease_frees_a_lock_whose_holder_vanished(ledger: Ledger, t: FakeTime) -> None:
    """A holder on another host stops renewing: its lock is free once the lease has run out."""
    gone = lock(ledger, t, holder="other-host:4242:dead").acquire()
    t.advance(59)
    with pytest.raises(ReleaseError, match="other-host:4242:dead"):
        lock(ledger, t).acquire()
    t.advance(1)  # the lease (60 s) has run out
    taker = lock(ledger, t).acquire()
    assert row(ledger).holder == taker.holder
    # the old holder, if it comes back, finds out and stops; its release frees nothing
    assert gone.renew() is False
    with pytest.raises(ReleaseError, match="lock on this repository was lost"):
        gone.ensure_held()
    gone.release()
    assert row(ledger).holder == taker.holder


def test_the_heartbeat_keeps_the_lease(ledger: Ledger, t: FakeTime) -> None:
    a = lock(ledger, t).acquire()
    for _ in range(5):  # 5 beats, one every third of the lease
        t.advance(20)
        a.heartbeat_once()
    assert a.held
    with pytest.raises(ReleaseError):  # 100 s after it was taken, still held
        lock(ledger, t).acquire()
    assert row(ledger).expires_at.astimezone(UTC) == T0 + timedelta(seconds=160)


def test_a_holder_that_cannot_renew_stops_before_its_next_step(ledger: Ledger, t: FakeTime) -> None:
    a = lock(ledger, t).acquire()
    t.advance(40)
    a.ensure_held()
    t.advance(20)  # no renewal for a whole lease (database unreachable): someone may take over
    with pytest.raises(ReleaseError, match="not renewed for 60 s"):
        a.ensure_held()


def test_a_legacy_row_of_a_dead_process_is_taken_over(ledger: Ledger) -> None:
    """A row written before leases (`host:pid`, no expiry) by a process of this host that is
    gone: free at once."""
    from sqlalchemy.orm import Session

    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], **_OUT)
    dead = f"{socket.gethostname()}:{proc.stdout.strip()}"
    with Session(ledger.engine) as s, s.begin():
        s.add(LockRecord(name="repo:/r", holder=dead, acquired_at=datetime.now(UTC)))
    assert (
        ReleaseLock(ledger.engine, "repo:/r")
        .acquire()
        .holder.startswith(f"{socket.gethostname()}:{os.getpid()}:")
    )


def test_the_context_manager_frees_the_lock_on_errors(ledger: Ledger) -> None:
    with pytest.raises(RuntimeError), ReleaseLock(ledger.engine, "repo:/r") as held:
        assert held.held and row(ledger) is not None
        raise RuntimeError("a step failed")
    assert row(ledger) is None


_OUT = {"capture_output": True, "text": True, "check": True}

HOLDER = """
import sys, time
from gestan_release.store.ledger import Ledger
from gestan_release.release.lock import ReleaseLock
lock = ReleaseLock(Ledger(sys.argv[1]).engine, "repo:/r", lease=60, holder=sys.argv[2] or None)
lock.acquire()
print(lock.holder, flush=True)
time.sleep(600)
"""


def _holder_process(url: str, holder: str = "") -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, url, holder], stdout=subprocess.PIPE, text=True
    )
    line = proc.stdout.readline().strip()
    assert line, "the holder process did not take the lock"
    return proc, line


def _kill9(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL


def test_kill_9_of_a_holder_on_this_host_frees_the_lock_at_once(ledger: Ledger) -> None:
    proc, holder = _holder_process(ledger.url)
    with pytest.raises(ReleaseError, match=re.escape(holder)):
        ReleaseLock(ledger.engine, "repo:/r").acquire()
    _kill9(proc)
    # well inside its 60 s lease, but its process is gone
    assert ReleaseLock(ledger.engine, "repo:/r").acquire().holder != holder


def test_kill_9_of_a_holder_on_another_host_frees_the_lock_after_the_lease(
    ledger: Ledger, t: FakeTime
) -> None:
    """The holder pretends to run elsewhere (its pid means nothing here): only its lease tells.
    Our clock is set against the row it wrote."""
    proc, _ = _holder_process(ledger.url, holder_id(host="worker-b.example"))
    _kill9(proc)
    written = row(ledger).expires_at.astimezone(UTC)
    t.now = written - timedelta(seconds=1)
    with pytest.raises(ReleaseError, match=r"worker-b\.example"):
        lock(ledger, t).acquire()
    t.now = written
    assert lock(ledger, t).acquire().held  # the next run proceeds once the lease is over


RACER = """
import os, sys, time
from gestan_release.errors import ReleaseError
from gestan_release.store.ledger import Ledger
from gestan_release.release.lock import ReleaseLock
ledger = Ledger(sys.argv[1])
ledger.engine.connect().close()
print("ready", flush=True)
go = sys.argv[2]
while not os.path.exists(go):
    time.sleep(0.001)
try:
    holder = ReleaseLock(ledger.engine, "repo:/r").acquire().holder
except ReleaseError as exc:
    print("refused", exc, flush=True)
else:
    print("took", holder, flush=True)
"""


def test_processes_racing_for_the_lock_one_wins(ledger: Ledger, tmp_path: Path) -> None:
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, ledger.url, str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    go.touch()
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, outs
    words = sorted(out.split()[0] for out, _ in outs)
    assert words == ["refused", "refused", "refused", "took"], outs
    winner = next(out.split()[1] for out, _ in outs if out.startswith("took"))
    assert row(ledger).holder == winner


CUT = """
import os, sys, time
from gestan_release.store import db
from gestan_release.release.delivery import record_start
from gestan_release.release.plan import plan_release, preflight
from gestan_release.release.steps import git_step
from gestan_release.errors import ReleaseError
from gestan_release.store.ledger import Ledger
from gestan_release.release.lock import ReleaseLock
from gestan_release.settings import load
settings = load(sys.argv[1])
branch = preflight(settings, "full", None)
ledger = Ledger(settings.database_url)
print("ready", flush=True)
while not os.path.exists(sys.argv[2]):
    time.sleep(0.001)
try:
    with ReleaseLock(ledger.engine, f"repo:{settings.repo}") as lock:
        plan = plan_release(settings, "full", branch)
        record_start(ledger, plan)
        lock.ensure_held()
        git_step(settings, ledger, plan)
except ReleaseError as exc:
    print("refused", exc, flush=True)
else:
    print("cut", plan.version, flush=True)
"""


def test_two_runs_started_at_once_cut_the_version_once(
    git_repo, database_url: str, tmp_path: Path
) -> None:
    git_repo.commit("Gestan 15.4")
    git_repo.tag("v15.4.0")
    git_repo.commit("Relances (#102)")
    (git_repo.path / "gestan-release.toml").write_text(
        f'database_url = "{database_url}"\nallow_outbox = true\n'
    )
    git_repo.git("add", "gestan-release.toml")
    git_repo.git("commit", "-q", "-m", "settings")
    db.upgrade(database_url)
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CUT, str(git_repo.path), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in "ab"
    ]
    for p in procs:
        assert p.stdout.readline().strip() == "ready", p.stderr.read()
    go.touch()
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert sorted(out.split()[0] for out, _ in outs) == ["cut", "refused"], outs
    assert git_repo.git("tag", "--list").split() == ["v15.4.0", "v15.5.0"]
    assert [r.version for r in Ledger(database_url).releases()] == ["15.5.0"]
    made = {d.key: d.attempts for d in Ledger(database_url).deliveries("15.5.0")}
    assert made == {"tag:v15.5.0": 1, "branch:release/15.5": 1}  # each made once
