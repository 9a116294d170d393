"""End-to-end fixtures: a real uvicorn update server and a static file server, on loopback."""

from __future__ import annotations

import functools
import http.server
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gestan_release.updates.server import UpdateServer, uvicorn_config
from gestan_release.updates.signing import Signer
from gestan_release.updates.store import Store

TOKEN = "e2e-admin-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RunningServer:
    url: str
    app: UpdateServer
    server: object
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True  # type: ignore[attr-defined]
        self.thread.join(10)
        assert not self.thread.is_alive(), "update server did not stop"


def start_update_server(
    data: Path, key: Path, *, token: str | None = TOKEN, channels=("stable", "nightly")
) -> RunningServer:
    import uvicorn

    store = Store(data, Signer.from_file(key))
    app = UpdateServer(store, token=token, channels=channels, poll_interval=0.05)
    port = free_port()
    server = uvicorn.Server(uvicorn_config(app, "127.0.0.1", port))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "update server did not start"
        time.sleep(0.02)
    return RunningServer(f"http://127.0.0.1:{port}", app, server, thread)


@pytest.fixture
def key_path(tmp_path) -> Path:
    return tmp_path / "keys" / "updates.ed25519.pem"


@pytest.fixture
def update_server(tmp_path, key_path) -> Iterator[RunningServer]:
    running = start_update_server(tmp_path / "updates", key_path)
    yield running
    running.stop()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@pytest.fixture
def static_server(tmp_path) -> Iterator[tuple[str, Path]]:
    """A plain static file server over a directory: stands for nginx, a CDN or a download host."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    httpd.shutdown()
    httpd.server_close()
