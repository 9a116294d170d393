"""Release lock leases (expires_at, renewed by a heartbeat) and the flow run of each release.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # add_column needs no table copy on SQLite; batch mode keeps the downgrade possible there.
    with op.batch_alter_table("locks") as batch:
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("releases") as batch:
        batch.add_column(sa.Column("flow_run_id", sa.String(64), nullable=True))
        batch.create_index("ix_releases_flow_run_id", ["flow_run_id"])


def downgrade() -> None:
    with op.batch_alter_table("releases") as batch:
        batch.drop_index("ix_releases_flow_run_id")
        batch.drop_column("flow_run_id")
    with op.batch_alter_table("locks") as batch:
        batch.drop_column("expires_at")
