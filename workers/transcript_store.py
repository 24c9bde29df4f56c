"""Persistence of transcription work: versions, per-track state, carried tails, segment rows.

Used by the transcription actors (`workers.transcription`); resources come from
`workers.broker` (engine, store, settings) so any worker process can continue any track.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from sqlalchemy.exc import IntegrityError
from sqlmodel import delete, func, select, update

from core import keys
from core.db import session_scope
from core.errors import RecorderError
from core.models import (Chunk, OrgVocabulary, Recording, Track, TranscriptSegment, TranscriptTrackState,
                         TranscriptVersion)
from core.models._types import now_ms
from transcribe import chunking, model as whisper
from transcribe.chunking import CarryOptions
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
                        carry=carry)


def new_params(spec: whisper.ModelSpec, rec: Recording, beam_size: int | None = None) -> dict[str, Any]:
    device, compute = whisper.resolve_device(spec)
    decode_opts = whisper.DecodeOptions(beam_size=beam_size or res.settings.whisper_beam_size,
                                        vocabulary=vocabulary(rec.org, rec),
                                        batch_size=res.settings.whisper_batch_size)
    return {"model": spec.name, "device": device, "compute_type": compute, "cpu_threads": spec.cpu_threads,
            "replicas": spec.replicas,
            "vad_aggressiveness": res.settings.vad_aggressiveness, "batch_s": res.settings.transcribe_batch_s,
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


def make_job(version: TranscriptVersion, rec: Recording) -> Job:
    params = version.params or {}
    model = whisper.load_model(model_spec(params.get("model", "")))
    span = None if version.span_start_ms is None else (version.span_start_ms, version.span_end_ms or 2**62)
    return Job(version, rec, origin_of(rec), model, options_from(params), span, res.settings.transcribe_lookahead)


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
