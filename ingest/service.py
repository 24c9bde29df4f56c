"""Chunk ingest: recordings, the upload flow, the ledger, finalize.

Upload flow (each step can fail without losing or duplicating anything):
  1. rate limits, then the chunk key's write lease (`ingest.lease`, Redis), then one
     transaction that authorises and *claims* the seq: a stored row with the same
     (recording, track, seq) answers now (200 if the SHA-256 matches, a retry; 409 if not,
     the stored bytes are kept); a row being uploaded with other bytes is a 409 while its
     upload holds the lease; otherwise the row (status `uploading`, the declared SHA-256)
     is made or taken over, and carries the lease token (`Chunk.claim`, a fencing token);
  2. the body is spooled to disk while hashed (413 past the limit). The lease holder also
     streams it to the chunk key as it arrives (a body of declared length, when
     `ingest_stream_to_s3`), holding back its last bytes until step 4;
  3. the body is checked against the declared SHA-256, magic bytes (415) and the media
     validator (`ingest.media.probe_file`: a structural walk, ffprobe for Ogg; a
     continuation blob: `ingest.continuation`, against its header chunk's track numbers;
     422 → quarantine). A failed body's streamed PUT is broken off (nothing stored) and,
     under its claim, its object and row are removed, so the seq is free again;
  4. the lease is renewed (lapsed and taken → 429: the other upload owns the key now), the
     object is put in place (the streamed PUT completed, else a PUT from the spool) and the
     row becomes `stored` — only then, and only under this upload's claim. An upload that
     found the lease held by another upload verifies its spool, then waits for the other
     to end: stored → 200, failed → it takes the lease and the claim and writes from its spool;
  5. per-chunk processing is enqueued by actor name (re-tried on the next retry if
     Redis was down); the row notes it.

What is left to chance: a writer whose lease lapses *during* its final PUT (60 s without a
renewal) can still land its bytes after the next claimant's; the claim keeps the ledger
right, but the object is only as right as S3's last writer (no conditional PUT here).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import dramatiq
from sqlalchemy import case, delete, func, or_, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from core import keys
from core.access import Action, recording_for
from core.auth import Principal, ensure_upload_open
from core.db import session_scope
from core.errors import (
    Conflict,
    Forbidden,
    InvalidMedia,
    NotFound,
    QueueError,
    RateLimited,
    RecorderError,
    StorageError,
)
from core.logging import bound, get_logger
from core.models import Chunk, ProcessingStep, Recording, RejectedChunk, Track
from core.models._types import now_ms
from core.queue import enqueue
from core.ratelimit import RateLimiter
from core.steps import FINAL_STEPS, PENDING
from core.storage import ObjectStore, begin_put
from ingest.continuation import check_continuation
from ingest.headers import ChunkHeaders
from ingest.lease import LeasedPut, Leases, lease_name
from ingest.media import check_magic, probe_file
from ingest.spool import Spooled

log = get_logger("recorder.ingest")
BUSY_WAIT_S = 10.0  # how long an upload waits for another upload of the same bytes to end (then 429);
# well under the clients' own timeouts (bot 30 s, browser uploader 120 s), and it holds a threadpool thread


@dataclass
class IngestLimits:
    max_chunk_bytes: int
    chunk_rate_per_minute: int
    org_rate_per_minute: int
    quarantine_budget_bytes: int = 256 * 1024 * 1024  # per recording; past it only the row is kept


@dataclass
class Precheck:
    """What step 1 learnt and claimed; the later steps go on from it."""

    stored: Chunk | None      # a stored chunk with the same seq (a retry: answer it now)
    org: str
    started_at_ms: int | None
    key: str = ""             # the chunk's object key
    chunk_id: int | None = None  # the claimed row (status `uploading`)
    lease: str | None = None  # our write lease on `key`; None: another upload of these bytes holds it
    stream_tracks: set[int] | None = None  # a continuation's stream's track numbers, if known
    sink: LeasedPut | None = None          # the PUT to `key` the body is streamed to while it arrives


@dataclass
class Ingest:
    """The ingest use cases over real resources (DB, S3, Redis/Dramatiq)."""

    engine: Engine
    store: ObjectStore
    broker: dramatiq.Broker
    limiter: RateLimiter
    limits: IngestLimits
    leases: Leases | None = None  # default: over the rate limiter's Redis client

    def __post_init__(self) -> None:
        if self.leases is None:
            self.leases = Leases(self.limiter.client)

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
                 hdr: ChunkHeaders, declare: dict[str, str] | None, stream: bool = False) -> Precheck:
        """Step 1: rate limits and the write lease (Redis), then one transaction that authorises
        and claims; `stored` is set for a retry. With `stream`, the lease holder gets a `sink`
        to the chunk key for a body of declared length."""
        assert self.leases is not None
        keys.check_id(recording_id, "recording_id")
        keys.check_id(track_id, "track")
        # Counted before the transaction (one per request, as before); keyed by the caller's org,
        # which is the recording's for every request that gets further.
        self.limiter.hit("chunks", f"{principal.org}/{recording_id}", self.limits.chunk_rate_per_minute)
        self.limiter.hit("org", principal.org, self.limits.org_rate_per_minute)
        lease = self.leases.acquire(lease_name(recording_id, track_id, seq))
        try:
            try:
                pre = self._begin(principal, recording_id, track_id, seq, hdr, declare, lease)
            except IntegrityError:  # a concurrent upload made the track or the row first: look again
                pre = self._begin(principal, recording_id, track_id, seq, hdr, declare, lease)
        except BaseException:
            if lease is not None:
                self.leases.release(lease_name(recording_id, track_id, seq), lease)
            raise
        pre.lease = lease
        if pre.stored is not None:
            try:
                pre.stored = self._duplicate(pre.stored, hdr.sha256)
            finally:
                self.release(pre, recording_id, track_id, seq)
            return pre
        length = hdr.declared_length
        if stream and lease and length and length <= self.limits.max_chunk_bytes:
            try:
                name = lease_name(recording_id, track_id, seq)
                pre.sink = LeasedPut(begin_put(self.store, pre.key, length, hdr.content_type), self.leases, name, lease)
            except StorageError as exc:  # spool first, PUT after
                log.warning("chunk_stream_not_started", key=pre.key, error=exc.message)
        return pre

    def _begin(self, principal: Principal, recording_id: str, track_id: str, seq: int, hdr: ChunkHeaders,
               declare: dict[str, str] | None, lease: str | None) -> Precheck:
        with session_scope(self.engine) as s:
            rec = self.get_recording(s, principal, recording_id, Action.UPLOAD)
            ensure_upload_open(principal, rec.status)
            track = s.exec(select(Track).where(Track.recording_id == rec.id, Track.track_id == track_id)).first()
            self.authorize_upload(principal, track)
            if track is None and not declare:
                raise NotFound(f"track {track_id} not declared on recording {recording_id}", code="unknown_track")
            pre = Precheck(stored=None, org=rec.org, started_at_ms=rec.started_at_ms,
                           key=keys.chunk_key(rec.org, recording_id, track_id, seq, hdr.container))
            if hdr.continuation:
                pre.stream_tracks = self._stream_tracks(s, rec.id, track_id, seq)
            claimed = self._claim(s, rec, track_id, seq, hdr, lease)
            if isinstance(claimed, Chunk):
                pre.stored = claimed
                return pre
            if track is None:  # declared on its first chunk
                s.add(Track(recording_id=recording_id, track_id=track_id, **track_identity(principal, declare or {})))
            pre.chunk_id = claimed
        return pre

    def _claim(self, s: Session, rec: Recording, track_id: str, seq: int, hdr: ChunkHeaders,
               lease: str | None) -> Chunk | int | None:
        """The seq's row for these bytes: a stored row (a retry: answered as one), else the id
        of the `uploading` row this upload claims. With the key's lease the row carries the
        lease token (`Chunk.claim`), and a row still `uploading` is taken over, whatever its
        bytes: holding the lease means its claimant is gone (lease lapsed or freed unstored).
        Without the lease, other bytes are a concurrent upload: 409."""
        existing = self._chunk(s, rec.id, track_id, seq)
        if existing is not None and existing.status == "stored":
            return existing
        if existing is not None and existing.sha256 != hdr.sha256 and lease is None:
            raise Conflict(f"seq {seq} is being uploaded with other bytes", code="chunk_conflict")
        if rec.status != "recording":
            raise Conflict("recording is finalized; no new chunks accepted", code="recording_finalized")
        if existing is None:
            return self._insert(s, rec.id, track_id, seq, hdr, lease)
        if lease is not None:
            fields = self._row_fields(hdr)
            s.execute(update(Chunk).where(Chunk.id == existing.id, Chunk.status == "uploading").values(
                claim=lease, **fields))
        return existing.id

    @staticmethod
    def _row_fields(hdr: ChunkHeaders) -> dict[str, Any]:
        return dict(sha256=hdr.sha256, start_ms=hdr.start_epoch_ms, duration_ms=hdr.duration_ms,
                    size=hdr.declared_length or 0, content_type=hdr.content_type, container=hdr.container,
                    continuation=hdr.continuation)

    def _insert(self, s: Session, recording_id: str, track_id: str, seq: int, hdr: ChunkHeaders,
                claim: str | None) -> int | None:
        chunk = Chunk(recording_id=recording_id, track_id=track_id, seq=seq, claim=claim, **self._row_fields(hdr))
        s.add(chunk)
        s.flush()  # an existing row for this seq makes this fail (IntegrityError): the caller looks again
        return chunk.id

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

    def store_chunk(self, pre: Precheck, recording_id: str, track_id: str, seq: int, hdr: ChunkHeaders,
                    body: Spooled) -> tuple[Chunk, bool, int | None]:
        """Steps 3–5 for a spooled body; returns (chunk, created, recording start epoch ms)."""
        with bound(recording_id=recording_id, phase="ingest"):
            try:
                if body.sha256 != hdr.sha256:
                    raise _digest_mismatch(hdr.sha256, body.sha256)
                check_magic(body.head, hdr.container, hdr.continuation)
                probe = self._validate(pre.org, recording_id, track_id, seq, hdr, body, pre.stream_tracks)
                if pre.lease is None:  # another upload of these bytes is writing the key: let it end
                    done = self._await_lease(pre, recording_id, track_id, seq, hdr)
                    if done is not None:
                        return self._duplicate(done, hdr.sha256), False, pre.started_at_ms
                self._keep_lease(pre, recording_id, track_id, seq)
                self._write(pre, body, hdr)
                chunk, created, started_at_ms = self._mark_stored(pre, probe, hdr, body.size)
            except BaseException:
                self.abandon(pre, recording_id, track_id, seq)
                raise
            if not created:
                return self._duplicate(chunk, hdr.sha256), False, started_at_ms
            self._enqueue(chunk)
            log.info("chunk_stored", track=track_id, seq=seq, bytes=body.size)
            return chunk, True, started_at_ms

    def _keep_lease(self, pre: Precheck, recording_id: str, track_id: str, seq: int) -> None:
        """Renew the key's lease right before the write: a lease that lapsed (a slow body, a
        slow store) may have been taken by another upload, which now owns the key (429)."""
        assert self.leases is not None and pre.lease is not None
        self.leases.keep(lease_name(recording_id, track_id, seq), pre.lease)

    def _write(self, pre: Precheck, body: Spooled, hdr: ChunkHeaders) -> None:
        """Step 4's write: complete the streamed PUT (it holds back its last bytes until now,
        when they are verified), else — or if it failed — PUT the spool. The key gets the
        whole object or nothing."""
        if pre.sink is not None:
            sink, pre.sink = pre.sink, None
            try:
                sink.finish()
                return
            except StorageError as exc:
                log.warning("chunk_stream_failed", key=pre.key, error=exc.message)
        self.store.put_file(pre.key, body.path, hdr.content_type)

    def _await_lease(self, pre: Precheck, recording_id: str, track_id: str, seq: int,
                     hdr: ChunkHeaders) -> Chunk | None:
        """Wait (polling) until the upload holding the key's lease has ended: its stored row
        (answer as a duplicate), or the lease is ours and the seq claimed again (None)."""
        assert self.leases is not None
        name, deadline, pause = lease_name(recording_id, track_id, seq), time.monotonic() + BUSY_WAIT_S, 0.02
        while True:
            with session_scope(self.engine) as s:
                row = self._chunk(s, recording_id, track_id, seq)
            if row is not None and row.status == "stored":
                return row  # stored (with other bytes: _duplicate answers 409)
            pre.lease = self.leases.acquire(name)
            if pre.lease is not None:
                break
            if time.monotonic() > deadline:
                raise RateLimited("another upload of this chunk is still in progress", code="chunk_busy",
                                  retry_after=2)
            time.sleep(pause)
            pause = min(pause * 2, 0.25)
        for _ in range(2):  # an IntegrityError: a row made meanwhile by an upload without the lease
            try:
                with session_scope(self.engine) as s:
                    rec = s.get(Recording, recording_id)
                    if rec is None:
                        raise NotFound(f"recording {recording_id} not found", code="unknown_recording")
                    claimed = self._claim(s, rec, track_id, seq, hdr, pre.lease)
                if isinstance(claimed, Chunk):
                    return claimed
                pre.chunk_id = claimed
                return None
            except IntegrityError:
                continue
        raise RateLimited("another upload of this chunk is still in progress", code="chunk_busy", retry_after=2)

    def abandon(self, pre: Precheck, recording_id: str, track_id: str, seq: int) -> None:
        """Undo a failed upload's claim (best effort, never raises): end its streamed PUT (one
        short of its length is dropped by S3; a whole one may land) and, as the lease holder,
        remove the `uploading` row and whatever is at the key (no one else wrote it), then
        free the lease. Without the lease: nothing."""
        if pre.sink is not None:  # its last bytes were held back: breaking it off leaves no object
            sink, pre.sink = pre.sink, None
            sink.abort()
        if pre.lease is None:
            return
        assert self.leases is not None
        try:
            if pre.chunk_id is not None:
                mine = (Chunk.id == pre.chunk_id, Chunk.status == "uploading", Chunk.claim == pre.lease)
                with session_scope(self.engine) as s:
                    claimed = s.exec(select(Chunk.id).where(*mine)).first() is not None
                if claimed:  # the object first: if that fails, the row stays for a retry to take over
                    self.store.delete(pre.key)
                    with session_scope(self.engine) as s:
                        s.exec(delete(Chunk).where(*mine))
        except RecorderError as exc:
            log.warning("claim_cleanup_failed", key=pre.key, error=exc.message)
        self.release(pre, recording_id, track_id, seq)

    def release(self, pre: Precheck, recording_id: str, track_id: str, seq: int) -> None:
        """Free the write lease (after the answer: a waiting upload sees the stored row anyway)."""
        if pre.lease is not None and self.leases is not None:
            self.leases.release(lease_name(recording_id, track_id, seq), pre.lease)
            pre.lease = None

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

    def _mark_stored(self, pre: Precheck, probe: dict[str, Any] | None,
                     hdr: ChunkHeaders, size: int) -> tuple[Chunk, bool, int | None]:
        """uploading → stored, atomically and only under this upload's claim: of two uploads of
        the same bytes only one flips the row (and answers 201); the other answers 200. A claim
        taken over meanwhile (this upload's lease lapsed) is 429: the retry finds the outcome.
        Returns (chunk, flipped, recording start)."""
        at, start = now_ms(), hdr.start_epoch_ms
        with session_scope(self.engine) as s:
            chunk = s.execute(update(Chunk).where(
                Chunk.id == pre.chunk_id, Chunk.status == "uploading", Chunk.claim == pre.lease).values(
                status="stored", object_key=pre.key, probe=probe, stored_at=at, size=size, claim=None,
                duration_ms=func.coalesce(Chunk.duration_ms, (probe or {}).get("duration_ms"))
            ).returning(Chunk)).scalar_one_or_none()
            flipped = chunk is not None
            if chunk is None:  # stored by the other upload of these bytes, or the claim passed on
                chunk = s.get(Chunk, pre.chunk_id)
                if chunk is None or chunk.status != "stored":
                    raise RateLimited("the chunk's claim passed to another upload; retry", code="chunk_busy",
                                      retry_after=2)
                started_at_ms = s.exec(select(Recording.started_at_ms).where(Recording.id == chunk.recording_id)).one()
            else:
                earlier = or_(Recording.started_at_ms.is_(None), Recording.started_at_ms > start)
                started_at_ms = s.execute(update(Recording).where(Recording.id == chunk.recording_id).values(
                    started_at_ms=case((earlier, start), else_=Recording.started_at_ms), last_chunk_at=at
                ).returning(Recording.started_at_ms)).scalar_one()
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
