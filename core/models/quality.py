"""Media quality of a recording: periodic samples per received track, and why media was missing.

`QualitySample`: one window (5 s from the bot) of one participant's track as the receiver
saw it — packets, loss, jitter, round trip, bitrate, frame rate, picture size, frozen.
`MediaGap`: an interval in which a participant's media was missing, with its cause
(`network`, `bot_restart`, `participant_left`), reported by whoever saw it happen; the
chunk ledger labels its gaps with them.

Both store wall-clock epoch ms (`at_ms`, `start_ms`/`end_ms`), as `Chunk.start_ms` does:
a recording's start can still move earlier while chunks arrive, so positions on the
recording timeline are derived when read. Both are the `quality` artifact kind.
"""
from __future__ import annotations

from typing import Optional

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from core.models._types import ms_field, now_ms

QUALITY_SOURCES = ("bot", "client")
GAP_CAUSES = ("network", "bot_restart", "participant_left")


class QualitySample(SQLModel, table=True):
    """One measurement window of one received track (idempotent on track, source, start)."""

    __table_args__ = (UniqueConstraint("recording_id", "track_id", "source", "at_ms", name="uq_qualitysample"),
                      Index("ix_qualitysample_recording_at", "recording_id", "at_ms"))

    id: Optional[int] = Field(default=None, primary_key=True)
    recording_id: str = Field(foreign_key="recording.id", max_length=64)
    participant_id: str = Field(max_length=128)
    track_id: str = Field(max_length=128)
    source: str = Field(default="bot", max_length=8)
    at_ms: int = ms_field(default=0)          # window start, epoch ms
    window_ms: int = Field(default=5000)
    packets: int = ms_field(default=0)        # received in the window
    lost: int = ms_field(default=0)           # lost in the window
    jitter_ms: Optional[float] = None
    rtt_ms: Optional[float] = None
    bitrate_kbps: Optional[float] = None
    fps: Optional[float] = None
    width: Optional[int] = None
    height: Optional[int] = None
    frozen: bool = False                      # connected, but no media moved for the whole window
    created_at: int = ms_field(default_factory=now_ms)


class MediaGap(SQLModel, table=True):
    """A participant's media was missing from `start_ms` to `end_ms` (epoch), and why."""

    __table_args__ = (UniqueConstraint("recording_id", "participant_id", "source", "cause", "start_ms",
                                       name="uq_mediagap"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    recording_id: str = Field(foreign_key="recording.id", index=True, max_length=64)
    participant_id: str = Field(max_length=128)
    source: str = Field(default="bot", max_length=8)
    cause: str = Field(max_length=32)
    start_ms: int = ms_field(default=0)
    end_ms: int = ms_field(default=0)
    created_at: int = ms_field(default_factory=now_ms)
