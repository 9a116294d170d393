"""Tickets coming in from import files: a `.json` array or a `.csv` with the ticket fields (see
docs/reference.md), each row checked by `ticket_fields`.

A file is checked completely before anything is written: every bad row is reported with its line
(CSV: its first physical line; JSON: its item number and line), and a file with any error writes
nothing.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gestan_release.core.validation import excerpt
from gestan_release.errors import TicketError
from gestan_release.tickets.fields import ticket_from_mapping, unknown_fields
from gestan_release.tickets.values import FIELDS, REQUIRED_FIELDS, Ticket

MAX_REPORTED_ERRORS = 20


@dataclass(frozen=True)
class ImportRow:
    """A validated row of an import file; `status_given` False keeps a stored ticket's status."""

    where: str
    ticket: Ticket
    status_given: bool = False


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
        header_problems = unknown_fields("column", names, repr)
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
