"""`GET /v1/recordings`: the recordings a caller may see, newest first, filtered in SQL.

Visibility is `core.access.visible_sql` (the same condition as the detail route and
search), so a page never holds what the caller may not open. Pagination is by cursor
(`created_at`, `id` of the last item), stable while new recordings arrive.

Filters: status, participant (id), role (of any track), room, from/to (created), `q`
(text in the title or a participant's name or id), `mine` (created by or took part in).

Audit: a page is metadata the policy already lets the caller see, and the recordings page
polls it while items process, so plain listing writes no audit event; looking a person up
(`q` or `participant`) does (`recordings.list`: the filters and the recording ids found).
"""
from __future__ import annotations

import base64
import binascii
import json
from typing import Any, Literal, Optional

from fastapi import APIRouter, Query
from pydantic import BaseModel
from sqlalchemy import text
from sqlmodel import select

from core import audit
from core.access import Action, require_in_org, visible_sql
from core.db import session_scope
from core.errors import InvalidInput
from core.http import CurrentPrincipal
from core.models import ProcessingStep, Track
from review_api.deps import EngineDep
from review_api.search import parse_when

router = APIRouter(prefix="/v1", tags=["recordings"])
MAX_PAGE = 100
STATUSES = ("recording", "processing", "ready", "failed")


class ParticipantPublic(BaseModel):
    participant_id: str
    display_name: str
    role: str


class RecordingItem(BaseModel):
    id: str
    title: str
    status: str
    room_id: Optional[str] = None
    created_at: int
    started_at_ms: Optional[int] = None
    ready_at: Optional[int] = None
    duration_ms: Optional[int] = None
    error: Optional[str] = None
    progress: float  # share of processing steps done (1.0 when ready)
    mine: bool  # the caller created it or took part in it
    participants: list[ParticipantPublic]
    link: str


class RecordingPage(BaseModel):
    items: list[RecordingItem]
    next_cursor: Optional[str] = None


def encode_cursor(created_at: int, rec_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at}:{rec_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        created, _, rec_id = raw.partition(":")
        if not created.isascii() or not created.isdigit() or len(created) > 16 or not rec_id:
            raise ValueError(raw)
        return int(created), rec_id
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise InvalidInput("cursor is not one this API gave out", code="bad_cursor") from None


def _filters(params: dict[str, Any], status: Optional[str], participant: Optional[str], role: Optional[str],
             room: Optional[str], from_ms: Optional[int], to_ms: Optional[int], q: Optional[str],
             mine: bool) -> list[str]:
    where = []
    if status:
        where.append("r.status = :f_status")
        params["f_status"] = status
    if participant:
        where.append("EXISTS (SELECT 1 FROM track f_t WHERE f_t.recording_id = r.id AND f_t.participant_id = :f_part)")
        params["f_part"] = participant
    if role:
        where.append("EXISTS (SELECT 1 FROM track f_r WHERE f_r.recording_id = r.id AND f_r.role = :f_role)")
        params["f_role"] = role
    if room:
        where.append("r.room_id = :f_room")
        params["f_room"] = room
    if from_ms is not None:
        where.append("r.created_at >= :f_from")
        params["f_from"] = from_ms
    if to_ms is not None:
        where.append("r.created_at < :f_to")
        params["f_to"] = to_ms
    if q:
        like = "%" + q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        where.append("(lower(r.title) LIKE :f_q ESCAPE '\\' OR EXISTS (SELECT 1 FROM track f_q WHERE "
                     "f_q.recording_id = r.id AND (lower(f_q.display_name) LIKE :f_q ESCAPE '\\' "
                     "OR lower(f_q.participant_id) LIKE :f_q ESCAPE '\\')))")
        params["f_q"] = like
    if mine:
        where.append(_MINE)
    return where


_MINE = ("(r.created_by = :acc_sub OR EXISTS (SELECT 1 FROM track m_t WHERE m_t.recording_id = r.id "
         "AND m_t.participant_id = :acc_sub) OR EXISTS (SELECT 1 FROM room m_room WHERE m_room.id = r.room_id "
         "AND m_room.created_by = :acc_sub))")


@router.get("/recordings", response_model=RecordingPage)
def list_recordings(
    principal: CurrentPrincipal, engine: EngineDep,
    status: Optional[Literal["recording", "processing", "ready", "failed"]] = None,
    participant: Optional[str] = Query(None, max_length=128, description="a participant id"),
    role: Optional[str] = Query(None, max_length=32, pattern=r"^[a-z_]{1,32}$", description="a track's role"),
    room: Optional[str] = Query(None, max_length=64),
    from_: Optional[str] = Query(None, alias="from", max_length=64, description="created at/after (ISO or ms)"),
    to: Optional[str] = Query(None, max_length=64, description="created before (ISO or ms)"),
    q: Optional[str] = Query(None, max_length=200, description="text in the title or a participant's name"),
    mine: bool = Query(False, description="only recordings I created or took part in"),
    cursor: Optional[str] = Query(None, max_length=200),
    limit: int = Query(25, ge=1, le=MAX_PAGE),
) -> RecordingPage:
    """The recordings the caller may see, newest first (cursor pagination)."""
    with session_scope(engine) as s:
        org = require_in_org(s, principal, Action.READ_METADATA)
        cond, params = visible_sql(principal, Action.READ_METADATA, org)
        where = [cond, *_filters(params, status, participant, role, room, parse_when(from_, "from"),
                                 parse_when(to, "to"), q, mine)]
        if cursor:
            created, rec_id = decode_cursor(cursor)
            where.append("(r.created_at < :c_at OR (r.created_at = :c_at AND r.id < :c_id))")
            params.update(c_at=created, c_id=rec_id)
        sql = (f"SELECT r.id, r.title, r.status, r.room_id, r.created_at, r.started_at_ms, r.ready_at, r.error, "
               f"r.outputs, ({_MINE}) AS mine FROM recording r WHERE {' AND '.join(where)} "
               "ORDER BY r.created_at DESC, r.id DESC LIMIT :lim")
        rows = s.connection().execute(text(sql), {**params, "lim": limit + 1}).mappings().all()
        page = rows[:limit]
        ids = [r["id"] for r in page]
        tracks = s.exec(select(Track).where(Track.recording_id.in_(ids)).order_by(Track.id)).all() if ids else []
        steps = s.exec(select(ProcessingStep.recording_id, ProcessingStep.status)
                       .where(ProcessingStep.recording_id.in_(ids))).all() if ids else []
    items = [_item(r, tracks, steps) for r in page]
    if q or participant:  # a person looked up: see the module docstring
        audit.record(engine, org=principal.org, action=audit.RECORDINGS_LOOKUP, actor=principal, object_type="org",
                     object_id=principal.org, detail={"q": q, "participant": participant, "count": len(items),
                                                      "recordings": ids})
    more = len(rows) > limit
    return RecordingPage(items=items, next_cursor=encode_cursor(page[-1]["created_at"], page[-1]["id"])
                         if more and page else None)


def _item(r: Any, tracks: list[Track], steps: list[Any]) -> RecordingItem:
    mine_steps = [st for rid, st in steps if rid == r["id"]]
    progress = 1.0 if r["status"] == "ready" else (
        sum(1 for st in mine_steps if st == "done") / len(mine_steps) if mine_steps else 0.0)
    people: dict[str, ParticipantPublic] = {}
    for t in tracks:
        if t.recording_id == r["id"] and t.participant_id and t.participant_id not in people:
            people[t.participant_id] = ParticipantPublic(participant_id=t.participant_id,
                                                         display_name=t.display_name, role=t.role)
    outputs = r["outputs"]
    if isinstance(outputs, str):  # JSON columns come back as text through a raw query on SQLite
        outputs = json.loads(outputs)
    duration = (outputs or {}).get("duration_ms") if isinstance(outputs, dict) else None
    return RecordingItem(id=r["id"], title=r["title"], status=r["status"], room_id=r["room_id"],
                         created_at=r["created_at"], started_at_ms=r["started_at_ms"], ready_at=r["ready_at"],
                         duration_ms=duration, error=r["error"], progress=round(progress, 3), mine=bool(r["mine"]),
                         participants=list(people.values()), link=f"/review/{r['id']}")
