"""Request and response bodies of the ingest API."""
from __future__ import annotations

from typing import Annotated, Any, Literal, Optional

from pydantic import BaseModel, Field

from core.limits import (ID_CHARS, ID_PATTERN, KEY_CHARS, NAME_CHARS, ROLE_PATTERN, TERM_CHARS, TERMS, TITLE_CHARS,
                         TRACKS)

Term = Annotated[str, Field(max_length=TERM_CHARS)]


class TrackDeclare(BaseModel):
    track_id: str = Field(pattern=ID_PATTERN)
    participant_id: str = Field("", max_length=ID_CHARS)
    display_name: str = Field("", max_length=NAME_CHARS)
    role: str = Field("participant", pattern=ROLE_PATTERN)
    kind: Literal["audio", "video", "av", "composite"] = "av"


class RecordingCreate(BaseModel):
    room_id: Optional[str] = Field(None, pattern=ID_PATTERN)
    source: Literal["client", "bot"] = "client"
    client_key: Optional[str] = Field(None, min_length=1, max_length=KEY_CHARS)
    layout: Literal["grid", "speaker", "client"] = "grid"
    title: str = Field("", max_length=TITLE_CHARS)
    vocabulary: list[Term] = Field(default_factory=list, max_length=TERMS)
    tracks: list[TrackDeclare] = Field(default_factory=list, max_length=TRACKS)


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
    role: str = Field("candidate", pattern=ROLE_PATTERN, description="role of the tracks this token creates")
    display_name: str = Field("", max_length=NAME_CHARS, description="display name of the tracks this token creates")
    ttl_s: Optional[int] = Field(None, gt=0, le=7 * 24 * 3600,
                                 description="lifetime in seconds (default RECORDER_UPLOAD_TOKEN_TTL_S); clamped "
                                 "to RECORDER_UPLOAD_TOKEN_MAX_TTL_S, the answer's expires_in says what was given")


class TokenPublic(BaseModel):
    token: str
    expires_in: int
