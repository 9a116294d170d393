"""Benchmark: `/v1/check` of `gestan-release serve-updates` against nginx serving the static export.

Both run on loopback with one worker each; wrk drives them at 64 connections, `/v1/check` with
varied versions, channels and install ids (a Lua script), nginx with the exported stable manifest.
Several alternating runs; the medians of requests/s and p50/p99 latency are reported with the
ratio. Targets (issue 4): throughput >= 0.25 x nginx, p99 <= 10 ms.

Needs the Debian packages nginx and wrk: `apt-get update && apt-get install -y nginx wrk`.
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
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

THROUGHPUT_TARGET = 0.25
P99_TARGET_MS = 10.0

VERSIONS = [f"15.{m}.{p}" for m in range(0, 5) for p in range(0, 4)]
NIGHTLIES = [f"15.5.0-nightly.202611{d:02d}" for d in range(20, 28)]

CHECK_LUA = """
local versions = {%(versions)s}
local nightlies = {%(nightlies)s}
local n = 0
request = function()
  n = n + 1
  local channel, v
  if n %% 5 == 0 then
    channel, v = "nightly", nightlies[(n %% #nightlies) + 1]
  else
    channel, v = "stable", versions[(n %% #versions) + 1]
  end
  local manual = (n %% 50 == 0) and "&interactive=1" or ""
  return wrk.format("GET", "/v1/check?version=" .. v .. "&channel=" .. channel ..
    "&platform=win64&install_id=bench-" .. n .. manual)
end
"""

DONE_LUA = """
done = function(summary, latency, requests)
  local bad = summary.errors.status + summary.errors.connect + summary.errors.read +
    summary.errors.write + summary.errors.timeout
  io.write(string.format("RESULT %d %d %d %d %d\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), bad))
end
"""

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  include /etc/nginx/mime.types;
  client_body_temp_path {tmp}/t; proxy_temp_path {tmp}/t; fastcgi_temp_path {tmp}/t;
  uwsgi_temp_path {tmp}/t; scgi_temp_path {tmp}/t;
  keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{port};
    root {www};
    location /v1/ {{ add_header Cache-Control "public, max-age=60, must-revalidate"; }}
  }}
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"bench: {url} did not come up") from None
            time.sleep(0.1)


def build_store(data: Path, key: Path) -> None:
    """A realistic store: a year of stable releases and U sub-versions, a week of nightlies."""
    from gestan_release.updates.signing import Signer
    from gestan_release.updates.store import Store

    store = Store(data, Signer.from_file(key))
    art = {"win64": {"url": "https://dl.gestan.fr/x.exe", "sha256": "ab" * 32, "size": 1 << 26}}
    for m in range(0, 5):
        for p in range(0, 5):
            fields = {
                "artifacts": art,
                "critical": p == 2,
                "rollout": 20 if (m, p) == (4, 4) else 100,
            }
            if m == 4 and p == 0:
                fields["min_version"] = "15.2.0"  # a stepping stone for the oldest installs
            store.publish("stable", {"version": f"15.{m}.{p}", **fields})
    for v in NIGHTLIES:
        store.publish("nightly", {"version": v, "artifacts": art})


def run_wrk(url: str, script: Path, seconds: int, connections: int) -> dict:
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "5s",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("RESULT "))
    requests, duration_us, p50_us, p99_us, bad = (int(x) for x in line.split()[1:])
    return {
        "rps": requests / (duration_us / 1e6),
        "p50_ms": p50_us / 1000,
        "p99_ms": p99_us / 1000,
        "errors": bad,
    }


def serve_updates(root: Path, tmp: Path, key: Path, data: Path, port: int) -> subprocess.Popen:
    """`gestan-release serve-updates` of the source tree `root` on `port`, serving `data`."""
    env = {**os.environ, "GESTAN_RELEASE_UPDATES_SIGNING_KEY": str(key), "PYTHONPATH": str(root)}
    return subprocess.Popen(
        [sys.executable, "-m", "gestan_release.cli", "--repo", str(tmp),
         "serve-updates", "--port", str(port), "--data", str(data)],
        env=env, cwd=root, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def check_script(tmp: Path) -> Path:
    """The wrk script asking `/v1/check` for every version of the store, on both channels."""
    quoted = lambda xs: ", ".join(f'"{x}"' for x in xs)  # noqa: E731
    script = tmp / "check.lua"
    script.write_text(
        CHECK_LUA % {"versions": quoted(VERSIONS), "nightlies": quoted(NIGHTLIES)} + DONE_LUA
    )
    return script


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()


def median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Needs nginx and wrk (Debian packages). Everything runs on 127.0.0.1.",
    )
    parser.add_argument("--runs", type=int, default=5, help="alternating runs (default: 5)")
    parser.add_argument("--duration", type=int, default=10, help="seconds per run (default: 10)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (default: 64)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)

    missing = [tool for tool in ("nginx", "wrk") if shutil.which(tool) is None]
    if missing:
        print(
            f"bench: {' and '.join(missing)} missing; install with "
            f"`apt-get update && apt-get install -y nginx wrk`",
            file=sys.stderr,
        )
        return 2

    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="gestan-bench-") as tmp_name:
        tmp = Path(tmp_name)
        key, data, www = tmp / "keys" / "updates.pem", tmp / "updates", tmp / "www"
        build_store(data, key)
        from gestan_release.updates.signing import Signer
        from gestan_release.updates.store import Store

        Store(data, Signer.from_file(key)).export(www)
        # nginx workers run unprivileged: let them read the export
        for path in (tmp, www, *www.rglob("*")):
            path.chmod(0o755 if path.is_dir() else 0o644)
        (tmp / "t").mkdir()
        try:
            check_port, nginx_port = free_port(), free_port()
            procs.append(serve_updates(ROOT, tmp, key, data, check_port))
            conf = tmp / "nginx.conf"
            conf.write_text(NGINX_CONF.format(tmp=tmp, port=nginx_port, www=www))
            procs.append(
                subprocess.Popen(
                    ["nginx", "-c", str(conf), "-p", str(tmp)], stderr=subprocess.DEVNULL
                )
            )
            check_base = f"http://127.0.0.1:{check_port}"
            nginx_url = f"http://127.0.0.1:{nginx_port}/v1/channels/stable/manifest.json"
            wait_http(check_base + "/healthz")
            wait_http(nginx_url)
            http_mode = sanity_check(check_base)

            check_lua = check_script(tmp)
            nginx_lua = tmp / "nginx.lua"
            nginx_lua.write_text(DONE_LUA)

            run_wrk(check_base + "/", check_lua, 2, args.connections)  # warm-up: fill the caches
            run_wrk(nginx_url, nginx_lua, 2, args.connections)
            check_runs, nginx_runs = [], []
            for n in range(args.runs):
                nginx_runs.append(run_wrk(nginx_url, nginx_lua, args.duration, args.connections))
                check_runs.append(
                    run_wrk(check_base + "/", check_lua, args.duration, args.connections)
                )
                print(
                    f"run {n + 1}/{args.runs}: /v1/check {check_runs[-1]['rps']:,.0f} req/s, "
                    f"nginx {nginx_runs[-1]['rps']:,.0f} req/s",
                    file=sys.stderr,
                )
        finally:
            stop(procs)

    result = {
        "connections": args.connections,
        "runs": args.runs,
        "duration_s": args.duration,
        "server_http": http_mode,
        "check": {k: median(check_runs, k) for k in ("rps", "p50_ms", "p99_ms", "errors")},
        "nginx": {k: median(nginx_runs, k) for k in ("rps", "p50_ms", "p99_ms", "errors")},
    }
    ratio = result["check"]["rps"] / result["nginx"]["rps"]
    result["ratio"] = ratio
    result["meets_targets"] = (
        ratio >= THROUGHPUT_TARGET and result["check"]["p99_ms"] <= P99_TARGET_MS
    )
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{'':12}{'req/s':>12}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}")
        for name, key in (("/v1/check", "check"), ("nginx", "nginx")):
            r = result[key]
            print(
                f"{name:12}{r['rps']:>12,.0f}{r['p50_ms']:>10.2f}{r['p99_ms']:>10.2f}{r['errors']:>8.0f}"
            )
        print(
            f"ratio {ratio:.2f} (target >= {THROUGHPUT_TARGET}), "
            f"p99 {result['check']['p99_ms']:.2f} ms "
            f"(target <= {P99_TARGET_MS}); medians of {args.runs} x {args.duration}s at "
            f"{args.connections} connections; server http: {http_mode}"
        )
    return 0 if result["meets_targets"] else 1


def sanity_check(base: str) -> str:
    """Check that the load hits real answers (200 and 204, not 400s); name the HTTP parser."""
    statuses = set()
    for v in ("15.0.0", "15.4.4", "15.5.0-nightly.20261120"):
        channel = "nightly" if "nightly" in v else "stable"
        url = f"{base}/v1/check?version={v}&channel={channel}&platform=win64&install_id=x"
        with urllib.request.urlopen(url) as response:
            statuses.add(response.status)
    if statuses != {200, 204}:
        raise SystemExit(f"bench: unexpected answers {statuses}; the load would measure errors")
    try:
        import httptools  # noqa: F401

        return "httptools" + (" + uvloop" if _has("uvloop") else "")
    except ImportError:
        return "h11 (install uvicorn[standard] for httptools/uvloop)"


def _has(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
