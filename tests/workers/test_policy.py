"""The worker failure policy (`workers.policy`) and the step names (`core.steps`).

Unit tests with plain values; then real `dramatiq` worker processes on real Redis + S3 +
SQLite, with one retry and a tiny backoff, for a media step and a transcript step.
"""
from __future__ import annotations

import json

import pytest
from dramatiq.brokers.redis import RedisBroker
from pydantic import ValidationError
from sqlmodel import select

from core import keys, steps
from core.db import session_scope
from core.errors import DatabaseError, InvalidInput, InvalidMedia, NotFound, StorageError
from core.models import Chunk, ProcessingStep, Recording, Track, TranscriptTrackState, TranscriptVersion
from core.queue import enqueue
from core.settings import Settings
from tests.workers.conftest import WorkerProcess, settings_env, wait_for

T0 = 1_700_000_000_000


# ---------------------------------------------------------------- step names

def test_step_names_round_trip_through_parse() -> None:
    assert steps.window_step(3) == "window.000003"
    assert steps.chunk_step("cam-a", 12) == "chunk.cam-a.000012"
    assert steps.transcript_chunk_step("bob", 1) == "transcript.bob.000001"
    assert steps.parse("window.000003") == steps.Step("window", index=3)
    assert steps.parse("chunk.cam-a.000012") == steps.Step("chunk", track_id="cam-a", seq=12)
    assert steps.parse(steps.chunk_step("a.b.c", 7)) == steps.Step("chunk", track_id="a.b.c", seq=7)
    # a track called "final" is not the final transcript step
    assert steps.parse(steps.transcript_chunk_step("final", 0)) == steps.Step("transcript", track_id="final", seq=0)
    assert steps.parse(steps.TRANSCRIPT_FINAL) == steps.Step("transcript.final")
    assert steps.parse(steps.MEDIA_FINAL) == steps.Step("media.final")
    assert steps.window_step(2).startswith(steps.WINDOW_PREFIX)
    for bad in ("", "window.", "window.x1", "chunk.a", "chunk..000001", "media.other", "transcript.bob.x"):
        with pytest.raises(ValueError):
            steps.parse(bad)


def test_final_steps_and_descriptions() -> None:
    assert steps.FINAL_STEPS == ("media.final", "transcript.final")
    assert steps.is_final("media.final") and steps.is_final("transcript.final")
    assert not steps.is_final("window.000000") and not steps.is_final("transcript.bob.000001")
    assert steps.describe("transcript.final") == "transcription"
    assert steps.describe("media.final") == "video processing"
    assert steps.describe("transcript.bob.000003") == "transcription of track bob, chunk 3"
    assert steps.describe("window.000002") == "composite of window 2"
    assert steps.describe("chunk.a.000001") == "media check of track a, chunk 1"
    assert steps.describe("odd") == "step odd"


# ---------------------------------------------------------------- retries and messages

@pytest.fixture
def policy(monkeypatch):
    """`workers.policy` with `worker_max_retries` = 2 (its settings come from `workers.broker`)."""
    from workers import broker as res
    from workers import policy as pol

    monkeypatch.setattr(res, "settings", res.settings.model_copy(update={"worker_max_retries": 2}))
    return pol


def test_retry_when_retries_transient_and_unknown_errors_only(policy) -> None:
    for exc in (StorageError("s3 down"), DatabaseError("db down"), ValueError("a bug"), TimeoutError()):
        assert [policy.retry_when(n, exc) for n in range(4)] == [True, True, False, False], exc
    for exc in (InvalidMedia("bad", code="undecodable_audio"), NotFound("gone", code="object_not_found"),
                InvalidInput("no model", code="model_unavailable")):
        assert not policy.retry_when(0, exc), exc
    assert policy.should_retry(0, ValueError(), 0) is False  # worker_max_retries = 0: never


def test_every_worker_actor_uses_the_policy(policy) -> None:
    import dramatiq

    from workers import media, transcription

    actors = {a.actor_name: a for mod in (media, transcription) for a in vars(mod).values()
              if isinstance(a, dramatiq.Actor)}
    assert set(actors) == {"process_chunk", "composite_window", "finalize_recording", "transcribe_chunk",
                           "finalize_transcript", "retranscribe_recording", "index_transcript"}
    for name, a in actors.items():
        assert a.options["retry_when"] is policy.retry_when, name
        assert a.options["on_retry_exhausted"] == "step_failed", name
    # In a worker process every actor sits on one broker with `step_failed` (in this test process
    # other tests may have swapped dramatiq's global broker between imports: ask a fresh one).
    import subprocess
    import sys

    probe = ("from workers import actors, broker; "
             "names = set(broker.broker.get_declared_actors()); "
             "assert {'step_failed', 'process_chunk', 'transcribe_chunk', 'deliver_webhook'} <= names, names")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "on_retry_exhausted" not in policy.step_failed.options  # no loop
    assert policy.step_failed.queue_name == "default"
    assert policy.actor_options("media")["queue_name"] == "media"


def test_messages_are_ours_not_the_exceptions(policy) -> None:
    step = steps.transcript_chunk_step("bob", 3)
    driver_text = "Invalid data found when processing input; errno -1094995529"
    assert policy.failed_message(step, InvalidMedia(driver_text, code="undecodable_audio")) \
        == "transcription of track bob, chunk 3 failed (undecodable_audio)"
    assert policy.failed_message(steps.MEDIA_FINAL, KeyError(driver_text)) \
        == "video processing failed (unexpected_error)"
    assert policy.exhausted_message(steps.TRANSCRIPT_FINAL, 7) == "transcription failed after 7 attempts"
    assert policy.exhausted_message(steps.window_step(1), 1) == "composite of window 1 failed after 1 attempt"
    tb = {"options": {"traceback": "Traceback …\n  File x\nValueError: buffer size must be a multiple\n"}}
    assert policy._error_class(tb) == "ValueError" and policy._error_class({}) == "unknown"


def test_backoff_settings_are_checked_at_start() -> None:
    with pytest.raises(ValidationError, match="WORKER_MIN_BACKOFF_MS"):
        Settings(worker_min_backoff_ms=5000, worker_max_backoff_ms=1000)
    with pytest.raises(ValidationError):
        Settings(worker_max_retries=-1)


# ---------------------------------------------------------------- real workers

@pytest.fixture
def run_worker(settings, tmp_path):
    """One worker on every queue, one retry, ~50 ms backoff; stopped at teardown."""
    started: list[WorkerProcess] = []

    def _start() -> WorkerProcess:
        env = settings_env(settings, RECORDER_WINDOW_MS="3000", RECORDER_WORKER_MAX_RETRIES="1",
                           RECORDER_WORKER_MIN_BACKOFF_MS="50", RECORDER_WORKER_MAX_BACKOFF_MS="200")
        started.append(WorkerProcess(env, ["media", "transcribe", "default"], tmp_path / "worker.log"))
        return started[-1]

    yield _start
    for w in started:
        w.stop()


@pytest.fixture
def broker(settings):
    b = RedisBroker(url=settings.redis_url)
    yield b
    b.close()


def _add_recording(engine, rec_id: str, kind: str, final_steps: bool = True) -> None:
    """A finalized recording with one track and one stored chunk row, as ingest leaves it."""
    with session_scope(engine) as s:
        s.add(Recording(id=rec_id, org="acme", client_key=rec_id, status="processing", started_at_ms=T0))
        s.flush()  # the rows below refer to it
        s.add(Track(recording_id=rec_id, track_id="a", participant_id="p-a", display_name="A", kind=kind))
        s.add(Chunk(recording_id=rec_id, track_id="a", seq=0, status="stored", start_ms=T0, duration_ms=2500,
                    size=1, sha256="0" * 64, container="webm",
                    object_key=keys.chunk_key("acme", rec_id, "a", 0, "webm")))
        for name in steps.FINAL_STEPS if final_steps else ():
            s.add(ProcessingStep(recording_id=rec_id, step=name, status=steps.PENDING))


def _live_version(engine, rec_id: str, model: str = "", carry_key: str | None = None) -> None:
    """A live transcript version whose track "a" carries a tail at `carry_key`."""
    with session_scope(engine) as s:
        v = TranscriptVersion(recording_id=rec_id, version=1, model=model or "tiny.en", status="live",
                              params={"model": model})
        s.add(v)
        s.flush()
        s.add(TranscriptTrackState(version_id=v.id, recording_id=rec_id, track_id="a", next_seq=1,
                                   carry_key=carry_key, carry_anchors=[[0.0, 0.0]]))


def _step(engine, rec_id: str, name: str) -> ProcessingStep:
    with session_scope(engine) as s:
        return s.exec(select(ProcessingStep).where(ProcessingStep.recording_id == rec_id,
                                                   ProcessingStep.step == name)).one()


def _recording(engine, rec_id: str) -> Recording:
    with session_scope(engine) as s:
        rec = s.get(Recording, rec_id)
        s.expunge(rec)
        return rec


def _log_events(worker: WorkerProcess, event: str) -> list[dict]:
    lines = worker.log_path.read_text(errors="replace").splitlines()
    return [d for d in (json.loads(ln) for ln in lines if ln.startswith("{")) if d.get("event") == event]


def test_a_done_step_stays_done_and_a_failed_one_keeps_its_reason(engine) -> None:
    from workers.status import give_up, mark_step, note_retry

    _add_recording(engine, "rec-s", "audio", final_steps=False)
    done, bad, final = steps.transcript_chunk_step("a", 0), steps.transcript_chunk_step("a", 1), steps.MEDIA_FINAL
    mark_step(engine, "rec-s", done, steps.DONE)
    mark_step(engine, "rec-s", bad, steps.FAILED, error="transcription of track a, chunk 1 failed (no_audio)")
    note_retry(engine, "rec-s", done, "transcription of track a, chunk 0 failed (storage_unavailable)")
    note_retry(engine, "rec-s", final, "video processing failed (storage_unavailable)")
    assert (_step(engine, "rec-s", done).status, _step(engine, "rec-s", done).error) == ("done", None)
    assert (_step(engine, "rec-s", final).status, _step(engine, "rec-s", final).error) == (
        "pending", "video processing failed (storage_unavailable); retrying")
    assert _recording(engine, "rec-s").status == "processing"
    # a window that finalize tried inline waits with a note, and has no message of its own
    window = steps.window_step(2)
    note_retry(engine, "rec-s", window, "composite of window 2 failed (storage_unavailable)")
    assert _step(engine, "rec-s", window).status == "pending"

    assert not give_up(engine, "rec-s", done, "transcription of track a, chunk 0 failed after 9 attempts")
    assert not give_up(engine, "rec-s", bad, "transcription of track a, chunk 1 failed after 1 attempt")
    assert not give_up(engine, "rec-gone", final, "video processing failed after 9 attempts")
    assert give_up(engine, "rec-s", final, "video processing failed after 9 attempts")
    assert _step(engine, "rec-s", done).status == "done"
    assert _step(engine, "rec-s", bad).error == "transcription of track a, chunk 1 failed (no_audio)"
    rec = _recording(engine, "rec-s")
    assert (rec.status, rec.error) == ("failed", "video processing failed after 9 attempts")
    # the failure ends every step still waiting, saying why; done and failed steps keep theirs
    assert (_step(engine, "rec-s", window).status, _step(engine, "rec-s", window).error) == (
        "failed", "composite of window 2 not run: the recording failed")
    # a retry note arriving after the failure ends its step instead of leaving it waiting
    late = steps.transcript_chunk_step("a", 2)
    mark_step(engine, "rec-s", late, steps.RUNNING)
    note_retry(engine, "rec-s", late, "transcription of track a, chunk 2 failed (storage_unavailable)")
    assert (_step(engine, "rec-s", late).status, _step(engine, "rec-s", late).error) == (
        "failed", "transcription of track a, chunk 2 failed (storage_unavailable); not retried: the recording failed")
    # another final step failing later keeps the recording's first reason
    note_retry(engine, "rec-s", steps.TRANSCRIPT_FINAL, "transcription failed (storage_unavailable)")
    assert _step(engine, "rec-s", steps.TRANSCRIPT_FINAL).status == "failed"
    rec = _recording(engine, "rec-s")
    assert (rec.status, rec.error) == ("failed", "video processing failed after 9 attempts")


def test_retries_exhausted_fail_the_step_and_the_recording(engine, store, broker, run_worker) -> None:
    # media.final: its window's stored manifest does not parse (an unexpected error, so retried)
    _add_recording(engine, "rec-media", "av")
    store.put_bytes(keys.window_key("acme", "rec-media", 0, "json"), b"{not json", "application/json")
    # transcript.final: the carried tail of track "a" is truncated (an odd byte count of 16-bit PCM)
    _add_recording(engine, "rec-tx", "audio")
    carry = f"{keys.recording_prefix('acme', 'rec-tx')}work/transcript/v1/a/000000.pcm"
    store.put_bytes(carry, b"\x00\x01\x02")
    _live_version(engine, "rec-tx", carry_key=carry)
    worker = run_worker()
    enqueue(broker, "finalize_recording", "rec-media")
    enqueue(broker, "finalize_transcript", "rec-tx")
    for rec_id in ("rec-media", "rec-tx"):
        wait_for(lambda: _recording(engine, rec_id).status == "failed", 120, f"{rec_id} to fail",
                 interval_s=0.2, on_timeout=worker.log)

    for rec_id, name, message in (("rec-media", "media.final", "video processing failed after 2 attempts"),
                                  ("rec-tx", "transcript.final", "transcription failed after 2 attempts")):
        step = _step(engine, rec_id, name)
        assert (step.status, step.attempts, step.error) == ("failed", 2, message)  # one try, one retry
        assert _recording(engine, rec_id).error == message
    failed = {e["phase"]: e for e in _log_events(worker, "step_failed")}
    # the exception class is in the logs only
    assert failed["media.final"]["error_class"] == "json.decoder.JSONDecodeError"
    assert failed["transcript.final"]["error_class"] == "ValueError" and failed["transcript.final"]["attempts"] == 2


def test_bad_input_fails_at_once_without_retries(engine, store, broker, run_worker) -> None:
    # media.final: the chunk object is missing (NotFound: nothing a retry could fix)
    _add_recording(engine, "rec-gone", "av")
    # transcript.final: the version's model does not exist (InvalidInput)
    _add_recording(engine, "rec-model", "audio")
    _live_version(engine, "rec-model", model="/nonexistent/whisper-model")
    worker = run_worker()
    enqueue(broker, "finalize_recording", "rec-gone")
    enqueue(broker, "finalize_transcript", "rec-model")
    # step_failed is still called (dramatiq's on_retry_exhausted) and keeps the precise reason
    wait_for(lambda: len(_log_events(worker, "step_failure_kept")) >= 2, 120, "both failures handled",
             interval_s=0.2, on_timeout=worker.log)

    for rec_id, name, message in (("rec-gone", "media.final", "video processing failed (object_not_found)"),
                                  ("rec-model", "transcript.final", "transcription failed (model_unavailable)")):
        step = _step(engine, rec_id, name)
        assert (step.status, step.attempts, step.error) == ("failed", 1, message)
        rec = _recording(engine, rec_id)
        assert (rec.status, rec.error) == ("failed", message)
    window = _step(engine, "rec-gone", "window.000000")
    assert (window.status, window.error) == ("failed", "composite of window 0 failed (object_not_found)")
    assert "Retrying message" not in worker.log_path.read_text(errors="replace")


def test_finalize_settles_window_steps_it_found_in_place(engine, monkeypatch) -> None:
    """A window whose retry is still waiting when finalize finds the window current (rendered,
    then a later part of its step failed) is done once finalize has every window; a running one
    and a window past the end are left alone."""
    from workers import broker as res
    from workers import media
    from workers.status import mark_step, note_retry

    monkeypatch.setattr(res, "engine", lambda: engine)
    _add_recording(engine, "rec-w", "audio", final_steps=False)
    waiting, failed, running, beyond = (steps.window_step(i) for i in (0, 1, 2, 5))
    note_retry(engine, "rec-w", waiting, "composite of window 0 failed (storage_unavailable)")
    mark_step(engine, "rec-w", failed, steps.FAILED, error="composite of window 1 failed after 6 attempts")
    mark_step(engine, "rec-w", running, steps.RUNNING)
    note_retry(engine, "rec-w", beyond, "composite of window 5 failed (storage_unavailable)")
    media._settle_windows("rec-w", count=3)
    got = {n: _step(engine, "rec-w", n).status for n in (waiting, failed, running, beyond)}
    assert got == {waiting: "done", failed: "done", running: "running", beyond: "pending"}
