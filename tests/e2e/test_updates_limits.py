"""The real update server over real HTTP against idle and slow sockets (issue 9, hole 5), and a
nightly channel 1,000 nightlies long (hole 6): installs still get their answer."""

from __future__ import annotations

import datetime as dt
import os
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from update_servers import free_port, start_update_server

from gestan_release.updates.client import MAX_RESPONSE, UpdateClient
from gestan_release.updates.limits import Limits
from gestan_release.updates.signing import Signer
from gestan_release.updates.store import Store

pytestmark = pytest.mark.slow

SHA = "ef" * 32
DESCRIPTORS = 256  # the server's descriptor limit: a small VPS, a container
IDLE = 600  # more idle sockets than it can hold


def entry(version: str) -> dict:
    url = f"https://dl.gestan.fr/{version}.exe"
    return {"version": version, "artifacts": {"win64": {"url": url, "sha256": SHA, "size": 9}}}


def install(url: str, key: Path, tmp_path: Path, version: str, channel: str = "stable"):
    return UpdateClient(
        url,
        Signer.from_file(key).public_b64(),
        version=version,
        channel=channel,
        platform="win64",
        install_id=f"desk-{channel}",
        state_path=tmp_path / "desktop" / f"{channel}.json",
        timeout=10.0,
    )


def _low_descriptor_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (DESCRIPTORS, DESCRIPTORS))


def test_idle_sockets_do_not_starve_a_real_install(tmp_path: Path) -> None:
    """`gestan-release serve-updates` (the real command, its real limits) under a low descriptor
    limit: hundreds of sockets opened and left idle, then a desktop install asks."""
    key = tmp_path / "keys" / "updates.ed25519.pem"
    data = tmp_path / "updates"
    Store(data, Signer.from_file(key)).publish("stable", entry("15.4.1"))
    port = free_port()
    env = {**os.environ, "GESTAN_RELEASE_UPDATES_SIGNING_KEY": str(key)}
    server = subprocess.Popen(
        [sys.executable, "-m", "gestan_release.cli", "--repo", str(tmp_path), "serve-updates",
         "--port", str(port), "--data", str(data)],
        env=env, stderr=subprocess.PIPE, text=True, preexec_fn=_low_descriptor_limit,
    )  # fmt: skip
    idle: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None, server.stderr.read() if server.stderr else ""
                assert time.monotonic() < deadline, "serve-updates did not start"
                time.sleep(0.05)
        for _ in range(IDLE):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            idle.append(sock)  # connected, never a byte sent
        desk = install(f"http://127.0.0.1:{port}", key, tmp_path, "15.4.0")
        try:
            assert desk.check().version == "15.4.1"
        finally:
            desk.close()
        # The oldest idle sockets were closed to make room; the server is still there.
        closed = sum(1 for s in idle[:100] if _closed(s))
        assert closed >= 50
        assert server.poll() is None
    finally:
        for sock in idle:
            sock.close()
        server.terminate()
        server.wait(10)


def _closed(sock: socket.socket) -> bool:
    sock.settimeout(2)
    try:
        return sock.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_a_slow_request_head_is_cut_and_a_huge_one_refused(tmp_path: Path, http: str) -> None:
    key = tmp_path / "keys" / "updates.ed25519.pem"
    limits = Limits(request_timeout=1.0, max_header_bytes=4096)
    running = start_update_server(tmp_path / "updates", key, limits=limits, http=http)
    host, port = "127.0.0.1", int(running.url.rsplit(":", 1)[1])
    try:
        # Slowloris: a header line now and then, never the end of the head.
        slow = socket.create_connection((host, port), timeout=10)
        slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        closed_by_server = False
        for n in range(40):  # up to 20 s of trickle, on the server's 1 s timeout
            try:
                slow.sendall(b"X-Slow-%d: 1\r\n" % n)
            except (BrokenPipeError, ConnectionResetError):
                closed_by_server = True
                break
            slow.settimeout(0.5)
            try:
                if slow.recv(1) == b"":
                    closed_by_server = True
                    break
            except (BrokenPipeError, ConnectionResetError):
                # Closed with our unread header lines in its buffer: the kernel says it with RST.
                closed_by_server = True
                break
            except TimeoutError:
                pass
        assert closed_by_server
        slow.close()
        # A head larger than the cap: refused (431, or 400 from h11's own limit), connection closed.
        big = socket.create_connection((host, port), timeout=10)
        big.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8000 + b"\r\n")
        answer = big.recv(200)
        assert answer.startswith((b"HTTP/1.1 431", b"HTTP/1.1 400")), answer
        big.close()
        # A normal request on a kept-alive connection still works.
        with socket.create_connection((host, port), timeout=10) as ok:
            ok.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert ok.recv(200).startswith(b"HTTP/1.1 200")
    finally:
        running.stop()


def test_a_thousand_nightlies_and_an_install_still_updates(tmp_path: Path) -> None:
    key = tmp_path / "keys" / "updates.ed25519.pem"
    store = Store(tmp_path / "updates", Signer.from_file(key))  # UPDATES_KEEP_NIGHTLIES default
    first = dt.date(2024, 1, 1)
    versions = [f"15.5.0-nightly.{first + dt.timedelta(days=d):%Y%m%d}" for d in range(1000)]
    for version in versions:
        store.publish("nightly", entry(version))
    running = start_update_server(tmp_path / "updates", key)
    try:
        tester = install(running.url, key, tmp_path, versions[0], channel="nightly")
        try:
            manifest = tester.fetch_manifest()  # what a static mirror serves
            assert manifest["releases"][-1]["version"] == versions[-1]
            assert tester.check().version == versions[-1]
        finally:
            tester.close()
        size = len((tmp_path / "updates" / "channels" / "nightly.json").read_bytes())
        assert size < MAX_RESPONSE / 4
    finally:
        running.stop()
