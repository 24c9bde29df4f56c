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
from core.errors import InvalidInput, InvalidState, NotFound, RecorderError
from core.models import Chunk, Recording, TranscriptTrackState, TranscriptVersion


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


def check(engine: Engine, req: Request) -> Recording:
    """The same rules as `POST /v1/recordings/{id}/transcript/versions`."""
    if req.start_ms is not None and req.end_ms is not None and req.end_ms <= req.start_ms:
        raise InvalidInput("--end-ms must be after --start-ms", code="bad_span")
    with session_scope(engine) as s:
        rec = s.get(Recording, req.recording_id)
    if rec is None or rec.status == "deleted":
        raise NotFound(f"recording {req.recording_id} not found", code="unknown_recording")
    if rec.status not in ("ready", "failed"):
        raise InvalidState(f"recording is {rec.status}; re-transcribe it once processed", code="not_processed")
    return rec


def latest_version(engine: Engine, recording_id: str) -> Optional[TranscriptVersion]:
    with session_scope(engine) as s:
        return s.exec(select(TranscriptVersion).where(TranscriptVersion.recording_id == recording_id)
                      .order_by(TranscriptVersion.version.desc())).first()


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


def versions_table(engine: Engine, recording_id: str) -> Table:
    table = Table("version", "model", "beam", "status", "current", "span ms", "segments", "took s")
    with session_scope(engine) as s:
        rows = s.exec(select(TranscriptVersion).where(TranscriptVersion.recording_id == recording_id)
                      .order_by(TranscriptVersion.version)).all()
    for v in rows:
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
            v = latest_version(engine, req.recording_id)
            if v is not None and v.version > before:
                done, total = progress_of(engine, v.id, req.recording_id)
                prog.update(task, completed=done, total=max(total, 1))
                if v.status in ("final", "failed"):
                    return v
            if job is not None and not job.is_alive():
                v = latest_version(engine, req.recording_id)
                if v is not None and v.version > before and v.status in ("final", "failed"):
                    return v
                raise RecorderError("the re-transcription stopped before finishing (see the log above)")
            time.sleep(0.5)
    raise RecorderError(f"no final version after {timeout_s:.0f} s")


def run(req: Request, queue: bool, timeout_s: float, console: Console) -> TranscriptVersion:
    """Start the re-transcription (here or on the workers) and follow it to the end."""
    from workers import broker as res

    engine = res.engine()
    check(engine, req)
    before = (latest_version(engine, req.recording_id) or TranscriptVersion(recording_id="", version=0)).version
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
    console.print(versions_table(engine, req.recording_id))
    return version
