"""The update server on loopback, for end-to-end tests (a module, so that tests can import it:
two `conftest.py` files cannot both be imported as `conftest`)."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from gestan_release.updates.limits import Limits
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
    data: Path,
    key: Path,
    *,
    token: str | None = TOKEN,
    channels=("stable", "nightly"),
    limits: Limits | None = None,
    **uvicorn_extra,
) -> RunningServer:
    import uvicorn

    store = Store(data, Signer.from_file(key))
    app = UpdateServer(store, token=token, channels=channels, poll_interval=0.05)
    port = free_port()
    config = uvicorn_config(app, "127.0.0.1", port, limits=limits, **uvicorn_extra)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "update server did not start"
        time.sleep(0.02)
    return RunningServer(f"http://127.0.0.1:{port}", app, server, thread)
