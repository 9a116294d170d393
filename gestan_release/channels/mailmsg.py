"""A `Mail` as a real RFC 5322 message, shared by the Maildir outbox and the SMTP sender.

Addresses are built with `email.headerregistry.Address`, never by concatenation, and any CR, LF
or NUL in a value that reaches a header is refused before the message is built: Python 3.11.7
predates the fix for CVE-2024-6923 (header injection through folded values).
"""

from __future__ import annotations

import datetime as dt
import re
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import format_datetime, parseaddr

from gestan_release.channels.base import Mail
from gestan_release.errors import DeliveryError

_HEADER_BREAKERS = re.compile(r"[\r\n\x00]")
# A Message-ID without its angle brackets: local@domain, no blanks, no brackets.
_MSGID_RE = re.compile(r"^[^\s<>@]+@[^\s<>@]+$")


def check_header_value(value: str | None, what: str) -> None:
    """Refuse a header value that could add a header or a line (CR, LF, NUL)."""
    if value is not None and _HEADER_BREAKERS.search(value):
        raise DeliveryError(
            f"{what} {value!r} contains a line break or NUL: refused so that it cannot add a "
            f"header; fix it at its source (the ticket store or the settings)",
            permanent=True,
        )


def address(text: str, what: str) -> Address:
    """`Name <user@domain>` or `user@domain` as an `Address`; DeliveryError when malformed."""
    check_header_value(text, what)
    name, addr = parseaddr(text)
    return make_address(name, addr, what)


def make_address(name: str, addr_spec: str, what: str) -> Address:
    check_header_value(name, f"{what} name")
    check_header_value(addr_spec, f"{what} address")
    if "@" not in addr_spec:
        raise DeliveryError(f"{what} {addr_spec!r} is not an e-mail address", permanent=True)
    try:
        return Address(display_name=name.strip(), addr_spec=addr_spec.strip())
    except (ValueError, IndexError) as exc:  # email's parser raises defects as ValueError kin
        raise DeliveryError(
            f"{what} {addr_spec!r} is not a valid e-mail address: {exc}", permanent=True
        ) from None


def _msgid(value: str, what: str) -> str:
    check_header_value(value, what)
    bare = value.strip().removeprefix("<").removesuffix(">")
    if not _MSGID_RE.match(bare):
        raise DeliveryError(f"{what} {value!r} is not a Message-ID (local@domain)", permanent=True)
    return f"<{bare}>"


def build_email(
    mail: Mail,
    mail_from: str,
    reply_to: str | None = None,
    *,
    date: dt.datetime | None = None,
) -> EmailMessage:
    """The RFC 5322 message of `mail`: text and HTML alternatives in UTF-8, `Message-ID`,
    `Auto-Submitted: auto-generated`, and `In-Reply-To`/`References` to the acknowledgement."""
    check_header_value(mail.subject, "the subject")
    msg = EmailMessage(policy=default_policy)
    msg["From"] = address(mail_from, "MAIL_FROM")
    msg["To"] = make_address(mail.to_name, mail.to_email, f"the recipient of {mail.key}")
    if reply_to:
        msg["Reply-To"] = address(reply_to, "MAIL_REPLY_TO")
    msg["Subject"] = mail.subject
    msg["Date"] = format_datetime(date or dt.datetime.now(dt.UTC).astimezone())
    msg["Message-ID"] = _msgid(mail.message_id, "the Message-ID")
    check_header_value(mail.in_reply_to, "the acknowledgement Message-ID")
    ack = (mail.in_reply_to or "").strip().removeprefix("<").removesuffix(">")
    if _MSGID_RE.match(ack):  # a malformed id in the store costs the threading, not the mail
        msg["In-Reply-To"] = f"<{ack}>"
        msg["References"] = f"<{ack}>"
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(mail.text, charset="utf-8")
    msg.add_alternative(mail.html, subtype="html", charset="utf-8")
    return msg
