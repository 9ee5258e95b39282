"""Alembic environment: always driven programmatically with a live connection."""

from __future__ import annotations

from alembic import context

from qa.store.db.models import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reachable from the alembic CLI
    raise RuntimeError("run migrations through qa.store.db.engine.migrate()")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
