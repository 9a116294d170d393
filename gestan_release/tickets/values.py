"""Tickets: the bugs a release fixes and who reported them, as plain values.

`Ticket` and `Priority` are the domain; where tickets come from and where they are kept live
beside it, one job a module: `ticket_import` (import files and `--reporter`, checked before
anything is written), `ticket_store` (the store of `DATABASE_URL`, SQLAlchemy) and
`ticket_lookup` (the stdlib read path of `changelog`, which must answer in well under half a
second). This module imports nothing heavy: every command may load it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from gestan_release.core.validation import MAX_TICKET_ID, excerpt
from gestan_release.errors import TicketError

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
# What a row of the `tickets` table holds, in the order both read paths select it.
COLUMNS = (*FIELDS, "status", "created_at", "updated_at")


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
        """The ticket fields of docs/reference.md plus `status`, as JSON-ready values."""
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


def _utc(value: datetime | str | None) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def ticket_from_row(row: Mapping[str, Any]) -> Ticket:
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


def storable_ids(ids: Iterable[int]) -> list[int]:
    """The ids that can be in the store, sorted: a commit may name #99999999999999999999, which
    no database integer holds; it is simply not found (an unknown reference)."""
    return sorted({i for i in map(int, ids) if 0 < i <= MAX_TICKET_ID})


def check_status(status: str) -> str:
    if status not in STATUSES:
        raise TicketError(f"status {status!r} is not one of {', '.join(STATUSES)}")
    return status


def chunks(items: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
