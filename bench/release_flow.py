"""Benchmark: a release of 500 tickets from 300 reporters on the embedded default.

Compares, in the same run and on identical fresh copies of one sandbox:
  (a) plain  — the release's runbook (`release.runbook`) with its steps called as plain
               functions, in the flow's order;
  (b) flow   — the Prefect `release` flow (tasks, retries, artifacts), the Prefect server already
               running (its start-up is not counted): the code path the CLI took before issue 13;
  (c) today  — `gestan-release release` on a terminal before issue 13: the flow without the
               display's task hooks, then the summary printed as rendered markdown;
  (d) display — `gestan-release release` on a terminal now: the CLI's `run_flow` with the live
               display on (step lines from task hooks, rich live bars for the forum replies and the
               mails, Prefect's console filtered), then the summary; (c) and (d) draw into a
               terminal that discards what it gets.
Reports medians of several interleaved runs (in ABBA order) and the ratios flow / plain and
display / today, on wall time (the targets) and on this process's CPU time (steadier on a
shared, loaded machine; the Prefect server's own process is not in it).
Targets: Prefect's overhead ≤ 1.5 × the plain functions, the whole release ≤ 10 s (issue 3);
the live display costs ≤ 5 % (display / today ≤ 1.05, issue 13).
`--database postgresql://postgres@127.0.0.1:5432` runs them on PostgreSQL (issue 11): one fresh
database per run, copied from a template that holds the tickets (CREATE DATABASE … TEMPLATE).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FIRST_NAMES = [
    "Zoé",
    "Marc",
    "Chloé",
    "Benoît",
    "Agnès",
    "Hélène",
    "Jérôme",
    "Éric",
    "Inès",
    "Loïc",
]
LAST_NAMES = ["Lefèvre", "Dubois", "Martin", "Girard", "Roux", "Petit", "Müller", "Garçon", "Noël"]
PRIORITIES = ["flash"] * 5 + ["haute"] * 25 + ["normale"] * 40 + ["basse"] * 30
BUILD = (
    "mkdir -p dist && printf 'Gestan %s\\n' \"$GESTAN_VERSION\" "
    "> dist/gestan-$GESTAN_VERSION-win64.exe"
)


class PgRuns:
    """One PostgreSQL database per run, each a copy of a template holding the tickets."""

    def __init__(self, server: str) -> None:
        import uuid

        self.server = server.rstrip("/")
        self.prefix = f"gestan_bench_{uuid.uuid4().hex[:6]}"
        self.template = f"{self.prefix}_template"
        self.made: list[str] = []

    def url(self, name: str) -> str:
        return f"{self.server}/{name}"

    def _admin(self, statement: str) -> None:
        import psycopg

        from gestan_release.store import db

        db.dispose_all()  # no open connection may hold a template
        dsn = self.url("postgres").replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(statement)

    def create_template(self) -> str:
        self._admin(f'CREATE DATABASE "{self.template}"')
        self.made.append(self.template)
        return self.url(self.template)

    def copy(self, n: int) -> str:
        name = f"{self.prefix}_run_{n}"
        self._admin(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        self.made.append(name)
        return self.url(name)

    def drop_all(self) -> None:
        for name in self.made:
            self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def build_template(
    root: Path, tickets: int, reporters: int, seed: int = 7, database_url: str | None = None
) -> Path:
    """A repository tagged v15.4.0 followed by one commit per fixed ticket, and its store."""
    rnd = random.Random(seed)
    repo = root / "gestan"
    repo.mkdir(parents=True)
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Dev",
        "GIT_AUTHOR_EMAIL": "dev@gestan.test",
        "GIT_COMMITTER_NAME": "Dev",
        "GIT_COMMITTER_EMAIL": "dev@gestan.test",
    }

    def git(*args: str, stdin: bytes | None = None) -> None:
        subprocess.run(
            ["git", "-C", str(repo), *args], check=True, env=env, input=stdin, capture_output=True
        )

    git("init", "-q", "-b", "main")
    (repo / "gestan-release.toml").write_text(
        f'build_command = "{BUILD.replace(chr(34), chr(92) + chr(34))}"\n'
        'artifacts = "dist/*.exe"\n',
        encoding="utf-8",
    )
    (repo / ".gitignore").write_text("dist/\n", encoding="utf-8")
    git("add", ".")
    git("commit", "-q", "-m", "Gestan 15.4")
    git("tag", "-a", "v15.4.0", "-m", "Gestan 15.4")
    # One fast-import stream: one commit per ticket.
    stream = []
    now = int(time.time())
    for i in range(tickets):
        tid = 4000 + i
        msg = f"Corrige le module {i % 37} (#{tid})\n\nTicket: {tid}\n".encode()
        data = f"change {i}\n".encode()
        stream.append(b"commit refs/heads/main\n")
        stream.append(f"committer Dev <dev@gestan.test> {now + i} +0100\n".encode())
        stream.append(f"data {len(msg)}\n".encode() + msg)
        if i == 0:
            stream.append(b"from refs/heads/main^0\n")
        stream.append(f"M 644 inline src/m{i % 37}.txt\ndata {len(data)}\n".encode() + data + b"\n")
    git("fast-import", "--quiet", stdin=b"".join(stream))
    git("reset", "-q", "--hard", "main")
    people = [
        (f"{rnd.choice(FIRST_NAMES)} {rnd.choice(LAST_NAMES)}", f"reporter{r}@example.com")
        for r in range(reporters)
    ]
    rows = []
    for i in range(tickets):
        name, email = people[i % reporters]
        rows.append(
            {
                "id": 4000 + i,
                "title": f"Anomalie n°{i} : écran « Factures » {rnd.randint(1, 99)}",
                "priority": rnd.choice(PRIORITIES),
                "reporter_name": name,
                "reporter_email": email,
                "forum_url": f"https://forum.gestan.fr/discussion/{4000 + i}/t",
                "forum_tracked": True,
            }
        )
    from gestan_release.settings import load
    from gestan_release.store.db import ensure_state_dir
    from gestan_release.tickets.store import TicketStore

    settings = load(repo)
    ensure_state_dir(settings)
    path = root / "tickets.json"
    path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    TicketStore(database_url or settings.database_url).import_file(path)
    return repo


def plain_release(repo: Path) -> dict:
    """The release flow's runbook (`gestan_release.release.runbook.cut`), its steps called as plain
    functions instead of Prefect tasks: the same order, the same lock, the same policy."""
    from gestan_release.release import runbook
    from gestan_release.settings import load

    result = runbook.cut(load(repo), "full", None)
    return {"version": result["version"], "complete": result["state"] == "released"}


def flow_release(repo: Path) -> dict:
    from flows.release import release

    result = release(repo=str(repo))
    return {"version": result["version"], "complete": True}


class _Terminal(io.TextIOWrapper):
    """A terminal that discards its output: rich draws its live display into it as into a tty."""

    def __init__(self) -> None:
        super().__init__(open(os.devnull, "wb"), encoding="utf-8")  # noqa: SIM115

    def isatty(self) -> bool:
        return True


@contextlib.contextmanager
def _without_display_hooks():
    """The tasks of flows/common.py as they were before issue 13: no display hooks."""
    from prefect import Task

    import flows.common as common

    names = ("on_running_hooks", "on_completion_hooks", "on_failure_hooks")
    saved = [
        (obj, [getattr(obj, n) for n in names])
        for obj in [*vars(common).values(), *common.STEP_TASKS.values()]
        if isinstance(obj, Task)
    ]
    for obj, _ in saved:
        for n in names:
            setattr(obj, n, [])
    try:
        yield
    finally:
        for obj, hooks in saved:
            for n, h in zip(names, hooks, strict=True):
                setattr(obj, n, h)


def today_release(repo: Path) -> dict:
    """`gestan-release release` on a terminal before issue 13: the flow, then `_show`."""
    from rich.console import Console
    from rich.markdown import Markdown

    from flows.release import release

    with _without_display_hooks(), _Terminal() as terminal:
        result = release(repo=str(repo))
        Console(file=terminal).print(Markdown(result["summary"]))
    return {"version": result["version"], "complete": True}


def display_release(repo: Path) -> dict:
    """The release as `gestan-release release` runs it on a terminal: live display on."""
    from gestan_release.prefect.flowrun import run_flow
    from gestan_release.terminal.console import View

    with _Terminal() as terminal:
        view = View(out=terminal, err=terminal)
        result = run_flow("release", view, repo=str(repo))
        view.outcome("release", result)  # the summary table, rendered
    return {"version": result["version"], "complete": result["state"] == "released"}


def fresh_copy(template: Path, work: Path, n: int, pg: PgRuns | None = None) -> Path:
    dest = work / f"run-{n}"
    shutil.copytree(template.parent, dest, symlinks=True)
    from gestan_release.store import db

    db.dispose_all()  # engines are cached per URL; each copy has its own file
    if pg is not None:  # and its own PostgreSQL database, read from the environment
        os.environ["GESTAN_RELEASE_DATABASE_URL"] = pg.copy(n)
    return dest / "gestan"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tickets", type=int, default=500, help="fixed tickets (default 500)")
    parser.add_argument(
        "--reporters", type=int, default=300, help="distinct reporters (default 300)"
    )
    parser.add_argument("--runs", type=int, default=5, help="interleaved runs of each (default 5)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument(
        "--modes",
        default="plain,flow,today,display",
        help="which of plain, flow, today, display to run (default: all four)",
    )
    parser.add_argument(
        "--no-heartbeats",
        action="store_true",
        help=(
            "turn Prefect's flow-run heartbeat thread off: joining it at the end of every run "
            "waits a random 0-1 s, the same in every mode but enough to hide a few per cent"
        ),
    )
    parser.add_argument(
        "--database",
        default="sqlite",
        metavar="URL",
        help="sqlite (default: a file per run) or a PostgreSQL server, e.g. "
        "postgresql+psycopg://postgres@127.0.0.1:5432 (one new database per run, dropped after)",
    )
    args = parser.parse_args(argv)
    pg = None
    if args.database != "sqlite":
        if not args.database.startswith("postgresql"):
            parser.error("--database is sqlite or a postgresql:// server URL")
        pg = PgRuns(args.database.replace("postgresql://", "postgresql+psycopg://"))
        # one machine: the outbox and the local update store stand in for the real channels
        os.environ["GESTAN_RELEASE_ALLOW_OUTBOX"] = "true"
    modes = [m for m in args.modes.split(",") if m]
    runners = {
        "plain": plain_release,
        "flow": flow_release,
        "today": today_release,
        "display": display_release,
    }
    if not modes or any(m not in runners for m in modes):
        parser.error(f"--modes: choose among {', '.join(runners)}")

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    work = Path(tempfile.mkdtemp(prefix="gestan-bench-release-"))
    try:
        print(
            f"building the sandbox: {args.tickets} tickets, {args.reporters} reporters …",
            flush=True,
        )
        template = build_template(
            work / "template",
            args.tickets,
            args.reporters,
            database_url=pg.create_template() if pg else None,
        )
        from prefect.testing.utilities import prefect_test_harness

        print("starting a Prefect server (not timed) …", flush=True)
        from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

        heartbeats = {PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None} if args.no_heartbeats else {}
        with (
            prefect_test_harness(server_startup_timeout=180),
            temporary_settings(updates=heartbeats),
        ):
            n = 0
            for name in modes:  # warm-up: imports, first flow registration
                runners[name](fresh_copy(template, work, n, pg))
                n += 1
            times: dict[str, list[float]] = {name: [] for name in modes}
            cpu: dict[str, list[float]] = {name: [] for name in modes}
            for i in range(args.runs):
                # ABBA order: what one run leaves behind (dirty pages, the server's queues)
                # falls on each mode alike.
                for name in modes if i % 2 == 0 else reversed(modes):
                    repo = fresh_copy(template, work, n, pg)
                    n += 1
                    start, start_cpu = time.perf_counter(), time.process_time()
                    out = runners[name](repo)
                    times[name].append(time.perf_counter() - start)
                    cpu[name].append(time.process_time() - start_cpu)
                    assert out["complete"], out
                print(
                    f"  round {i + 1}: "
                    + ", ".join(f"{name} {times[name][-1]:.2f} s" for name in modes),
                    flush=True,
                )
        print()
        print(
            f"release of {args.tickets} tickets / {args.reporters} reporters on "
            f"{'PostgreSQL' if pg else 'SQLite'}, {args.runs} runs, medians"
        )
        labels = {
            "plain": "plain functions",
            "flow": "Prefect flow",
            "today": "CLI before",
            "display": "CLI live display",
        }
        for name in modes:
            print(
                f"  {labels[name]:<16} {statistics.median(times[name]):6.2f} s "
                f"(CPU {statistics.median(cpu[name]):.2f} s)"
            )
        results: dict[str, object] = {name: times[name] for name in modes}
        results["cpu"] = cpu

        def ratio_of(a: str, b: str, of: dict[str, list[float]] = times) -> float:
            return statistics.median(x / y for x, y in zip(of[a], of[b], strict=True))

        if "plain" in modes and "flow" in modes:
            ratio = results["ratio"] = ratio_of("flow", "plain")
            print(
                f"  ratio flow/plain    {ratio:6.3f}  (target ≤ 1.5)   "
                f"{'PASS' if ratio <= 1.5 else 'FAIL'}"
            )
        if "flow" in modes:
            flow = statistics.median(times["flow"])
            print(
                f"  whole release    {flow:6.2f} s (target ≤ 10 s)  "
                f"{'PASS' if flow <= 10 else 'FAIL'}"
            )
        if "display" in modes and "today" in modes:
            ratio = results["display_ratio"] = ratio_of("display", "today")
            print(
                f"  ratio display/today {ratio:6.3f}  (target ≤ 1.05)  "
                f"{'PASS' if ratio <= 1.05 else 'FAIL'}"
            )
            cpu_ratio = results["display_cpu_ratio"] = ratio_of("display", "today", cpu)
            print(f"  CPU display/today   {cpu_ratio:6.3f}")
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if pg is not None:
            pg.drop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
