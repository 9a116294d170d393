"""SMTP delivery of the "your bug is fixed" mails (`SMTP_ENABLED`; the Maildir outbox otherwise).

Security (`SMTP_SECURITY`):
- `starttls` (default, port 587): the session is upgraded with STARTTLS and the server certificate
  verified (`ssl.create_default_context()`); a server that does not offer STARTTLS is a permanent
  error — we never fall back to plaintext;
- `ssl` (port 465): implicit TLS from the first byte;
- `none` (port 25): plaintext, accepted only to a loopback host (127.0.0.0/8, ::1, localhost),
  e.g. a local relay; any other host is a configuration error.
AUTH is used when `SMTP_USERNAME` is set; the password never appears in a message or a repr.

Batches (`send_many`) go over a few connections at once (`concurrency`, 4 by default), each reused
for its share of the mails. Replies:
- `5yz` for a mail (sender, recipient or content refused) fails that mail permanently
  (`MailRefused`, with the address and the code); the others continue; `refused(results)` lists
  those addresses;
- `4yz` is transient: the mail is set aside and retried after the rest of the batch, with a growing
  delay, a bounded number of times (a `421` also drops the connection and reconnects);
- a dropped connection is reopened and the mail sent again — unless the drop came after the whole
  message was handed over with no reply yet: the server may have taken it, so it is *not* resent
  in the batch (`MaybeDelivered`, transient) and resuming decides.
After a failed transaction the session is reset (`RSET`) before the next mail.

Never twice: SMTP gives no way to ask whether a mail was delivered, so `find_existing` returns None.
What protects the recipient is the Message-ID, deterministic per (release, recipient) and stored in
the ledger: a mail sent again after a crash carries the same Message-ID, and mail clients that
de-duplicate on it (and every client's threading) treat it as the same message. Within one run
each mail is handed to the server at most once unless the server answered that it did not take it.

Why one module: about 650 lines on purpose (one outside service, one module): the connection
pool, the batch workers and one attempt share the sender's state (the idle sessions, the batch's
fatal error, the retry policy), and what a reply means depends on where in the session it came.
Building the message is `mailmsg`, the retry policy `gestan_release.core.retry`.
"""

from __future__ import annotations

import contextlib
import heapq
import ipaddress
import itertools
import queue
import smtplib
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from email.utils import parseaddr
from typing import TYPE_CHECKING, Any

from gestan_release.channels.base import Closing, Mail, Message, Receipt
from gestan_release.channels.mailmsg import as_bytes, build_email, build_failure
from gestan_release.core.retry import Backoff, gave_up
from gestan_release.core.scrub import remember_smtp_login, scrub
from gestan_release.core.validation import check_text
from gestan_release.errors import ConfigError, DeliveryError

if TYPE_CHECKING:
    from gestan_release.settings import Settings

SECURITIES = ("starttls", "ssl", "none")
DEFAULT_PORTS = {"starttls": 587, "ssl": 465, "none": 25}


class MailRefused(DeliveryError):
    """The server refused this mail for good (a `5yz` reply): a bad address, a refused sender or
    content. Always permanent; carries the recipient and the reply code."""

    def __init__(self, message: str, *, recipient: str, code: int) -> None:
        super().__init__(message, permanent=True)
        self.recipient = recipient
        self.code = code


class MaybeDelivered(DeliveryError):
    """The connection dropped after the whole message was sent and before the server answered:
    the mail may or may not have been taken. Transient, but not resent within the batch."""


def refused(results: Iterable[tuple[Message, Receipt | DeliveryError]]) -> list[str]:
    """The addresses whose mail failed permanently, sorted, each once — what the flow reports at
    the end. Transient failures (to retry with `resume`) are not in it."""
    out = {
        message.to_email
        for message, result in results
        if isinstance(message, Mail) and isinstance(result, DeliveryError) and result.permanent
    }
    return sorted(out)


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost (by name, not by resolving it)."""
    name = host.strip().strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _secret_value(password: Any) -> str | None:
    if password is None:
        return None
    getter = getattr(password, "get_secret_value", None)
    return getter() if getter is not None else str(password)


class _Reply(Exception):
    """A non-success reply inside a transaction."""

    def __init__(self, step: str, code: int, text: bytes | str) -> None:
        super().__init__(step)
        self.step = step
        self.code = code
        self.text = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)


class _Retry(Exception):
    """A transient failure of one attempt; `reconnect` when only the connection was lost."""

    def __init__(self, error: DeliveryError, *, reconnect: bool = False) -> None:
        super().__init__(str(error))
        self.error = error
        self.reconnect = reconnect


@dataclass
class _Batch:
    """State shared by the workers of one batch: once connecting fails for good (bad password,
    unreachable server after the retries), the remaining mails fail at once with that error
    instead of hammering the server."""

    fatal: DeliveryError | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    # Connections are opened one at a time: a refused login is tried once, not once per worker.
    connecting: threading.Lock = field(default_factory=threading.Lock)


class _Connection:
    """One SMTP session, opened lazily and reopened after a drop."""

    def __init__(self, sender: SmtpSender) -> None:
        self._sender = sender
        self.smtp: smtplib.SMTP | None = None

    def open(self, batch: _Batch) -> smtplib.SMTP:
        if self.smtp is None or self.smtp.sock is None:
            self.smtp = self._sender._connect_with_retries(batch)
        return self.smtp

    def drop(self) -> None:
        if self.smtp is not None:
            with contextlib.suppress(OSError):
                self.smtp.close()
            self.smtp = None

    def reset(self) -> None:
        """`RSET` after a failed transaction; a session that cannot even do that is dropped."""
        if self.smtp is None or self.smtp.sock is None:
            self.drop()
            return
        try:
            code, _ = self.smtp.rset()
        except (smtplib.SMTPException, OSError):
            self.drop()
            return
        if code != 250:
            self.drop()

    def quit(self) -> None:
        if self.smtp is not None and self.smtp.sock is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                self.smtp.quit()
        self.drop()


class SmtpSender(Closing):
    """The mail channel over SMTP; see the module docstring for the guarantees."""

    name = "mail"

    def __init__(
        self,
        host: str,
        port: int | None = None,
        *,
        security: str = "starttls",
        username: str | None = None,
        password: Any = None,
        mail_from: str,
        reply_to: str | None = None,
        timeout: float = 30.0,
        concurrency: int = 4,
        ssl_context: ssl.SSLContext | None = None,
        sleep: Callable[[float], None] = time.sleep,
        retries: int = 3,
        backoff: float = 2.0,
        max_backoff: float = 60.0,
        local_hostname: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not host:
            raise ConfigError("SMTP_HOST is not set: the SMTP server to send the mails through")
        if security not in SECURITIES:
            raise ConfigError(f"SMTP_SECURITY must be starttls, ssl or none, not {security!r}")
        if security == "none" and not is_loopback(host):
            raise ConfigError(
                f"SMTP_SECURITY=none sends mail and credentials in clear text, and is only "
                f"allowed to a loopback host (127.0.0.1, ::1, localhost), not {host!r}; "
                f"use starttls (port 587) or ssl (port 465)"
            )
        if concurrency < 1:
            raise ConfigError(f"SMTP concurrency must be at least 1, not {concurrency}")
        for what, value in (("MAIL_FROM", mail_from), ("MAIL_REPLY_TO", reply_to)):
            if value is not None:
                try:
                    check_text(what, value, header=True)
                except ValueError as exc:
                    raise ConfigError(str(exc)) from None
        envelope_from = parseaddr(mail_from)[1]
        if "@" not in envelope_from:
            raise ConfigError(f"MAIL_FROM has no usable address: {mail_from!r}")
        self.host = host
        self.port = port or DEFAULT_PORTS[security]
        self.security = security
        self.username = username or None
        self._password = _secret_value(password)
        remember_smtp_login(username, self._password)
        self.mail_from = mail_from
        self.reply_to = reply_to
        self.envelope_from = envelope_from
        self.timeout = timeout
        self.concurrency = concurrency
        self._ssl_context = ssl_context
        self.sleep = sleep
        self.clock = clock
        # `retries` after the first attempt: the one retry policy (`gestan_release.core.retry`).
        self.backoff = Backoff(retries + 1, backoff, max_backoff)
        self.local_hostname = local_hostname
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()
        self._single = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> SmtpSender:
        params: dict[str, Any] = {
            "host": settings.smtp_host or "",
            "port": settings.smtp_port,
            "security": settings.smtp_security,
            "username": settings.smtp_username,
            "password": settings.smtp_password,
            "mail_from": settings.mail_from,
            "reply_to": settings.mail_reply_to,
        }
        params.update(overrides)
        return cls(**params)

    def __repr__(self) -> str:
        user = f" as {self.username}" if self.username else ""
        return f"SmtpSender({self.host}:{self.port}, {self.security}{user})"

    # -- the Sender protocol ------------------------------------------------------------------

    def send(self, message: Message) -> Receipt:
        """Send one mail over the sender's kept connection, retrying transient failures (with
        `sleep` between attempts); raise `DeliveryError` when it cannot be delivered."""
        mail = self._as_mail(message)
        batch = _Batch()
        with self._single:
            conn = self._checkout()
            try:
                prepared = self._prepare(mail)
                attempt = 0
                while True:
                    attempt += 1
                    try:
                        return self._attempt(conn, mail, prepared, batch)
                    except _Retry as retry:
                        if self.backoff.exhausted(attempt):
                            raise gave_up(retry.error, attempt) from None
                        if not (retry.reconnect and attempt == 1):
                            self.sleep(self.backoff.delay(attempt))
            finally:
                self._checkin(conn)

    def send_many(
        self,
        messages: Iterable[Message],
        before: Callable[[Message], None] | None = None,
    ) -> Iterator[tuple[Message, Receipt | DeliveryError]]:
        """Send a batch over up to `concurrency` connections; yield each mail with its receipt
        or its failure, in completion order. `before(mail)` is called in the caller's thread just
        before that mail is handed to a connection (the ledger's "sending"); transient failures
        are retried after the rest of the batch. An exception from `before` stops the batch (the
        mails already handed over finish first) and propagates."""
        mails = list(messages)
        if not mails:
            return
        workers = min(self.concurrency, len(mails))
        events: queue.SimpleQueue[tuple[str, Any, Any]] = queue.SimpleQueue()
        inboxes: list[queue.SimpleQueue[Mail | None]] = [
            queue.SimpleQueue() for _ in range(workers)
        ]
        batch = _Batch()
        threads = [
            threading.Thread(
                target=self._worker,
                args=(index, inboxes[index], events, batch),
                name=f"smtp-{index}",
                daemon=True,
            )
            for index in range(workers)
        ]
        for thread in threads:
            thread.start()
        pending = iter(mails)
        outstanding = len(mails)
        try:
            while outstanding:
                kind, first, second = events.get()
                if kind == "ready":
                    nxt = next(pending, None)
                    if nxt is None:
                        inboxes[first].put(None)
                        continue
                    try:
                        if before is not None:
                            before(nxt)
                    except BaseException:
                        inboxes[first].put(None)
                        raise
                    inboxes[first].put(self._as_mail(nxt))
                elif kind == "result":
                    outstanding -= 1
                    yield first, second
                else:  # "crash": a bug in a worker; keep its traceback
                    raise second
        finally:
            batch.stop.set()
            for inbox in inboxes:
                inbox.put(None)
            for thread in threads:
                thread.join()

    def find_existing(self, message: Message) -> Receipt | None:
        """SMTP cannot look whether a mail went out: always None. The deterministic Message-ID
        makes a mail sent twice recognisable as the same message by the recipient's client."""
        return None

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.quit()

    def check(self) -> str:
        """EHLO, STARTTLS, AUTH, QUIT without sending anything; a one-line description of what
        worked, or `DeliveryError` saying what did not (never with the password)."""
        smtp = self._connect()
        try:
            parts = [f"SMTP {self.host}:{self.port}"]
            sock = smtp.sock
            tls = sock.version() if isinstance(sock, ssl.SSLSocket) else None
            if self.security == "starttls":
                parts.append(f"STARTTLS ({tls})")
            elif self.security == "ssl":
                parts.append(f"implicit TLS ({tls})")
            else:
                parts.append("no encryption (loopback)")
            parts.append(f"authenticated as {self.username}" if self.username else "no AUTH")
            return ", ".join(parts)
        finally:
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()

    # -- batch workers -------------------------------------------------------------------------

    def _worker(
        self,
        index: int,
        inbox: queue.SimpleQueue[Mail | None],
        events: queue.SimpleQueue[tuple[str, Any, Any]],
        batch: _Batch,
    ) -> None:
        conn = self._checkout()
        later: list[tuple[float, int, Mail, Any, int]] = []  # (not before, seq, mail, prepared, n)
        seq = itertools.count()
        try:
            while not batch.stop.is_set():
                events.put(("ready", index, None))
                mail = inbox.get()
                if mail is None:
                    break
                try:
                    prepared = self._prepare(mail)
                    events.put(("result", mail, self._attempt(conn, mail, prepared, batch)))
                except DeliveryError as error:
                    events.put(("result", mail, error))
                except _Retry as retry:
                    wait = 0.0 if retry.reconnect else self.backoff.delay(1)
                    heapq.heappush(later, (self.clock() + wait, next(seq), mail, prepared, 1))
            while later and not batch.stop.is_set():
                not_before, _, mail, prepared, attempts = heapq.heappop(later)
                wait = not_before - self.clock()
                if wait > 0:
                    self.sleep(wait)
                attempts += 1
                try:
                    result: Receipt | DeliveryError = self._attempt(conn, mail, prepared, batch)
                except DeliveryError as error:
                    result = error
                except _Retry as retry:
                    if self.backoff.exhausted(attempts):
                        result = gave_up(retry.error, attempts)
                    else:
                        wait = 0.0 if retry.reconnect else self.backoff.delay(attempts)
                        item = (self.clock() + wait, next(seq), mail, prepared, attempts)
                        heapq.heappush(later, item)
                        continue
                events.put(("result", mail, result))
        except BaseException as exc:  # a bug: hand it to the caller's thread
            events.put(("crash", None, exc))
        finally:
            self._checkin(conn)

    # -- one attempt -----------------------------------------------------------------------------

    def _attempt(self, conn: _Connection, mail: Mail, prepared: Any, batch: _Batch) -> Receipt:
        """One try of one mail: a Receipt, a final `DeliveryError`, or `_Retry`."""
        payload, international = prepared
        rcpt = mail.to_email
        smtp = conn.open(batch)  # DeliveryError: final (bad login, unreachable after retries)
        try:
            options: list[str] = []
            if international:
                if not smtp.has_extn("smtputf8"):
                    raise MailRefused(
                        f"{rcpt}: the address is not ASCII and {self.host} does not accept "
                        f"SMTPUTF8",
                        recipient=rcpt,
                        code=0,
                    )
                options += ["SMTPUTF8", "BODY=8BITMIME"]
            elif not payload.isascii() and smtp.has_extn("8bitmime"):
                options.append("BODY=8BITMIME")
            code, text = smtp.mail(self.envelope_from, options)
            if code != 250:
                raise _Reply("MAIL FROM", code, text)
            code, text = smtp.rcpt(rcpt)
            if code not in (250, 251):
                raise _Reply("RCPT TO", code, text)
            try:
                code, text = smtp.data(payload)
            except smtplib.SMTPDataError as exc:
                raise _Reply("DATA", exc.smtp_code, exc.smtp_error) from None
            except (smtplib.SMTPServerDisconnected, OSError) as exc:
                conn.drop()
                raise MaybeDelivered(
                    self._scrub(
                        f"{rcpt}: the connection to {self.host} was lost after the message was "
                        f"sent and before the server answered ({exc}); it may have been "
                        f"delivered (Message-ID <{mail.message_id}>)"
                    )
                ) from None
            if code != 250:
                raise _Reply("end of DATA", code, text)
        except _Reply as reply:
            if reply.code == 421 or reply.code < 0:
                conn.drop()
            else:
                conn.reset()
            what = self._scrub(
                f"{rcpt}: {self.host} answered {reply.code} {reply.text[:300]} to {reply.step}"
            )
            if 500 <= reply.code < 600:
                raise MailRefused(what, recipient=rcpt, code=reply.code) from None
            raise _Retry(DeliveryError(what), reconnect=reply.code == 421) from None
        except smtplib.SMTPNotSupportedError as exc:
            conn.reset()
            raise MailRefused(self._scrub(f"{rcpt}: {exc}"), recipient=rcpt, code=0) from None
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            conn.drop()
            error = DeliveryError(
                self._scrub(f"{rcpt}: the connection to {self.host} was lost ({exc})")
            )
            raise _Retry(error, reconnect=True) from None
        except DeliveryError:
            raise
        except Exception as exc:  # anything else about this one mail fails it alone, for good
            conn.drop()
            raise MailRefused(
                self._scrub(f"{rcpt}: could not be sent ({type(exc).__name__}: {exc})"),
                recipient=rcpt,
                code=0,
            ) from None
        return Receipt(external_id=mail.message_id, detail=f"accepted by {self.host}")

    def _prepare(self, mail: Mail) -> tuple[bytes, bool]:
        """The message as it goes on the wire, or a permanent `DeliveryError` (CR/LF in a header
        value, an invalid address) before anything is sent."""
        message = build_email(mail, self.mail_from, self.reply_to)
        international = not (self.envelope_from + mail.to_email).isascii()
        # International (SMTPUTF8) mails are EmailMessages whose policy can write raw UTF-8.
        extra = {"utf8": True} if international else {}
        try:
            policy = message.policy.clone(linesep="\r\n", **extra)
        except Exception as exc:
            raise build_failure(mail, exc) from None
        return as_bytes(mail, message, policy), international

    # -- connections -----------------------------------------------------------------------------

    def _checkout(self) -> _Connection:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return _Connection(self)

    def _checkin(self, conn: _Connection) -> None:
        if conn.smtp is None:
            return
        with self._lock:
            self._idle.append(conn)

    def _connect_with_retries(self, batch: _Batch) -> smtplib.SMTP:
        with batch.connecting:
            return self._connect_locked(batch)

    def _connect_locked(self, batch: _Batch) -> smtplib.SMTP:
        attempt = 0
        while True:
            if batch.fatal is not None:
                raise batch.fatal
            attempt += 1
            try:
                return self._connect()
            except DeliveryError as error:
                if error.permanent:
                    batch.fatal = error
                    raise
                if self.backoff.exhausted(attempt) or batch.stop.is_set():
                    batch.fatal = gave_up(error, attempt)
                    raise batch.fatal from None
            self.sleep(self.backoff.delay(attempt))

    def _context(self) -> ssl.SSLContext:
        return self._ssl_context or ssl.create_default_context()

    def _connect(self) -> smtplib.SMTP:
        """A ready session: connected, greeted, TLS as configured, authenticated."""
        where = f"{self.host}:{self.port}"
        try:
            if self.security == "ssl":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    self.host,
                    self.port,
                    local_hostname=self.local_hostname,
                    timeout=self.timeout,
                    context=self._context(),
                )
            else:
                smtp = smtplib.SMTP(
                    self.host, self.port, local_hostname=self.local_hostname, timeout=self.timeout
                )
        except ssl.SSLCertVerificationError as exc:
            raise DeliveryError(
                f"the TLS certificate of the SMTP server {where} is not trusted: "
                f"{exc.verify_message}",
                permanent=True,
            ) from None
        except smtplib.SMTPConnectError as exc:
            raise self._reply_error(f"SMTP server {where} refused the connection", exc) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryError(
                self._scrub(f"cannot connect to the SMTP server {where}: {exc}")
            ) from None
        try:
            smtp.ehlo_or_helo_if_needed()
            if self.security == "starttls":
                if not smtp.has_extn("starttls"):
                    raise DeliveryError(
                        f"the SMTP server {where} does not offer STARTTLS; refusing to send in "
                        f"clear text (use SMTP_SECURITY=ssl if it expects implicit TLS, usually "
                        f"on port 465)",
                        permanent=True,
                    )
                smtp.starttls(context=self._context())
                smtp.ehlo()
            if self.username:
                if not smtp.has_extn("auth"):
                    raise DeliveryError(
                        f"the SMTP server {where} does not offer AUTH; cannot log in as "
                        f"{self.username}",
                        permanent=True,
                    )
                smtp.login(self.username, self._password or "")
        except DeliveryError:
            smtp.close()
            raise
        except smtplib.SMTPAuthenticationError as exc:
            smtp.close()
            raise DeliveryError(
                self._scrub(
                    f"the SMTP server {where} refused the login of {self.username}: "
                    f"{exc.smtp_code} {_text(exc.smtp_error)}; check SMTP_USERNAME and "
                    f"SMTP_PASSWORD"
                ),
                permanent=True,
            ) from None
        except ssl.SSLCertVerificationError as exc:
            smtp.close()
            raise DeliveryError(
                f"the TLS certificate of the SMTP server {where} is not trusted: "
                f"{exc.verify_message}",
                permanent=True,
            ) from None
        except ssl.SSLError as exc:
            smtp.close()
            raise DeliveryError(
                self._scrub(f"TLS with the SMTP server {where} failed: {exc}"), permanent=True
            ) from None
        except smtplib.SMTPResponseException as exc:
            smtp.close()
            raise self._reply_error(f"SMTP server {where}", exc) from None
        except (smtplib.SMTPException, OSError) as exc:
            smtp.close()
            raise DeliveryError(
                self._scrub(f"the SMTP session with {where} failed: {exc}")
            ) from None
        return smtp

    def _reply_error(self, what: str, exc: smtplib.SMTPResponseException) -> DeliveryError:
        code = exc.smtp_code
        return DeliveryError(
            self._scrub(f"{what}: {code} {_text(exc.smtp_error)}"),
            permanent=500 <= code < 600,
        )

    def _scrub(self, text: str) -> str:
        """Every SMTP reply quoted in an error passes here: a server may echo the AUTH exchange."""
        return scrub(text, [self._password] if self._password else [])

    # -- helpers ---------------------------------------------------------------------------------

    @staticmethod
    def _as_mail(message: Message) -> Mail:
        if not isinstance(message, Mail):
            raise TypeError(f"the SMTP sender sends Mail, not {type(message).__name__}")
        return message


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
