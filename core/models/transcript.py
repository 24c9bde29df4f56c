"""Transcripts: versions (model, params, time taken), their segments, per-track progress
of live transcription, and per-org vocabulary hints.

A recording may have several versions (live pass, re-transcriptions with other models);
exactly one is `is_current` — the one exported and indexed for search.
"""
from __future__ import annotations

from typing import Any, Optional

from sqlalchemy import Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from core.errors import InvalidInput, InvalidState
from core.models._types import json_field, ms_field, new_id, now_ms

VERSION_STATES = ("live", "running", "final", "failed")
RETRANSCRIBABLE = ("ready", "failed")  # recording states a new version can be made from


def check_span(start_ms: Optional[int], end_ms: Optional[int]) -> None:
    """A re-transcription span must end after it starts (API and CLI alike)."""
    if start_ms is not None and end_ms is not None and end_ms <= start_ms:
        raise InvalidInput("end_ms must be after start_ms", code="bad_span")


def check_retranscribable(recording_status: str) -> None:
    """Only a processed recording gets a new transcript version (API and CLI alike)."""
    if recording_status not in RETRANSCRIBABLE:
        raise InvalidState(f"recording is {recording_status}; re-transcribe it once processed",
                           code="not_processed")


def check_audio_kept(stored_chunks: int) -> None:
    """A new version needs the raw chunks: once retention deleted them there is nothing to hear
    (and an empty version must never replace the current one)."""
    if stored_chunks == 0:
        raise InvalidState("the recording's raw media was deleted (retention policy); nothing to re-transcribe",
                           code="raw_media_deleted")


class TranscriptVersion(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("recording_id", "version", name="uq_transcript_version"),)

    id: str = Field(default_factory=lambda: new_id("trv"), primary_key=True, max_length=64)
    recording_id: str = Field(foreign_key="recording.id", index=True, max_length=64)
    version: int = 1
    model: str = Field(default="", max_length=512)
    params: Optional[dict[str, Any]] = json_field(default=None)
    status: str = Field(default="live", max_length=16)
    is_current: bool = False
    based_on: Optional[str] = Field(default=None, max_length=64)
    span_start_ms: Optional[int] = ms_field()
    span_end_ms: Optional[int] = ms_field()
    audio_ms: int = ms_field(default=0)  # speech audio the model heard
    time_taken_ms: int = ms_field(default=0)  # decode + VAD + model + merge, summed
    segment_count: int = 0
    exports: Optional[dict[str, str]] = json_field(default=None)  # format → object key
    error: Optional[str] = None
    created_at: int = ms_field(default_factory=now_ms)
    finished_at: Optional[int] = ms_field()


class TranscriptSegment(SQLModel, table=True):
    """One utterance of one speaker in one version; (version, track, seq, idx) is its key."""

    __table_args__ = (
        UniqueConstraint("version_id", "track_id", "seq", "idx", name="uq_transcript_segment"),
        Index("ix_transcript_segment_version_start", "version_id", "start_ms"),
    )

    id: Optional[int] = Field(default=None, primary_key=True)
    version_id: str = Field(foreign_key="transcriptversion.id", max_length=64)
    recording_id: str = Field(index=True, max_length=64)
    track_id: str = Field(max_length=128)
    seq: int = 0
    idx: int = 0
    participant_id: str = Field(default="", max_length=128)
    display_name: str = Field(default="", max_length=256)
    role: str = Field(default="", max_length=32)
    start_ms: int = ms_field(default=0)
    end_ms: int = ms_field(default=0)
    text: str = Field(default="", sa_column=Column(Text, nullable=False))
    words: Optional[list[Any]] = json_field(default=None)  # [[word, start_ms, end_ms, prob], …]
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0
    compression_ratio: float = 1.0
    level_db: float = -120.0
    voiced_ratio: float = 1.0
    flags: Optional[list[str]] = json_field(default=None)
    suppressed: bool = False


class TranscriptTrackState(SQLModel, table=True):
    """Where live transcription of one track stands: any worker can continue from here.

    `next_seq` is advanced with compare-and-set, so two workers never both commit a chunk.
    The carried tail (unfinished speech) is PCM in the object store at `carry_key`.
    """

    __table_args__ = (UniqueConstraint("version_id", "track_id", name="uq_transcript_track_state"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    version_id: str = Field(foreign_key="transcriptversion.id", index=True, max_length=64)
    recording_id: str = Field(max_length=64)
    track_id: str = Field(max_length=128)
    next_seq: int = 0
    finished: bool = False
    carry_key: Optional[str] = Field(default=None, max_length=512)
    carry_anchors: Optional[list[Any]] = json_field(default=None)
    stream_seq: Optional[int] = None  # first chunk of the current byte-joined stream
    stream_samples: int = ms_field(default=0)  # samples of that stream already consumed
    audio_ms: int = ms_field(default=0)
    time_taken_ms: int = ms_field(default=0)
    updated_at: int = ms_field(default_factory=now_ms)


class OrgVocabulary(SQLModel, table=True):
    """Terms an organisation wants recognised in every interview (job-description words)."""

    org: str = Field(primary_key=True, max_length=128)
    terms: Optional[list[str]] = json_field(default=None)
    updated_by: str = Field(default="", max_length=128)
    updated_at: int = ms_field(default_factory=now_ms)


def _register_search_schema() -> None:
    """`create_all` also creates the search index tables (see core.search)."""
    from core.search import register_schema

    register_schema(SQLModel.metadata)


_register_search_schema()
