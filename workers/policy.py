"""The one failure policy of every worker actor.

    actor(queue, step=…)      `dramatiq.actor` with `actor_options(queue)`; `step(*args)` names the
                              processing step a message works on (for `step_failed`)
    retry_when(retries, exc)  bad input (a non-retryable RecorderError) is never retried; anything
                              else is, `worker_max_retries` times, backing off exponentially from
                              `worker_min_backoff_ms` to `worker_max_backoff_ms`
    step_guard(rec, step)     running → done; a failure is written on the step: `failed` for good
                              (bad input), `pending` with a note while it waits for a retry
    step_failed(msg, info)    `on_retry_exhausted` of every actor: the step, and for a final step
                              the recording, becomes `failed`: "… failed after N attempts"

Errors stored on steps and recordings are our own sentences (what the step does, plus our
error code); exception classes and library texts go to the logs only.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator, TypeVar

import dramatiq

from core.errors import RecorderError
from core.logging import bound, get_logger
from core.steps import DONE, FAILED, RUNNING, describe
from workers import broker as res
from workers.status import give_up, mark_step, note_retry

__all__ = ["actor", "actor_options", "retry_when", "step_guard", "failures_recorded", "failed_message",
           "step_failed"]

log = get_logger("workers.policy")
TIME_LIMIT_MS = {"media": 30 * 60_000}  # per queue; others get DEFAULT_TIME_LIMIT_MS
DEFAULT_TIME_LIMIT_MS = 60 * 60_000
F = TypeVar("F", bound=Callable[..., Any])
_STEP_OF: dict[str, Callable[..., str]] = {}  # actor name → the step its message works on


# ---------------------------------------------------------------- retries

def should_retry(retries: int, exc: BaseException, max_retries: int) -> bool:
    """Retry transient and unexpected failures `max_retries` times; bad input never."""
    if isinstance(exc, RecorderError) and not exc.retryable:
        return False
    return retries < max_retries


def retry_when(retries: int, exc: BaseException) -> bool:
    """dramatiq's `retry_when`: `should_retry` with `worker_max_retries`. When it says no,
    the Retries middleware fails the message and sends it to `step_failed`."""
    return should_retry(retries, exc, res.settings.worker_max_retries)


def actor_options(queue: str) -> dict[str, Any]:
    """Options of every actor on `queue`: retries, backoff, time limit, `step_failed`."""
    s = res.settings
    return dict(queue_name=queue, retry_when=retry_when, min_backoff=s.worker_min_backoff_ms,
                max_backoff=s.worker_max_backoff_ms, time_limit=TIME_LIMIT_MS.get(queue, DEFAULT_TIME_LIMIT_MS),
                on_retry_exhausted="step_failed")


def actor(queue: str, *, step: Callable[..., str] | None = None) -> Callable[[F], dramatiq.Actor]:
    """Declare an actor under this policy. `step` takes the actor's arguments (the recording
    id first) and names the step a message works on; without it, `step_failed` only logs."""
    def declare(fn: F) -> dramatiq.Actor:
        if step is not None:
            _STEP_OF[fn.__name__] = step
        return dramatiq.actor(fn, **actor_options(queue))
    return declare


# ---------------------------------------------------------------- messages (ours, never the library's)

def reason(exc: BaseException) -> str:
    return exc.code if isinstance(exc, RecorderError) else "unexpected_error"


def failed_message(step: str, exc: BaseException) -> str:
    """Our words for a failed attempt, e.g. `transcription of track bob, chunk 3 failed (undecodable_audio)`."""
    return f"{describe(step)} failed ({reason(exc)})"


def exhausted_message(step: str, attempts: int) -> str:
    """Our words for retries run out, e.g. `transcription failed after 3 attempts`."""
    return f"{describe(step)} failed after {attempts} attempt{'' if attempts == 1 else 's'}"


# ---------------------------------------------------------------- step guard

def record_failure(recording_id: str, step: str, exc: BaseException) -> None:
    """Bad input fails the step for good (a final step fails the recording); anything else
    leaves it `pending` with a note until its retry (or `step_failed`)."""
    final = isinstance(exc, RecorderError) and not exc.retryable
    log.warning("step_attempt_failed", step=step, code=reason(exc), error_class=type(exc).__name__,
                will_retry=not final)
    try:
        if final:
            mark_step(res.engine(), recording_id, step, FAILED, error=failed_message(step, exc))
        else:
            note_retry(res.engine(), recording_id, step, failed_message(step, exc))
    except Exception as secondary:  # noqa: BLE001 (the step's own error goes on to dramatiq)
        log.error("step_status_not_saved", step=step, error_class=type(secondary).__name__)


@contextmanager
def failures_recorded(recording_id: str, step: str) -> Iterator[None]:
    """Write a failure of the block on the step (see `record_failure`), then re-raise it."""
    try:
        yield
    except Exception as exc:
        record_failure(recording_id, step, exc)
        raise


@contextmanager
def step_guard(recording_id: str, step: str) -> Iterator[None]:
    """The step is `running` inside the block, `done` after it; failures as `failures_recorded`."""
    mark_step(res.engine(), recording_id, step, RUNNING)
    with failures_recorded(recording_id, step):
        yield
    mark_step(res.engine(), recording_id, step, DONE)


# ---------------------------------------------------------------- retries exhausted

def _error_class(message: dict[str, Any]) -> str:
    """The exception class of the last attempt, from dramatiq's traceback (for the logs)."""
    lines = [ln for ln in str((message.get("options") or {}).get("traceback", "")).splitlines() if ln.strip()]
    return lines[-1].split(":", 1)[0].strip() if lines else "unknown"


def _step_of(message: dict[str, Any]) -> tuple[str, str] | None:
    """(recording id, step name) a failed message worked on, if its actor names one."""
    name_step = _STEP_OF.get(str(message.get("actor_name")))
    args, kwargs = list(message.get("args") or []), dict(message.get("kwargs") or {})
    recording_id = args[0] if args else kwargs.get("recording_id")
    if name_step is None or recording_id is None:
        return None
    try:
        return str(recording_id), name_step(*args, **kwargs)
    except (TypeError, ValueError):
        return None


@dramatiq.actor(queue_name="default", max_retries=5, min_backoff=1000, max_backoff=30_000)
def step_failed(message: dict[str, Any], retry_info: dict[str, Any]) -> None:
    """`on_retry_exhausted` of every actor: the message's step failed for good.

    A step already `failed` (bad input) keeps its more precise reason. Runs on the
    `default` queue: a deployment that splits queues keeps one worker on it.
    """
    actor_name, attempts = message.get("actor_name"), int(retry_info.get("retries", 0)) + 1
    target = _step_of(message)
    if target is None:
        log.error("retries_exhausted", actor=actor_name, attempts=attempts, error_class=_error_class(message))
        return
    recording_id, step = target
    with bound(recording_id=recording_id, phase=step):
        if give_up(res.engine(), recording_id, step, exhausted_message(step, attempts)):
            log.error("step_failed", actor=actor_name, attempts=attempts, error_class=_error_class(message))
        else:
            log.info("step_failure_kept", actor=actor_name, attempts=attempts)  # failed/done already, or deleted
