"""The ticket store: one row per ticket, with its reporter and its status.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tickets",
        sa.Column("id", sa.Integer, autoincrement=False, nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("priority", sa.String(16), nullable=False),
        sa.Column("reporter_name", sa.Text, nullable=False),
        sa.Column("reporter_email", sa.Text, nullable=False),
        sa.Column("forum_url", sa.Text, nullable=True),
        sa.Column("forum_tracked", sa.Boolean, nullable=False),
        sa.Column("ack_message_id", sa.Text, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_tickets"),
        sa.CheckConstraint(
            "priority IN ('flash', 'haute', 'normale', 'basse')", name="ck_tickets_priority"
        ),
        sa.CheckConstraint("status IN ('open', 'fixed', 'released')", name="ck_tickets_status"),
    )
    op.create_index("ix_tickets_priority", "tickets", ["priority"])
    op.create_index("ix_tickets_status", "tickets", ["status"])


def downgrade() -> None:
    op.drop_index("ix_tickets_status", table_name="tickets")
    op.drop_index("ix_tickets_priority", table_name="tickets")
    op.drop_table("tickets")
