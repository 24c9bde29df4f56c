"""Persistence of transcription work: versions, per-track state, carried tails, segment rows.

Used by the transcription actors (`workers.transcription`); resources come from
`workers.broker` (engine, store, settings) so any worker process can continue any track.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
from sqlalchemy.exc import IntegrityError
from sqlmodel import delete, func, select, update

from core import keys
from core.db import session_scope
from core.errors import NotFound, RecorderError
from core.models import (Chunk, OrgVocabulary, Recording, Track, TranscriptSegment, TranscriptTrackState,
                         TranscriptVersion)
from core.models._types import now_ms
from transcribe import chunking, model as whisper
from transcribe.chunking import CarryOptions
from transcribe.leak import Envelope, LeakOptions
from transcribe.pipeline import TrackOptions
from transcribe.types import Segment, Speaker, Word
from transcribe.vad import VadOptions
from workers import broker as res


class LostRace(Exception):
    """Another worker committed this chunk first."""


# ---------------------------------------------------------------- configuration

def model_spec(name: str | None = None) -> whisper.ModelSpec:
    s = res.settings
    return whisper.ModelSpec(name=s.whisper_model if name is None else name, device=s.whisper_device,
                             compute_type=s.whisper_compute_type, cpu_threads=s.whisper_threads,
                             replicas=s.whisper_replicas)


def vocabulary(org: str, rec: Recording) -> tuple[str, ...]:
    """Org terms + this interview's terms, de-duplicated, at most 50."""
    with session_scope(res.engine()) as s:
        row = s.get(OrgVocabulary, org)
    terms = [*(row.terms or [] if row else []), *(rec.vocabulary or [])]
    return tuple(dict.fromkeys(t.strip() for t in terms if t and t.strip()))[:50]


def options_from(params: dict[str, Any]) -> TrackOptions:
    d = params.get("decode", {})
    decode_opts = whisper.DecodeOptions(beam_size=d.get("beam_size", 3), language=d.get("language", "en"),
                                        vocabulary=tuple(d.get("vocabulary", ())),
                                        batch_size=d.get("batch_size", whisper.DecodeOptions().batch_size))
    carry = CarryOptions(min_batch_s=params.get("batch_s", CarryOptions().min_batch_s))
    return TrackOptions(vad=VadOptions(aggressiveness=params.get("vad_aggressiveness", 2)), decode=decode_opts,
                        carry=carry, leak=LeakOptions(enabled=params.get("leak_gate", True)),
                        split_pause_s=params.get("split_pause_s", TrackOptions().split_pause_s))


def new_params(spec: whisper.ModelSpec, rec: Recording, beam_size: int | None = None) -> dict[str, Any]:
    device, compute = whisper.resolve_device(spec)
    decode_opts = whisper.DecodeOptions(beam_size=beam_size or res.settings.whisper_beam_size,
                                        vocabulary=vocabulary(rec.org, rec),
                                        batch_size=res.settings.whisper_batch_size)
    return {"model": spec.name, "device": device, "compute_type": compute, "cpu_threads": spec.cpu_threads,
            "replicas": spec.replicas,
            "vad_aggressiveness": res.settings.vad_aggressiveness, "batch_s": res.settings.transcribe_batch_s,
            "leak_gate": res.settings.transcribe_leak_gate, "split_pause_s": res.settings.transcribe_split_pause_s,
            "decode": decode_opts.as_params()}


@dataclass
class Job:
    """Everything one track pass needs: the version, its recording, model and options."""

    version: TranscriptVersion
    rec: Recording
    origin_ms: int
    model: Any
    opts: TrackOptions
    span: tuple[int, int] | None = None
    lookahead: int = 16  # chunks planned per model batch when several are waiting
    gate_wait_ms: int = 0  # how long a live chunk may wait for the other tracks' audio


def make_job(version: TranscriptVersion, rec: Recording) -> Job:
    params = version.params or {}
    model = whisper.load_model(model_spec(params.get("model", "")))
    span = None if version.span_start_ms is None else (version.span_start_ms, version.span_end_ms or 2**62)
    wait = int(res.settings.transcribe_gate_wait_s * 1000) if version.status == "live" else 0
    return Job(version, rec, origin_of(rec), model, options_from(params), span, res.settings.transcribe_lookahead,
               wait)


def origin_of(rec: Recording) -> int:
    if rec.started_at_ms is not None:
        return rec.started_at_ms
    with session_scope(res.engine()) as s:
        first = s.exec(select(func.min(Chunk.start_ms)).where(Chunk.recording_id == rec.id)).one()
    return int(first or 0)


# ---------------------------------------------------------------- versions

def get_recording(recording_id: str) -> Recording | None:
    with session_scope(res.engine()) as s:
        rec = s.get(Recording, recording_id)
    return None if rec is None or rec.status == "deleted" else rec


def versions_of(recording_id: str) -> list[TranscriptVersion]:
    with session_scope(res.engine()) as s:
        return list(s.exec(select(TranscriptVersion).where(TranscriptVersion.recording_id == recording_id)
                           .order_by(TranscriptVersion.version)).all())


def create_version(rec: Recording, status: str, spec: whisper.ModelSpec, beam_size: int | None = None,
                   **fields: Any) -> TranscriptVersion:
    """Insert the next version number (retrying if another worker took it)."""
    for _ in range(5):
        number = max((v.version for v in versions_of(rec.id)), default=0) + 1
        row = TranscriptVersion(recording_id=rec.id, version=number, model=spec.label, status=status,
                                params=new_params(spec, rec, beam_size), **fields)
        try:
            with session_scope(res.engine()) as s:
                s.add(row)
            return row
        except IntegrityError:
            continue
    raise RecorderError(f"could not allocate a transcript version for {rec.id}")


def live_version(rec: Recording, create: bool = True) -> TranscriptVersion | None:
    """The live version (version 1 is created by the first chunk); None once finalized."""
    versions = versions_of(rec.id)
    live = [v for v in versions if v.status == "live"]
    if live:
        return live[0]
    if versions or not create:
        return None
    try:
        return create_version(rec, "live", model_spec())
    except RecorderError:
        return next((v for v in versions_of(rec.id) if v.status == "live"), None)


# ---------------------------------------------------------------- track state + carry

def track_state(version: TranscriptVersion, track_id: str) -> TranscriptTrackState:
    q = select(TranscriptTrackState).where(TranscriptTrackState.version_id == version.id,
                                           TranscriptTrackState.track_id == track_id)
    with session_scope(res.engine()) as s:
        row = s.exec(q).first()
    if row is not None:
        return row
    try:
        with session_scope(res.engine()) as s:
            s.add(TranscriptTrackState(version_id=version.id, recording_id=version.recording_id, track_id=track_id))
    except IntegrityError:
        pass  # created concurrently
    with session_scope(res.engine()) as s:
        return s.exec(q).one()


def _carry_key(job: Job, track_id: str, seq: int) -> str:
    base = keys.recording_prefix(job.rec.org, job.rec.id)
    return f"{base}work/transcript/{job.version.id}/{keys.check_id(track_id, 'track')}/{seq:06d}.pcm"


def load_carry(state: TranscriptTrackState) -> chunking.Block | None:
    if not state.carry_key:
        return None
    pcm = np.frombuffer(res.store().get_bytes(state.carry_key), dtype="<i2").astype(np.float32) / 32767
    return chunking.Block(pcm, tuple((float(a), float(b)) for a, b in state.carry_anchors or [(0.0, 0.0)]))


def save_carry(job: Job, track_id: str, seq: int, carry: chunking.Block | None) -> tuple[str | None, list]:
    if carry is None or carry.samples.size == 0:
        return None, []
    key = _carry_key(job, track_id, seq)
    res.store().put_bytes(key, (np.clip(carry.samples, -1, 1) * 32767).astype("<i2").tobytes())
    return key, [list(a) for a in carry.anchors]


def _levels_key(job: Job, track_id: str, seq: int) -> str:
    base = keys.recording_prefix(job.rec.org, job.rec.id)
    return f"{base}work/transcript/{job.version.id}/levels/{keys.check_id(track_id, 'track')}/{seq:06d}.lv"


def save_levels(job: Job, track_id: str, seq: int, env: Envelope) -> None:
    """A chunk's level envelope (what the other tracks' leak gates need), at a fixed key."""
    head = np.array([env.start_ms, env.frame_ms], dtype="<f8").tobytes()
    res.store().put_bytes(_levels_key(job, track_id, seq), head + env.db.astype("<f4").tobytes())


def load_levels(job: Job, track_id: str, seq: int) -> Envelope | None:
    try:
        data = res.store().get_bytes(_levels_key(job, track_id, seq))
    except NotFound:
        return None
    start_ms, frame_ms = np.frombuffer(data[:16], dtype="<f8")
    return Envelope(float(start_ms), int(frame_ms), np.frombuffer(data[16:], dtype="<f4").astype(np.float64))


@dataclass(frozen=True)
class Others:
    """The other tracks' level envelopes over a span; `complete` = nothing more will come."""

    envelopes: list[Envelope]
    complete: bool


def others_levels(job: Job, track_id: str, lo_ms: float, hi_ms: float,
                  make: Callable[[Chunk], Envelope | None], slack_ms: float = 200.0) -> Others:
    """Level envelopes of every other speech track's chunks that overlap [lo_ms, hi_ms): the
    one saved by that track's own step, else `make(chunk)` (None: cannot yet). Complete when
    every overlapping chunk has one and each track's stored chunks reach `hi_ms`."""
    origin = job.origin_ms
    with session_scope(res.engine()) as s:
        tracks = s.exec(select(Track).where(Track.recording_id == job.rec.id, Track.track_id != track_id,
                                            Track.kind.in_(("audio", "av")))).all()
        chunks = s.exec(select(Chunk).where(Chunk.recording_id == job.rec.id, Chunk.track_id != track_id,
                                            Chunk.status == "stored", Chunk.start_ms < origin + hi_ms,
                                            Chunk.start_ms > origin + lo_ms - 600_000)
                        .order_by(Chunk.track_id, Chunk.seq)).all()
    envelopes, complete = [], True
    for track in tracks:
        reach = float("-inf")
        for chunk in (c for c in chunks if c.track_id == track.track_id):
            start = chunk.start_ms - origin
            if chunk.duration_ms and start + chunk.duration_ms <= lo_ms:
                reach = max(reach, start + chunk.duration_ms)
                continue
            env = load_levels(job, chunk.track_id, chunk.seq) or make(chunk)
            if env is None:
                complete = False
                continue
            reach = max(reach, env.end_ms, start + (chunk.duration_ms or 0) if env.db.size == 0 else env.end_ms)
            if env.db.size and env.end_ms > lo_ms and env.start_ms < hi_ms:
                envelopes.append(env)
        complete = complete and reach >= hi_ms - slack_ms
    return Others(envelopes, complete)


# ---------------------------------------------------------------- segments ↔ rows

def to_row(version_id: str, rec_id: str, seg: Segment) -> TranscriptSegment:
    sp = seg.speaker
    return TranscriptSegment(
        version_id=version_id, recording_id=rec_id, track_id=sp.track_id, seq=seg.seq, idx=seg.idx,
        participant_id=sp.participant_id, display_name=sp.display_name, role=sp.role,
        start_ms=seg.start_ms, end_ms=seg.end_ms, text=seg.text,
        words=[[w.text, w.start_ms, w.end_ms, round(w.probability, 4)] for w in seg.words],
        avg_logprob=seg.avg_logprob, no_speech_prob=seg.no_speech_prob, compression_ratio=seg.compression_ratio,
        level_db=seg.level_db, voiced_ratio=seg.voiced_ratio, flags=list(seg.flags), suppressed=seg.suppressed)


def from_row(r: TranscriptSegment) -> Segment:
    sp = Speaker(r.participant_id, r.display_name, r.role, r.track_id)
    words = tuple(Word(w[0], int(w[1]), int(w[2]), float(w[3])) for w in r.words or [])
    return Segment(sp, r.start_ms, r.end_ms, r.text, words, r.avg_logprob, r.no_speech_prob, r.compression_ratio,
                   r.level_db, r.voiced_ratio, tuple(r.flags or ()), r.seq, r.idx)


def speaker_of(track: Track) -> Speaker:
    return Speaker(track.participant_id or track.track_id, track.display_name, track.role, track.track_id)


def commit_step(state: TranscriptTrackState, seqs: Sequence[int], segments: list[Segment], job: Job,
                **changes: Any) -> TranscriptTrackState:
    """Write the segments of chunks `seqs` and advance the track, only if nobody else did (CAS)."""
    with session_scope(res.engine()) as s:
        done = s.exec(update(TranscriptTrackState).where(
            TranscriptTrackState.id == state.id, TranscriptTrackState.next_seq == state.next_seq,
            TranscriptTrackState.finished == False).values(updated_at=now_ms(), **changes))  # noqa: E712
        if done.rowcount != 1:
            raise LostRace()
        s.exec(delete(TranscriptSegment).where(TranscriptSegment.version_id == job.version.id,
                                               TranscriptSegment.track_id == state.track_id,
                                               TranscriptSegment.seq.in_(list(seqs))))
        s.add_all([to_row(job.version.id, job.rec.id, seg) for seg in segments])
    return replace_state(state, changes)


def replace_state(state: TranscriptTrackState, changes: dict[str, Any]) -> TranscriptTrackState:
    return TranscriptTrackState(**{**state.model_dump(), **changes})
