"""Request and response bodies of the ingest API."""
from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, Field

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"


class TrackDeclare(BaseModel):
    track_id: str = Field(pattern=ID_PATTERN)
    participant_id: str = Field("", max_length=128)
    display_name: str = Field("", max_length=256)
    role: str = Field("participant", pattern=r"^[a-z_]{1,32}$")
    kind: Literal["audio", "video", "av", "composite"] = "av"


class RecordingCreate(BaseModel):
    room_id: Optional[str] = Field(None, pattern=ID_PATTERN)
    source: Literal["client", "bot"] = "client"
    client_key: Optional[str] = Field(None, min_length=1, max_length=200)
    layout: Literal["grid", "speaker", "client"] = "grid"
    title: str = Field("", max_length=256)
    vocabulary: list[str] = Field(default_factory=list, max_length=200)
    tracks: list[TrackDeclare] = Field(default_factory=list, max_length=32)


class TrackPublic(TrackDeclare):
    pass


class RecordingPublic(BaseModel):
    id: str
    org: str
    room_id: Optional[str]
    source: str
    layout: str
    title: str
    status: str
    created_at: int
    started_at_ms: Optional[int]
    finalized_at: Optional[int]
    ready_at: Optional[int]
    error: Optional[str]
    vocabulary: list[str]
    tracks: list[TrackPublic]
    steps: list[dict[str, Any]] = Field(default_factory=list)
    outputs: dict[str, Any] = Field(default_factory=dict)


class ChunkPublic(BaseModel):
    recording_id: str
    track_id: str
    seq: int
    start_ms: int = Field(description="on the recording timeline (ms from its start)")
    start_epoch_ms: int
    duration_ms: Optional[int]
    bytes: int
    sha256: str
    container: str
    continuation: bool
    status: str
    duplicate: bool = False


class UploadTokenRequest(BaseModel):
    participant_id: str = Field(pattern=ID_PATTERN)
    ttl_s: int = Field(4 * 3600, gt=0, le=24 * 3600)


class TokenPublic(BaseModel):
    token: str
    expires_in: int
