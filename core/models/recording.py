"""Recordings, their tracks, the chunk ledger, quarantined chunks and processing steps."""
from __future__ import annotations

from typing import Any, Optional

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from core.models._types import json_field, ms_field, new_id, now_ms

RECORDING_STATES = ("recording", "processing", "ready", "failed", "deleted")
TRACK_KINDS = ("audio", "video", "av", "composite")
LAYOUTS = ("grid", "speaker", "client")


class Recording(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("org", "client_key", name="uq_recording_client_key"),
                      Index("ix_recording_created_by", "org", "created_by"))

    id: str = Field(default_factory=lambda: new_id("rec"), primary_key=True, max_length=64)
    org: str = Field(index=True, max_length=128)
    client_key: str = Field(max_length=256)
    room_id: Optional[str] = Field(default=None, index=True, max_length=64)
    source: str = Field(default="client", max_length=16)
    layout: str = Field(default="grid", max_length=16)
    title: str = Field(default="", max_length=256)
    status: str = Field(default="recording", index=True, max_length=16)
    created_by: str = Field(default="", max_length=128)
    created_at: int = ms_field(default_factory=now_ms)
    started_at_ms: Optional[int] = ms_field()
    last_chunk_at: Optional[int] = ms_field()
    finalized_at: Optional[int] = ms_field()
    ready_at: Optional[int] = ms_field()
    error: Optional[str] = None
    vocabulary: Optional[list[str]] = json_field(default=None)
    outputs: Optional[dict[str, Any]] = json_field(default=None)


class Track(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("recording_id", "track_id", name="uq_track"),
                      Index("ix_track_participant", "participant_id"))

    id: Optional[int] = Field(default=None, primary_key=True)
    recording_id: str = Field(foreign_key="recording.id", index=True, max_length=64)
    track_id: str = Field(max_length=128)
    participant_id: str = Field(default="", max_length=128)
    display_name: str = Field(default="", max_length=256)
    role: str = Field(default="participant", max_length=32)
    kind: str = Field(default="av", max_length=16)
    created_at: int = ms_field(default_factory=now_ms)


class Chunk(SQLModel, table=True):
    """One ledger row per (recording, track, seq). `status`: uploading | stored."""

    __table_args__ = (UniqueConstraint("recording_id", "track_id", "seq", name="uq_chunk"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    recording_id: str = Field(foreign_key="recording.id", index=True, max_length=64)
    track_id: str = Field(max_length=128)
    seq: int
    status: str = Field(default="uploading", max_length=16)
    start_ms: int = ms_field(default=0)
    duration_ms: Optional[int] = ms_field()
    size: int = ms_field(default=0)
    sha256: str = Field(max_length=64)
    content_type: str = Field(default="", max_length=128)
    container: str = Field(default="", max_length=16)
    continuation: bool = False
    object_key: str = Field(default="", max_length=512)
    probe: Optional[dict[str, Any]] = json_field(default=None)
    enqueued: bool = False
    # While `uploading`: the write-lease token (`ingest.lease`) of the upload that claimed the
    # row. Only that upload may mark it stored or remove it: a writer whose lease lapsed and
    # was taken over finds another token here and stands down (a fencing token).
    claim: Optional[str] = Field(default=None, max_length=32)
    created_at: int = ms_field(default_factory=now_ms)
    stored_at: Optional[int] = ms_field()


class RejectedChunk(SQLModel, table=True):
    """A chunk refused as invalid media; its bytes stay in quarantine for inspection."""

    id: Optional[int] = Field(default=None, primary_key=True)
    recording_id: str = Field(foreign_key="recording.id", index=True, max_length=64)
    track_id: str = Field(max_length=128)
    seq: int
    start_ms: int = ms_field(default=0)
    duration_ms: Optional[int] = ms_field()
    size: int = ms_field(default=0)
    sha256: str = Field(max_length=64)
    reason: str = Field(default="", max_length=1024)
    object_key: str = Field(default="", max_length=512)
    created_at: int = ms_field(default_factory=now_ms)


class ProcessingStep(SQLModel, table=True):
    """Status of one processing step of a recording (window composite, transcript, finalize…)."""

    __table_args__ = (UniqueConstraint("recording_id", "step", name="uq_step"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    recording_id: str = Field(foreign_key="recording.id", index=True, max_length=64)
    step: str = Field(max_length=128)
    status: str = Field(default="pending", max_length=16)
    progress: float = 0.0
    error: Optional[str] = None
    attempts: int = 0
    updated_at: int = ms_field(default_factory=now_ms)
