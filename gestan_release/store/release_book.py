"""The releases: what each release is, the tickets it fixes, the guards overridden for it, and
the Prefect flow run working on it.

A release is recorded once (`start_release`, idempotent) with the plan that resume needs to finish
it, then `finish_release` says whether every delivery got through. Tables `releases`,
`release_tickets`, `overrides` (`tables.py`); `Ledger` is this book and the delivery book together.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa

from gestan_release.errors import ReleaseError
from gestan_release.store import db
from gestan_release.store.tables import OverrideRecord, ReleaseRecord, ReleaseTicketRecord


class ReleaseState(StrEnum):
    """Where a release stands (stored as its value)."""

    IN_PROGRESS = "in_progress"
    RELEASED = "released"  # every delivery finished
    INCOMPLETE = "incomplete"  # published, some deliveries left to finish (`resume`)


@dataclass(frozen=True)
class Release:
    version: str
    kind: str
    label: str
    tag: str | None
    commit_sha: str | None
    channel: str
    previous_version: str | None
    state: ReleaseState
    plan: dict[str, Any]
    started_at: datetime
    finished_at: datetime | None
    flow_run_id: str | None = None


def _release(r: ReleaseRecord) -> Release:
    return Release(
        r.version,
        r.kind,
        r.label,
        r.tag,
        r.commit_sha,
        r.channel,
        r.previous_version,
        ReleaseState(r.state),
        json.loads(r.plan or "{}"),
        r.started_at,
        r.finished_at,
        r.flow_run_id,
    )


def _now() -> datetime:
    return datetime.now(UTC)


class ReleaseBook(db.Store):
    """The releases in the database at `url`, with their tickets, overrides and flow runs."""

    def release(self, version: str) -> Release | None:
        with self._session() as s:
            row = s.get(ReleaseRecord, version)
            return _release(row) if row else None

    def releases(self, limit: int = 20) -> list[Release]:
        with self._session() as s:
            rows = s.scalars(
                sa.select(ReleaseRecord).order_by(ReleaseRecord.started_at.desc()).limit(limit)
            )
            return [_release(r) for r in rows]

    def start_release(
        self,
        *,
        version: str,
        kind: str,
        label: str,
        tag: str | None,
        channel: str,
        previous_version: str | None,
        plan: dict[str, Any],
        tickets: Iterable[tuple[int, str | None, str | None, bool]] = (),
        overrides: Iterable[tuple[int, str, str]] = (),
    ) -> Release:
        """Record a release (idempotent: an existing row is returned unchanged) with its tickets
        (id, priority, already in, known) and overrides (id, rule, reason)."""
        now = _now()
        with self._session() as s:
            row = s.get(ReleaseRecord, version)
            if row is not None:
                return _release(row)
            row = ReleaseRecord(
                version=version,
                kind=kind,
                label=label,
                tag=tag,
                channel=channel,
                previous_version=previous_version,
                state=ReleaseState.IN_PROGRESS,
                plan=json.dumps(plan, ensure_ascii=False, sort_keys=True),
                started_at=now,
                updated_at=now,
            )
            s.add(row)
            s.flush()
            s.add_all(
                ReleaseTicketRecord(
                    version=version, ticket_id=tid, priority=prio, already_in=already, known=known
                )
                for tid, prio, already, known in tickets
            )
            s.add_all(
                OverrideRecord(
                    version=version, ticket_id=tid, rule=rule, reason=reason, created_at=now
                )
                for tid, rule, reason in overrides
            )
            return _release(row)

    def set_commit(self, version: str, commit_sha: str) -> None:
        with self._session() as s:
            row = s.get(ReleaseRecord, version)
            if row is None:
                raise ReleaseError(f"release {version} is not in the ledger")
            row.commit_sha = commit_sha
            row.updated_at = _now()

    def finish_release(self, version: str, complete: bool) -> None:
        with self._session() as s:
            row = s.get(ReleaseRecord, version)
            if row is None:
                return
            row.state = ReleaseState.RELEASED if complete else ReleaseState.INCOMPLETE
            row.updated_at = _now()
            if complete and row.finished_at is None:
                row.finished_at = row.updated_at

    def nightly_versions(self) -> list[str]:
        """Versions of every nightly recorded (to number a second nightly of the same day)."""
        with self._session() as s:
            return list(
                s.scalars(sa.select(ReleaseRecord.version).where(ReleaseRecord.kind == "nightly"))
            )

    # -- Prefect flow runs -------------------------------------------------------------------
    def set_flow_run(self, version: str, flow_run_id: str | None) -> None:
        """Record the flow run now working on a release (the one a crash would leave behind)."""
        if not flow_run_id:
            return
        with self._session() as s:
            row = s.get(ReleaseRecord, version)
            if row is not None and row.flow_run_id != flow_run_id:
                row.flow_run_id = flow_run_id
                row.updated_at = _now()

    def release_of_flow_run(self, flow_run_id: str) -> Release | None:
        """The release a (crashed) flow run was working on, if it got as far as recording it."""
        with self._session() as s:
            row = s.scalars(
                sa.select(ReleaseRecord).where(ReleaseRecord.flow_run_id == flow_run_id)
            ).first()
            return _release(row) if row else None
