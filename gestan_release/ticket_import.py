"""Tickets coming in: import files (a `.json` array or a `.csv` with the ticket fields, see
docs/reference.md) and the `--reporter` of `tickets add`.

A file is checked completely before anything is written: every bad row is reported with its line
(CSV: its first physical line; JSON: its item number and line), and a file with any error writes
nothing. Every text is checked by `gestan_release.validation` (no control, bidi-override or
invisible character). email-validator is imported when an address is checked, not before.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gestan_release.errors import TicketError
from gestan_release.tickets import (
    FIELDS,
    IMPORT_FIELDS,
    REQUIRED_FIELDS,
    STATUSES,
    Priority,
    Ticket,
)
from gestan_release.validation import (
    MAX_NAME,
    MAX_TITLE,
    check_message_id,
    check_text,
    check_url,
    excerpt,
    parse_ticket_id,
)

MAX_REPORTED_ERRORS = 20


@dataclass(frozen=True)
class ImportRow:
    """A validated row of an import file; `status_given` False keeps a stored ticket's status."""

    where: str
    ticket: Ticket
    status_given: bool = False


# -- validation ------------------------------------------------------------------------------------


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


def _unknown(what: str, names: list[Any], show: Callable[[Any], str]) -> list[str]:
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
    Every text is checked by `gestan_release.validation` (no control, bidi-override or invisible
    character); `forum_url` must be http(s) and, when `forum_host` is given (the host of
    FORUM_BASE_URL), on that host.
    """
    problems: list[str] = _unknown("field", list(row), lambda n: excerpt(str(n)))

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


# -- import files ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _RawRow:
    where: str
    values: dict[str, Any]
    problems: tuple[str, ...] = ()


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise TicketError(f"cannot read {path}: no such file") from None
    except IsADirectoryError:
        raise TicketError(
            f"cannot read {path}: it is a directory, not a .json or .csv file"
        ) from None
    except OSError as exc:
        raise TicketError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TicketError(
            f"{path} is not UTF-8 (byte {exc.start}): save it as UTF-8 "
            '(in Excel: "CSV UTF-8 (délimité par des virgules)")'
        ) from None


def _line_of(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


def _json_rows(path: Path, text: str) -> Iterator[_RawRow]:
    """Each element of the top-level array, labelled "item N (line L)", N counted from 1."""

    def no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        duplicates: list[str] = []
        for key, value in pairs:
            if key in result:
                duplicates.append(key)
            result[key] = value
        if duplicates:
            result[_DUPLICATE_KEYS] = duplicates
        return result

    decoder = json.JSONDecoder(object_pairs_hook=no_duplicate_keys)
    whitespace = " \t\r\n"

    def skip(pos: int) -> int:
        while pos < len(text) and text[pos] in whitespace:
            pos += 1
        return pos

    def syntax_error(pos: int, expected: str) -> TicketError:
        line = _line_of(text, pos)
        column = pos - (text.rfind("\n", 0, pos) + 1) + 1
        return TicketError(
            f"{path}: line {line} column {column}: invalid JSON: expected {expected}"
        )

    number, pos = 0, 0
    try:
        pos = skip(0)
        if pos >= len(text) or text[pos] != "[":
            raise TicketError(
                f'{path}: expected a JSON array of tickets ([{{"id": 1, ...}}, ...]) at line '
                f"{_line_of(text, pos)}"
            )
        pos = skip(pos + 1)
        number = 0
        if pos < len(text) and text[pos] == "]":
            pos += 1
        else:
            while True:
                number += 1
                where = f"item {number} (line {_line_of(text, pos)})"
                value, pos = decoder.raw_decode(text, pos)
                if not isinstance(value, dict):
                    yield _RawRow(where, {}, (f"expected an object {{...}}, not {excerpt(value)}",))
                else:
                    duplicates = value.pop(_DUPLICATE_KEYS, [])
                    problems = tuple(f"field {key!r} is given twice" for key in duplicates)
                    yield _RawRow(where, value, problems)
                pos = skip(pos)
                if pos < len(text) and text[pos] == ",":
                    pos = skip(pos + 1)
                    continue
                if pos < len(text) and text[pos] == "]":
                    pos += 1
                    break
                raise syntax_error(pos, "',' or ']'")
        if skip(pos) != len(text):
            raise syntax_error(skip(pos), "end of file after the array")
    except json.JSONDecodeError as exc:
        raise TicketError(
            f"{path}: line {exc.lineno} column {exc.colno}: invalid JSON: {exc.msg}"
        ) from None
    except RecursionError:
        raise TicketError(
            f"{path}: item {number} (line {_line_of(text, pos)}): nested too deeply; a ticket is "
            "one object of plain values"
        ) from None
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits
        raise TicketError(
            f"{path}: item {number} (line {_line_of(text, pos)}): invalid JSON: {exc}"
        ) from None


_DUPLICATE_KEYS = "\0duplicate keys"


def _csv_rows(path: Path, text: str) -> Iterator[_RawRow]:
    """Each record under the header, labelled "line L" (its first physical line)."""
    first_line = text.split("\n", 1)[0]
    # A French Excel writes ';'-separated CSV: follow the header's lead.
    delimiter = ";" if first_line.count(";") > first_line.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        header = next(reader, None)
        if header is None or not any(cell.strip() for cell in header):
            raise TicketError(
                f"{path}: line 1: the header is missing; the first line names the columns: "
                + ",".join(FIELDS)
            )
        names = [cell.strip() for cell in header]
        header_problems = _unknown("column", names, repr)
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            header_problems.append(f"column(s) {', '.join(map(repr, repeated))} given twice")
        missing = [name for name in REQUIRED_FIELDS if name not in names]
        if missing:
            header_problems.append(f"required column(s) missing: {', '.join(missing)}")
        if header_problems:
            yield _RawRow("line 1 (header)", {}, tuple(header_problems))
            return
        previous_end = reader.line_num
        for cells in reader:
            start, previous_end = previous_end + 1, reader.line_num
            if not any(cell.strip() for cell in cells):
                continue  # blank line
            where = f"line {start}"
            if len(cells) > len(names):
                yield _RawRow(
                    where,
                    {},
                    (f"{len(cells)} values for {len(names)} columns (an unquoted '{delimiter}'?)",),
                )
                continue
            yield _RawRow(where, dict(zip(names, cells, strict=False)))
    except csv.Error as exc:
        raise TicketError(f"{path}: line {reader.line_num}: invalid CSV: {exc}") from None


def read_import_file(path: str | Path, *, forum_host: str | None = None) -> list[ImportRow]:
    """Read and check a `.json` or `.csv` import file; TicketError listing every bad row.
    `forum_host`: forum URLs must be on this host (that of FORUM_BASE_URL, when set)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".json", ".csv"):
        raise TicketError(
            f"{path}: unsupported file type {suffix or '(no extension)'!r}; "
            "give a .json array of tickets or a .csv with a header line"
        )
    text = _read_text(path)
    raw_rows = _json_rows(path, text) if suffix == ".json" else _csv_rows(path, text)
    return validate_rows(raw_rows, source=str(path), forum_host=forum_host)


def validate_rows(
    rows: Iterable[_RawRow], source: str, *, forum_host: str | None = None
) -> list[ImportRow]:
    """Check every row (fields, e-mail, duplicate ids); raise one TicketError listing them all."""
    errors: list[str] = []
    valid: list[ImportRow] = []
    first_seen: dict[int, str] = {}
    count = 0
    for raw in rows:
        count += 1
        ticket, status_given, problems = (
            ticket_from_mapping(raw.values, forum_host=forum_host)
            if raw.values
            else (
                None,
                False,
                [] if raw.problems else ["the row is empty"],
            )
        )
        problems = [*raw.problems, *problems]
        if ticket is not None and ticket.id:
            if ticket.id in first_seen:
                problems.append(f"duplicate id {ticket.id} (already at {first_seen[ticket.id]})")
            else:
                first_seen[ticket.id] = raw.where
        errors.extend(f"{raw.where}: {problem}" for problem in problems)
        if not problems and ticket is not None:
            valid.append(ImportRow(raw.where, ticket, status_given))
    if errors:
        shown = errors[:MAX_REPORTED_ERRORS]
        more = len(errors) - len(shown)
        tail = f"; … and {more} more" if more else ""
        raise TicketError(
            f"{source}: nothing imported, {len(errors)} problem(s): " + "; ".join(shown) + tail
        )
    if count == 0:
        raise TicketError(f"{source}: no tickets in the file; nothing imported")
    return valid
