"""Recording create (idempotent), detail and ledger views."""
from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from core.access import Action, require
from core.auth import Principal
from core.db import session_scope
from core.errors import InvalidInput
from core.models import Chunk, MediaGap, ProcessingStep, Recording, RejectedChunk, Track
from core.timeline import to_timeline
from ingest.ledger import CauseSpan, ChunkSpan, build_track_ledger, label_gaps, participant_sources
from ingest.schemas import ChunkPublic, RecordingCreate, RecordingPublic, TrackPublic
from ingest.service import Ingest


def client_key_for(body: RecordingCreate, idempotency_key: str | None) -> str:
    """The idempotency key: header, explicit client_key, or (room_id, source)."""
    if idempotency_key:
        return f"idem:{idempotency_key.strip()[:200]}"
    if body.client_key:
        return f"key:{body.client_key}"
    if body.room_id:
        return f"room:{body.room_id}:{body.source}"
    raise InvalidInput("send an Idempotency-Key header, a client_key or a room_id", code="missing_idempotency_key")


def create_recording(ing: Ingest, principal: Principal, body: RecordingCreate,
                     idempotency_key: str | None) -> tuple[RecordingPublic, bool]:
    require(principal, Action.CREATE_RECORDING)
    key = client_key_for(body, idempotency_key)
    for _ in range(2):
        with session_scope(ing.engine) as s:
            existing = s.exec(select(Recording).where(Recording.org == principal.org,
                                                      Recording.client_key == key)).first()
            if existing is not None:
                _add_tracks(s, existing.id, body)
                return recording_public(s, existing), False
        try:
            with session_scope(ing.engine) as s:
                rec = Recording(org=principal.org, client_key=key, room_id=body.room_id, source=body.source,
                                layout=body.layout, title=body.title, vocabulary=body.vocabulary,
                                created_by=principal.sub)
                s.add(rec)
                s.flush()
                _add_tracks(s, rec.id, body)
                return recording_public(s, rec), True
        except IntegrityError:
            continue  # a concurrent create won: read theirs
    raise InvalidInput("could not create recording", code="create_race")


def _add_tracks(s: Session, recording_id: str, body: RecordingCreate) -> None:
    have = {t.track_id for t in s.exec(select(Track).where(Track.recording_id == recording_id)).all()}
    for t in body.tracks:
        if t.track_id not in have:
            s.add(Track(recording_id=recording_id, **t.model_dump()))
            have.add(t.track_id)
    s.flush()


def recording_public(s: Session, rec: Recording) -> RecordingPublic:
    tracks = s.exec(select(Track).where(Track.recording_id == rec.id).order_by(Track.id)).all()
    steps = s.exec(select(ProcessingStep).where(ProcessingStep.recording_id == rec.id)
                   .order_by(ProcessingStep.step)).all()
    return RecordingPublic(
        id=rec.id, org=rec.org, room_id=rec.room_id, source=rec.source, layout=rec.layout, title=rec.title,
        status=rec.status, created_at=rec.created_at, started_at_ms=rec.started_at_ms,
        finalized_at=rec.finalized_at, ready_at=rec.ready_at, error=rec.error, vocabulary=rec.vocabulary or [],
        tracks=[TrackPublic(track_id=t.track_id, participant_id=t.participant_id, display_name=t.display_name,
                            role=t.role, kind=t.kind) for t in tracks],  # type: ignore[arg-type]
        steps=[{"step": st.step, "status": st.status, "progress": st.progress, "error": st.error,
                "attempts": st.attempts} for st in steps],
        outputs=rec.outputs or {})


def chunk_public(chunk: Chunk, recording_start_ms: int | None, duplicate: bool = False) -> ChunkPublic:
    start = recording_start_ms if recording_start_ms is not None else chunk.start_ms
    return ChunkPublic(recording_id=chunk.recording_id, track_id=chunk.track_id, seq=chunk.seq,
                       start_ms=to_timeline(chunk.start_ms, start), start_epoch_ms=chunk.start_ms,
                       duration_ms=chunk.duration_ms, bytes=chunk.size, sha256=chunk.sha256,
                       container=chunk.container, continuation=chunk.continuation, status=chunk.status,
                       duplicate=duplicate)


def ledger(ing: Ingest, principal: Principal, recording_id: str) -> dict[str, Any]:
    """Per track: chunks received, gaps with cause, covered seconds. Per participant of a bot
    recording reconciled with the room's client recording (`sources`): which source plays
    each second, the client's measured offset and the plan's spans (empty until media.final)."""
    with session_scope(ing.engine) as s:
        rec = ing.get_recording(s, principal, recording_id, Action.READ_LEDGER)
        return ledger_of(s, rec)


def gap_causes(s: Session, rec: Recording) -> dict[str, list[CauseSpan]]:
    """Reported reasons for missing media (`MediaGap` rows), per participant, on the timeline."""
    start = rec.started_at_ms or 0
    out: dict[str, list[CauseSpan]] = {}
    for g in s.exec(select(MediaGap).where(MediaGap.recording_id == rec.id).order_by(MediaGap.start_ms)).all():
        out.setdefault(g.participant_id, []).append(
            CauseSpan(to_timeline(g.start_ms, start), to_timeline(g.end_ms, start), g.cause))
    return out


def ledger_of(s: Session, rec: Recording) -> dict[str, Any]:
    """The ledger of a recording the caller may read (see `ledger`)."""
    tracks = s.exec(select(Track).where(Track.recording_id == rec.id).order_by(Track.id)).all()
    chunks = s.exec(select(Chunk).where(Chunk.recording_id == rec.id, Chunk.status == "stored")).all()
    rejected = s.exec(select(RejectedChunk).where(RejectedChunk.recording_id == rec.id)).all()
    causes = gap_causes(s, rec)
    start = rec.started_at_ms or 0
    out = []
    for t in tracks:
        mine = sorted((c for c in chunks if c.track_id == t.track_id), key=lambda c: c.seq)
        spans = [ChunkSpan(c.seq, to_timeline(c.start_ms, start), c.duration_ms) for c in mine]
        bad = [r for r in rejected if r.track_id == t.track_id]
        tl = build_track_ledger(spans, [r.seq for r in bad])
        gaps = label_gaps(tl.gaps, causes.get(t.participant_id, ()))
        out.append({"track_id": t.track_id, "participant_id": t.participant_id, "role": t.role, "kind": t.kind,
                    "chunks": [chunk_public(c, start).model_dump() for c in mine],
                    "rejected": [{"seq": r.seq, "sha256": r.sha256, "bytes": r.size, "reason": r.reason,
                                  "quarantine_key": r.object_key} for r in bad],
                    "gaps": [g.to_dict() for g in gaps], "missing_seqs": tl.missing_seqs,
                    "covered_seconds": tl.covered_seconds, "complete": not tl.gaps})
    outputs = rec.outputs or {}
    return {"recording_id": rec.id, "status": rec.status, "started_at_ms": rec.started_at_ms,
            "tracks": out, "complete": all(t["complete"] for t in out),
            "sources": participant_sources(outputs.get("sources") or {}, int(outputs.get("duration_ms") or 0))}
