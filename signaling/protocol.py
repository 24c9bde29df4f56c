"""The signaling wire protocol: typed JSON messages with a version field.

Pure pydantic (no FastAPI, no Redis) so browsers' tests, the server and the recording
bot share one definition. Every frame is one JSON object `{"v": 1, "type": ..., ...}`.

Client → server: join, signal, restart, ping, pong, report, end, leave.
Server → client: joined, participant_joined, participant_left, signal, restart, ping,
pong, end, error. Messages the server routes to a participant carry `seq` (per
participant, increasing) so a resumed connection can say what it already has.

SDP (`description`) and ICE (`candidate`) payloads are relayed untouched; the server
only sets `from`. Close codes (4xxx) mirror the HTTP status of the same failure.
"""
from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

PROTOCOL_VERSION = 1
ROOM_EVENTS_CHANNEL = "recorder:room-events"
ROOM_EVENTS_STREAM = "recorder:room-events:log"

CLOSE_NORMAL = 1000
CLOSE_TRY_AGAIN = 1013
CLOSE_SUPERSEDED = 4000
CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_HEARTBEAT = 4408
CLOSE_ALREADY_IN_ROOM = 4409
CLOSE_ROOM_ENDED = 4410
CLOSE_TOO_SLOW = 4429

HIDDEN_ROLES = frozenset({"recorder"})
REPORT_PHASES = ("ice_connected", "ice_disconnected", "ice_failed", "ice_restart", "media_flowing",
                 "media_frozen", "reconnecting")
Id = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")]


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    v: Literal[1] = PROTOCOL_VERSION
    seq: int | None = None

    def dumps(self) -> str:
        """Compact JSON, `None` fields left out, `from` spelled as on the wire."""
        return self.model_dump_json(by_alias=True, exclude_none=True)


class ParticipantInfo(BaseModel):
    participant_id: str
    role: str
    display_name: str = ""
    connected: bool = True


class Join(_Message):
    """First message on a socket; the same `instance_id` reconnecting resumes."""

    type: Literal["join"] = "join"
    instance_id: Id
    last_seq: int | None = Field(default=None, ge=0)


class Joined(_Message):
    type: Literal["joined"] = "joined"
    room_id: str
    participant_id: str
    instance_id: str
    resumed: bool = False
    participants: list[ParticipantInfo] = Field(default_factory=list)
    last_seq: int = 0
    heartbeat_s: float = 2.5
    resume_token: str | None = None


class ParticipantJoined(_Message):
    type: Literal["participant_joined"] = "participant_joined"
    participant: ParticipantInfo
    resumed: bool = False


class ParticipantLeft(_Message):
    type: Literal["participant_left"] = "participant_left"
    participant_id: str
    reason: str = "left"


class Signal(_Message):
    """SDP or ICE for one peer; exactly one of `description` / `candidate`."""

    type: Literal["signal"] = "signal"
    to: Id
    from_: str | None = Field(default=None, alias="from")
    description: dict[str, Any] | None = None
    candidate: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one_payload(self) -> Signal:
        if (self.description is None) == (self.candidate is None):
            raise ValueError("signal needs exactly one of description or candidate")
        return self

    @property
    def sdp_type(self) -> str | None:
        """`offer`, `answer`… for descriptions (used for join-phase logs)."""
        kind = (self.description or {}).get("type")
        return kind if isinstance(kind, str) else None


class Restart(_Message):
    """Ask a peer to tear down and rebuild its peer connection."""

    type: Literal["restart"] = "restart"
    to: Id
    from_: str | None = Field(default=None, alias="from")


class Ping(_Message):
    """Heartbeat. From the server it may carry a renewed `resume_token` (long calls)."""

    type: Literal["ping"] = "ping"
    ts: float | None = None
    resume_token: str | None = None


class Pong(_Message):
    type: Literal["pong"] = "pong"
    ts: float | None = None


class Report(_Message):
    """A client-side join phase (ICE connected, media flowing…) for the logs."""

    type: Literal["report"] = "report"
    phase: Literal[REPORT_PHASES]  # type: ignore[valid-type]
    detail: str | None = Field(default=None, max_length=256)


class End(_Message):
    """Client: end the room for everyone. Server: the room has ended."""

    type: Literal["end"] = "end"
    reason: str | None = Field(default=None, max_length=64)


class Leave(_Message):
    """Leave for good (no resume)."""

    type: Literal["leave"] = "leave"


class Error(_Message):
    type: Literal["error"] = "error"
    code: str
    message: str = ""
    retry_after: float | None = None


AnyMessage = Annotated[Join | Joined | ParticipantJoined | ParticipantLeft | Signal | Restart | Ping | Pong | Report | End | Leave | Error, Field(discriminator="type")]
_ANY = TypeAdapter(AnyMessage)
CLIENT_TYPES = frozenset({"join", "signal", "restart", "ping", "pong", "report", "end", "leave"})
SERVER_TYPES = frozenset({"joined", "participant_joined", "participant_left", "signal", "restart", "ping",
                          "pong", "end", "error"})


class ProtocolError(ValueError):
    """A frame that is not a valid message; `code` goes into the error frame."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def decode(raw: str | bytes) -> dict[str, Any]:
    """JSON text → object, or `ProtocolError(malformed_json)`."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError("malformed_json", f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ProtocolError("malformed_json", "a message is a JSON object")
    return data


def is_bare_pong(data: dict[str, Any]) -> bool:
    """A heartbeat answer needs no validation beyond its shape (hot path)."""
    return data.get("type") == "pong" and data.get("v", PROTOCOL_VERSION) == PROTOCOL_VERSION \
        and data.keys() <= {"v", "type", "ts"}


def parse(raw: str | bytes | dict[str, Any], allowed: frozenset[str] = CLIENT_TYPES) -> Any:
    """Decode one frame (or its decoded object) into its message class, or raise `ProtocolError`."""
    data = raw if isinstance(raw, dict) else decode(raw)
    if data.get("v", PROTOCOL_VERSION) != PROTOCOL_VERSION:
        raise ProtocolError("unsupported_version", f"protocol version {PROTOCOL_VERSION} only")
    kind = data.get("type")
    if kind not in allowed:
        raise ProtocolError("unknown_type", f"unknown message type {kind!r}")
    try:
        return _ANY.validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"][1:]) or kind
        raise ProtocolError("invalid_message", f"{where}: {first['msg']}") from None


def parse_server(raw: str | bytes) -> Any:
    """Decode a frame sent by the server (clients and the bot use this)."""
    return parse(raw, SERVER_TYPES)


def is_hidden(role: str) -> bool:
    """Hidden participants receive everything but are never announced."""
    return role in HIDDEN_ROLES
