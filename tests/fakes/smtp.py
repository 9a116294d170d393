"""A real SMTP server on loopback (aiosmtpd) for the mail tests, with STARTTLS, AUTH and scripted
refusals. Reusable by the pipeline tests:

    @pytest.fixture
    def smtp_server(tmp_path):
        with FakeSmtp.start(cert=make_self_signed_cert(tmp_path)) as server:  # STARTTLS + AUTH
            yield server

    sender = SmtpSender(**smtp_server.sender_kwargs(mail_from="Support <s@gestan.test>"))
    ...
    smtp_server.handler.messages  # what arrived: ReceivedMail(mail_from, rcpt_tos, message)

`FakeSmtp.start(security="none" | "ssl", auth=False, handler=...)` for the other setups.
"""

from __future__ import annotations

import datetime
import email
import email.policy
import ipaddress
import socket
import ssl
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

USERNAME = "gestan-bot"
PASSWORD = "s3cr3t-Pa55word!"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (aiosmtpd's Controller cannot take port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class SelfSignedCert:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context

    def client_context(self) -> ssl.SSLContext:
        """Verifies the server against this certificate only (hostname 127.0.0.1 included)."""
        return ssl.create_default_context(cafile=str(self.cert))


def make_self_signed_cert(directory: Path) -> SelfSignedCert:
    """A self-signed certificate for 127.0.0.1 and localhost, made with `cryptography`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return SelfSignedCert(cert_path, key_path)


@dataclass
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    message: EmailMessage


@dataclass
class ScriptedHandler:
    """Accepts everything except what it is told to refuse.

    - `refuse_rcpt[address] = "550 5.1.1 ..."`: that recipient is refused at RCPT every time;
    - `transient_rcpt[address] = n`: RCPT answers `451` n times, then accepts;
    - `transient_data[address] = n`: the end of DATA answers `451` n times, then accepts;
    - `close_data[address] = (n, code)`: the end of DATA answers `code` (e.g. 421) n times.
    `messages` holds what was accepted; `rcpt_log` every RCPT seen (address, reply code)."""

    refuse_rcpt: dict[str, str] = field(default_factory=dict)
    transient_rcpt: dict[str, int] = field(default_factory=dict)
    transient_data: dict[str, int] = field(default_factory=dict)
    close_data: dict[str, tuple[int, str]] = field(default_factory=dict)
    messages: list[ReceivedMail] = field(default_factory=list)
    rcpt_log: list[tuple[str, int]] = field(default_factory=list)
    auth_failures: int = 0
    count_only: bool = False
    count: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        address = address.lower()
        with self.lock:
            if address in self.refuse_rcpt:
                reply = self.refuse_rcpt[address]
            elif self.transient_rcpt.get(address, 0) > 0:
                self.transient_rcpt[address] -= 1
                reply = "451 4.7.1 Greylisted, try again later"
            else:
                envelope.rcpt_tos.append(address)
                reply = "250 OK"
            self.rcpt_log.append((address, int(reply[:3])))
        return reply

    async def handle_DATA(self, server, session, envelope) -> str:
        if self.count_only:
            self.count += 1
            return "250 OK"
        rcpt = envelope.rcpt_tos[0] if envelope.rcpt_tos else ""
        with self.lock:
            if self.transient_data.get(rcpt, 0) > 0:
                self.transient_data[rcpt] -= 1
                return "451 4.3.0 Temporary failure, try again"
            times, reply = self.close_data.get(rcpt, (0, ""))
            if times > 0:
                self.close_data[rcpt] = (times - 1, reply)
                return reply
            message = email.message_from_bytes(envelope.content, policy=email.policy.default)
            self.messages.append(
                ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos), envelope.content, message)
            )
        return "250 OK: queued"

    def authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        if (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == USERNAME.encode()
            and auth_data.password == PASSWORD.encode()
        ):
            return AuthResult(success=True)
        self.auth_failures += 1
        return AuthResult(success=False, handled=False)

    def received_by(self, address: str) -> list[ReceivedMail]:
        return [m for m in self.messages if address.lower() in m.rcpt_tos]


class FakeSmtp:
    """A started aiosmtpd Controller on 127.0.0.1 and what a client needs to reach it."""

    def __init__(
        self,
        controller: Controller,
        handler: ScriptedHandler,
        port: int,
        security: str,
        client_context: ssl.SSLContext | None,
        auth: bool,
        server_kwargs: dict[str, Any],
    ) -> None:
        self.controller = controller
        self._server_kwargs = server_kwargs
        self.handler = handler
        self.host = "127.0.0.1"
        self.port = port
        self.security = security
        self.client_context = client_context
        self.auth = auth

    @classmethod
    def start(
        cls,
        *,
        cert: SelfSignedCert | None = None,
        security: str = "starttls",
        auth: bool = True,
        handler: ScriptedHandler | None = None,
    ) -> FakeSmtp:
        handler = handler or ScriptedHandler()
        port = free_port()
        kwargs: dict[str, Any] = {}
        if security == "starttls":
            assert cert is not None
            kwargs.update(tls_context=cert.server_context(), require_starttls=True)
        elif security == "ssl":
            assert cert is not None
            kwargs.update(ssl_context=cert.server_context())
        if auth:
            # aiosmtpd only counts STARTTLS as TLS: with implicit TLS the session is encrypted
            # from the first byte but it would not offer AUTH, hence the exception.
            require_tls = security == "starttls"
            kwargs.update(authenticator=handler.authenticate, auth_require_tls=require_tls)
        controller = _start(handler, port, kwargs)
        client_context = cert.client_context() if cert is not None else None
        return cls(controller, handler, port, security, client_context, auth, kwargs)

    def stop(self) -> None:
        self.controller.stop()

    def restart(self) -> None:
        """Stop and start again on the same port (open client sessions are cut)."""
        self.controller.stop()
        self.controller = _start(self.handler, self.port, self._server_kwargs)

    def __enter__(self) -> FakeSmtp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def sender_kwargs(self, **overrides: Any) -> dict[str, Any]:
        """The SmtpSender parameters for this server (sleep is a no-op: tests never wait)."""
        kwargs: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "security": self.security,
            "ssl_context": self.client_context,
            "timeout": 10.0,
            "sleep": lambda _seconds: None,
        }
        if self.auth:
            kwargs.update(username=USERNAME, password=PASSWORD)
        kwargs.update(overrides)
        return kwargs


def _start(handler: ScriptedHandler, port: int, kwargs: dict[str, Any]) -> Controller:
    controller = Controller(handler, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    return controller
