"""The release ledger: releases, their tickets, deliveries (side effects), overrides, locks.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "releases",
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("label", sa.String(64), nullable=False),
        sa.Column("tag", sa.String(128), nullable=True),
        sa.Column("commit_sha", sa.String(64), nullable=True),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("previous_version", sa.String(64), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("plan", sa.Text, nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("version", name="pk_releases"),
    )
    op.create_index("ix_releases_state", "releases", ["state"])
    op.create_table(
        "release_tickets",
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("ticket_id", sa.Integer, autoincrement=False, nullable=False),
        sa.Column("priority", sa.String(16), nullable=True),
        sa.Column("already_in", sa.String(64), nullable=True),
        sa.Column("known", sa.Boolean, nullable=False),
        sa.PrimaryKeyConstraint("version", "ticket_id", name="pk_release_tickets"),
        sa.ForeignKeyConstraint(
            ["version"],
            ["releases.version"],
            name="fk_release_tickets_version_releases",
            ondelete="CASCADE",
        ),
    )
    op.create_table(
        "deliveries",
        sa.Column("key", sa.String(512), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("state", sa.String(24), nullable=False),
        sa.Column("external_id", sa.Text, nullable=True),
        sa.Column("url", sa.Text, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_deliveries"),
        sa.ForeignKeyConstraint(
            ["version"],
            ["releases.version"],
            name="fk_deliveries_version_releases",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_deliveries_version", "deliveries", ["version"])
    op.create_index("ix_deliveries_state", "deliveries", ["state"])
    op.create_table(
        "overrides",
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("ticket_id", sa.Integer, autoincrement=False, nullable=False),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("version", "ticket_id", name="pk_overrides"),
    )
    op.create_table(
        "locks",
        sa.Column("name", sa.String(512), nullable=False),
        sa.Column("holder", sa.Text, nullable=False),
        sa.Column("acquired_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_locks"),
    )


def downgrade() -> None:
    op.drop_table("locks")
    op.drop_table("overrides")
    op.drop_index("ix_deliveries_state", table_name="deliveries")
    op.drop_index("ix_deliveries_version", table_name="deliveries")
    op.drop_table("deliveries")
    op.drop_table("release_tickets")
    op.drop_index("ix_releases_state", table_name="releases")
    op.drop_table("releases")
