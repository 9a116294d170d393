"""Benchmark: from the command to Completed, for a U sub-version fixing one ticket (issue 11).

`gestan-release hotfix --branch release/15.4` on fresh copies of the demo sandbox (one flash fix
waiting on release/15.4), timed as a whole process, in two set-ups side by side:
  (a) temporary — no PREFECT_API_URL: the command starts Prefect's temporary local server itself
      (what a release manager without a server gets);
  (b) server    — PREFECT_API_URL set to a Prefect server already running (started once, before
      the timing; the flow runs in the command's process and reports to it).
Interleaved runs (a, b, a, b, …), medians, and the ratio (a) / (b).
Targets: (b) under 5 s; (a) is reported (about 12 s before this issue).
`--reference DIR` runs the same two set-ups with the code of another checkout (PYTHONPATH=DIR,
e.g. the main branch) in the same rounds: what this branch adds, measured side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The ticket store has lived in `tickets`, then `ticket_store` (issue 12), then `tickets/store`
# (issue 17): a reference checkout may have any of them.
BUILD = (
    "import sys; from importlib import import_module; "
    "from pathlib import Path; from gestan_release.demo import build_sandbox, "
    "import_tickets; from gestan_release.settings import load\n"
    "for name in ('gestan_release.tickets.store', 'gestan_release.ticket_store', "
    "'gestan_release.tickets'):\n"
    "    try: TicketStore = import_module(name).TicketStore; break\n"
    "    except (ImportError, AttributeError): pass\n"
    "repo = build_sandbox(Path(sys.argv[1])); "
    "TicketStore(load(repo).database_url).import_file(import_tickets(repo)); print(repo)"
)


def build_template(root: Path, code: Path) -> Path:
    """The demo sandbox with its tickets, made by the code of `code` (its own schema)."""
    root.mkdir(parents=True)
    out = subprocess.run(
        [sys.executable, "-c", BUILD, str(root / "sandbox")],
        env={**os.environ, "PYTHONPATH": str(code)},
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(out.stdout.strip().splitlines()[-1])


def start_server(home: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_API_URL": url}
    exe = shutil.which("prefect") or str(Path(sys.executable).with_name("prefect"))
    server = subprocess.Popen(
        [exe, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 240
    while True:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=5).close()
            return server, url
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the Prefect server did not start") from None
            time.sleep(0.5)


HOTFIX = [sys.executable, "-m", "gestan_release.cli"]


def run_hotfix(repo: Path, home: Path, api_url: str | None, code: Path = ROOT) -> float:
    env = {**os.environ, "PREFECT_HOME": str(home), "PYTHONPATH": str(code)}
    env.pop("PREFECT_API_URL", None)
    if api_url:
        env["PREFECT_API_URL"] = api_url
    start = time.perf_counter()
    proc = subprocess.run(
        [*HOTFIX, "--repo", str(repo), "hotfix", "--branch", "release/15.4"],
        env=env,
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"hotfix failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5, help="runs of each set-up (default 5)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument(
        "--reference", metavar="DIR", help="another checkout to measure side by side (e.g. main)"
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    codes = {"this": ROOT}
    if args.reference:
        codes["reference"] = Path(args.reference).resolve()
    work = Path(tempfile.mkdtemp(prefix="gestan-bench-u-"))
    server = None
    try:
        print("building the demo sandbox …", flush=True)
        templates = {
            name: build_template(work / f"template-{name}", c) for name, c in codes.items()
        }
        print("starting a Prefect server for (b) (not timed) …", flush=True)
        server, url = start_server(work / "server-home")
        setups = [
            (f"{name}/{mode}", codes[name], templates[name], api)
            for mode, api in (("temporary", None), ("server", url))
            for name in codes
        ]
        times: dict[str, list[float]] = {label: [] for label, *_ in setups}
        n = 0
        for i in range(args.runs + 1):  # the first round warms up (imports, registrations)
            for label, code, template, api in setups:
                n += 1
                copy = work / f"run-{n}"
                shutil.copytree(template.parent, copy, symlinks=True)
                home = work / ("server-home" if api else f"home-{n}")
                elapsed = run_hotfix(copy / template.name, home, api, code)
                if i:
                    times[label].append(elapsed)
            if i:
                print(
                    f"  round {i}: "
                    + ", ".join(f"{label} {times[label][-1]:.2f} s" for label in times),
                    flush=True,
                )
        medians = {label: statistics.median(values) for label, values in times.items()}
        print()
        print(f"1-ticket U, command to Completed, {args.runs} runs, medians")
        for name in codes:
            temp, running = medians[f"{name}/temporary"], medians[f"{name}/server"]
            verdict = "PASS" if running < 5 else "FAIL"
            print(f"  {name}:")
            print(f"    (a) temporary server  {temp:6.2f} s  (about 12 s before issue 11)")
            print(f"    (b) running server    {running:6.2f} s  (target < 5 s)  {verdict}")
            print(f"    ratio (a)/(b)         {temp / running:6.2f}")
        if args.reference:
            for mode in ("temporary", "server"):
                ratios = [
                    a / b
                    for a, b in zip(times[f"this/{mode}"], times[f"reference/{mode}"], strict=True)
                ]
                print(f"  this / reference, {mode}: {statistics.median(ratios):.2f}")
        if args.json:
            Path(args.json).write_text(json.dumps(times, indent=2))
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
