"""Access model and org webhooks: recording grants (user or group), per-org access settings,
webhook endpoints with their deliveries and attempts.

Revision 0002 (after 0001).
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "recordinggrant",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("recording_id", sa.String(length=64), nullable=False),
        sa.Column("org", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("subject", sa.String(length=128), nullable=False),
        sa.Column("granted_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["recording_id"], ["recording.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("recording_id", "kind", "subject", name="uq_recording_grant"),
    )
    op.create_index("ix_recordinggrant_recording_id", "recordinggrant", ["recording_id"])
    op.create_index("ix_recordinggrant_org", "recordinggrant", ["org"])
    op.create_index("ix_recordinggrant_subject", "recordinggrant", ["subject"])
    op.create_table(
        "orgsettings",
        sa.Column("org", sa.String(length=128), nullable=False),
        sa.Column("assessors_see_all", sa.Boolean(), nullable=False),
        sa.Column("compliance_reads_content", sa.Boolean(), nullable=False),
        sa.Column("updated_by", sa.String(length=128), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("org"),
    )
    _webhooks()
    # lists filter by who created a recording and who took part in it
    op.create_index("ix_recording_created_by", "recording", ["org", "created_by"])
    op.create_index("ix_track_participant", "track", ["participant_id"])


def _webhooks() -> None:
    op.create_table(
        "webhookendpoint",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("org", sa.String(length=128), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("secret", sa.String(length=128), nullable=False),
        sa.Column("events", sa.JSON(), nullable=True),
        sa.Column("description", sa.String(length=256), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_webhookendpoint_org", "webhookendpoint", ["org"])
    op.create_table(
        "webhookdelivery",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("endpoint_id", sa.String(length=64), nullable=False),
        sa.Column("org", sa.String(length=128), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(length=256), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("delivered_at", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["endpoint_id"], ["webhookendpoint.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_webhookdelivery_endpoint_created", "webhookdelivery", ["endpoint_id", "created_at"])
    op.create_table(
        "webhookattempt",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("delivery_id", sa.String(length=64), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.String(length=256), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["delivery_id"], ["webhookdelivery.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_webhookattempt_delivery_id", "webhookattempt", ["delivery_id"])


def downgrade() -> None:
    for table in ("webhookattempt", "webhookdelivery", "webhookendpoint"):
        op.drop_table(table)
    op.drop_index("ix_track_participant", table_name="track")
    op.drop_index("ix_recording_created_by", table_name="recording")
    op.drop_table("orgsettings")
    op.drop_index("ix_recordinggrant_subject", table_name="recordinggrant")
    op.drop_index("ix_recordinggrant_org", table_name="recordinggrant")
    op.drop_index("ix_recordinggrant_recording_id", table_name="recordinggrant")
    op.drop_table("recordinggrant")
