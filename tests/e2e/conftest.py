"""End-to-end fixtures: a real uvicorn update server and a static file server, on loopback."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from update_servers import TOKEN, RunningServer, free_port, start_update_server  # noqa: F401


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
