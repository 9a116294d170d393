"""Intake: forum reports, the sync cursors, acknowledgements; deliveries no longer need a release.

`deliveries.version` now names the release *or the scope* a side effect belongs to: the
acknowledgement mails of the intake are deliveries of the scope `intake`, which is not a release,
so the foreign key to `releases` goes (nothing ever deleted a release to cascade anyway).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    # SQLite cannot drop a constraint in place: batch mode copies the table.
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_constraint("fk_deliveries_version_releases", type_="foreignkey")
    op.create_table(
        "forum_reports",
        sa.Column("discussion_id", sa.Integer, autoincrement=False, nullable=False),
        sa.Column("category_id", sa.Integer, nullable=True),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("url", sa.Text, nullable=True),
        sa.Column("insert_user_id", sa.Integer, nullable=True),
        sa.Column("reporter_name", sa.Text, nullable=True),
        sa.Column("reporter_email", sa.Text, nullable=True),
        sa.Column("priority", sa.String(16), nullable=True),
        sa.Column("tags", sa.Text, nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("date_inserted", TS, nullable=True),
        sa.Column("date_updated", TS, nullable=True),
        sa.Column("seen_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("discussion_id", name="pk_forum_reports"),
    )
    op.create_index("ix_forum_reports_state", "forum_reports", ["state"])
    op.create_table(
        "intake_state",
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_intake_state"),
    )
    op.create_table(
        "ticket_acks",
        sa.Column("ticket_id", sa.Integer, autoincrement=False, nullable=False),
        sa.Column("priority", sa.String(16), nullable=False),
        sa.Column("first_priority", sa.String(16), nullable=False),
        sa.Column("message_id", sa.Text, nullable=False),
        sa.Column("acked_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("ticket_id", name="pk_ticket_acks"),
    )


def downgrade() -> None:
    op.drop_table("ticket_acks")
    op.drop_table("intake_state")
    op.drop_index("ix_forum_reports_state", table_name="forum_reports")
    op.drop_table("forum_reports")
    with op.batch_alter_table("deliveries") as batch:
        batch.create_foreign_key(
            "fk_deliveries_version_releases",
            "releases",
            ["version"],
            ["version"],
            ondelete="CASCADE",
        )
