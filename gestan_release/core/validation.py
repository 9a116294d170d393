"""One validation for text that comes from outside: import files, `tickets add`, the forum.

The same rules run where data enters (the ticket store refuses it, with the line) and again where
it leaves (the mail builder refuses a header built from it), so that an import never accepts what
a delivery would refuse, and a value written into the database by other means still cannot add a
mail header.

What is refused in names, titles, addresses, URLs and Message-IDs:
- control characters: Unicode category Cc except TAB (CR, LF, NUL, but also VT, FF, the
  separators U+001C–U+001E and NEL U+0085, which `str.splitlines()` and the `email` package's
  header folding treat as line breaks), and the line and paragraph separators U+2028/U+2029;
- bidirectional embeddings, overrides and isolates (U+202A–U+202E, U+2066–U+2069): they reorder
  what a reader sees ("Trojan Source", CVE-2021-42574), e.g. an address shown backwards in a mail
  client. The plain marks LRM, RLM and ALM, which mixed French/Arabic/Hebrew text needs, are kept;
- in names (what goes into a mail header), RFC 2047 encoded-word syntax `=?…?=`, which a mail
  client would decode into any other text (control characters included);
- invisible characters that no script needs (zero-width space U+200B, word joiner U+2060,
  invisible operators U+2061–U+2064, U+FEFF, the Mongolian vowel separator U+180E and the Hangul
  fillers): they make two different texts look the same, or hide a mention or a link from our
  neutralisation. Zero-width joiner and non-joiner (U+200C/U+200D), which Persian, Indic scripts
  and emoji sequences need, are kept.

This module imports only the standard library: `changelog` and the CLI load it.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any
from urllib.parse import urlsplit

MAX_TICKET_ID = 2**63 - 1  # SQLite's and PostgreSQL's BIGINT; ids are ASCII digits in 1..this
MAX_TITLE = 500
MAX_NAME = 200
MAX_URL = 2000
MAX_MESSAGE_ID = 500
EXCERPT = 40  # characters of a bad input quoted back in an error message

_BIDI = "\u202a-\u202e\u2066-\u2069"
_INVISIBLE = "\u200b\u2060-\u2064\ufeff\u180e\u115f\u1160\u3164\uffa0"
# Cc is exactly U+0000–U+001F and U+007F–U+009F; TAB (U+0009) is allowed.
_UNSAFE = re.compile(f"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029{_BIDI}{_INVISIBLE}]")
_ASCII_ID = re.compile(r"[0-9]+")
# An RFC 2047 encoded-word, or anything a lenient mail client could take for one.
_ENCODED_WORD = re.compile(r"=\?.*\?=", re.DOTALL)
# ASCII that RFC 3986 never allows in a URL (blanks, quotes, angle brackets, backslash, ...).
_URL_FORBIDDEN = re.compile(r'[\s"<>\\^`{|}]')
# A Message-ID without its angle brackets: local@domain, no blanks, no brackets.
MSGID_RE = re.compile(r"^[^\s<>@]+@[^\s<>@]+\Z")

_CONTROL_NAMES = {
    "\x00": "NUL",
    "\t": "TAB",
    "\n": "LINE FEED",
    "\x0b": "VERTICAL TAB",
    "\x0c": "FORM FEED",
    "\r": "CARRIAGE RETURN",
    "\x1c": "FILE SEPARATOR",
    "\x1d": "GROUP SEPARATOR",
    "\x1e": "RECORD SEPARATOR",
    "\x1f": "UNIT SEPARATOR",
    "\x7f": "DELETE",
    "\x85": "NEXT LINE",
}


def excerpt(value: object, limit: int = EXCERPT) -> str:
    """`repr` of at most `limit` characters of `value`, marked "…" when cut: error messages quote
    bad input, but never all of it (a 64 KiB body, a 5,000-digit version)."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) <= limit:
        return repr(text) if isinstance(value, str) else text
    cut = text[:limit]
    return (repr(cut) if isinstance(value, str) else cut) + "…"


def without_unsafe(text: str) -> str:
    """`text` with every refused character replaced by a space: for data that reached the store
    before it was validated, on its way into a post (the mail builder refuses it instead)."""
    return _UNSAFE.sub(" ", text)


def describe_char(char: str) -> str:
    """`U+000C (FORM FEED)`: how an error names an invisible character."""
    name = _CONTROL_NAMES.get(char) or unicodedata.name(char, "control character")
    return f"U+{ord(char):04X} ({name})"


def unsafe_char(text: str) -> tuple[int, str] | None:
    """The position and the first refused character of `text`, or None when it is clean."""
    match = _UNSAFE.search(text)
    return (match.start(), match.group()) if match else None


def is_clean(text: str, *, header: bool = False) -> bool:
    """Whether `check_text` accepts `text` (length aside)."""
    return _UNSAFE.search(text) is None and not (header and _ENCODED_WORD.search(text))


def check_text(what: str, value: str, *, limit: int | None = None, header: bool = False) -> str:
    """`value` if it holds no refused character (see the module docstring) and fits `limit`;
    ValueError naming the character and its position otherwise. `header`: the value goes into a
    mail header (a name): RFC 2047 encoded-word syntax `=?…?=` is refused too, since mail clients
    would decode it into other text than the one we checked."""
    found = unsafe_char(value)
    if found is not None:
        position, char = found
        where = f"{describe_char(char)} at position {position + 1} ({excerpt(value)})"
        if re.match(f"[{_BIDI}]", char):
            reason = f"contains {where}: bidirectional overrides are refused (they reorder text)"
        elif re.match(f"[{_INVISIBLE}]", char):
            reason = f"contains {where}: invisible characters are refused (they hide text)"
        else:
            reason = f"must be on one line (no line break or control character): it has {where}"
        raise ValueError(f"{what} {reason}")
    if limit is not None and len(value) > limit:
        raise ValueError(f"{what} is {len(value)} characters long (at most {limit})")
    if header and _ENCODED_WORD.search(value):
        raise ValueError(
            f"{what} {excerpt(value)} contains '=?…?=', which mail programs decode (RFC 2047) into "
            f"other text: refused"
        )
    return value


def parse_ticket_id(value: Any, what: str = "id") -> int:
    """A ticket id: an int, or a text of ASCII digits, in 1..2^63-1 (ValueError otherwise).

    `str.isdigit()` and `int()` accept other scripts' digits ("٣٤" is 34 to them): not here."""
    if isinstance(value, bool):
        raise ValueError(f"{what} {excerpt(value)} is not an integer")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and _ASCII_ID.fullmatch(value.strip()):
        digits = value.strip()
        if len(digits.lstrip("0")) > 19:
            raise ValueError(f"{what} {excerpt(value)} is too large (at most {MAX_TICKET_ID})")
        number = int(digits)
    else:
        raise ValueError(f"{what} {excerpt(value)} is not an integer (digits 0-9)")
    if number <= 0:
        raise ValueError(f"{what} {excerpt(value)} must be a positive integer")
    if number > MAX_TICKET_ID:
        raise ValueError(f"{what} {excerpt(value)} is too large (at most {MAX_TICKET_ID})")
    return number


def ticket_id_arg(text: str) -> int:
    """argparse `type=` for ticket ids: the same rule as import files."""
    import argparse

    try:
        return parse_ticket_id(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def url_host(url: str | None) -> str | None:
    """The host (lower case, no port) of an http(s) URL, or None."""
    if not url:
        return None
    try:
        return (urlsplit(url.strip()).hostname or "").lower() or None
    except ValueError:
        return None


def check_url(what: str, value: str, *, host: str | None = None) -> str:
    """An absolute http(s) URL with a host, no blank or refused character, at most `MAX_URL`
    characters and, when `host` is given, on that host (ValueError otherwise)."""
    check_text(what, value, limit=MAX_URL)
    bad = _URL_FORBIDDEN.search(value)
    if bad is not None:
        shown = "a blank" if bad.group().isspace() else repr(bad.group())
        raise ValueError(f"{what} {excerpt(value)} contains {shown}: not a URL")
    try:
        parts = urlsplit(value)
        hostname = (parts.hostname or "").lower()
        parts.port  # noqa: B018  (raises ValueError on a malformed port)
    except ValueError:
        raise ValueError(f"{what} {excerpt(value)} is not a valid URL") from None
    if parts.scheme.lower() not in ("http", "https") or not hostname:
        raise ValueError(f"{what} {excerpt(value)} is not an http(s) URL")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{what} {excerpt(value)} must not carry a user name or password")
    if host is not None and hostname != host.lower():
        raise ValueError(f"{what} {excerpt(value)} is not on the forum's host {host}")
    return value


def check_message_id(what: str, value: str) -> str:
    """A Message-ID, `local@domain` with or without its angle brackets (ValueError otherwise)."""
    check_text(what, value, limit=MAX_MESSAGE_ID)
    bare = value.strip().removeprefix("<").removesuffix(">")
    if not MSGID_RE.match(bare):
        raise ValueError(f"{what} {excerpt(value)} is not a Message-ID (local@domain)")
    return value


def json_too_deep(data: str | bytes, limit: int) -> bool:
    """Whether JSON text nests arrays/objects deeper than `limit` (strings are skipped): checked
    before parsing, so that 30,000 brackets are refused instead of exhausting the stack."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    if text.count("[") + text.count("{") <= limit:
        return False
    depth = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > limit:
                return True
        elif char in "]}":
            depth -= 1
    return False
