"""Transcription actors: per-speaker, live while the interview runs, versioned, indexed.

    transcribe_chunk(rec, track, seq)   continue the track's live transcription up to `seq`
                                        (the unfinished tail is carried in S3 + DB state, so
                                        any worker can take the next chunk); a chunk whose
                                        span the other tracks have not delivered yet is
                                        re-queued for a bounded time (the leak gate needs
                                        their levels, saved per chunk next to the carry)
    finalize_transcript(rec)            flush every track, merge speakers, flag quality,
                                        export (json/vtt/srt/txt), index; "transcript.final"
    retranscribe_recording(rec, …)      a new version with another model (or a span of the
                                        recording); the old version is kept
    index_transcript(rec)               (re)index the current version; unindex if deleted

A bot recording whose room also has a client recording gets the client's audio where the
bot had none (`workers.transcript_fill`), before the version is merged and exported.

Idempotent: segment keys are (version, track, seq, idx), a track's progress advances by
compare-and-set, exports go to fixed keys. Bad media fails that chunk only (reason kept in
its step); transient errors (S3, DB) are retried with backoff (`workers.policy`), and a
"transcript.final" whose retries run out fails the recording.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from sqlmodel import delete, select, update

from core import keys, search
from core.db import session_scope
from core.errors import InvalidMedia, NotFound, RecorderError
from core.logging import bound, get_logger
from core.models import (Chunk, Recording, Track, TranscriptSegment, TranscriptTrackState,
                         TranscriptVersion)
from core.models._types import now_ms
from core.queue import enqueue
from core.steps import DONE, FAILED, TRANSCRIPT_FINAL, transcript_chunk_step
from core.timeline import to_timeline
from transcribe import chunking, export, leak, model as whisper
from transcribe.audio import decode
from transcribe.merge import merge_segments
from transcribe.pipeline import Window, plan_step
from transcribe.pipeline import decode as decode_windows
from transcribe.types import Speaker, Transcript
from workers import broker as res
from workers import transcript_store as store
from workers.policy import actor, failed_message, failures_recorded, step_guard
from workers.status import mark_step
from workers.transcript_fill import fill_from_client

log = get_logger("workers.transcription")
SPEECH_KINDS = ("audio", "av")
EXPORTS = ("json", "vtt", "srt", "txt")
GATE_POLL_MS = 3000  # a chunk waiting for the other tracks is tried again this much later


@dataclass(frozen=True)
class StreamPos:
    """Where a track's byte stream stands: its first chunk, and the samples decoded from it
    (a continuation blob is decoded joined to the chunks before it, skipping these)."""

    seq: int
    samples: int

    def fields(self) -> dict[str, int]:
        """As `TranscriptTrackState` columns."""
        return {"stream_seq": self.seq, "stream_samples": self.samples}


# ---------------------------------------------------------------- one chunk

def _chunks(recording_id: str, track_id: str, first: int) -> list[Chunk]:
    with session_scope(res.engine()) as s:
        return list(s.exec(select(Chunk).where(Chunk.recording_id == recording_id, Chunk.track_id == track_id,
                                               Chunk.status == "stored", Chunk.seq >= first)
                           .order_by(Chunk.seq)).all())


def chunk_audio(job: store.Job, state: TranscriptTrackState | None, chunk: Chunk) -> tuple[chunking.Block, StreamPos]:
    """Decode a chunk (byte-joined to its stream if it is a continuation blob) and place it."""
    objects = res.store()
    if chunk.continuation and state is not None and state.stream_seq is not None:
        with session_scope(res.engine()) as s:
            parts = s.exec(select(Chunk).where(Chunk.recording_id == chunk.recording_id,
                                               Chunk.track_id == chunk.track_id, Chunk.status == "stored",
                                               Chunk.seq >= state.stream_seq, Chunk.seq <= chunk.seq)
                           .order_by(Chunk.seq)).all()
        if [p.seq for p in parts] != list(range(state.stream_seq, chunk.seq + 1)):
            raise InvalidMedia("continuation blob without its earlier bytes", code="broken_stream")
        decoded = decode(b"".join(objects.get_bytes(p.object_key) for p in parts), skip_samples=state.stream_samples)
        head_ms = to_timeline(parts[0].start_ms, job.origin_ms)
        start_ms = head_ms + decoded.start_s * 1000 + state.stream_samples * 1000 / chunking.SAMPLE_RATE
        stream = StreamPos(state.stream_seq, decoded.total_samples)
    else:
        decoded = decode(objects.get_bytes(chunk.object_key))
        start_ms = to_timeline(chunk.start_ms, job.origin_ms) + decoded.start_s * 1000
        stream = StreamPos(chunk.seq, decoded.total_samples)
    return chunking.place(decoded.samples, start_ms), stream


def _in_span(job: store.Job, block: chunking.Block) -> bool:
    return job.span is None or (block.end_ms > job.span[0] and block.start_ms < job.span[1])


@dataclass
class Planned:
    """One chunk's half-done step: decoded, placed and planned, not yet through the model."""

    chunk: Chunk
    windows: list[Window] = field(default_factory=list)
    stream: StreamPos | None = None
    error: str | None = None  # bad media: this chunk fails (our message), the track goes on
    waiting: bool = False  # the other tracks' audio of its span is not in yet: try again soon


# ---------------------------------------------------------------- the other tracks (leak gate)

def standalone_levels(job: store.Job, chunk: Chunk) -> leak.Envelope | None:
    """Another track's chunk's levels, decoded here when the chunk is a file of its own (a
    continuation blob needs its stream: its own track's step saves its levels)."""
    if chunk.continuation:
        return None
    try:
        block, _ = chunk_audio(job, None, chunk)
    except InvalidMedia:
        return leak.Envelope(to_timeline(chunk.start_ms, job.origin_ms), 30, np.empty(0))
    env = leak.envelope(block.samples, block.start_ms)
    store.save_levels(job, chunk.track_id, chunk.seq, env)
    return env


def gate_levels(job: store.Job, track_id: str, lo_ms: float, hi_ms: float) -> store.Others:
    """What the leak gate of [lo_ms, hi_ms) of a track needs: the others' level envelopes."""
    if not job.opts.leak.enabled:
        return store.Others([], True)
    return store.others_levels(job, track_id, lo_ms, hi_ms, lambda c: standalone_levels(job, c))


def may_wait(job: store.Job, chunk: Chunk) -> bool:
    """A live chunk waits for the other tracks (bounded by `gate_wait_ms` from its arrival);
    once the interview has ended every chunk is in: nothing to wait for."""
    arrived = chunk.stored_at or chunk.created_at
    return job.gate_wait_ms > 0 and job.rec.status == "recording" and now_ms() - arrived < job.gate_wait_ms


def plan_chunk(job: store.Job, state: TranscriptTrackState, chunk: Chunk, carry: chunking.Block | None,
               live: bool = False) -> tuple[Planned, chunking.Block | None, TranscriptTrackState]:
    """Decode one chunk and plan its step against the carried tail (no model). Its levels
    are saved for the other tracks' gates; its own gate uses theirs over the carried tail
    and the chunk. Live, when theirs are not all in yet, it waits (`Planned.waiting`)."""
    try:
        block, stream = chunk_audio(job, state, chunk)
    except InvalidMedia as exc:  # a video-only chunk has nothing to say; other bad media fails the chunk
        log.warning("chunk_skipped", track=chunk.track_id, seq=chunk.seq, reason=exc.message)
        error = failed_message(transcript_chunk_step(chunk.track_id, chunk.seq), exc)
        return Planned(chunk, error=error if exc.code != "no_audio" else None), carry, state
    if job.opts.leak.enabled:
        store.save_levels(job, chunk.track_id, chunk.seq, leak.envelope(block.samples, block.start_ms))
    if not (_in_span(job, block) or carry is not None):
        return Planned(chunk, stream=stream), carry, store.replace_state(state, stream.fields())
    others = gate_levels(job, chunk.track_id, carry.start_ms if carry is not None else block.start_ms, block.end_ms)
    if live and not others.complete and may_wait(job, chunk):
        return Planned(chunk, waiting=True), carry, state
    plan = plan_step(carry, block, final=False, opts=job.opts, seq=chunk.seq, others=others.envelopes)
    return Planned(chunk, plan.windows, stream), plan.carry, store.replace_state(state, stream.fields())


def process_chunks(job: store.Job, speaker: Speaker, state: TranscriptTrackState, chunks: list[Chunk],
                   flush: bool) -> tuple[TranscriptTrackState, bool]:
    """Plan every chunk (and the final flush), decode all their windows in one batch,
    commit them as one compare-and-set step. One chunk at a time is the live path; a
    worker that is behind, a finalize or a re-transcription passes several. Live, a chunk
    that waits for the other tracks ends the step before it. Returns (state, waiting)."""
    started = time.perf_counter()
    carry, planned, work = store.load_carry(state), [], state
    for chunk in chunks:
        p, next_carry, next_work = plan_chunk(job, work, chunk, carry, live=not flush)
        if p.waiting:
            break
        planned.append(p)
        carry, work = next_carry, next_work
    waiting = len(planned) < len(chunks)
    chunks = [p.chunk for p in planned]
    if not chunks and not flush:
        return state, waiting
    next_seq = chunks[-1].seq + 1 if chunks else state.next_seq
    windows = [w for p in planned for w in p.windows]
    if flush and carry is not None:
        others = gate_levels(job, speaker.track_id, carry.start_ms, carry.end_ms).envelopes
        windows += plan_step(None, carry, final=True, opts=job.opts, seq=next_seq, others=others).windows
        carry = None
    segments = decode_windows(job.model, speaker, windows, job.opts) if windows else {}
    key, anchors = store.save_carry(job, speaker.track_id, next_seq - 1, carry)
    heard = sum(w.speech_s for w in windows)
    took = int((time.perf_counter() - started) * 1000)
    stream = next((p.stream for p in reversed(planned) if p.stream is not None), None)
    new = store.commit_step(state, [c.seq for c in chunks] + ([next_seq] if flush else []),
                            [seg for segs in segments.values() for seg in segs], job, next_seq=next_seq,
                            carry_key=key, carry_anchors=anchors, audio_ms=state.audio_ms + int(heard * 1000),
                            time_taken_ms=state.time_taken_ms + took, finished=flush,
                            **(stream.fields() if stream else {}))
    for p in planned:
        mark_step(res.engine(), job.rec.id, transcript_chunk_step(p.chunk.track_id, p.chunk.seq),
                  FAILED if p.error else DONE, error=p.error)
    log.info("chunks_transcribed", track=speaker.track_id, seqs=[c.seq for c in chunks], windows=len(windows),
             segments=sum(len(v) for v in segments.values()), heard_s=round(heard, 2), took_ms=took, final=flush)
    return new, waiting


@dataclass(frozen=True)
class Progress:
    committed: bool = False  # segments were written
    waiting: bool = False  # a chunk waits for the other tracks' audio (live): try again soon


def advance_track(job: store.Job, track: Track, upto: int | None, final: bool) -> Progress:
    """Process the track's stored chunks from where it stands (up to `upto`), in order,
    up to `lookahead` chunks per model batch.

    Live: stop at a missing chunk (its own message will continue) or at one whose span the
    other tracks have not delivered yet (bounded wait, see `may_wait`). Final: skip gaps
    and flush the tail. Losing a compare-and-set means another worker got there first.
    """
    if track.kind not in SPEECH_KINDS:
        return Progress()
    speaker, state = store.speaker_of(track), store.track_state(job.version, track.track_id)
    if state.finished:
        return Progress()
    todo: list[Chunk] = []
    for chunk in _chunks(job.rec.id, track.track_id, state.next_seq):
        if upto is not None and chunk.seq > upto:
            break
        if chunk.seq != state.next_seq + len(todo) and not final:
            break
        todo.append(chunk)
    step_n, done, waiting = max(1, job.lookahead), False, False
    try:
        groups = [todo[i:i + step_n] for i in range(0, len(todo), step_n)] or [[]]
        for i, group in enumerate(groups):
            last = i == len(groups) - 1
            if group or (final and last):
                before = state.next_seq
                state, waiting = process_chunks(job, speaker, state, group, flush=final and last)
                done = done or state.next_seq != before or state.finished
                if waiting:
                    break
    except store.LostRace:
        log.info("track_taken_by_other_worker", track=track.track_id)
    return Progress(done, waiting)


def _tracks(recording_id: str) -> list[Track]:
    with session_scope(res.engine()) as s:
        return list(s.exec(select(Track).where(Track.recording_id == recording_id).order_by(Track.track_id)).all())


# ---------------------------------------------------------------- finish a version

def _version_segments(version_id: str) -> list[TranscriptSegment]:
    with session_scope(res.engine()) as s:
        return list(s.exec(select(TranscriptSegment).where(TranscriptSegment.version_id == version_id)).all())


def export_key(rec: Recording, version: int, fmt: str, live: bool = False) -> str:
    """Final exports of a version; the live ones (interview running) sit beside them, so a
    late live publish can never overwrite a final export."""
    name = "live" if live else "transcript"
    return keys.output_key(rec.org, rec.id, f"transcripts/v{version:03d}/{name}.{fmt}")


def merged_transcript(job: store.Job, status: str, took_ms: int = 0) -> tuple[Transcript, list[TranscriptSegment]]:
    """Every speaker's segments of the version so far, merged and flagged across speakers."""
    version, rec = job.version, job.rec
    rows = _version_segments(version.id)
    merged = merge_segments(store.from_row(r) for r in rows)
    transcript = Transcript(rec.id, tuple(merged), version.version, version.model, version.params or {},
                            version.created_at, took_ms, status)
    return transcript, rows


def put_exports(job: store.Job, transcript: Transcript) -> dict[str, str]:
    out = {}
    for fmt in EXPORTS:
        out[fmt] = export_key(job.rec, job.version.version, fmt, live=transcript.status == "live")
        res.store().put_bytes(out[fmt], export.render(transcript, fmt).encode(), content_type=export.FORMATS[fmt])
    return out


def publish_live(job: store.Job) -> None:
    """While the interview runs: the transcript so far, in every export format, served by
    the review API as `status: live` until the version is final (its row then points at
    the final exports; the guard on `status` keeps a late publish from pointing it back)."""
    transcript, _rows = merged_transcript(job, "live")
    exports = put_exports(job, transcript)
    with session_scope(res.engine()) as s:
        s.exec(update(TranscriptVersion).where(TranscriptVersion.id == job.version.id,
                                               TranscriptVersion.status == "live").values(
            exports=exports, segment_count=len(transcript.segments)))


def finish_version(job: store.Job) -> Transcript:
    """Merge speakers, flag, store exports, make this version current, index it."""
    started = time.perf_counter()
    version, rec = job.version, job.rec
    transcript, rows = merged_transcript(job, "final")
    by_key = {(r.track_id, r.seq, r.idx): r for r in rows}
    with session_scope(res.engine()) as s:
        for seg in transcript.segments:
            row = by_key[(seg.speaker.track_id, seg.seq, seg.idx)]
            if list(seg.flags) != (row.flags or []):
                row.flags, row.suppressed = list(seg.flags), seg.suppressed
                s.add(row)
    with session_scope(res.engine()) as s:
        states = s.exec(select(TranscriptTrackState).where(TranscriptTrackState.version_id == version.id)).all()
    took = sum(st.time_taken_ms for st in states) + int((time.perf_counter() - started) * 1000)
    transcript = replace(transcript, time_taken_ms=took)
    put_exports(job, transcript)
    make_current(job, transcript, audio_ms=sum(st.audio_ms for st in states))
    index_current(rec.id)
    res.store().delete_prefix(f"{keys.recording_prefix(rec.org, rec.id)}work/transcript/{version.id}/")
    for fmt in EXPORTS:  # the live exports are superseded (a late publish may leave one: harmless)
        res.store().delete(export_key(rec, version.version, fmt, live=True))
    return transcript


def make_current(job: store.Job, transcript: Transcript, audio_ms: int) -> None:
    version, rec = job.version, job.rec
    current_key = keys.output_key(rec.org, rec.id, "transcript.json")
    res.store().put_bytes(current_key, export.render(transcript, "json").encode(), content_type="application/json")
    with session_scope(res.engine()) as s:
        s.exec(update(TranscriptVersion).where(TranscriptVersion.recording_id == rec.id,
                                               TranscriptVersion.id != version.id).values(is_current=False))
        s.exec(update(TranscriptVersion).where(TranscriptVersion.id == version.id).values(
            is_current=True, status="final", finished_at=now_ms(), time_taken_ms=transcript.time_taken_ms,
            exports={f: export_key(rec, version.version, f) for f in EXPORTS},
            audio_ms=audio_ms, segment_count=len(transcript.segments), error=None))
        row = s.exec(select(Recording).where(Recording.id == rec.id).with_for_update()).one()
        outputs = dict(row.outputs or {})
        outputs["transcript"] = {"key": current_key, "version": version.version,
                                 "formats": {f: export_key(rec, version.version, f) for f in EXPORTS}}
        row.outputs = outputs
        s.add(row)


def index_current(recording_id: str) -> int:
    """Index the current version's visible segments (or unindex a deleted recording)."""
    engine = res.engine()
    rec = store.get_recording(recording_id)
    current = next((v for v in store.versions_of(recording_id) if v.is_current), None) if rec else None
    if rec is None or current is None:
        return -search.unindex_recording(engine, recording_id)
    docs = [search.SearchDoc(search.segment_key(current.id, r.id), rec.id, current.id, r.participant_id,
                             r.display_name or r.participant_id, r.role, r.start_ms, r.end_ms, r.text)
            for r in _version_segments(current.id) if not r.suppressed and r.text.strip()]
    return search.index_recording(engine, rec.org, rec.id, rec.started_at_ms or rec.created_at, docs)


def copy_outside_span(job: store.Job, based_on: str) -> None:
    """A span re-transcription keeps the old version's segments outside the span (by
    segment midpoint) and its own only inside it."""
    lo, hi = job.span or (0, 0)

    def outside(r: TranscriptSegment) -> bool:
        return not lo <= (r.start_ms + r.end_ms) // 2 < hi

    mine = _version_segments(job.version.id)
    keep = {(r.track_id, r.seq, r.idx) for r in mine if not outside(r)}
    rows = []
    for r in (r for r in _version_segments(based_on) if outside(r)):
        seg = store.from_row(r)
        if (r.track_id, r.seq, r.idx) in keep:
            seg = replace(seg, idx=seg.idx + 10_000)
        rows.append(store.to_row(job.version.id, job.rec.id, seg))
    with session_scope(res.engine()) as s:
        for r in mine:
            if outside(r):
                s.exec(delete(TranscriptSegment).where(TranscriptSegment.id == r.id))
        s.add_all(rows)


# ---------------------------------------------------------------- actors

@actor("transcribe", step=lambda recording_id, track_id, seq: transcript_chunk_step(track_id, seq))
def transcribe_chunk(recording_id: str, track_id: str, seq: int) -> None:
    """Continue live transcription of one track up to chunk `seq`. The chunk's step is
    marked by `process_chunks` once it is through; a failure here is noted on it."""
    with bound(recording_id=recording_id, phase="transcribe"):
        rec = store.get_recording(recording_id)
        if rec is None:
            log.info("chunk_ignored", track=track_id, seq=seq, reason="no recording")
            return
        with failures_recorded(recording_id, transcript_chunk_step(track_id, seq)):
            _transcribe_live(rec, track_id, seq)


def _transcribe_live(rec: Recording, track_id: str, seq: int) -> None:
    version = store.live_version(rec)
    if version is None:
        log.info("chunk_ignored", track=track_id, seq=seq, reason="no live transcript")
        return
    with session_scope(res.engine()) as s:
        track = s.exec(select(Track).where(Track.recording_id == rec.id, Track.track_id == track_id)).first()
    if track is None:
        raise NotFound(f"track {track_id} of {rec.id} not found", code="track_not_found")
    job = store.make_job(version, rec)
    progress = advance_track(job, track, upto=seq, final=False)
    if progress.committed:
        publish_live(job)
    if progress.waiting:  # the other tracks' audio of this span is not in yet
        enqueue(res.broker, "transcribe_chunk", rec.id, track_id, seq, delay_ms=GATE_POLL_MS)


@actor("transcribe", step=lambda recording_id: TRANSCRIPT_FINAL)
def finalize_transcript(recording_id: str) -> None:
    """Finish the live version: every track flushed, merged, exported, indexed."""
    with bound(recording_id=recording_id, phase=TRANSCRIPT_FINAL):
        rec = store.get_recording(recording_id)
        if rec is None:
            return
        with step_guard(recording_id, TRANSCRIPT_FINAL):
            version = store.live_version(rec)
            if version is not None:
                job = store.make_job(version, rec)
                for track in _tracks(recording_id):
                    advance_track(job, track, upto=None, final=True)
                fill_from_client(job)
                finish_version(job)
            else:
                index_current(recording_id)  # already final: a re-run only re-indexes


def _resumable(recording_id: str, spec: whisper.ModelSpec, span: dict[str, Any]) -> TranscriptVersion | None:
    """A retried re-transcription continues its own unfinished version."""
    for v in store.versions_of(recording_id):
        if v.status == "running" and v.model == spec.label and v.span_start_ms == span.get("span_start_ms") \
                and v.span_end_ms == span.get("span_end_ms"):
            return v
    return None


@actor("transcribe")  # no step row: its version records a failure
def retranscribe_recording(recording_id: str, model: str | None = None, beam_size: int | None = None,
                           start_ms: int | None = None, end_ms: int | None = None) -> None:
    """A new transcript version with `model` (default: the configured one), optionally
    only for [start_ms, end_ms); becomes current when done, the old one is kept."""
    with bound(recording_id=recording_id, phase="retranscribe"):
        rec = store.get_recording(recording_id)
        if rec is None:
            return
        previous = next((v for v in store.versions_of(recording_id) if v.is_current), None)
        span = {} if start_ms is None and end_ms is None else {"span_start_ms": start_ms or 0, "span_end_ms": end_ms}
        spec = store.model_spec(model)
        whisper.load_model(spec)  # unavailable model: fail before creating a version
        version = _resumable(recording_id, spec, span) or store.create_version(
            rec, "running", spec, beam_size, based_on=previous.id if previous else None, **span)
        job = store.make_job(version, rec)
        try:
            for track in _tracks(recording_id):
                advance_track(job, track, upto=None, final=True)
            fill_from_client(job)
            if span and previous is not None:
                copy_outside_span(job, previous.id)
            finish_version(job)
        except RecorderError as exc:
            if not exc.retryable:
                with session_scope(res.engine()) as s:
                    s.exec(update(TranscriptVersion).where(TranscriptVersion.id == version.id)
                           .values(status="failed", error=exc.message))
            raise


@actor("default")
def index_transcript(recording_id: str) -> None:
    """Bring the search index in line with the recording's current transcript."""
    with bound(recording_id=recording_id, phase="index"):
        n = index_current(recording_id)
        log.info("transcript_indexed", segments=max(n, 0), removed=max(-n, 0))
