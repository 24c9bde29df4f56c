"""Processing status of recordings: per-step rows and the `ready` decision.

A recording is `ready` when every required final step is `done`; any step `failed`
for good makes the recording `failed` with that step's error.
"""
from __future__ import annotations

from sqlalchemy.engine import Engine
from sqlmodel import select

from core.db import session_scope
from core.models import ProcessingStep, Recording
from core.models._types import now_ms

REQUIRED_FINAL_STEPS = ("media.final", "transcript.final")


def mark_step(engine: Engine, recording_id: str, step: str, status: str,
              progress: float | None = None, error: str | None = None) -> None:
    """Upsert one step's status (pending|running|done|failed) and progress 0..1."""
    with session_scope(engine) as s:
        row = s.exec(select(ProcessingStep).where(ProcessingStep.recording_id == recording_id,
                                                  ProcessingStep.step == step)).first()
        if row is None:
            row = ProcessingStep(recording_id=recording_id, step=step)
        if status == "running" and row.status != "running":
            row.attempts += 1
        row.status = status
        row.progress = 1.0 if status == "done" else (progress if progress is not None else row.progress)
        row.error = error
        row.updated_at = now_ms()
        s.add(row)
        rec = s.get(Recording, recording_id)
        if rec is not None and status == "failed" and step in REQUIRED_FINAL_STEPS:
            rec.status, rec.error = "failed", f"{step}: {error}"
            s.add(rec)
    if status == "done":
        maybe_ready(engine, recording_id)


def maybe_ready(engine: Engine, recording_id: str) -> bool:
    """Mark the recording ready when all required final steps are done."""
    with session_scope(engine) as s:
        rec = s.get(Recording, recording_id)
        if rec is None or rec.status in ("ready", "deleted"):
            return rec is not None and rec.status == "ready"
        steps = s.exec(select(ProcessingStep).where(ProcessingStep.recording_id == recording_id,
                                                    ProcessingStep.step.in_(REQUIRED_FINAL_STEPS))).all()
        done = {st.step for st in steps if st.status == "done"}
        if all(name in done for name in REQUIRED_FINAL_STEPS):
            rec.status, rec.ready_at, rec.error = "ready", now_ms(), None
            s.add(rec)
            return True
    return False
