"""Hostile peers that quote our credentials back in their errors (issue 9, hole 7).

Scripts for the X and Vanilla fakes (`Scripted.respond` builds the answer from the request), a
plain HTTP server standing for an update server or a proxy in front of it, and an SMTP handler
whose refusals quote the AUTH exchange. A test then checks that the quoted secret never reaches
an exception, a log record or the ledger.
"""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.smtp import AuthResult, LoginPassword

from fakes.openapi import Reply, Request, Scripted
from fakes.smtp import ScriptedHandler


def _quoted(request: Request) -> str:
    return f"Authorization: {request.headers.get('authorization', '')}"


def x_echo(method: str = "POST", path: str = "/2/tweets", status: int = 400) -> Scripted:
    """An X problem document whose detail quotes the request's Authorization header."""

    def respond(request: Request) -> Reply:
        detail = f"Invalid request, {_quoted(request)}; body {request.body.decode()[:80]}"
        return Reply(
            status, {"title": "Invalid Request", "type": "about:blank", "detail": detail,
                     "status": status}
        )  # fmt: skip

    return Scripted(method, path, respond=respond)


def vanilla_echo(method: str = "POST", path: str = ".*", status: int = 403) -> Scripted:
    """A Vanilla error whose message and field errors quote the Authorization header."""

    def respond(request: Request) -> Reply:
        quoted = _quoted(request)
        return Reply(
            status,
            {
                "message": f"Permission Problem ({quoted})",
                "status": status,
                "errors": [{"field": "body", "message": f"token {quoted} rejected"}],
            },
        )

    return Scripted(method, path, respond=respond)


class EchoHTTPServer:
    """Answers every request with `status` and an error quoting its Authorization header, as
    JSON (`{"error": …}`) or plain text: an update server or proxy that echoes credentials."""

    def __init__(self, status: int = 400, as_json: bool = True) -> None:
        echo = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                quoted = f"Authorization: {self.headers.get('Authorization', '')}"
                if echo.as_json:
                    data = json.dumps({"error": f"bad credentials ({quoted})"}).encode()
                else:
                    data = f"<html>Forbidden; you sent {quoted}</html>".encode()
                self.send_response(echo.status)
                self.send_header(
                    "Content-Type", "application/json" if echo.as_json else "text/html"
                )
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_PATCH = do_POST = _any

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.status, self.as_json = status, as_json
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> EchoHTTPServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


class EchoingSmtpHandler(ScriptedHandler):
    """An SMTP server whose refusals quote the credentials it received: with `refuse_login`, the
    AUTH reply quotes the password in clear and the AUTH PLAIN blob; otherwise the login works
    and every recipient is refused with a reply quoting the password."""

    def __init__(self, refuse_login: bool = False) -> None:
        super().__init__()
        self.refuse_login = refuse_login

    def authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        if not self.refuse_login:
            return AuthResult(success=True, auth_data=auth_data)
        self.auth_failures += 1
        blob = base64.b64encode(b"\0" + auth_data.login + b"\0" + auth_data.password)
        message = (
            f"535 5.7.8 Authentication failed for {auth_data.login.decode()} "
            f"password={auth_data.password.decode()} (AUTH PLAIN {blob.decode()})"
        )
        return AuthResult(success=False, handled=False, message=message)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        password = session.auth_data.password.decode() if session.auth_data else ""
        return f"550 5.7.1 {address} refused: relay password {password} not allowed here"
