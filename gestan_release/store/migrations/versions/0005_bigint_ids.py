"""Ticket ids as 64-bit integers on PostgreSQL (ids are 1..2^63-1; PostgreSQL's INTEGER is 32 bits).

SQLite's INTEGER is already 64 bits: nothing to do there.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (
    ("tickets", "id"),
    ("release_tickets", "ticket_id"),
    ("overrides", "ticket_id"),
    ("forum_reports", "discussion_id"),
    ("ticket_acks", "ticket_id"),
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column in COLUMNS:
        op.alter_column(table, column, type_=sa.BigInteger(), existing_type=sa.Integer())


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column in COLUMNS:
        op.alter_column(table, column, type_=sa.Integer(), existing_type=sa.BigInteger())
