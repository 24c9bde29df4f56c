"""REST bodies of the room service (create, token, detail)."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.access import CALL_ROLES
from core.limits import CALL_NAME_CHARS, ID_CHARS, ID_PATTERN, REASON_CHARS, TERM_CHARS, TERMS, TITLE_CHARS

Id = Field(min_length=1, max_length=ID_CHARS, pattern=ID_PATTERN)
JOIN_ROLES = CALL_ROLES
Term = Annotated[str, Field(min_length=1, max_length=TERM_CHARS)]


class RoomCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slot_id: str = Id
    candidate_id: str = Id
    record: bool = True
    layout: Literal["grid", "speaker", "client"] = "grid"
    vocabulary: list[Term] = Field(default_factory=list, max_length=TERMS)
    title: str = Field(default="", max_length=TITLE_CHARS)


class RoomPublic(BaseModel):
    id: str
    org: str
    slot_id: str
    candidate_id: str
    state: str
    record: bool
    layout: str
    title: str
    vocabulary: list[str]
    created_at: int
    state_changed_at: int
    started_at: int | None = None
    ended_at: int | None = None
    end_reason: str | None = None


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    participant_id: str = Id
    role: Literal[JOIN_ROLES] = "candidate"  # type: ignore[valid-type]
    display_name: str = Field(default="", max_length=CALL_NAME_CHARS)


class TokenPublic(BaseModel):
    token: str
    expires_at: int
    room_id: str
    participant_id: str
    role: str
    ws_url: str
    ice_servers: list[dict[str, Any]]


class Participant(BaseModel):
    participant_id: str
    role: str
    display_name: str
    connected: bool


class Session(BaseModel):
    participant_id: str
    instance_id: str
    role: str
    display_name: str
    joined_at: int
    left_at: int | None = None
    leave_reason: str | None = None
    reconnects: int = 0


class Transition(BaseModel):
    from_state: str | None
    to_state: str
    reason: str
    actor: str
    at: int


class RoomDetail(RoomPublic):
    participants: list[Participant]
    history: list[Session]
    transitions: list[Transition]


class EndRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="ended_by_host", max_length=REASON_CHARS, pattern=r"^[a-z_]+$")
