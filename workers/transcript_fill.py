"""The transcript of a reconciled bot recording: the client's audio where the bot had none.

The bot's tracks are transcribed live, chunk by chunk, as always. At the end (final or a
re-transcription), each participant's plan (`workers.reconcile`, `ParticipantPlan.transcript`)
names the spans where the client plays AND the bot has no audio of that participant; their
audio is read from the client's chunks at `timeline - offset`, planned as one final block
per span (VAD → model windows) and decoded as the participant's bot audio track, so the
merge sees one speaker. Where the bot lost only the video, the client plays the picture but
the bot's live segments stand and nothing is added: each word is transcribed once. Its
segments take seq `FILL_SEQ + span number` (bot chunk seqs stay far below): a re-run
replaces them, nothing else. A client whose audio cannot be read adds nothing (logged):
the participant keeps the bot's transcript alone.
"""
from __future__ import annotations

from sqlmodel import delete, select

from core.db import session_scope
from core.errors import InvalidMedia
from core.logging import get_logger
from core.models import Track, TranscriptSegment
from transcribe import chunking
from transcribe.pipeline import Window, plan_step
from transcribe.pipeline import decode as decode_windows
from workers import broker as res
from workers import reconcile
from workers import transcript_store as store

__all__ = ["FILL_SEQ", "fill_from_client"]

log = get_logger("workers.transcript_fill")
FILL_SEQ = 1_000_000


def _in_span(job: store.Job, start_ms: int, end_ms: int) -> bool:
    return job.span is None or (end_ms > job.span[0] and start_ms < job.span[1])


def _windows(job: store.Job, plan: reconcile.ParticipantPlan) -> list[Window]:
    """VAD-planned model windows of every span transcribed from one participant's client (final
    blocks: nothing carried); raises InvalidMedia when the client's audio cannot be read."""
    windows: list[Window] = []
    for n, span in enumerate(s for s in plan.transcript if s.source == "client"):
        if not _in_span(job, span.start_ms, span.end_ms):
            continue
        block = chunking.place(reconcile.client_pcm(plan, span, chunking.SAMPLE_RATE), span.start_ms)
        windows += plan_step(None, block, final=True, opts=job.opts, seq=FILL_SEQ + n).windows
    return windows


def _replace(job: store.Job, track_id: str, rows: list[TranscriptSegment]) -> None:
    with session_scope(res.engine()) as s:
        s.exec(delete(TranscriptSegment).where(TranscriptSegment.version_id == job.version.id,
                                               TranscriptSegment.track_id == track_id,
                                               TranscriptSegment.seq >= FILL_SEQ))
        s.add_all(rows)


def fill_from_client(job: store.Job) -> int:
    """Transcribe what each paired participant's client plays; returns the segments written."""
    recon = reconcile.reconciliation(job.rec)
    if recon is None:
        return 0
    written = 0
    for plan in recon.participants:
        with session_scope(res.engine()) as s:
            track = s.exec(select(Track).where(Track.recording_id == job.rec.id,
                                               Track.track_id == plan.pairing.audio_track)).first()
        if track is None:
            continue
        speaker = store.speaker_of(track)
        try:
            windows = _windows(job, plan)
        except InvalidMedia as exc:  # the client is only a fallback: keep the bot's transcript alone
            log.warning("client_spans_not_transcribed", participant=plan.pairing.participant_id, reason=exc.message)
            windows = []
        segments = decode_windows(job.model, speaker, windows, job.opts) if windows else {}
        rows = [store.to_row(job.version.id, job.rec.id, seg) for segs in segments.values() for seg in segs]
        _replace(job, track.track_id, rows)
        written += len(rows)
        log.info("client_spans_transcribed", participant=plan.pairing.participant_id, windows=len(windows),
                 segments=len(rows))
    return written
