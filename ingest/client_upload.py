"""`POST /v1/rooms/{room_id}/client-upload`: a call participant records itself.

The call page (`/call/{room}`) holds only the participant's join token. With it, this
route gets or makes the room's *client* recording — `client_key` `room:{room}:client`,
source `client`, the same recording `POST /v1/recordings` names by `(room_id, "client")`
— declares the caller's track and mints an upload token for the caller's participant
only. The bot's recording of the room (source `bot`) stays a separate recording: two
sources per participant (ARCHITECTURE "Trust"). The recording belongs to the room's
creator (so the interviewer who made the room sees it); idle ones finalize on their own.

    200  {recording_id, track_id, status, token, expires_in, chunk_ms}
    403  not a join token (`wrong_scope`), another room's (`wrong_room`), the recorder
    404  unknown room · 422 room ended, not recorded, or its client recording is closed
"""
from __future__ import annotations

import re

from fastapi import APIRouter, Request
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from core import audit, keys
from core.access import Action, require
from core.auth import Principal, mint_token
from core.db import session_scope
from core.errors import Forbidden, InvalidInput, InvalidState, NotFound
from core.http import CurrentPrincipal
from core.models import Recording, Room, Track
from core.ratelimit import charge
from ingest.routes import IngestDep

router = APIRouter(prefix="/v1", tags=["ingest"])
CHUNK_MS = 30_000  # the browser rotates its MediaRecorder this often (each blob a whole file)
_BAD_TRACK_CHARS = re.compile(r"[^A-Za-z0-9_.-]")


class ClientUpload(BaseModel):
    recording_id: str
    track_id: str
    status: str
    token: str
    expires_in: int
    chunk_ms: int = CHUNK_MS


def client_key(room_id: str) -> str:
    """The key `POST /v1/recordings` gives `(room_id, source="client")`."""
    return f"room:{room_id}:client"


def client_track_id(participant_id: str) -> str:
    """The participant's one client track (camera + microphone in one blob)."""
    base = _BAD_TRACK_CHARS.sub("_", participant_id).replace("..", "_").strip("._-") or "participant"
    return f"{base[:100]}-av"


@router.post("/rooms/{room_id}/client-upload", response_model=ClientUpload)
def open_client_upload(room_id: str, who: CurrentPrincipal, ing: IngestDep, request: Request) -> ClientUpload:
    """The room's client recording + an upload token for the caller's own track (join tokens only)."""
    if who.scope != "join":  # API tokens (even an admin's) name no participant of a call
        raise Forbidden("a client upload is opened with the participant's join token", code="wrong_scope")
    require(who, Action.OPEN_CLIENT_UPLOAD)
    keys.check_id(room_id, "room_id")
    if who.room_id != room_id:
        raise Forbidden("this join token is for another room", code="wrong_room")
    if who.role == "recorder" or not who.participant_id:
        raise Forbidden("the recorder uploads through its own recording", code="wrong_role")
    charge(request.app.state, who, "token")
    for _ in range(2):
        try:
            with session_scope(ing.engine) as s:
                rec_id, status, track_id = _open(s, who, room_id)
            break
        except IntegrityError:
            continue  # a concurrent first call made the recording or the track: read theirs
    else:
        raise InvalidInput("could not open the client recording", code="create_race")
    if status != "recording":
        raise InvalidState(f"the room's client recording is {status}", code="recording_closed")
    settings = request.app.state.settings
    ttl_s = min(settings.upload_token_ttl_s, settings.upload_token_max_ttl_s)
    token = mint_token(settings.jwt_secret, sub=who.participant_id, org=who.org, role="candidate", ttl_s=ttl_s,
                       scope="upload", issuer=settings.jwt_issuer, recording_id=rec_id,
                       participant_id=who.participant_id, track_role=who.role,
                       display_name=str(who.claims.get("display_name") or "") or None)
    audit.record(ing.engine, org=who.org, action=audit.TOKEN_MINT, actor=who, object_type="recording",
                 object_id=rec_id, detail={"scope": "upload", "participant_id": who.participant_id,
                                           "role": who.role, "ttl_s": ttl_s, "via": "join"})
    return ClientUpload(recording_id=rec_id, track_id=track_id, status=status, token=token, expires_in=ttl_s)


def _open(s: Session, who: Principal, room_id: str) -> tuple[str, str, str]:
    """`(recording_id, status, track_id)`: the room's client recording with the caller's track."""
    room = s.get(Room, room_id)
    if room is None or room.org != who.org:
        raise NotFound(f"no room {room_id}", code="room_not_found")
    if room.state == "ended":
        raise InvalidState("the room has ended", code="room_ended")
    if not room.record:
        raise InvalidState("this room is not recorded", code="not_recorded")
    key = client_key(room_id)
    rec = s.exec(select(Recording).where(Recording.org == who.org, Recording.client_key == key)).first()
    if rec is None:
        rec = Recording(org=who.org, client_key=key, room_id=room_id, source="client", layout=room.layout,
                        title=room.title, vocabulary=list(room.vocabulary or []), created_by=room.created_by)
        s.add(rec)
        s.flush()
    track_id = client_track_id(who.participant_id or "")
    if s.exec(select(Track).where(Track.recording_id == rec.id, Track.track_id == track_id)).first() is None:
        s.add(Track(recording_id=rec.id, track_id=track_id, participant_id=who.participant_id or "",
                    role=who.role, display_name=str(who.claims.get("display_name") or "")[:256], kind="av"))
        s.flush()
    return rec.id, rec.status, track_id
