"""Alembic environment for gestan-release, driven from code by `gestan_release.store.db.upgrade`.

`db.upgrade` passes an open connection (already inside its transaction) in
`config.attributes["connection"]`; without one (e.g. a developer running Alembic by hand) a
connection is opened on `sqlalchemy.url`.
"""

from __future__ import annotations

from alembic import context

from gestan_release.store import db
from gestan_release.store.tables import metadata

config = context.config
# Every table, for autogenerate: the migrations follow `tables.py`.
target_metadata = metadata


def _configure(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things: autogenerate emits batch operations that copy the table.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    with db.engine_for(config.get_main_option("sqlalchemy.url")).begin() as connection:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
