"""Benchmark: `/v1/check` of two source trees of gestan-release side by side (A/B), e.g. `main`
against a branch that touches the update server's hot path.

Both servers serve the same store at the same time; wrk runs alternate between them (the order
flips every run) so that the noise of a shared machine falls on both; medians of the runs.

    git archive main | tar -x -C /tmp/gestan-main
    python bench/updates_ab.py --a /tmp/gestan-main --b . --runs 8 --duration 5
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import updates_server as bench


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Needs wrk (Debian package). Everything runs on 127.0.0.1.",
    )
    parser.add_argument("--a", required=True, type=Path, help="source tree A (the reference)")
    parser.add_argument("--b", required=True, type=Path, help="source tree B (the change)")
    parser.add_argument("--runs", type=int, default=8, help="runs per tree (default: 8)")
    parser.add_argument("--duration", type=int, default=5, help="seconds per run (default: 5)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (default: 64)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("bench: wrk missing; `apt-get install -y wrk`", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="gestan-ab-") as tmp_name:
        tmp = Path(tmp_name)
        key, data = tmp / "keys" / "updates.pem", tmp / "updates"
        bench.build_store(data, key)
        procs, urls = [], {}
        try:
            for name, root in (("a", args.a.resolve()), ("b", args.b.resolve())):
                port = bench.free_port()
                procs.append(bench.serve_updates(root, tmp, key, data, port))
                urls[name] = f"http://127.0.0.1:{port}"
            for url in urls.values():
                bench.wait_http(url + "/healthz")
            lua = bench.check_script(tmp)
            for url in urls.values():  # warm-up: fill the caches
                bench.run_wrk(url + "/", lua, 2, args.connections)
            runs: dict[str, list[dict]] = {"a": [], "b": []}
            for n in range(args.runs):
                order = list(urls.items()) if n % 2 == 0 else list(reversed(urls.items()))
                for name, url in order:
                    runs[name].append(
                        bench.run_wrk(url + "/", lua, args.duration, args.connections)
                    )
                print(
                    f"run {n + 1}/{args.runs}: A {runs['a'][-1]['rps']:,.0f} req/s, "
                    f"B {runs['b'][-1]['rps']:,.0f} req/s",
                    file=sys.stderr,
                )
        finally:
            bench.stop(procs)
    result = {
        name: {k: statistics.median(r[k] for r in rs) for k in ("rps", "p50_ms", "p99_ms")}
        for name, rs in runs.items()
    }
    result["b_over_a"] = result["b"]["rps"] / result["a"]["rps"]
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for name in ("a", "b"):
            r = result[name]
            print(f"{name.upper()}: {r['rps']:,.0f} req/s, p50 {r['p50_ms']:.2f} ms, "
                  f"p99 {r['p99_ms']:.2f} ms")  # fmt: skip
        print(
            f"B/A throughput {result['b_over_a']:.3f} (medians of {args.runs} x {args.duration}s "
            f"at {args.connections} connections)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
