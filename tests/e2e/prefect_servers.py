"""A real Prefect server (`prefect server start`) and workers as subprocesses, for the deployment
and self-healing tests; helpers to call its API and wait on it with deadlines (never fixed
sleeps as the synchronisation: a loaded 2-core machine is slow, not wrong)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prefect_exe() -> str:
    return shutil.which("prefect") or str(Path(sys.executable).with_name("prefect"))


def prefect(env: dict[str, str], *args: str, timeout: float = 300, cwd: Path = ROOT) -> str:
    """Run the Prefect CLI; its output, or an assertion error with it."""
    proc = subprocess.run(
        [prefect_exe(), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, f"prefect {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def api(url: str, path: str, body: dict | None = None, method: str | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        f"{url}{path}", data=data, headers={"Content-Type": "application/json"}, method=method
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read() or b"null")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, every: float = 1.0) -> T:
    """Poll `probe` until it returns something truthy; fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = probe()
            if value:
                return value
        except (OSError, ValueError) as exc:  # the API not up yet, a reset connection
            last_error = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}") from (
                last_error
            )
        time.sleep(every)


@contextmanager
def prefect_server(tmp_path: Path, extra_env: dict[str, str] | None = None) -> Iterator[dict]:
    """`prefect server start` on a free port; yields the environment that talks to it."""
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_TELEMETRY_ENABLE_RESOURCES": "false",
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "DO_NOT_TRACK": "1",
        **(extra_env or {}),
    }
    env.pop("PREFECT_API_KEY", None)
    log_path = tmp_path / "server.log"
    log = log_path.open("w")
    server = subprocess.Popen(
        [prefect_exe(), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:

        def healthy() -> bool:
            if server.poll() is not None:
                raise AssertionError("Prefect server exited:\n" + log_path.read_text())
            api(env["PREFECT_API_URL"], "/health")  # raises OSError until it answers
            return True

        wait_for("the Prefect server", healthy, timeout=240)
        yield env
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def start_worker(env: dict[str, str], name: str, log_path: Path) -> subprocess.Popen:
    """`prefect worker start` on the gestan-release pool, in its own session (a 'machine')."""
    log = log_path.open("w")
    return subprocess.Popen(
        [prefect_exe(), "worker", "start", "--pool", "gestan-release", "--name", name],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (children, grandchildren…), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_machine(proc: subprocess.Popen) -> list[int]:
    """kill -9 a worker and everything it started, at once: its machine is gone."""
    victims = [proc.pid, *descendants(proc.pid)]
    for pid in victims:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=60)
    return victims


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        for pid in [proc.pid, *descendants(proc.pid)]:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            kill_machine(proc)
