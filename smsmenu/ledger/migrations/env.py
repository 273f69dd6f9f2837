"""Alembic environment: runs on the connection handed in by ``smsmenu.ledger.db.upgrade``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from smsmenu.ledger.models import Base

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("run migrations through `smsmenu db upgrade` (smsmenu.ledger.db.upgrade)")
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
