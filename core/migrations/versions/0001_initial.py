"""Initial schema: what `create_all` made before migrations existed (search index included).

Revision 0001, the baseline. A database made by `create_all` is stamped here, not upgraded
through it (`core.migrations.upgrade`), so this file must stay exactly that schema: never edit
it, add a revision instead. Written from `alembic revision --autogenerate` on an empty
database, reviewed by hand; the search DDL is copied from core/search.py as it was.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ms(name: str, nullable: bool = False) -> sa.Column:
    """An epoch-milliseconds (or other 64-bit) column."""
    return sa.Column(name, sa.BigInteger(), nullable=nullable)


def _str(name: str, length: int | None = None, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.String(length=length), nullable=nullable)


def _int(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.Integer(), nullable=nullable)


def _bool(name: str) -> sa.Column:
    return sa.Column(name, sa.Boolean(), nullable=False)


def _float(name: str) -> sa.Column:
    return sa.Column(name, sa.Float(), nullable=False)


def _json(name: str) -> sa.Column:
    return sa.Column(name, sa.JSON(), nullable=True)


def _pk() -> sa.Column:
    return sa.Column("id", sa.Integer(), nullable=False)


def _fk(column: str, target: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([column], [target])


def upgrade() -> None:
    _recordings()
    _rooms()
    _transcripts()
    if op.get_bind().dialect.name == "sqlite":
        for ddl in SQLITE_SEARCH:
            op.execute(ddl)
    else:
        for ddl in POSTGRES_SEARCH:
            op.execute(ddl)


def _recordings() -> None:
    op.create_table(
        "recording",
        _str("id", 64), _str("org", 128), _str("client_key", 256), _str("room_id", 64, nullable=True),
        _str("source", 16), _str("layout", 16), _str("title", 256), _str("status", 16), _str("created_by", 128),
        _ms("created_at"), _ms("started_at_ms", True), _ms("last_chunk_at", True), _ms("finalized_at", True),
        _ms("ready_at", True), _str("error", nullable=True), _json("vocabulary"), _json("outputs"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("org", "client_key", name="uq_recording_client_key"),
    )
    op.create_index("ix_recording_org", "recording", ["org"])
    op.create_index("ix_recording_room_id", "recording", ["room_id"])
    op.create_index("ix_recording_status", "recording", ["status"])

    op.create_table(
        "track",
        _pk(), _str("recording_id", 64), _str("track_id", 128), _str("participant_id", 128),
        _str("display_name", 256), _str("role", 32), _str("kind", 16), _ms("created_at"),
        _fk("recording_id", "recording.id"), sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("recording_id", "track_id", name="uq_track"),
    )
    op.create_index("ix_track_recording_id", "track", ["recording_id"])

    op.create_table(
        "chunk",
        _pk(), _str("recording_id", 64), _str("track_id", 128), _int("seq"), _str("status", 16),
        _ms("start_ms"), _ms("duration_ms", True), _ms("size"), _str("sha256", 64), _str("content_type", 128),
        _str("container", 16), _bool("continuation"), _str("object_key", 512), _json("probe"),
        _bool("enqueued"), _ms("created_at"), _ms("stored_at", True),
        _fk("recording_id", "recording.id"), sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("recording_id", "track_id", "seq", name="uq_chunk"),
    )
    op.create_index("ix_chunk_recording_id", "chunk", ["recording_id"])

    op.create_table(
        "rejectedchunk",
        _pk(), _str("recording_id", 64), _str("track_id", 128), _int("seq"), _ms("start_ms"),
        _ms("duration_ms", True), _ms("size"), _str("sha256", 64), _str("reason", 1024), _str("object_key", 512),
        _ms("created_at"),
        _fk("recording_id", "recording.id"), sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_rejectedchunk_recording_id", "rejectedchunk", ["recording_id"])

    op.create_table(
        "processingstep",
        _pk(), _str("recording_id", 64), _str("step", 128), _str("status", 16), _float("progress"),
        _str("error", nullable=True), _int("attempts"), _ms("updated_at"),
        _fk("recording_id", "recording.id"), sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("recording_id", "step", name="uq_step"),
    )
    op.create_index("ix_processingstep_recording_id", "processingstep", ["recording_id"])


def _rooms() -> None:
    op.create_table(
        "room",
        _str("id", 64), _str("org", 128), _str("slot_id", 128), _str("candidate_id", 128), _str("state", 16),
        _bool("record"), _str("layout", 16), _str("title", 256), _json("vocabulary"), _str("created_by", 128),
        _ms("created_at"), _ms("state_changed_at"), _ms("started_at", True), _ms("ended_at", True),
        _str("end_reason", 64, nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_room_org", "room", ["org"])
    op.create_index("ix_room_slot", "room", ["org", "slot_id", "candidate_id"])
    op.create_index("ix_room_state", "room", ["state"])

    op.create_table(
        "roomtransition",
        _pk(), _str("room_id", 64), _str("from_state", 16, nullable=True), _str("to_state", 16),
        _str("reason", 64), _str("actor", 128), _ms("at"),
        _fk("room_id", "room.id"), sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_roomtransition_room_id", "roomtransition", ["room_id"])

    op.create_table(
        "callsession",
        _pk(), _str("room_id", 64), _str("participant_id", 128), _str("instance_id", 128), _str("role", 32),
        _str("display_name", 256), _bool("hidden"), _ms("joined_at"), _ms("left_at", True),
        _str("leave_reason", 64, nullable=True), _int("reconnects"),
        _fk("room_id", "room.id"), sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_callsession_room_id", "callsession", ["room_id"])


def _transcripts() -> None:
    op.create_table(
        "transcriptversion",
        _str("id", 64), _str("recording_id", 64), _int("version"), _str("model", 512), _json("params"),
        _str("status", 16), _bool("is_current"), _str("based_on", 64, nullable=True),
        _ms("span_start_ms", True), _ms("span_end_ms", True), _ms("audio_ms"), _ms("time_taken_ms"),
        _int("segment_count"), _json("exports"), _str("error", nullable=True), _ms("created_at"),
        _ms("finished_at", True),
        _fk("recording_id", "recording.id"), sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("recording_id", "version", name="uq_transcript_version"),
    )
    op.create_index("ix_transcriptversion_recording_id", "transcriptversion", ["recording_id"])

    op.create_table(
        "transcriptsegment",
        _pk(), _str("version_id", 64), _str("recording_id", 64), _str("track_id", 128), _int("seq"), _int("idx"),
        _str("participant_id", 128), _str("display_name", 256), _str("role", 32), _ms("start_ms"), _ms("end_ms"),
        sa.Column("text", sa.Text(), nullable=False), _json("words"), _float("avg_logprob"),
        _float("no_speech_prob"), _float("compression_ratio"), _float("level_db"), _float("voiced_ratio"),
        _json("flags"), _bool("suppressed"),
        _fk("version_id", "transcriptversion.id"), sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("version_id", "track_id", "seq", "idx", name="uq_transcript_segment"),
    )
    op.create_index("ix_transcript_segment_version_start", "transcriptsegment", ["version_id", "start_ms"])
    op.create_index("ix_transcriptsegment_recording_id", "transcriptsegment", ["recording_id"])

    op.create_table(
        "transcripttrackstate",
        _pk(), _str("version_id", 64), _str("recording_id", 64), _str("track_id", 128), _int("next_seq"),
        _bool("finished"), _str("carry_key", 512, nullable=True), _json("carry_anchors"),
        _int("stream_seq", nullable=True), _ms("stream_samples"), _ms("audio_ms"), _ms("time_taken_ms"),
        _ms("updated_at"),
        _fk("version_id", "transcriptversion.id"), sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("version_id", "track_id", name="uq_transcript_track_state"),
    )
    op.create_index("ix_transcripttrackstate_version_id", "transcripttrackstate", ["version_id"])

    op.create_table(
        "orgvocabulary",
        _str("org", 128), _json("terms"), _str("updated_by", 128), _ms("updated_at"),
        sa.PrimaryKeyConstraint("org"),
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in ("search_doc_ai", "search_doc_ad", "search_doc_au"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute("DROP TABLE IF EXISTS search_fts")
    op.execute("DROP TABLE IF EXISTS search_doc")
    for table in ("orgvocabulary", "transcripttrackstate", "transcriptsegment", "transcriptversion",
                  "callsession", "roomtransition", "room", "processingstep", "rejectedchunk", "chunk", "track",
                  "recording"):
        op.drop_table(table)  # its indexes go with it


# Full-text search over transcript segments (see core/search.py): not SQLModel tables, so
# autogenerate ignores them; change them here by hand in a new revision.
SQLITE_SEARCH = [
    """CREATE TABLE IF NOT EXISTS search_doc (
        id INTEGER PRIMARY KEY, segment_key TEXT NOT NULL UNIQUE, org TEXT NOT NULL, org_key TEXT NOT NULL,
        recording_id TEXT NOT NULL, version_id TEXT NOT NULL DEFAULT '', participant_id TEXT NOT NULL DEFAULT '',
        speaker TEXT NOT NULL DEFAULT '', role TEXT NOT NULL DEFAULT '', start_ms INTEGER NOT NULL,
        end_ms INTEGER NOT NULL, recorded_at INTEGER NOT NULL DEFAULT 0, text TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS ix_search_doc_recording ON search_doc (recording_id)",
    """CREATE VIRTUAL TABLE IF NOT EXISTS search_fts USING fts5(text, org_key, content='search_doc',
        content_rowid='id', tokenize='porter unicode61 remove_diacritics 2', prefix='2 3')""",
    """CREATE TRIGGER IF NOT EXISTS search_doc_ai AFTER INSERT ON search_doc BEGIN
        INSERT INTO search_fts(rowid, text, org_key) VALUES (new.id, new.text, new.org_key); END""",
    """CREATE TRIGGER IF NOT EXISTS search_doc_ad AFTER DELETE ON search_doc BEGIN
        INSERT INTO search_fts(search_fts, rowid, text, org_key) VALUES ('delete', old.id, old.text, old.org_key);
        END""",
    """CREATE TRIGGER IF NOT EXISTS search_doc_au AFTER UPDATE ON search_doc BEGIN
        INSERT INTO search_fts(search_fts, rowid, text, org_key) VALUES ('delete', old.id, old.text, old.org_key);
        INSERT INTO search_fts(rowid, text, org_key) VALUES (new.id, new.text, new.org_key); END""",
]
POSTGRES_SEARCH = [
    """CREATE TABLE IF NOT EXISTS search_doc (
        id BIGSERIAL PRIMARY KEY, segment_key TEXT NOT NULL UNIQUE, org TEXT NOT NULL, org_key TEXT NOT NULL,
        recording_id TEXT NOT NULL, version_id TEXT NOT NULL DEFAULT '', participant_id TEXT NOT NULL DEFAULT '',
        speaker TEXT NOT NULL DEFAULT '', role TEXT NOT NULL DEFAULT '', start_ms BIGINT NOT NULL,
        end_ms BIGINT NOT NULL, recorded_at BIGINT NOT NULL DEFAULT 0, text TEXT NOT NULL,
        tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', translate(text, '<>', '‹›'))) STORED)""",
    "CREATE INDEX IF NOT EXISTS ix_search_doc_tsv ON search_doc USING GIN (tsv)",
    "CREATE INDEX IF NOT EXISTS ix_search_doc_recording ON search_doc (recording_id)",
    "CREATE INDEX IF NOT EXISTS ix_search_doc_org ON search_doc (org, recorded_at)",
]
