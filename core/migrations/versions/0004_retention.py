"""Retention: policies, candidate events, matter tags, legal holds, manifests and their items,
erasure requests, deletion receipts, tombstones; `orgsettings.retention_approval`.

Revision 0004 (after 0003).
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
    with op.batch_alter_table("orgsettings") as batch:
        batch.add_column(sa.Column("retention_approval", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("orgsettings") as batch:
        batch.alter_column("retention_approval", server_default=None)
    op.create_table(
        "retentionpolicy",
        sa.Column("org", sa.String(length=128), nullable=False),
        sa.Column("rules", sa.JSON(), nullable=True),
        sa.Column("locked", sa.Boolean(), nullable=False),
        sa.Column("locked_by", sa.String(length=128), nullable=False),
        sa.Column("locked_at", sa.BigInteger(), nullable=True),
        sa.Column("salt", sa.String(length=64), nullable=False),
        sa.Column("updated_by", sa.String(length=128), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("org"),
    )
    op.create_table(
        "candidateevent",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("org", sa.String(length=128), nullable=False),
        sa.Column("candidate_id", sa.String(length=128), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_candidateevent_org_candidate", "candidateevent", ["org", "candidate_id"])
    op.create_table(
        "recordingmatter",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("recording_id", sa.String(length=64), nullable=False),
        sa.Column("org", sa.String(length=128), nullable=False),
        sa.Column("matter", sa.String(length=128), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["recording_id"], ["recording.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("recording_id", "matter", name="uq_recording_matter"),
    )
    op.create_index("ix_recordingmatter_recording_id", "recordingmatter", ["recording_id"])
    op.create_index("ix_recordingmatter_org_matter", "recordingmatter", ["org", "matter"])
    op.create_table(
        "legalhold",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("org", sa.String(length=128), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("target", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.String(length=1024), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("released_at", sa.BigInteger(), nullable=True),
        sa.Column("released_by", sa.String(length=128), nullable=False),
        sa.Column("release_reason", sa.String(length=1024), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_legalhold_org_scope_target", "legalhold", ["org", "scope", "target"])
    op.create_table(
        "retentionmanifest",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("org", sa.String(length=128), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("needs_approval", sa.Boolean(), nullable=False),
        sa.Column("approved_by", sa.String(length=128), nullable=False),
        sa.Column("approved_at", sa.BigInteger(), nullable=True),
        sa.Column("erasure_id", sa.String(length=64), nullable=True),
        sa.Column("receipt_id", sa.String(length=64), nullable=True),
        sa.Column("summary", sa.JSON(), nullable=True),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("started_at", sa.BigInteger(), nullable=True),
        sa.Column("finished_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_retentionmanifest_org", "retentionmanifest", ["org"])
    op.create_table(
        "manifestitem",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("manifest_id", sa.String(length=64), nullable=False),
        sa.Column("recording_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("due_at", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("held_by", sa.JSON(), nullable=True),
        sa.Column("objects", sa.JSON(), nullable=True),
        sa.Column("object_count", sa.Integer(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("rows", sa.JSON(), nullable=True),
        sa.Column("deleted_objects", sa.JSON(), nullable=True),
        sa.Column("deleted_rows", sa.JSON(), nullable=True),
        sa.Column("note", sa.String(length=256), nullable=False),
        sa.Column("done_at", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["manifest_id"], ["retentionmanifest.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("manifest_id", "recording_id", "kind", name="uq_manifest_item"),
    )
    op.create_index("ix_manifestitem_manifest_id", "manifestitem", ["manifest_id"])
    op.create_index("ix_manifestitem_recording_id", "manifestitem", ["recording_id"])
    op.create_table(
        "erasurerequest",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("org", sa.String(length=128), nullable=False),
        sa.Column("candidate_id", sa.String(length=128), nullable=True),
        sa.Column("candidate_hash", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("held_by", sa.JSON(), nullable=True),
        sa.Column("recordings", sa.JSON(), nullable=True),
        sa.Column("manifest_id", sa.String(length=64), nullable=True),
        sa.Column("receipt_id", sa.String(length=64), nullable=True),
        sa.Column("requested_by", sa.String(length=128), nullable=False),
        sa.Column("requested_at", sa.BigInteger(), nullable=False),
        sa.Column("completed_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_erasurerequest_org", "erasurerequest", ["org"])
    op.create_table(
        "deletionreceipt",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("org", sa.String(length=128), nullable=False),
        sa.Column("manifest_id", sa.String(length=64), nullable=False),
        sa.Column("erasure_id", sa.String(length=64), nullable=True),
        sa.Column("body", sa.JSON(), nullable=True),
        sa.Column("signature", sa.String(length=256), nullable=False),
        sa.Column("public_key", sa.String(length=1024), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_deletionreceipt_org", "deletionreceipt", ["org"])
    op.create_index("ix_deletionreceipt_manifest_id", "deletionreceipt", ["manifest_id"])
    op.create_table(
        "recordingtombstone",
        sa.Column("recording_id", sa.String(length=64), nullable=False),
        sa.Column("org", sa.String(length=128), nullable=False),
        sa.Column("deleted_at", sa.BigInteger(), nullable=False),
        sa.Column("manifest_id", sa.String(length=64), nullable=False),
        sa.Column("receipt_id", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(["recording_id"], ["recording.id"]),
        sa.PrimaryKeyConstraint("recording_id"),
    )
    op.create_index("ix_recordingtombstone_org", "recordingtombstone", ["org"])


def downgrade() -> None:
    op.drop_index("ix_recordingtombstone_org", table_name="recordingtombstone")
    op.drop_table("recordingtombstone")
    op.drop_index("ix_deletionreceipt_manifest_id", table_name="deletionreceipt")
    op.drop_index("ix_deletionreceipt_org", table_name="deletionreceipt")
    op.drop_table("deletionreceipt")
    op.drop_index("ix_erasurerequest_org", table_name="erasurerequest")
    op.drop_table("erasurerequest")
    op.drop_index("ix_manifestitem_recording_id", table_name="manifestitem")
    op.drop_index("ix_manifestitem_manifest_id", table_name="manifestitem")
    op.drop_table("manifestitem")
    op.drop_index("ix_retentionmanifest_org", table_name="retentionmanifest")
    op.drop_table("retentionmanifest")
    op.drop_index("ix_legalhold_org_scope_target", table_name="legalhold")
    op.drop_table("legalhold")
    op.drop_index("ix_recordingmatter_org_matter", table_name="recordingmatter")
    op.drop_index("ix_recordingmatter_recording_id", table_name="recordingmatter")
    op.drop_table("recordingmatter")
    op.drop_index("ix_candidateevent_org_candidate", table_name="candidateevent")
    op.drop_table("candidateevent")
    op.drop_table("retentionpolicy")
    with op.batch_alter_table("orgsettings") as batch:
        batch.drop_column("retention_approval")
