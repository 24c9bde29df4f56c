"""`recorder transcribe`: a new transcript version of a recording, from the command line.

Runs the `retranscribe_recording` actor in this process (the model loads here) or, with
`--queue`, hands it to the workers through Redis. Either way a progress bar follows the
new version's per-track state in the database (chunks done of chunks stored), and the
version list is printed at the end: the old versions stay as they were.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Optional

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy.engine import Engine
from sqlmodel import func, select

from core.db import session_scope
from core.errors import NotFound, RecorderError
from core.models import Chunk, Recording, TranscriptTrackState, TranscriptVersion
from core.models.transcript import check_audio_kept, check_retranscribable, check_span


@dataclass(frozen=True)
class Request:
    recording_id: str
    model: Optional[str] = None
    beam_size: Optional[int] = None
    start_ms: Optional[int] = None
    end_ms: Optional[int] = None

    def kwargs(self) -> dict[str, Any]:
        return {k: v for k, v in (("model", self.model), ("beam_size", self.beam_size),
                                  ("start_ms", self.start_ms), ("end_ms", self.end_ms)) if v is not None}


def check(req: Request) -> Recording:
    """The same rules as `POST /v1/recordings/{id}/transcript/versions`."""
    from workers.transcript_store import get_recording

    check_span(req.start_ms, req.end_ms)
    rec = get_recording(req.recording_id)
    if rec is None:
        raise NotFound(f"recording {req.recording_id} not found", code="unknown_recording")
    check_retranscribable(rec.status)
    check_audio_kept(stored_chunk_count(req.recording_id))
    return rec


def stored_chunk_count(recording_id: str) -> int:
    from sqlmodel import select

    from core.db import session_scope
    from core.models import Chunk
    from workers import broker as res

    with session_scope(res.engine()) as s:
        return len(s.exec(select(Chunk.id).where(Chunk.recording_id == recording_id, Chunk.status == "stored",
                                                 Chunk.object_key != "")).all())


def latest_version(recording_id: str) -> Optional[TranscriptVersion]:
    from workers.transcript_store import versions_of

    return (versions_of(recording_id) or [None])[-1]


def progress_of(engine: Engine, version_id: str, recording_id: str) -> tuple[int, int]:
    """(chunks done, chunks stored) over the speech tracks of a version."""
    with session_scope(engine) as s:
        total = s.exec(select(func.count()).select_from(Chunk).where(
            Chunk.recording_id == recording_id, Chunk.status == "stored")).one()
        states = s.exec(select(TranscriptTrackState).where(TranscriptTrackState.version_id == version_id)).all()
        done = 0
        for st in states:
            done += s.exec(select(func.count()).select_from(Chunk).where(
                Chunk.recording_id == recording_id, Chunk.track_id == st.track_id, Chunk.status == "stored",
                Chunk.seq < st.next_seq)).one()
    return int(done), int(total)


def versions_table(recording_id: str) -> Table:
    from workers.transcript_store import versions_of

    table = Table("version", "model", "beam", "status", "current", "span ms", "segments", "took s")
    for v in versions_of(recording_id):
        span = "" if v.span_start_ms is None else f"{v.span_start_ms}–{v.span_end_ms or ''}"
        beam = str(((v.params or {}).get("decode") or {}).get("beam_size", ""))
        table.add_row(str(v.version), v.model, beam, v.status, "yes" if v.is_current else "", span,
                      str(v.segment_count), f"{v.time_taken_ms / 1000:.1f}")
    return table


def follow(engine: Engine, req: Request, before: int, job: threading.Thread | None, console: Console,
           timeout_s: float) -> TranscriptVersion:
    """Show the new version's progress until it is final (or failed, or the job died)."""
    deadline = time.monotonic() + timeout_s
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} chunks"),
                  TimeElapsedColumn(), console=console, transient=False) as prog:
        task = prog.add_task(f"transcribing {req.recording_id}", total=None)
        while time.monotonic() < deadline:
            v = latest_version(req.recording_id)
            if v is not None and v.version > before:
                done, total = progress_of(engine, v.id, req.recording_id)
                prog.update(task, completed=done, total=max(total, 1))
                if v.status in ("final", "failed"):
                    return v
            if job is not None and not job.is_alive():
                v = latest_version(req.recording_id)
                if v is not None and v.version > before and v.status in ("final", "failed"):
                    return v
                raise RecorderError("the re-transcription stopped before finishing (see the log above)")
            time.sleep(0.5)
    raise RecorderError(f"no final version after {timeout_s:.0f} s")


def run(req: Request, queue: bool, timeout_s: float, console: Console) -> TranscriptVersion:
    """Start the re-transcription (here or on the workers) and follow it to the end."""
    from workers import broker as res

    engine = res.engine()
    check(req)
    before = (latest_version(req.recording_id) or TranscriptVersion(recording_id="", version=0)).version
    job = None
    failure: list[BaseException] = []
    if queue:
        from core.queue import enqueue

        enqueue(res.broker, "retranscribe_recording", req.recording_id, **req.kwargs())
    else:
        from workers.transcription import retranscribe_recording

        def work() -> None:
            try:
                retranscribe_recording.fn(req.recording_id, **req.kwargs())
            except BaseException as exc:  # shown after the progress bar
                failure.append(exc)

        job = threading.Thread(target=work, name="retranscribe", daemon=True)
        job.start()
    try:
        version = follow(engine, req, before, job, console, timeout_s)
    except RecorderError:
        if failure:
            raise failure[0] from None
        raise
    console.print(versions_table(req.recording_id))
    return version
