"""Alembic environment: runs on the connection that `core.migrations` hands over."""
from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import core.models  # noqa: F401  (registers the tables autogenerate compares against)
from core.migrations import include_name, render_item

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `recorder db upgrade` (or core.db.migrate), not the alembic CLI")
context.configure(connection=connection, target_metadata=SQLModel.metadata, render_as_batch=True,
                  include_name=include_name, render_item=render_item, compare_type=True)
with context.begin_transaction():
    context.run_migrations()
