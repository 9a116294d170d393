"""The update server called through its ASGI interface in this process (no socket): a request in,
the status, headers and body out; and a valid release entry to publish."""

from __future__ import annotations

import asyncio

from gestan_release.updates.server import UpdateServer

TOKEN = "hostile-admin-token"
AUTH = [(b"authorization", f"Bearer {TOKEN}".encode())]
SHA = "cd" * 32


def entry(version: str, **fields) -> dict:
    url = f"https://dl.gestan.fr/{version}.exe"
    return {"version": version, "artifacts": {"win64": {"url": url, "sha256": SHA, "size": 9}},
            **fields}  # fmt: skip


async def call(
    app: UpdateServer, method: str, path: str, query: bytes = b"", headers=(), body: bytes = b""
) -> tuple[int, dict[bytes, bytes], bytes]:
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "query_string": query,
             "headers": [*headers, (b"content-length", str(len(body)).encode())]}  # fmt: skip
    await app(scope, receive, send)
    return sent[0]["status"], dict(sent[0]["headers"]), sent[1]["body"]


def request(app: UpdateServer, *args, **kwargs) -> tuple[int, dict[bytes, bytes], bytes]:
    return asyncio.run(call(app, *args, **kwargs))
