"""Transcript routes: exports of any version, the version list, re-transcription, vocabulary.

Exports are rendered by the worker when a version is finished (json, vtt, srt, txt) and
served from the object store; this process never loads a model or the transcribe package.
"""
from __future__ import annotations

from typing import Any, Literal, Optional

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field, field_validator
from sqlmodel import select

from core import audit
from core.db import session_scope
from core.errors import InvalidState, NotFound
from core.limits import MAX_TIMELINE_MS, MODEL_CHARS, TERM_CHARS, TERMS
from core.http import CurrentPrincipal
from core.models import Chunk, OrgVocabulary, TranscriptVersion
from core.models.transcript import check_audio_kept, check_retranscribable, check_span
from core.models._types import now_ms
from core.queue import enqueue
from core.ratelimit import charge
from core.access import Action, recording_for, require
from review_api.deps import BrokerDep, EngineDep, StoreDep

router = APIRouter(prefix="/v1", tags=["transcripts"])

MEDIA_TYPES = {"json": "application/json", "vtt": "text/vtt; charset=utf-8",
               "srt": "application/x-subrip; charset=utf-8", "txt": "text/plain; charset=utf-8"}


class VersionPublic(BaseModel):
    version: int
    model: str
    status: str
    is_current: bool
    params: dict[str, Any]
    span_start_ms: Optional[int] = None
    span_end_ms: Optional[int] = None
    audio_ms: int
    time_taken_ms: int
    segment_count: int
    created_at: int
    finished_at: Optional[int] = None
    error: Optional[str] = None


class RetranscribeRequest(BaseModel):
    model: Optional[str] = Field(None, max_length=MODEL_CHARS, description="CTranslate2 dir or cached model name")
    beam_size: Optional[int] = Field(None, ge=1, le=10)
    start_ms: Optional[int] = Field(None, ge=0, le=MAX_TIMELINE_MS)
    end_ms: Optional[int] = Field(None, gt=0, le=MAX_TIMELINE_MS)


class Vocabulary(BaseModel):
    terms: list[str] = Field(default_factory=list, max_length=TERMS)

    @field_validator("terms")
    @classmethod
    def _terms(cls, v: list[str]) -> list[str]:
        clean = [t.strip() for t in v if t and t.strip()]
        if any(len(t) > TERM_CHARS for t in clean):
            raise ValueError(f"each term is at most {TERM_CHARS} characters")
        return list(dict.fromkeys(clean))


def _servable(v: TranscriptVersion) -> bool:
    """Final versions, and a live one once the worker has published its first exports."""
    return v.status == "final" or (v.status == "live" and bool(v.exports))


def _pick_version(versions: list[TranscriptVersion], number: int | None) -> TranscriptVersion:
    """The asked-for version, else the current one, else the live one (interview running)."""
    if number is not None:
        found = next((v for v in versions if v.version == number), None)
        if found is None:
            raise NotFound(f"transcript version {number} not found", code="unknown_version")
        if not _servable(found):
            raise InvalidState(f"transcript version {number} is {found.status}", code="transcript_not_ready")
        return found
    current = next((v for v in versions if v.is_current), None)
    if current is None:
        current = next((v for v in versions if v.status == "live" and _servable(v)), None)
    if current is None:
        raise InvalidState("the transcript is not ready yet", code="transcript_not_ready")
    return current


@router.get("/recordings/{recording_id}/transcript")
def get_transcript(recording_id: str, principal: CurrentPrincipal, engine: EngineDep, store: StoreDep,
                   format: Literal["json", "vtt", "srt", "txt"] = "json",
                   version: Optional[int] = Query(None, ge=1)) -> Response:
    """The current (or a given) transcript version as JSON, WebVTT, SRT or plain text.

    While the interview is still running, the transcript so far (`X-Transcript-Status: live`,
    and `"status": "live"` in JSON); it grows chunk by chunk until the final version."""
    with session_scope(engine) as s:
        rec = recording_for(s, principal, Action.READ_TRANSCRIPT, recording_id)
        versions = list(s.exec(select(TranscriptVersion).where(TranscriptVersion.recording_id == rec.id)).all())
    chosen = _pick_version(versions, version)
    key = (chosen.exports or {}).get(format)
    if not key:
        raise InvalidState(f"no {format} export for version {chosen.version}", code="transcript_not_ready")
    body = store.get_bytes(key)
    audit.record(engine, org=rec.org, action=audit.TRANSCRIPT_READ, actor=principal, object_type="recording",
                 object_id=rec.id, detail={"format": format, "version": chosen.version, "status": chosen.status,
                                           "bytes": len(body)})
    return Response(body, media_type=MEDIA_TYPES[format], headers={
        "Content-Disposition": f'inline; filename="{rec.id}-v{chosen.version}.{format}"',
        "X-Transcript-Version": str(chosen.version), "X-Transcript-Status": chosen.status,
        "Cache-Control": "no-store" if chosen.status == "live" else "private, max-age=60"})


@router.get("/recordings/{recording_id}/transcript/versions", response_model=list[VersionPublic])
def list_versions(recording_id: str, principal: CurrentPrincipal, engine: EngineDep) -> list[VersionPublic]:
    """Every transcript version of a recording, oldest first (model, params, time taken)."""
    with session_scope(engine) as s:
        rec = recording_for(s, principal, Action.READ_TRANSCRIPT, recording_id)
        rows = s.exec(select(TranscriptVersion).where(TranscriptVersion.recording_id == rec.id)
                      .order_by(TranscriptVersion.version)).all()
        out = [VersionPublic.model_validate({**r.model_dump(), "params": r.params or {}}) for r in rows]
    audit.record(engine, org=rec.org, action=audit.TRANSCRIPT_VERSIONS, actor=principal, object_type="recording",
                 object_id=rec.id, detail={"count": len(out)})
    return out


@router.post("/recordings/{recording_id}/transcript/versions", status_code=202)
def retranscribe(recording_id: str, body: RetranscribeRequest, principal: CurrentPrincipal,
                 engine: EngineDep, broker: BrokerDep, request: Request) -> dict[str, Any]:
    """Queue a new transcript version (another model, or only a span); the old one stays."""
    check_span(body.start_ms, body.end_ms)
    with session_scope(engine) as s:
        rec = recording_for(s, principal, Action.RETRANSCRIBE, recording_id)
        check_retranscribable(rec.status)
        check_audio_kept(len(s.exec(select(Chunk.id).where(Chunk.recording_id == rec.id, Chunk.status == "stored",
                                                           Chunk.object_key != "")).all()))
    charge(request.app.state, principal, "retranscribe")
    message_id = enqueue(broker, "retranscribe_recording", rec.id, **body.model_dump(exclude_none=True))
    audit.record(engine, org=rec.org, action=audit.RETRANSCRIBE, actor=principal, object_type="recording",
                 object_id=rec.id, detail={**body.model_dump(exclude_none=True), "message_id": message_id})
    return {"status": "queued", "recording_id": rec.id, "message_id": message_id}


@router.get("/vocabulary", response_model=Vocabulary)
def get_vocabulary(principal: CurrentPrincipal, engine: EngineDep) -> Vocabulary:
    """The org's vocabulary hints (terms passed to the model for every interview)."""
    require(principal, Action.READ_VOCABULARY)
    with session_scope(engine) as s:
        row = s.get(OrgVocabulary, principal.org)
    return Vocabulary(terms=(row.terms or []) if row else [])


@router.put("/vocabulary", response_model=Vocabulary)
def put_vocabulary(body: Vocabulary, principal: CurrentPrincipal, engine: EngineDep) -> Vocabulary:
    """Replace the org's vocabulary hints (used by transcriptions started afterwards)."""
    require(principal, Action.MANAGE_VOCABULARY)
    with session_scope(engine) as s:
        row = s.get(OrgVocabulary, principal.org) or OrgVocabulary(org=principal.org)
        before = list(row.terms or [])
        row.terms, row.updated_by, row.updated_at = body.terms, principal.sub, now_ms()
        s.add(row)
        audit.record(engine, org=principal.org, action=audit.VOCABULARY_CHANGE, actor=principal, object_type="org",
                     object_id=principal.org, session=s, detail={
                         "terms": len(body.terms), "added": [t for t in body.terms if t not in before],
                         "removed": [t for t in before if t not in body.terms]})
    return body
