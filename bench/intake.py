#!/usr/bin/env python3
"""Benchmark: the intake (`tickets sync`) and the promises report (issue 10).

The forum is the contract-validated Vanilla fake of `tests/fakes` (every request checked against
the OpenAPI documents, as in the tests; its answers, checked by the tests, are not re-validated
here), in its own process on loopback, holding
`--discussions` bug reports (all tagged with a priority) from `--users` reporters. Interleaved
rounds, each on a fresh state directory:

  (a) floor      a bare httpx loop fetching the same pages the sync needs (discussions 100 at a
                 time, their reporters 100 at a time), parsing the JSON and nothing else: what the
                 fake and the network cost, the least any client can do;
  (b) sync       `gestan-release tickets sync --no-ack`, the whole process (start-up, migration
                 of the new database, tags, 10,000 discussions, their reporters, the writes);
  (c) re-sync    the same command again with nothing new on the forum; then, half the tickets
                 marked acknowledged and the other half reported a year ago, `tickets sync` as
                 users run it (its acknowledgement step included, nothing due);
  (d) report     `gestan-release report` on a ledger of `--tickets` tickets (acknowledged, half of
                 them shipped) and `--releases` releases (one full version in four), whole process.

Reports the median of each, the median of the per-round ratios sync / floor, and PASS/FAIL for
the targets of issue 10: (b) <= 30 s, (c) <= 1 s, (d) <= 3 s (exit status 1 if one fails).

With `--baseline DIR` (another source tree, e.g. `git worktree add /tmp/base main`), each round
also times DIR's re-sync on the same database, alternating with this tree's (the order flips
every round, `--resyncs` of each), and reports the ratio of the medians (this tree / DIR).

    python bench/intake.py                      # 10,000 discussions, 3 rounds (~3 min)
    python bench/intake.py --runs 5 --json out.json
    python bench/intake.py --runs 5 --resyncs 3 --baseline /tmp/base

Last run (2 shared CPUs, load average ~0.6, 3 rounds, --resyncs 3): floor 2.39 s; sync 6.06 s
(2.51 x floor) PASS; re-sync 0.34 s (--no-ack) and 0.36 s with the acknowledgement step (nothing
due: half the tickets acknowledged, half reported a year ago) PASS; report 0.95 s PASS. With
--baseline main (load ~3.4, 5 rounds): re-sync 0.41 s against main's 0.86 s (ratio 0.47).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

TOKEN = "bench-forum-token"
CATEGORY = (30, "signaler-un-bug", "Signaler un bug")
TARGETS = {"sync": 30.0, "resync": 1.0, "report": 3.0}
PRIORITIES = ("flash", "haute", "normale", "basse")


# -- the forum (child process) -----------------------------------------------------------------
def serve_forum(discussions: int, users: int, ready: Any, stop: Any) -> None:
    from fakes.contracts import contracts_dir
    from fakes.vanilla_server import FakeVanilla

    forum = FakeVanilla(contracts_dir(), token=TOKEN, categories=(CATEGORY,))
    # Every request is still checked against the contract; the fake's own answers (already
    # checked by the tests) are not, so that the floor measures the transport, not openapi-core.
    forum.validate_responses = False
    forum.start()  # discussion URLs name the server's address
    for name in (*PRIORITIES, "question"):
        forum.add_tag(name)
    uids = [forum.add_user(f"Utilisateur {i}", f"user{i}@example.com") for i in range(users)]
    for i in range(discussions):
        forum.add_discussion(
            f"Bug {i} : l'écran de saisie se fige",
            "Détails",
            CATEGORY[0],
            uids[i % users],
            tags=(PRIORITIES[i % 4], "question") if i % 7 == 0 else (PRIORITIES[i % 4],),
        )
    ready.put(forum.url)
    stop.wait()
    errors = len(forum.validation_errors)
    forum.stop()
    ready.put(errors)


# -- the measured things -------------------------------------------------------------------------
def floor(url: str) -> float:
    import httpx

    start = time.perf_counter()
    with httpx.Client(base_url=f"{url}/api/v2", headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        last = 0
        while True:
            params = {
                "categoryID": str(CATEGORY[0]),
                "sort": "discussionID",
                "limit": "100",
                "expand": "tags",
                "excludeHiddenCategories": "false",
                "followed": "false",
            }
            if last:
                params["discussionID"] = f">{last}"
            response = c.get("/discussions", params=params)
            rows = response.json()
            if rows:
                ids = sorted({r["insertUserID"] for r in rows})
                c.get("/users", params={"userID": ",".join(map(str, ids)), "limit": "100"}).json()
                last = rows[-1]["discussionID"]
            if "next" not in response.links:
                break
    return time.perf_counter() - start


CPU: dict[str, list[float]] = {
    "sync": [],
    "resync": [],
    "resync_ack": [],
    "report": [],
    "baseline": [],
}


def cli(args: list[str], env: dict[str, str], cpu_key: str | None = None) -> float:
    """Wall time of one whole `gestan-release` process (its CPU time goes to CPU[cpu_key]:
    steadier than wall time on a shared, loaded machine; the targets are on wall time)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(
        # -P: the tree is the one PYTHONPATH names, not the current directory's.
        [sys.executable, "-P", "-m", "gestan_release.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if cpu_key:
        CPU[cpu_key].append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(f"gestan-release {' '.join(args)} failed:\n{proc.stderr[-2000:]}")
    return elapsed


def settle_acks(database: Path) -> None:
    """Nothing left to acknowledge in `database`, as on an install that syncs every few minutes
    after taking in a backlog: the odd tickets acknowledged (an ack Message-ID from elsewhere),
    the even ones reported a year ago (older than ACK_MAX_AGE_DAYS: never acknowledged
    automatically, still read every time)."""
    with sqlite3.connect(database) as connection:
        connection.execute("UPDATE tickets SET ack_message_id = 'bench@localhost' WHERE id % 2 = 1")
        connection.execute(
            "UPDATE forum_reports SET date_inserted = datetime('now', '-1 year') "
            "WHERE discussion_id % 2 = 0"
        )
    connection.close()


def make_ledger(directory: Path, tickets: int, releases: int) -> str:
    """A database with `tickets` acknowledged tickets and `releases` releases (Core inserts)."""
    import datetime as dt

    import sqlalchemy as sa

    from gestan_release.store import db
    from gestan_release.store.tables import (
        ForumReportRecord,
        ReleaseRecord,
        ReleaseTicketRecord,
        TicketAckRecord,
        TicketRecord,
    )

    url = f"sqlite:///{directory / 'gestan.db'}"
    db.upgrade(url)
    engine = db.engine_for(url)
    start = dt.datetime(2022, 1, 3, 9, tzinfo=dt.UTC)
    step = dt.timedelta(days=5)
    rels, members, ticket_rows, reports, acks = [], [], [], [], []
    minor, patch = 0, 0
    for r in range(releases):
        if r % 4 == 0:
            minor, patch = minor + 1, 0
            version, kind = f"15.{minor}.0", "full"
        else:
            patch += 1
            version, kind = f"15.{minor}.{patch}", "u"
        when = start + step * (r + 1)
        rels.append(
            {
                "version": version,
                "kind": kind,
                "label": version,
                "tag": f"v{version}",
                "commit_sha": None,
                "channel": "stable",
                "previous_version": None,
                "state": "released",
                "plan": "{}",
                "started_at": when,
                "updated_at": when,
                "finished_at": when,
            }
        )
    for i in range(1, tickets + 1):
        prio = PRIORITIES[i % 4]
        reported = start + dt.timedelta(hours=(i * 7) % (releases * 120))
        shipped = i % 2 == 0
        ticket_rows.append(
            {
                "id": i,
                "title": f"Bug {i}",
                "priority": prio,
                "reporter_name": "R",
                "reporter_email": f"r{i}@example.com",
                "forum_url": None,
                "forum_tracked": True,
                "ack_message_id": f"ack.{i}@gestan.test",
                "status": "released" if shipped else "open",
                "created_at": reported,
                "updated_at": reported,
            }
        )
        reports.append(
            {
                "discussion_id": i,
                "category_id": 30,
                "title": f"Bug {i}",
                "url": None,
                "insert_user_id": i,
                "reporter_name": "R",
                "reporter_email": None,
                "priority": prio,
                "tags": "[]",
                "state": "ticket",
                "reason": None,
                "date_inserted": reported,
                "date_updated": None,
                "seen_at": reported,
                "updated_at": reported,
            }
        )
        acks.append(
            {
                "ticket_id": i,
                "priority": prio,
                "first_priority": prio,
                "message_id": f"ack.{i}@gestan.test",
                "acked_at": reported + dt.timedelta(hours=1),
                "updated_at": reported,
            }
        )
        if shipped:
            after = [x for x in rels if x["finished_at"] > reported + dt.timedelta(hours=1)]
            if after:
                members.append(
                    {
                        "version": after[i % min(4, len(after))]["version"],
                        "ticket_id": i,
                        "priority": prio,
                        "already_in": None,
                        "known": True,
                    }
                )
    with engine.begin() as conn:
        conn.execute(sa.insert(ReleaseRecord.__table__), rels)
        conn.execute(sa.insert(TicketRecord.__table__), ticket_rows)
        conn.execute(sa.insert(ForumReportRecord.__table__), reports)
        conn.execute(sa.insert(TicketAckRecord.__table__), acks)
        conn.execute(sa.insert(ReleaseTicketRecord.__table__), members)
    db.dispose_all()
    return url


# -- main ----------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--discussions", type=int, default=10_000)
    parser.add_argument("--users", type=int, default=3_000)
    parser.add_argument(
        "--tickets", type=int, default=10_000, help="tickets of the report's ledger"
    )
    parser.add_argument("--releases", type=int, default=200, help="releases of the report's ledger")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--baseline",
        metavar="DIR",
        type=Path,
        help="a source tree whose re-sync is timed too, alternating with this one's",
    )
    parser.add_argument(
        "--resyncs", type=int, default=1, help="re-syncs of each tree per round (default: 1)"
    )
    parser.add_argument(
        "--json", metavar="FILE", help="also write the results as JSON ('-': stdout)"
    )
    args = parser.parse_args(argv)

    ctx = mp.get_context("spawn")
    ready, stop = ctx.Queue(), ctx.Event()
    server = ctx.Process(target=serve_forum, args=(args.discussions, args.users, ready, stop))
    server.start()
    url = ready.get(timeout=300)
    print(f"fake forum at {url}: {args.discussions:,} discussions, {args.users:,} reporters")
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("GESTAN_RELEASE_")} | {
        "GESTAN_RELEASE_FORUM_BASE_URL": url,
        "GESTAN_RELEASE_FORUM_TOKEN": TOKEN,
        "GESTAN_RELEASE_FORUM_BUG_CATEGORIES": CATEGORY[1],
        "PYTHONPATH": str(ROOT),
    }
    results: dict[str, list[float]] = {
        "floor": [],
        "sync": [],
        "resync": [],
        "resync_ack": [],
        "report": [],
    }
    if args.baseline:
        results["baseline"] = []
    with tempfile.TemporaryDirectory(prefix="bench-intake-") as tmp:
        ledger_dir = Path(tmp) / "ledger"
        ledger_dir.mkdir()
        print(f"building the report's ledger: {args.tickets:,} tickets, {args.releases} releases")
        ledger_url = make_ledger(ledger_dir, args.tickets, args.releases)
        try:
            for n in range(1, args.runs + 1):
                repo = Path(tmp) / f"round-{n}"
                repo.mkdir()
                env = base_env | {"GESTAN_RELEASE_STATE_DIR": str(repo / "state")}
                results["floor"].append(floor(url))
                sync_args = ["--repo", str(repo), "tickets", "sync", "--no-ack"]
                results["sync"].append(cli(sync_args, env, "sync"))
                trees = [("resync", env)]
                if args.baseline:
                    trees.append(("baseline", env | {"PYTHONPATH": str(args.baseline.resolve())}))
                    if n % 2 == 0:
                        trees.reverse()
                for _ in range(args.resyncs):
                    for key, tree_env in trees:
                        results[key].append(cli(sync_args, tree_env, key))
                # The command as users run it, acknowledgement step included, with nothing due.
                settle_acks(repo / "state" / "gestan.db")
                for _ in range(args.resyncs):
                    results["resync_ack"].append(cli(sync_args[:-1], env, "resync_ack"))
                report_env = base_env | {"GESTAN_RELEASE_DATABASE_URL": ledger_url}
                out = Path(tmp) / f"report-{n}.html"
                results["report"].append(
                    cli(["--repo", str(repo), "report", "--out", str(out)], report_env, "report")
                )
                baseline = f" (baseline {results['baseline'][-1]:.2f} s)" if args.baseline else ""
                print(
                    f"round {n}: floor {results['floor'][-1]:.2f} s, sync "
                    f"{results['sync'][-1]:.2f} s, re-sync {results['resync'][-1]:.2f} s"
                    f"{baseline}, report {results['report'][-1]:.2f} s"
                )
            from gestan_release.tickets.store import TicketStore

            count = len(TicketStore(f"sqlite:///{repo / 'state' / 'gestan.db'}").list())
            if count != args.discussions:
                raise SystemExit(f"the sync stored {count} tickets, not {args.discussions}")
        finally:
            stop.set()
            errors = ready.get(timeout=60)
            server.join(timeout=30)
    if errors:
        raise SystemExit(f"the fake recorded {errors} contract violation(s)")
    med = {k: statistics.median(v) for k, v in results.items()}
    ratio = statistics.median(s / f for s, f in zip(results["sync"], results["floor"], strict=True))
    print(f"\nmedians of {args.runs} rounds:")
    print(f"  (a) floor (bare httpx, same pages)   {med['floor']:7.2f} s")
    print(f"  (b) tickets sync, whole process      {med['sync']:7.2f} s   = {ratio:.2f} x floor")
    print(f"  (c) re-sync, nothing new             {med['resync']:7.2f} s   (--no-ack)")
    print(f"      with the acknowledgement step    {med['resync_ack']:7.2f} s   (nothing due)")
    if args.baseline:
        cpu_ratio = statistics.median(CPU["resync"]) / statistics.median(CPU["baseline"])
        print(
            f"      baseline {args.baseline}: {med['baseline']:.2f} s; this tree / baseline = "
            f"{med['resync'] / med['baseline']:.2f} (CPU {cpu_ratio:.2f})"
        )
    print(
        f"  (d) report, {args.tickets:,} tickets / {args.releases} releases {med['report']:7.2f} s"
    )
    cpu = {k: statistics.median(v) for k, v in CPU.items() if v}
    print(
        f"  CPU (user+sys, medians): sync {cpu['sync']:.2f} s, re-sync {cpu['resync']:.2f} s, "
        f"report {cpu['report']:.2f} s; load average {os.getloadavg()[0]:.1f}"
    )
    failed = False
    checks = (("sync", "sync"), ("resync", "re-sync"), ("resync_ack", "re-sync with ack"))
    for key, label in (*checks, ("report", "report")):
        target = TARGETS[key.removesuffix("_ack")]
        ok = med[key] <= target
        failed |= not ok
        print(
            f"  {'PASS' if ok else 'FAIL'} {label}: {med[key]:.2f} s <= {target:.0f} s "
            f"(ratio to target {med[key] / target:.2f})"
        )
    if args.json:
        data = {
            "runs": results,
            "medians": med,
            "cpu": CPU,
            "sync_over_floor": ratio,
            "targets": TARGETS,
        }
        text = json.dumps(data, indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text, encoding="utf-8")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
