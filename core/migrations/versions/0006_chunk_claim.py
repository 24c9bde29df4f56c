"""Chunk claims: `chunk.claim`, the write-lease token of the upload that claimed an
`uploading` row (a fencing token: a writer whose lease lapsed cannot store or remove it).

Revision 0006 (after 0005).
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("chunk") as batch:
        batch.add_column(sa.Column("claim", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("chunk") as batch:
        batch.drop_column("claim")
