"""A `Mail` as a real RFC 5322 message, shared by the Maildir outbox and the SMTP sender.

Addresses are built with `email.headerregistry.Address`, never by concatenation, and every value
that reaches a header is checked again by `core.validation` (the rule the ticket import
applies) before the message is built: not only CR, LF and NUL but every control character (VT,
FF, U+001C–U+001E, NEL…) and the Unicode line separators, which header folding treats as line
breaks. Python 3.11.7 predates the fix for CVE-2024-6923 (header injection through folded values).
"""

from __future__ import annotations

import datetime as dt
from email.charset import QP, Charset
from email.errors import MessageError
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage, Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import default as default_policy
from email.utils import format_datetime, formataddr, parseaddr

from gestan_release.channels.base import Mail
from gestan_release.core.validation import MSGID_RE as _MSGID_RE
from gestan_release.core.validation import check_text, excerpt
from gestan_release.errors import DeliveryError


def check_header_value(value: str | None, what: str) -> None:
    """Refuse a header value that could add a header or a line, or hide what it says (the
    characters `gestan_release.core.validation` refuses everywhere)."""
    if value is None:
        return
    try:
        check_text(what, value, header=True)
    except ValueError as exc:
        raise DeliveryError(
            f"{exc}; refused so that it cannot add a mail header: fix it at its source (the "
            f"ticket store or the settings)",
            permanent=True,
        ) from None


def address(text: str, what: str) -> Address:
    """`Name <user@domain>` or `user@domain` as an `Address`; DeliveryError when malformed."""
    check_header_value(text, what)
    name, addr = parseaddr(text)
    return make_address(name, addr, what)


def make_address(name: str, addr_spec: str, what: str) -> Address:
    check_header_value(name, f"{what} name")
    check_header_value(addr_spec, f"{what} address")
    if "@" not in addr_spec:
        raise DeliveryError(f"{what} {excerpt(addr_spec)} is not an e-mail address", permanent=True)
    try:
        return Address(display_name=name.strip(), addr_spec=addr_spec.strip())
    except (ValueError, IndexError, MessageError) as exc:  # the parser's defects
        raise DeliveryError(
            f"{what} {excerpt(addr_spec)} is not a valid e-mail address: {exc}", permanent=True
        ) from None


def _msgid(value: str, what: str) -> str:
    check_header_value(value, what)
    bare = value.strip().removeprefix("<").removesuffix(">")
    if not _MSGID_RE.match(bare):
        raise DeliveryError(
            f"{what} {excerpt(value)} is not a Message-ID (local@domain)", permanent=True
        )
    return f"<{bare}>"


_UTF8_QP = Charset("utf-8")
_UTF8_QP.body_encoding = QP  # readable bodies: quoted-printable rather than base64


def _encoded(addr: Address) -> str:
    """An ASCII address as a header value; a non-ASCII display name is RFC 2047-encoded."""
    return formataddr((addr.display_name, addr.addr_spec), charset="utf-8")


def build_email(
    mail: Mail,
    mail_from: str,
    reply_to: str | None = None,
    *,
    date: dt.datetime | None = None,
) -> Message:
    """`_build_email`, with any failure of the `email` package on this mail's data (a parser
    defect, an encoding error) turned into a permanent `DeliveryError` of this mail alone."""
    try:
        return _build_email(mail, mail_from, reply_to, date=date)
    except DeliveryError:
        raise
    except Exception as exc:
        raise build_failure(mail, exc) from None


def build_failure(mail: Mail, exc: Exception) -> DeliveryError:
    """The permanent failure of one mail that could not be built or serialised."""
    return DeliveryError(
        f"the mail to {excerpt(mail.to_email)} could not be built ({type(exc).__name__}: "
        f"{excerpt(str(exc), 200)}); fix the ticket data and resume",
        permanent=True,
    )


def as_bytes(mail: Mail, message: Message, policy: object | None = None) -> bytes:
    """The message's bytes; a failure to serialise (header folding refusing a value) is a
    permanent `DeliveryError` of this mail, not a crash of the batch."""
    try:
        return message.as_bytes(policy=policy) if policy is not None else message.as_bytes()
    except Exception as exc:
        raise build_failure(mail, exc) from None


def _build_email(
    mail: Mail,
    mail_from: str,
    reply_to: str | None = None,
    *,
    date: dt.datetime | None = None,
) -> Message:
    """The RFC 5322 message of `mail`: text and HTML alternatives in UTF-8, `Message-ID`,
    `Auto-Submitted: auto-generated`, and `In-Reply-To`/`References` to the acknowledgement.

    Built with the `email.mime` classes (several times faster than `EmailMessage` with the
    default policy, which matters for releases that mail hundreds of reporters); an address
    whose mailbox itself is not ASCII (SMTPUTF8) takes the `EmailMessage` path instead."""
    check_header_value(mail.subject, "the subject")
    sender = address(mail_from, "MAIL_FROM")
    recipient = make_address(mail.to_name, mail.to_email, f"the recipient of {mail.key}")
    reply = address(reply_to, "MAIL_REPLY_TO") if reply_to else None
    message_id = _msgid(mail.message_id, "the Message-ID")
    check_header_value(mail.in_reply_to, "the acknowledgement Message-ID")
    ack = (mail.in_reply_to or "").strip().removeprefix("<").removesuffix(">")
    headers: list[tuple[str, object]] = []
    when = format_datetime(date or dt.datetime.now(dt.UTC).astimezone())
    addresses = [a for a in (sender, recipient, reply) if a is not None]
    if not all(a.addr_spec.isascii() for a in addresses):
        return _build_international(mail, sender, recipient, reply, message_id, ack, when)
    headers.append(("From", _encoded(sender)))
    headers.append(("To", _encoded(recipient)))
    if reply is not None:
        headers.append(("Reply-To", _encoded(reply)))
    subject = mail.subject if mail.subject.isascii() else Header(mail.subject, "utf-8")
    headers += [("Subject", subject), ("Date", when), ("Message-ID", message_id)]
    if _MSGID_RE.match(ack):  # a malformed id in the store costs the threading, not the mail
        headers += [("In-Reply-To", f"<{ack}>"), ("References", f"<{ack}>")]
    headers.append(("Auto-Submitted", "auto-generated"))
    msg = MIMEMultipart("alternative")
    for name, value in headers:
        msg[name] = value
    msg.attach(MIMEText(mail.text, "plain", _UTF8_QP))
    msg.attach(MIMEText(mail.html, "html", _UTF8_QP))
    return msg


def _build_international(
    mail: Mail,
    sender: Address,
    recipient: Address,
    reply: Address | None,
    message_id: str,
    ack: str,
    when: str,
) -> EmailMessage:
    msg = EmailMessage(policy=default_policy)
    msg["From"] = sender
    msg["To"] = recipient
    if reply is not None:
        msg["Reply-To"] = reply
    msg["Subject"] = mail.subject
    msg["Date"] = when
    msg["Message-ID"] = message_id
    if _MSGID_RE.match(ack):
        msg["In-Reply-To"] = f"<{ack}>"
        msg["References"] = f"<{ack}>"
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(mail.text, charset="utf-8")
    msg.add_alternative(mail.html, subtype="html", charset="utf-8")
    return msg
