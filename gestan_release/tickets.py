"""Tickets: the bugs a release fixes, who reported them, and the store that keeps them.

`Ticket` and `Priority` are plain values; `TicketStore` keeps them in the database of
`DATABASE_URL` through SQLAlchemy. Import files (`.json` array or `.csv`, the field names of
INTERFACES.md) are checked completely before anything is written: every bad row is reported with its
line, and a file with any error writes nothing.

This module imports neither SQLAlchemy nor email-validator at module level: `gestan-release
changelog` only needs `lookup_tickets`, which reads SQLite with the stdlib, and must answer in well
under half a second.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from gestan_release.errors import TicketError
from gestan_release.progress import NULL, Progress
from gestan_release.sqlitewait import retry_while_locked
from gestan_release.validation import (
    MAX_NAME,
    MAX_TICKET_ID,
    MAX_TITLE,
    check_message_id,
    check_text,
    check_url,
    excerpt,
    parse_ticket_id,
)

STATUSES = ("open", "fixed", "released")
FIELDS = (
    "id",
    "title",
    "priority",
    "reporter_name",
    "reporter_email",
    "forum_url",
    "forum_tracked",
    "ack_message_id",
)
# `status` is accepted on import too, so that `tickets list --format json` can be re-imported.
IMPORT_FIELDS = (*FIELDS, "status")
REQUIRED_FIELDS = ("id", "title", "priority", "reporter_email")
MAX_REPORTED_ERRORS = 20


class Priority(StrEnum):
    """Support's triage of a bug, most urgent first."""

    FLASH = "flash"
    HAUTE = "haute"
    NORMALE = "normale"
    BASSE = "basse"

    @property
    def rank(self) -> int:
        """0 for flash … 3 for basse: sort by it to list the most urgent first."""
        return _RANKS[self]

    @classmethod
    def parse(cls, text: str) -> Priority:
        """The priority named by `text` (case and surrounding blanks ignored)."""
        try:
            return cls(str(text).strip().lower())
        except ValueError:
            raise ValueError(
                f"priority {excerpt(text)} is not one of {', '.join(p.value for p in cls)}"
            ) from None


_RANKS = {priority: rank for rank, priority in enumerate(Priority)}


@dataclass(frozen=True)
class Ticket:
    """One ticket of the store. `id` is the forum discussion id for forum reports."""

    id: int
    title: str
    priority: Priority
    reporter_name: str
    reporter_email: str
    forum_url: str | None = None
    forum_tracked: bool = True
    ack_message_id: str | None = None
    status: str = "open"
    created_at: datetime | None = field(default=None, compare=False)
    updated_at: datetime | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.priority, Priority):
            object.__setattr__(self, "priority", Priority.parse(self.priority))
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r} is not one of {', '.join(STATUSES)}")

    @property
    def sort_key(self) -> tuple[int, int]:
        """Priority (flash first), then id: the order of changelogs and listings."""
        return (self.priority.rank, self.id)

    def to_json(self) -> dict[str, Any]:
        """The fields of INTERFACES.md plus `status`, as JSON-ready values."""
        return {
            "id": self.id,
            "title": self.title,
            "priority": self.priority.value,
            "reporter_name": self.reporter_name,
            "reporter_email": self.reporter_email,
            "forum_url": self.forum_url,
            "forum_tracked": self.forum_tracked,
            "ack_message_id": self.ack_message_id,
            "status": self.status,
        }


@dataclass(frozen=True)
class ImportRow:
    """A validated row of an import file; `status_given` False keeps a stored ticket's status."""

    where: str
    ticket: Ticket
    status_given: bool = False


@dataclass(frozen=True)
class ImportSummary:
    new: int = 0
    updated: int = 0
    unchanged: int = 0

    @property
    def total(self) -> int:
        return self.new + self.updated + self.unchanged

    def __str__(self) -> str:
        noun = "ticket" if self.total == 1 else "tickets"
        parts = [f"{self.new} new", f"{self.updated} updated"]
        if self.unchanged:
            parts.append(f"{self.unchanged} unchanged")
        return f"imported {self.total} {noun} ({', '.join(parts)})"


Outcome = Literal["new", "updated", "unchanged"]


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


def ticket_from_mapping(
    row: Mapping[str, Any], *, forum_host: str | None = None
) -> tuple[Ticket, bool, list[str]]:
    """Validate one import row: (ticket or partial, status_given, problems). Empty values = default.

    All problems of the row are collected; the ticket is only meaningful when there are none.
    Every text is checked by `gestan_release.validation` (no control, bidi-override or invisible
    character); `forum_url` must be http(s) and, when `forum_host` is given (the host of
    FORUM_BASE_URL), on that host.
    """
    problems: list[str] = []
    unknown = [name for name in row if name not in IMPORT_FIELDS]
    if unknown:
        problems.append(
            f"unknown field(s) {', '.join(excerpt(str(n)) for n in unknown[:5])}; "
            f"known: {', '.join(IMPORT_FIELDS)}"
        )

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
        header_problems: list[str] = []
        unknown = [name for name in names if name not in IMPORT_FIELDS]
        if unknown:
            header_problems.append(
                f"unknown column(s) {', '.join(map(repr, unknown))}; "
                f"known: {', '.join(IMPORT_FIELDS)}"
            )
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


# -- the store -------------------------------------------------------------------------------------


def _utc(value: datetime | str | None) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _ticket_from_row(row: Mapping[str, Any]) -> Ticket:
    return Ticket(
        id=int(row["id"]),
        title=row["title"],
        priority=Priority(row["priority"]),
        reporter_name=row["reporter_name"],
        reporter_email=row["reporter_email"],
        forum_url=row["forum_url"],
        forum_tracked=bool(row["forum_tracked"]),
        ack_message_id=row["ack_message_id"],
        status=row["status"],
        created_at=_utc(row["created_at"]),
        updated_at=_utc(row["updated_at"]),
    )


_COLUMNS = (*FIELDS, "status", "created_at", "updated_at")


class TicketStore:
    """The tickets of `DATABASE_URL` (SQLAlchemy); the schema is migrated on first use."""

    def __init__(self, url: str) -> None:
        from gestan_release import db

        self.url = url
        self._engine = db.engine_for(url)
        db.upgrade(url)

    def _session(self) -> Any:
        from sqlalchemy.orm import Session

        return Session(self._engine, expire_on_commit=False)

    @staticmethod
    def _record_to_ticket(record: Any) -> Ticket:
        return _ticket_from_row({name: getattr(record, name) for name in _COLUMNS})

    def _upsert(self, session: Any, ticket: Ticket, *, keep_status: bool) -> Outcome:
        from gestan_release.db import TicketRecord

        now = datetime.now(UTC)
        record = session.get(TicketRecord, ticket.id)
        if record is None:
            values = {name: getattr(ticket, name) for name in (*FIELDS, "status")}
            values["priority"] = ticket.priority.value
            session.add(TicketRecord(**values, created_at=now, updated_at=now))
            return "new"
        wanted = {name: getattr(ticket, name) for name in FIELDS}
        wanted["priority"] = ticket.priority.value
        if not keep_status:
            wanted["status"] = ticket.status
        changed = {name: value for name, value in wanted.items() if getattr(record, name) != value}
        if not changed:
            return "unchanged"
        for name, value in changed.items():
            setattr(record, name, value)
        record.updated_at = now
        return "updated"

    def add(self, ticket: Ticket) -> Outcome:
        """Add `ticket`, or update the stored one with that id (its status is kept)."""
        with self._session() as session, session.begin():
            return self._upsert(session, ticket, keep_status=True)

    def import_rows(
        self, rows: Iterable[ImportRow | Ticket], progress: Progress = NULL
    ) -> ImportSummary:
        """Add or update every row in one transaction: all of them, or (on any error) none."""
        rows = [
            r if isinstance(r, ImportRow) else ImportRow(f"ticket {r.id}", r, True) for r in rows
        ]
        seen: dict[int, str] = {}
        for row in rows:
            if row.ticket.id in seen:
                raise TicketError(
                    f"{row.where}: duplicate id {row.ticket.id} "
                    f"(already at {seen[row.ticket.id]}); nothing imported"
                )
            seen[row.ticket.id] = row.where
        counts = {"new": 0, "updated": 0, "unchanged": 0}
        with (
            progress.track("import", len(rows)) as bar,
            self._session() as session,
            session.begin(),
        ):
            for row in rows:
                counts[self._upsert(session, row.ticket, keep_status=not row.status_given)] += 1
                bar.advance()
        return ImportSummary(**counts)

    def import_file(self, path: str | Path, *, forum_host: str | None = None) -> ImportSummary:
        """Check the whole file first (TicketError listing every bad row), then import it."""
        return self.import_rows(read_import_file(path, forum_host=forum_host))

    def get(self, ticket_id: int) -> Ticket | None:
        from gestan_release.db import TicketRecord

        with self._session() as session:
            record = session.get(TicketRecord, ticket_id)
            return None if record is None else self._record_to_ticket(record)

    def get_many(self, ids: Iterable[int]) -> dict[int, Ticket]:
        """The stored tickets among `ids`, by id; ids not in the store are simply absent."""
        from sqlalchemy import select

        from gestan_release.db import TicketRecord

        wanted = _storable(ids)
        found: dict[int, Ticket] = {}
        with self._session() as session:
            for chunk in _chunks(wanted, 500):
                query = select(TicketRecord).where(TicketRecord.id.in_(chunk))
                for record in session.scalars(query):
                    found[record.id] = self._record_to_ticket(record)
        return found

    def list(
        self, priority: Priority | str | None = None, status: str | None = None
    ) -> list[Ticket]:
        """Tickets, most urgent first then by id, optionally only one priority and/or status."""
        from sqlalchemy import select

        from gestan_release.db import TicketRecord

        query = select(TicketRecord)
        if priority is not None:
            query = query.where(TicketRecord.priority == Priority.parse(priority).value)
        if status is not None:
            query = query.where(TicketRecord.status == _check_status(status))
        with self._session() as session:
            tickets = [self._record_to_ticket(record) for record in session.scalars(query)]
        return sorted(tickets, key=lambda t: t.sort_key)

    def set_status(self, ids: Iterable[int], status: str) -> int:
        """Move tickets to `status` ; all or none. Returns how many changed."""
        from sqlalchemy import select

        from gestan_release.db import TicketRecord

        status = _check_status(status)
        wanted = sorted(set(ids))
        now = datetime.now(UTC)
        changed = 0
        with self._session() as session, session.begin():
            records = {}
            for chunk in _chunks(wanted, 500):
                query = select(TicketRecord).where(TicketRecord.id.in_(chunk))
                records.update({r.id: r for r in session.scalars(query)})
            missing = [i for i in wanted if i not in records]
            if missing:
                raise TicketError(
                    f"ticket(s) {', '.join(map(str, missing))} not in the store; no status changed "
                    "(add them with `gestan-release tickets add` or `tickets import`)"
                )
            for record in records.values():
                if record.status != status:
                    record.status, record.updated_at = status, now
                    changed += 1
        return changed


def _storable(ids: Iterable[int]) -> list[int]:
    """The ids that can be in the store, sorted: a commit may name #99999999999999999999, which
    no database integer holds; it is simply not found (an unknown reference)."""
    return sorted({i for i in map(int, ids) if 0 < i <= MAX_TICKET_ID})


def _check_status(status: str) -> str:
    if status not in STATUSES:
        raise TicketError(f"status {status!r} is not one of {', '.join(STATUSES)}")
    return status


def _chunks(items: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# -- the fast read path ----------------------------------------------------------------------------


def _plain_sqlite_file(database_url: str) -> Path | None:
    """The file of a plain `sqlite:///path` URL, else None (other databases, memory, options)."""
    scheme, sep, rest = database_url.partition(":///")
    if not sep or scheme not in ("sqlite", "sqlite+pysqlite") or "?" in rest or not rest:
        return None
    if rest == ":memory:" or rest.startswith("file:"):
        return None
    return Path(rest).expanduser()


def _first_read(connection: sqlite3.Connection) -> None:
    """Touch the file, waiting out "database is locked" (see `sqlitewait`)."""
    retry_while_locked(lambda: connection.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall())


def lookup_tickets(database_url: str, ids: Iterable[int]) -> dict[int, Ticket]:
    """The stored tickets among `ids`, by id, without importing SQLAlchemy for SQLite files.

    A missing database or one without tickets yet gives `{}`: reading never creates anything.
    """
    wanted = _storable(ids)
    path = _plain_sqlite_file(database_url)
    if path is None:
        return TicketStore(database_url).get_many(wanted) if wanted else {}
    if not wanted or not path.is_file():
        return {}
    uri = path.resolve().as_uri() + "?mode=ro"
    try:
        connection = sqlite3.connect(uri, uri=True, timeout=30)
    except sqlite3.OperationalError as exc:
        raise TicketError(f"cannot open the ticket store {path}: {exc}") from None
    found: dict[int, Ticket] = {}
    try:
        connection.row_factory = sqlite3.Row
        _first_read(connection)
        columns = ", ".join(_COLUMNS)
        for chunk in _chunks(wanted, 500):
            marks = ", ".join("?" * len(chunk))
            query = f"SELECT {columns} FROM tickets WHERE id IN ({marks})"
            for row in connection.execute(query, tuple(chunk)):
                ticket = _ticket_from_row(row)
                found[ticket.id] = ticket
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return {}
        raise TicketError(f"cannot read the ticket store {path}: {exc}") from None
    except sqlite3.DatabaseError as exc:
        raise TicketError(f"{path} is not a gestan-release database: {exc}") from None
    finally:
        connection.close()
    return found


def with_status(ticket: Ticket, status: str) -> Ticket:
    """A copy of `ticket` with another status (tickets are immutable)."""
    return replace(ticket, status=_check_status(status))
