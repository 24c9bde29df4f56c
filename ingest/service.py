"""Chunk ingest: recordings, the upload flow, the ledger, finalize.

Upload flow (each step can fail without losing or duplicating anything):
  1. headers parsed, caller authorised, rate limits counted;
  2. a stored row with the same (recording, track, seq) answers now: 200 if the
     SHA-256 matches (a retry), 409 if not (the stored bytes are kept);
  3. the body is spooled to disk while hashed (413 past the limit) and checked
     against the declared SHA-256, magic bytes (415) and the media validator
     (`ingest.media.probe_file`: a structural walk, ffprobe for Ogg; a continuation blob:
     `ingest.continuation`, against its header chunk's track numbers; 422 → quarantine);
  4. the seq is *claimed* in the DB (unique row, status `uploading`) before the
     object is written, so two different bodies can never race onto one key;
  5. the object is written to its deterministic key, the row becomes `stored`. A body of
     declared length is streamed to a `_staging/` object while it is received (step 3),
     so this write is a server-side copy of bytes already hashed and length-checked;
     otherwise it is a PUT from the spool. The staging object is deleted either way;
  6. per-chunk processing is enqueued by actor name (re-tried on the next retry if
     Redis was down).
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import dramatiq
from sqlalchemy.engine import Engine
from sqlalchemy import func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from core import keys
from core.access import Action, recording_for
from core.auth import Principal, ensure_upload_open
from core.db import session_scope
from core.errors import Conflict, Forbidden, InvalidMedia, NotFound, QueueError, StorageError
from core.logging import bound, get_logger
from core.models import Chunk, ProcessingStep, Recording, RejectedChunk, Track
from core.models._types import now_ms
from core.queue import enqueue
from core.ratelimit import RateLimiter
from core.steps import FINAL_STEPS, PENDING
from core.storage import ObjectStore, StreamingPut, begin_put, copy_object
from ingest.continuation import check_continuation
from ingest.headers import ChunkHeaders
from ingest.media import check_magic, probe_file
from ingest.spool import Spooled

log = get_logger("recorder.ingest")
STAGING_PREFIX = "_staging/"  # bodies streamed to S3 while received; copied to their chunk key once checked


@dataclass
class IngestLimits:
    max_chunk_bytes: int
    chunk_rate_per_minute: int
    org_rate_per_minute: int
    quarantine_budget_bytes: int = 256 * 1024 * 1024  # per recording; past it only the row is kept


@dataclass
class Precheck:
    """What steps 1–2 learnt and the later steps reuse (saves a DB round trip each)."""

    stored: Chunk | None      # a stored chunk with the same seq (a retry: answer it now)
    org: str
    started_at_ms: int | None
    track_exists: bool
    stream_tracks: set[int] | None = None  # a continuation's stream's track numbers, if known


@dataclass
class Ingest:
    """The ingest use cases over real resources (DB, S3, Redis/Dramatiq)."""

    engine: Engine
    store: ObjectStore
    broker: dramatiq.Broker
    limiter: RateLimiter
    limits: IngestLimits

    # -- recordings -------------------------------------------------------------
    def get_recording(self, s: Session, principal: Principal, recording_id: str,
                      action: Action = Action.READ_METADATA) -> Recording:
        return recording_for(s, principal, action, recording_id)

    def authorize_upload(self, principal: Principal, track: Track | None) -> None:
        """Upload tokens write only their own participant's tracks (identity from the token)."""
        if principal.scope == "upload" and track is not None and track.participant_id != principal.participant_id:
            raise Forbidden("upload token is for another participant", code="wrong_participant")

    # -- chunk upload -----------------------------------------------------------
    def precheck(self, principal: Principal, recording_id: str, track_id: str, seq: int,
                 hdr: ChunkHeaders, declare: dict[str, str] | None) -> Precheck:
        """Steps 1–2: auth, limits, duplicates (one read-only transaction). `stored` is set for a retry."""
        keys.check_id(track_id, "track")
        with session_scope(self.engine) as s:
            rec = self.get_recording(s, principal, recording_id, Action.UPLOAD)
            ensure_upload_open(principal, rec.status)
            track = s.exec(select(Track).where(Track.recording_id == rec.id, Track.track_id == track_id)).first()
            self.authorize_upload(principal, track)
            if track is None and not declare:
                raise NotFound(f"track {track_id} not declared on recording {recording_id}", code="unknown_track")
            existing = self._chunk(s, rec.id, track_id, seq)
            pre = Precheck(stored=None, org=rec.org, started_at_ms=rec.started_at_ms, track_exists=track is not None)
            if hdr.continuation:
                pre.stream_tracks = self._stream_tracks(s, rec.id, track_id, seq)
            status = rec.status
        self.limiter.hit("chunks", recording_id, self.limits.chunk_rate_per_minute)
        self.limiter.hit("org", pre.org, self.limits.org_rate_per_minute)
        if existing is not None and existing.status == "stored":
            pre.stored = self._duplicate(existing, hdr.sha256)
            return pre
        if existing is not None and existing.sha256 != hdr.sha256:
            raise Conflict(f"seq {seq} is being uploaded with other bytes", code="chunk_conflict")
        if status != "recording":  # re-checked inside the claim's transaction
            raise Conflict("recording is finalized; no new chunks accepted", code="recording_finalized")
        return pre

    def _duplicate(self, stored: Chunk, sha256: str) -> Chunk:
        if stored.sha256 != sha256:
            raise Conflict(f"seq {stored.seq} already stored with other bytes (sha256 {stored.sha256})",
                           code="chunk_conflict", stored_sha256=stored.sha256)
        if not stored.enqueued:
            self._enqueue(stored)
        return stored

    def _chunk(self, s: Session, recording_id: str, track_id: str, seq: int) -> Chunk | None:
        return s.exec(select(Chunk).where(Chunk.recording_id == recording_id, Chunk.track_id == track_id,
                                          Chunk.seq == seq)).first()

    def store_chunk(self, principal: Principal, pre: Precheck, recording_id: str, track_id: str, seq: int,
                    hdr: ChunkHeaders, body: Spooled, declare: dict[str, str] | None) -> tuple[Chunk, bool, int | None]:
        """Steps 3–6 for a spooled body; returns (chunk, created, recording start epoch ms)."""
        with bound(recording_id=recording_id, phase="ingest"):
            if body.sha256 != hdr.sha256:
                raise _digest_mismatch(hdr.sha256, body.sha256)
            check_magic(body.head, hdr.container, hdr.continuation)
            probe = self._validate(pre.org, recording_id, track_id, seq, hdr, body, pre.stream_tracks)
            claimed = self._claim(principal, recording_id, track_id, seq, hdr, body,
                                  None if pre.track_exists else declare)
            if claimed.status == "stored":
                return self._duplicate(claimed, hdr.sha256), False, pre.started_at_ms
            key = keys.chunk_key(pre.org, recording_id, track_id, seq, hdr.container)
            self._write(key, body, hdr)
            chunk, created, started_at_ms = self._mark_stored(claimed.id, key, probe, hdr)
            if not created:
                return self._duplicate(chunk, hdr.sha256), False, started_at_ms
            self._enqueue(chunk)
            log.info("chunk_stored", track=track_id, seq=seq, bytes=body.size)
            return chunk, True, started_at_ms

    def open_staging(self, hdr: ChunkHeaders) -> StreamingPut | None:
        """A PUT to a fresh staging key that the body is fed to while it arrives (step 5 then
        copies it to the chunk key). Only for bodies of declared length within the limit."""
        length = hdr.declared_length
        if not length or length > self.limits.max_chunk_bytes:
            return None
        return begin_put(self.store, f"{STAGING_PREFIX}{uuid.uuid4().hex}", length, hdr.content_type)

    def _write(self, key: str, body: Spooled, hdr: ChunkHeaders) -> None:
        """Step 5's write: a server-side copy of the staged bytes (hashed as they were sent), else
        a PUT from the spool. Either way the chunk key gets the whole object or nothing."""
        if body.staged:
            copy_object(self.store, body.staged, key)
        else:
            self.store.put_file(key, body.path, hdr.content_type)

    def drop_staged(self, body: Spooled) -> None:
        """Delete the staging object (best effort: STAGING_PREFIX holds nothing anyone reads)."""
        if body.staged:
            try:
                self.store.delete(body.staged)
            except StorageError:
                log.warning("staging_delete_failed", key=body.staged)

    def _validate(self, org: str, recording_id: str, track_id: str, seq: int, hdr: ChunkHeaders,
                  body: Spooled, stream_tracks: set[int] | None = None) -> dict[str, Any] | None:
        try:
            if hdr.continuation:  # not playable alone: it must go on with its stream's clusters/fragments
                check_continuation(body.path, stream_tracks, hdr.container)
                return None
            return probe_file(body.path, hdr.container).summary()
        except InvalidMedia as exc:
            self._quarantine(org, recording_id, track_id, seq, hdr, body, exc.message)
            raise

    def _stream_tracks(self, s: Session, recording_id: str, track_id: str, seq: int) -> set[int] | None:
        """Track numbers of the header chunk a continuation `seq` goes on from: the latest
        non-continuation chunk before it (its stored probe), if every seq in between is a
        continuation already claimed. Otherwise (header not stored yet, a gap where a newer
        header may still arrive, a header ffprobe judged) None: the tracks go unchecked."""
        mine = (Chunk.recording_id == recording_id, Chunk.track_id == track_id, Chunk.seq < seq)
        head = s.exec(select(Chunk.seq, Chunk.probe).where(*mine, Chunk.continuation.is_(False))
                      .order_by(Chunk.seq.desc()).limit(1)).first()
        numbers = (head.probe or {}).get("track_numbers") if head is not None else None
        if not numbers:
            return None
        between = s.exec(select(func.count()).select_from(Chunk).where(*mine, Chunk.seq > head.seq)).one()
        return set(numbers) if between == seq - head.seq - 1 else None

    def _quarantine(self, org: str, recording_id: str, track_id: str, seq: int, hdr: ChunkHeaders,
                    body: Spooled, reason: str) -> None:
        key = keys.quarantine_key(org, recording_id, track_id, seq, body.sha256)
        with session_scope(self.engine) as s:
            held = s.exec(select(func.coalesce(func.sum(RejectedChunk.size), 0)).where(
                RejectedChunk.recording_id == recording_id, RejectedChunk.object_key != "")).one()
        if int(held) + body.size > self.limits.quarantine_budget_bytes:
            key, reason = "", f"{reason} (not kept: the recording's quarantine budget is used up)"
        else:
            self.store.put_file(key, body.path, "application/octet-stream")
        with session_scope(self.engine) as s:
            s.add(RejectedChunk(recording_id=recording_id, track_id=track_id, seq=seq, start_ms=hdr.start_epoch_ms,
                                duration_ms=hdr.duration_ms, size=body.size, sha256=body.sha256,
                                reason=reason[:1000], object_key=key))
        log.warning("chunk_quarantined", track=track_id, seq=seq, reason=reason)

    def _claim(self, principal: Principal, recording_id: str, track_id: str, seq: int, hdr: ChunkHeaders,
               body: Spooled, declare: dict[str, str] | None) -> Chunk:
        try:
            with session_scope(self.engine) as s:
                rec = s.get(Recording, recording_id)
                if rec is None or rec.status != "recording":
                    raise Conflict("recording is finalized; no new chunks accepted", code="recording_finalized")
                if declare:  # precheck found no such track: create it in this transaction
                    self._ensure_track(s, principal, recording_id, track_id, declare)
                # an existing row for this seq makes the insert fail: handled below
                chunk = Chunk(recording_id=recording_id, track_id=track_id, seq=seq, sha256=hdr.sha256,
                              start_ms=hdr.start_epoch_ms, duration_ms=hdr.duration_ms, size=body.size,
                              content_type=hdr.content_type, container=hdr.container,
                              continuation=hdr.continuation)
                s.add(chunk)
                s.flush()
                return chunk
        except IntegrityError:  # the seq is claimed: a concurrent upload, or an interrupted earlier one
            with session_scope(self.engine) as s:
                other = self._chunk(s, recording_id, track_id, seq)
            if other is None or other.sha256 != hdr.sha256:
                raise Conflict(f"seq {seq} already claimed with other bytes", code="chunk_conflict") from None
            return other  # same bytes: take over (or answer as a duplicate once stored)

    def _ensure_track(self, s: Session, principal: Principal, recording_id: str, track_id: str,
                      declare: dict[str, str] | None) -> None:
        if s.exec(select(Track).where(Track.recording_id == recording_id, Track.track_id == track_id)).first():
            return
        if not declare:
            raise NotFound(f"track {track_id} not declared", code="unknown_track")
        s.add(Track(recording_id=recording_id, track_id=track_id, **track_identity(principal, declare)))
        s.flush()

    def _mark_stored(self, chunk_id: int | None, key: str, probe: dict[str, Any] | None,
                     hdr: ChunkHeaders) -> tuple[Chunk, bool, int | None]:
        """uploading → stored, atomically: of two concurrent uploads of the same bytes only one
        flips the row (and answers 201); the other wrote identical bytes and answers 200.
        Returns (chunk, flipped, recording start epoch ms)."""
        with session_scope(self.engine) as s:
            flipped = s.exec(update(Chunk).where(Chunk.id == chunk_id, Chunk.status == "uploading").values(
                status="stored", object_key=key, probe=probe, stored_at=now_ms(),
                duration_ms=func.coalesce(Chunk.duration_ms, (probe or {}).get("duration_ms")))).rowcount == 1
            chunk = s.get(Chunk, chunk_id, populate_existing=True)
            assert chunk is not None
            rec = s.get(Recording, chunk.recording_id)
            assert rec is not None
            if flipped:
                rec.started_at_ms = min(rec.started_at_ms or hdr.start_epoch_ms, hdr.start_epoch_ms)
                rec.last_chunk_at = now_ms()
                s.add(rec)
            started_at_ms = rec.started_at_ms
        return chunk, flipped, started_at_ms

    def _enqueue(self, chunk: Chunk) -> None:
        try:
            enqueue(self.broker, "process_chunk", chunk.recording_id, chunk.track_id, chunk.seq)
            enqueue(self.broker, "transcribe_chunk", chunk.recording_id, chunk.track_id, chunk.seq)
        except QueueError:
            log.warning("enqueue_deferred", recording_id=chunk.recording_id, seq=chunk.seq)
            raise
        with session_scope(self.engine) as s:
            s.exec(update(Chunk).where(Chunk.id == chunk.id).values(enqueued=True))
        chunk.enqueued = True

    # -- finalize ---------------------------------------------------------------
    def finalize(self, recording_id: str, reason: str = "client") -> Recording:
        """Idempotent: the first call moves recording → processing and enqueues the final actors."""
        with session_scope(self.engine) as s:
            rec = s.get(Recording, recording_id)
            if rec is None:
                raise NotFound(f"recording {recording_id} not found", code="unknown_recording")
            if rec.status != "recording":
                pending = s.exec(select(ProcessingStep).where(
                    ProcessingStep.recording_id == rec.id, ProcessingStep.status == PENDING,
                    ProcessingStep.step.in_(FINAL_STEPS))).all()
                if rec.status != "processing" or not pending:
                    return rec  # already enqueued and picked up (or done)
            else:
                rec.status, rec.finalized_at = "processing", now_ms()
                s.add(rec)
                for step in FINAL_STEPS:
                    s.add(ProcessingStep(recording_id=rec.id, step=step, status=PENDING))
        with bound(recording_id=recording_id, phase="finalize"):
            enqueue(self.broker, "finalize_recording", recording_id)
            enqueue(self.broker, "finalize_transcript", recording_id)
            log.info("recording_finalized", reason=reason)
        return rec


def track_identity(principal: Principal, declare: dict[str, str]) -> dict[str, str]:
    """Who a new track belongs to. An upload token's track takes participant, role and
    display name from the token alone (headers cannot make a candidate an "interviewer");
    API callers (the bot, services) declare them."""
    kind = declare.get("kind", "av")
    if principal.scope == "upload":
        claims = principal.claims
        return {"participant_id": principal.participant_id or principal.sub,
                "role": str(claims.get("track_role") or "candidate")[:32],
                "display_name": str(claims.get("display_name") or "")[:256], "kind": kind}
    return {"participant_id": declare.get("participant_id") or principal.participant_id or "",
            "display_name": declare.get("display_name", ""), "role": declare.get("role", "participant"),
            "kind": kind}


def _digest_mismatch(declared: str, actual: str) -> Exception:
    from core.errors import InvalidInput

    return InvalidInput(f"body SHA-256 {actual} does not match the declared {declared}; the body was "
                        "altered or truncated in transit — nothing was stored", code="digest_mismatch")
