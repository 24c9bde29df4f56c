"""Processing status of recordings: per-step rows and the `ready` decision.

A recording is `ready` when every final step (`core.steps.FINAL_STEPS`) is `done`; a
final step `failed` for good makes the recording `failed` with that step's error. Each of
these transitions (and the final transcript being done) is announced once to the org's
webhooks (`recording.ready`, `recording.failed`, `transcript.ready`).
"""
from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import select

from core.db import session_scope
from core.models import ProcessingStep, Recording
from core.models._types import now_ms
from core.errors import QueueError
from core.logging import get_logger
from core.steps import DONE, FAILED, FINAL_STEPS, PENDING, RUNNING, TRANSCRIPT_FINAL, describe, is_final

log = get_logger("workers.status")


def announce(engine: Engine, org: str, event_type: str, recording_id: str, **data: object) -> None:
    """Queue a webhook event; a Redis outage loses the announcement, never the step."""
    from core import webhooks
    from workers import broker as res

    try:
        webhooks.emit(engine, res.broker, org, event_type, {"recording_id": recording_id, **data})
    except QueueError:
        log.warning("webhook_not_queued", recording_id=recording_id, event=event_type)


def mark_step(engine: Engine, recording_id: str, step: str, status: str,
              progress: float | None = None, error: str | None = None) -> None:
    """Upsert one step's status (pending|running|done|failed) and progress 0..1. A deleted
    recording (a tombstone) takes no steps: a late message cannot bring it back."""
    with session_scope(engine) as s:
        current = s.get(Recording, recording_id)
        if current is None or current.status == "deleted":
            return
        row = s.exec(select(ProcessingStep).where(ProcessingStep.recording_id == recording_id,
                                                  ProcessingStep.step == step)).first()
        if row is None:
            row = ProcessingStep(recording_id=recording_id, step=step)
        newly = row.status != status
        if status == RUNNING and row.status != RUNNING:
            row.attempts += 1
        row.status = status
        row.progress = 1.0 if status == DONE else (progress if progress is not None else row.progress)
        row.error = error
        row.updated_at = now_ms()
        s.add(row)
        rec = s.get(Recording, recording_id)
        failed_now = rec is not None and status == FAILED and is_final(step) and rec.status != "failed"
        if failed_now:  # the first final step to fail names the recording's error; later ones keep it
            rec.status, rec.error = "failed", error
            s.add(rec)
            _settle_waiting(s, recording_id, except_step=step)
    if failed_now and rec is not None:
        announce(engine, rec.org, "recording.failed", recording_id, error=error)
    if status == DONE and newly and step == TRANSCRIPT_FINAL and rec is not None:
        announce(engine, rec.org, "transcript.ready", recording_id)
    if status == DONE:
        maybe_ready(engine, recording_id)


def _status(engine: Engine, recording_id: str, step: str) -> str | None:
    """The step's status; None if it has no row or the recording is gone."""
    with session_scope(engine) as s:
        if s.get(Recording, recording_id) is None:
            return None
        row = s.exec(select(ProcessingStep).where(ProcessingStep.recording_id == recording_id,
                                                  ProcessingStep.step == step)).first()
        return row.status if row is not None else PENDING


def _settle_waiting(s, recording_id: str, except_step: str) -> None:
    """The recording just failed: steps still waiting (`pending`) will not run for it — end
    them as `failed`, saying so, so that no step of a failed recording waits forever (a
    window that finalize tried inline has no message of its own to end it). A `running`
    step ends itself: its message finishes, or sees the failed recording and gives up."""
    rows = s.exec(select(ProcessingStep).where(ProcessingStep.recording_id == recording_id,
                                               ProcessingStep.status == PENDING,
                                               ProcessingStep.step != except_step)).all()
    for row in rows:
        row.status, row.error, row.updated_at = FAILED, f"{describe(row.step)} not run: the recording failed", now_ms()
        s.add(row)


def note_retry(engine: Engine, recording_id: str, step: str, failure: str) -> None:
    """A transient failure (`failure`: what failed and why): the step waits for its retry
    (`pending`, "…; retrying"). A step already `done` (by another message) stays done; on a
    recording that has failed there is no retry to wait for, and the step fails."""
    if _status(engine, recording_id, step) in (None, DONE):
        return
    with session_scope(engine) as s:
        rec = s.get(Recording, recording_id)
        failed = rec is not None and rec.status == "failed"
    if failed:
        mark_step(engine, recording_id, step, FAILED, error=f"{failure}; not retried: the recording failed")
    else:
        mark_step(engine, recording_id, step, PENDING, error=f"{failure}; retrying")


def give_up(engine: Engine, recording_id: str, step: str, error: str) -> bool:
    """Fail the step for good (retries exhausted). False, and nothing changed, when the
    recording is gone, the step is done (by another message) or already failed (bad
    input: its reason is more precise)."""
    if _status(engine, recording_id, step) in (None, DONE, FAILED):
        return False
    mark_step(engine, recording_id, step, FAILED, error=error)
    return True


def maybe_ready(engine: Engine, recording_id: str) -> bool:
    """Mark the recording ready when all final steps are done."""
    with session_scope(engine) as s:
        rec = s.get(Recording, recording_id)
        if rec is None or rec.status in ("ready", "deleted"):
            return rec is not None and rec.status == "ready"
        steps = s.exec(select(ProcessingStep).where(ProcessingStep.recording_id == recording_id,
                                                    ProcessingStep.step.in_(FINAL_STEPS))).all()
        done = {st.step for st in steps if st.status == DONE}
        if not all(name in done for name in FINAL_STEPS):
            return False
        at, org = now_ms(), rec.org
        # one flip, whoever finishes last: only that one announces it
        flipped = s.exec(update(Recording).where(Recording.id == recording_id,  # type: ignore[call-overload]
                                                 Recording.status.notin_(("ready", "deleted")))
                         .values(status="ready", ready_at=at, error=None)).rowcount == 1
    if flipped:
        announce(engine, org, "recording.ready", recording_id, ready_at=at)
    return True
