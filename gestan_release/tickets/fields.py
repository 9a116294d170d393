"""A ticket's fields, checked: from a mapping (a row of an import file, the forum's discussion) to
a `Ticket`, and the `--reporter` of `tickets add`.

Every text is checked by `gestan_release.core.validation` (no control, bidi-override or invisible
character); a bad field is a problem in words, collected, never the first exception only.
email-validator is imported when an address is checked, not before.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from gestan_release.core.validation import (
    MAX_NAME,
    MAX_TITLE,
    check_message_id,
    check_text,
    check_url,
    excerpt,
    parse_ticket_id,
)
from gestan_release.errors import TicketError
from gestan_release.tickets.values import IMPORT_FIELDS, REQUIRED_FIELDS, STATUSES, Priority, Ticket


def validate_email_address(address: str) -> str:
    """The normalised form of `address`; ValueError, with the library's reason, if invalid."""
    from email_validator import EmailNotValidError, validate_email

    check_text("the e-mail address", address, limit=MAX_NAME)
    try:
        return validate_email(address, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(f"e-mail address {excerpt(address)} is invalid: {exc}") from None


def parse_reporter(text: str) -> tuple[str, str]:
    """`"Name <mail>"` (or a bare address) → (name, normalised address); TicketError if invalid."""
    from email.utils import getaddresses

    try:
        check_text("--reporter", text, limit=MAX_NAME + 100, header=True)
    except ValueError as exc:
        raise TicketError(str(exc)) from None
    pairs = getaddresses([text])
    name, address = pairs[0] if len(pairs) == 1 else ("", "")
    stripped = text.strip()
    # The parser is lenient (it drops spaces, keeps the first of two addresses): insist that what
    # it found is exactly what was written, one address at the end.
    one_address = stripped.count("<") <= 1 and (
        stripped.endswith(f"<{address}>") if "<" in stripped else stripped == address
    )
    if not address or "@" not in address or not one_address:
        raise TicketError(
            f'--reporter {excerpt(text)} is not "Name <address>": '
            'write it like --reporter "Alice Martin <alice@example.com>"'
        )
    try:
        return name.strip(), validate_email_address(address)
    except ValueError as exc:
        raise TicketError(f"--reporter: {exc}") from None


def _as_id(value: Any) -> int:
    return parse_ticket_id(value)


_TRUE = {"true", "1", "yes", "oui"}
_FALSE = {"false", "0", "no", "non"}


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise ValueError(f"{name} {excerpt(value)} is not true/false (also accepted: 1/0, yes/no)")


def _as_text(name: str, value: Any, limit: int | None = None) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be text, not {excerpt(value)}")
    return check_text(name, value.strip(), limit=limit)


def _as_name(value: Any) -> str:
    # The name goes into the To: header of the mails: the header rules apply.
    text = _as_text("reporter_name", value)
    return check_text("reporter_name", text, limit=MAX_NAME, header=True)


def _optional_text(name: str, value: Any) -> str | None:
    if value is None:
        return None
    text = _as_text(name, value)
    return text or None


def _as_forum_url(value: Any, forum_host: str | None = None) -> str | None:
    url = _optional_text("forum_url", value)
    if url is None:
        return None
    return check_url("forum_url", url, host=forum_host)


def _as_message_id(value: Any) -> str | None:
    text = _optional_text("ack_message_id", value)
    return None if text is None else check_message_id("ack_message_id", text)


def unknown_fields(what: str, names: list[Any], show: Callable[[Any], str]) -> list[str]:
    """The problem of names that are not ticket fields (at most five shown), or none."""
    unknown = [name for name in names if name not in IMPORT_FIELDS]
    if not unknown:
        return []
    shown = ", ".join(show(n) for n in unknown[:5])
    return [f"unknown {what}(s) {shown}; known: {', '.join(IMPORT_FIELDS)}"]


def ticket_from_mapping(
    row: Mapping[str, Any], *, forum_host: str | None = None
) -> tuple[Ticket, bool, list[str]]:
    """Validate one import row: (ticket or partial, status_given, problems). Empty values = default.

    All problems of the row are collected; the ticket is only meaningful when there are none.
    Every text is checked by `core.validation` (no control, bidi-override or invisible
    character); `forum_url` must be http(s) and, when `forum_host` is given (the host of
    FORUM_BASE_URL), on that host.
    """
    problems: list[str] = unknown_fields("field", list(row), lambda n: excerpt(str(n)))

    def given(name: str) -> bool:
        value = row.get(name)
        return value is not None and not (isinstance(value, str) and not value.strip())

    for name in REQUIRED_FIELDS:
        if not given(name):
            problems.append(f"{name} is missing")

    values: dict[str, Any] = {}

    def check(name: str, convert: Any) -> None:
        if not given(name):
            return
        try:
            values[name] = convert(row[name])
        except ValueError as exc:
            problems.append(str(exc))

    check("id", _as_id)
    check("title", lambda v: _as_text("title", v, MAX_TITLE))
    check("priority", lambda v: Priority.parse(_as_text("priority", v, 20)))
    check("reporter_name", lambda v: _as_name(v))
    check("reporter_email", lambda v: validate_email_address(_as_text("reporter_email", v)))
    check("forum_url", lambda v: _as_forum_url(v, forum_host))
    check("forum_tracked", lambda v: _as_bool("forum_tracked", v))
    check("ack_message_id", _as_message_id)
    check("status", _as_status)

    status_given = "status" in values
    ticket = Ticket(
        id=values.get("id", 0),
        title=values.get("title", ""),
        priority=values.get("priority", Priority.NORMALE),
        reporter_name=values.get("reporter_name", ""),
        reporter_email=values.get("reporter_email", ""),
        forum_url=values.get("forum_url"),
        forum_tracked=values.get("forum_tracked", True),
        ack_message_id=values.get("ack_message_id"),
        status=values.get("status", "open"),
    )
    return ticket, status_given, problems


def _as_status(value: Any) -> str:
    status = _as_text("status", value, 20).lower()
    if status not in STATUSES:
        raise ValueError(f"status {excerpt(status)} is not one of {', '.join(STATUSES)}")
    return status
