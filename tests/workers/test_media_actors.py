"""The media actors on real Redis + S3 + SQLite, in real `dramatiq` worker processes."""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import av
import pytest
from dramatiq.brokers.redis import RedisBroker
from sqlmodel import select

from compositor.layout import Rect, grid
from compositor.probe import probe
from core import keys
from core.db import session_scope
from core.models import Chunk, ProcessingStep, Recording, Track
from core.queue import enqueue
from tests.compositor.measure import beep_onsets_ms, flash_onsets_ms, frame_hashes, nearest_offsets
from tests.media import av_clip, split_chunks
from tests.workers.conftest import wait_for

T0 = 1_700_000_000_000
WINDOW = "3000"
A_EVENTS, B_EVENTS, B_START = (1.0, 3.2, 5.5), (0.8, 3.3), 1000


@pytest.fixture(scope="module")
def chunk_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("worker-media")
    a = av_clip(d / "a.webm", 7, beeps_s=A_EVENTS, flashes_s=A_EVENTS, label="A")
    b = av_clip(d / "b.webm", 5, beeps_s=B_EVENTS, flashes_s=B_EVENTS, label="B")
    return {"a": split_chunks(a, d / "a", chunk_s=2.5), "b": split_chunks(b, d / "b", chunk_s=2.5)}


@pytest.fixture
def broker(settings):
    b = RedisBroker(url=settings.redis_url)
    yield b
    b.close()


def _add_recording(engine, store, rec_id: str, tracks: dict[str, list], layout: str = "grid",
                   status: str = "recording", offsets: dict[str, int] | None = None) -> None:
    """Rows + objects as ingest leaves them: Recording, Tracks, stored Chunks in S3."""
    with session_scope(engine) as s:
        s.add(Recording(id=rec_id, org="acme", client_key=rec_id, layout=layout, status=status, started_at_ms=T0))
    for track_id, chunks in tracks.items():
        with session_scope(engine) as s:
            s.add(Track(recording_id=rec_id, track_id=track_id, participant_id=f"p-{track_id}",
                        display_name=f"Person {track_id.upper()}", kind="av"))
        for seq, (path, start, dur) in enumerate(chunks):
            data = Path(path).read_bytes()
            key = keys.chunk_key("acme", rec_id, track_id, seq, "webm")
            store.put_bytes(key, data, "video/webm")
            with session_scope(engine) as s:
                s.add(Chunk(recording_id=rec_id, track_id=track_id, seq=seq, status="stored",
                            start_ms=T0 + (offsets or {}).get(track_id, 0) + start, duration_ms=dur,
                            size=len(data), sha256=hashlib.sha256(data).hexdigest(), container="webm",
                            object_key=key, stored_at=T0))


def _steps(engine, rec_id: str) -> dict[str, ProcessingStep]:
    with session_scope(engine) as s:
        return {st.step: st for st in s.exec(select(ProcessingStep).where(ProcessingStep.recording_id == rec_id))}


def _done(engine, rec_id: str, step: str) -> bool:
    st = _steps(engine, rec_id).get(step)
    if st is not None and st.status == "failed":
        raise AssertionError(f"{step} failed: {st.error}")
    return st is not None and st.status == "done"


def _finalize(engine, broker, rec_id: str) -> None:
    with session_scope(engine) as s:
        rec = s.get(Recording, rec_id)
        rec.status = "processing"
        s.add(rec)
    enqueue(broker, "finalize_recording", rec_id)


def _centre(r: Rect) -> Rect:
    return Rect(r.x + r.w // 4, r.y + r.h // 4, r.w // 2, r.h // 3)


def test_windows_while_recording_then_finalize_only_concatenates(engine, store, broker, chunk_files,
                                                                 start_media_worker, tmp_path):
    _add_recording(engine, store, "rec1", chunk_files, offsets={"b": B_START})
    worker = start_media_worker(RECORDER_WINDOW_MS=WINDOW)
    for seq in range(4):
        for track in ("a", "b"):
            if seq < len(chunk_files[track]):
                enqueue(broker, "process_chunk", "rec1", track, seq)
    # Both tracks reach 6 s: windows 0 and 1 are composited during the "interview".
    wait_for(lambda: _done(engine, "rec1", "window.000000") and _done(engine, "rec1", "window.000001"), 120,
             "windows 0 and 1", on_timeout=worker.log)
    assert "window.000002" not in _steps(engine, "rec1")  # still recording: not ready
    _finalize(engine, broker, "rec1")
    wait_for(lambda: _done(engine, "rec1", "media.final"), 120, "media.final", on_timeout=worker.log)
    steps = _steps(engine, "rec1")
    assert steps["window.000000"].attempts == 1 and steps["window.000001"].attempts == 1  # not redone
    assert all(steps[f"chunk.{t}.{s:06d}"].status == "done" for t in "ab" for s in range(len(chunk_files[t])))
    with session_scope(engine) as s:
        outputs = s.get(Recording, "rec1").outputs
    assert outputs["windows"] == 3 and abs(outputs["duration_ms"] - 7000) <= 60
    final = tmp_path / "composite.mp4"
    store.download(outputs["composite"], str(final))
    info = probe(final)
    assert (info.stream("video").codec, info.stream("audio").codec) == ("h264", "aac")
    assert abs(info.stream("video").end_ms - outputs["duration_ms"]) <= 34
    video = info.stream("video")
    assert (video.width, video.height) == (640, 360)  # two 320×180 cameras: tiles unscaled, not 1280×720
    tiles = grid(2, video.width, video.height)
    a_exp, b_exp = [s * 1000 for s in A_EVENTS], [B_START + s * 1000 for s in B_EVENTS]
    offsets = (nearest_offsets(flash_onsets_ms(final, _centre(tiles[0])), a_exp)
               + nearest_offsets(flash_onsets_ms(final, _centre(tiles[1])), b_exp)
               + nearest_offsets(beep_onsets_ms(final), sorted(a_exp + b_exp)))
    assert all(abs(o) <= 40 for o in offsets), offsets
    playlist = store.get_bytes(outputs["hls"]).decode()
    segments = [line for line in playlist.splitlines() if line.endswith(".ts")]
    assert segments and all(store.exists(keys.output_key("acme", "rec1", f"hls/{u}")) for u in segments)
    assert store.get_bytes(outputs["poster"])[:2] == b"\xff\xd8"
    assert store.get_bytes(outputs["thumbnails"])[:2] == b"\xff\xd8"


def test_a_window_scheduled_twice_at_once_is_rendered_once(engine, store, broker, chunk_files,
                                                           start_media_worker):
    _add_recording(engine, store, "rec_dup", chunk_files, offsets={"b": B_START})
    workers = [start_media_worker(RECORDER_WINDOW_MS=WINDOW) for _ in range(2)]
    for _ in range(2):  # as two chunk messages would: the same window, twice, two workers
        enqueue(broker, "composite_window", "rec_dup", 0)
    wait_for(lambda: _done(engine, "rec_dup", "window.000000"), 120, "window 0", on_timeout=workers[0].log)

    def logs() -> str:
        return "".join(w.log_path.read_text(errors="replace") for w in workers)

    wait_for(lambda: '"window_already_rendered"' in logs(), 120, "the second message handled")
    logs = logs()
    assert logs.count('"window_rendered"') == 1, logs[-3000:]
    assert _steps(engine, "rec_dup")["window.000000"].attempts == 1


def test_invalid_chunk_fails_fast_and_becomes_a_gap(engine, store, broker, chunk_files, start_media_worker, tmp_path):
    tracks = {"a": list(chunk_files["a"][:3])}
    _add_recording(engine, store, "rec2", tracks)
    bad = keys.chunk_key("acme", "rec2", "a", 1, "webm")
    store.put_bytes(bad, b"\x89PNG\r\n\x1a\n" + b"\x00" * 4000)  # not media
    worker = start_media_worker(RECORDER_WINDOW_MS=WINDOW)
    for seq in range(3):
        enqueue(broker, "process_chunk", "rec2", "a", seq)

    def failed():
        st = _steps(engine, "rec2").get("chunk.a.000001")
        return st is not None and st.status == "failed" and st

    step = wait_for(failed, 60, "chunk 1 to fail", on_timeout=worker.log)
    assert "invalid_media" in step.error or "unsupported" in step.error
    _finalize(engine, broker, "rec2")
    wait_for(lambda: _done(engine, "rec2", "media.final"), 120, "media.final", on_timeout=worker.log)
    assert _steps(engine, "rec2")["chunk.a.000001"].attempts <= 1  # never retried
    with session_scope(engine) as s:
        outputs = s.get(Recording, "rec2").outputs
    gaps = outputs["media_gaps"]["a"]
    assert any(abs(g[0] - 2500) <= 60 and abs(g[1] - 5000) <= 60 for g in gaps), gaps


def _window_format(store, rec_id: str, index: int) -> list[int]:
    return json.loads(store.get_bytes(keys.window_key("acme", rec_id, index, "json")))["format"]


def test_a_larger_camera_joining_later_gives_every_window_its_size(engine, store, broker, chunk_files,
                                                                   start_media_worker, tmp_path):
    """Window 0 (one 320×180 camera) renders at 640×360 while recording; a 640×360 camera then
    joins: later windows need 1280×720, and finalize renders window 0 again at that size, so
    the windows still join by stream copy into one picture size."""
    big = av_clip(tmp_path / "big.webm", 5, size=(640, 360), beeps_s=(1.0,), flashes_s=(1.0,), label="C")
    _add_recording(engine, store, "rec_size", {"a": chunk_files["a"], "c": split_chunks(big, tmp_path / "c", 2.5)},
                   offsets={"c": 3500})
    worker = start_media_worker(RECORDER_WINDOW_MS=WINDOW)
    for index in (0, 1):
        enqueue(broker, "composite_window", "rec_size", index)
    wait_for(lambda: _done(engine, "rec_size", "window.000000") and _done(engine, "rec_size", "window.000001"), 120,
             "windows 0 and 1", on_timeout=worker.log)
    assert _window_format(store, "rec_size", 0) == [640, 360, 30]
    assert _window_format(store, "rec_size", 1) == [1280, 720, 30]
    _finalize(engine, broker, "rec_size")
    wait_for(lambda: _done(engine, "rec_size", "media.final"), 120, "media.final", on_timeout=worker.log)
    with session_scope(engine) as s:
        outputs = s.get(Recording, "rec_size").outputs
    assert outputs["windows"] == 3
    assert [_window_format(store, "rec_size", i) for i in range(3)] == [[1280, 720, 30]] * 3
    final = tmp_path / "composite.mp4"
    store.download(outputs["composite"], str(final))
    with av.open(str(final)) as c:
        sizes = {(f.width, f.height) for f in c.decode(c.streams.video[0])}
    assert sizes == {(1280, 720)}
    assert abs(probe(final).stream("video").end_ms - outputs["duration_ms"]) <= 34


def _recording(engine, rec_id: str) -> Recording:
    with session_scope(engine) as s:
        rec = s.get(Recording, rec_id)
        s.expunge(rec)
        return rec


def test_errors_fail_the_recording_with_the_reason_stored(engine, store, broker, chunk_files, start_media_worker):
    # Corrupt stored state: an unexpected error (not a RecorderError) on every attempt.
    _add_recording(engine, store, "rec-corrupt", {"a": chunk_files["a"][:1]}, status="processing")
    store.put_bytes(keys.window_key("acme", "rec-corrupt", 0, "json"), b"{not json", "application/json")
    # A chunk object deleted behind the worker's back: nothing to retry.
    _add_recording(engine, store, "rec-deleted", {"a": chunk_files["a"][:2]}, status="processing")
    store.delete(keys.chunk_key("acme", "rec-deleted", "a", 1, "webm"))
    worker = start_media_worker(RECORDER_WINDOW_MS=WINDOW, RECORDER_WORKER_MAX_RETRIES="1",
                                RECORDER_WORKER_MIN_BACKOFF_MS="50", RECORDER_WORKER_MAX_BACKOFF_MS="200")
    for rec_id in ("rec-corrupt", "rec-deleted"):
        enqueue(broker, "finalize_recording", rec_id)
    for rec_id in ("rec-corrupt", "rec-deleted"):
        wait_for(lambda: _recording(engine, rec_id).status == "failed", 60, f"{rec_id} to fail", on_timeout=worker.log)

    final = _steps(engine, "rec-corrupt")["media.final"]
    assert final.status == "failed" and final.attempts == 2  # the first try, then one retry
    assert final.error == "video processing failed after 2 attempts"  # ours: no exception text
    assert _recording(engine, "rec-corrupt").error == final.error

    steps = _steps(engine, "rec-deleted")
    assert steps["media.final"].status == "failed" and steps["media.final"].attempts == 1
    assert steps["media.final"].error == "video processing failed (object_not_found)"
    assert steps["window.000000"].status == "failed"  # not left "running"
    assert steps["window.000000"].error == "composite of window 0 failed (object_not_found)"
    assert _recording(engine, "rec-deleted").error == "video processing failed (object_not_found)"
    assert not store.exists(keys.output_key("acme", "rec-deleted", "composite.mp4"))


def _objects_are_whole(store, prefix: str) -> list[str]:
    """Every MP4 under prefix probes (no half-written object under a final key)."""
    checked = []
    for obj in store.list(prefix):
        if obj.key.endswith(".mp4"):
            path = Path(f"/tmp/check-{hashlib.sha1(obj.key.encode()).hexdigest()}.mp4")
            store.download(obj.key, str(path))
            try:
                probe(path)
            finally:
                path.unlink()
            checked.append(obj.key)
    return checked


@pytest.mark.slow
def test_sigkill_during_composite_then_rerun_gives_identical_outputs(engine, store, broker, chunk_files,
                                                                     start_media_worker, tmp_path):
    for rec in ("crash", "clean"):
        _add_recording(engine, store, rec, chunk_files, offsets={"b": B_START})
    # 1080p, more than these cameras need: a window's composite lasts long enough to be killed inside it.
    slow = {"RECORDER_WINDOW_MS": WINDOW, "RECORDER_COMPOSITE_MAX_HEIGHT": "1080",
            "RECORDER_COMPOSITE_MIN_HEIGHT": "1080"}
    first = start_media_worker(**slow)
    _finalize(engine, broker, "crash")
    wait_for(lambda: (_steps(engine, "crash").get("window.000001") or ProcessingStep(recording_id="", step="")).status
             == "running", 120, "window 1 to start", interval_s=0.02, on_timeout=first.log)
    time.sleep(0.4)  # inside the composite of window 1
    first.kill()
    assert _steps(engine, "crash")["media.final"].status == "running"
    assert _steps(engine, "crash")["window.000001"].status == "running"
    assert not store.exists(keys.window_key("acme", "crash", 1, "json"))  # killed mid-window
    _objects_are_whole(store, keys.recording_prefix("acme", "crash"))
    second = start_media_worker(**slow)
    enqueue(broker, "finalize_recording", "crash")  # what dramatiq's requeue of the lost message does
    _finalize(engine, broker, "clean")
    for rec in ("crash", "clean"):
        wait_for(lambda: _done(engine, rec, "media.final"), 180, f"{rec} media.final", on_timeout=second.log)
    outs = {}
    for rec in ("crash", "clean"):
        with session_scope(engine) as s:
            outputs = s.get(Recording, rec).outputs
        outs[rec] = tmp_path / f"{rec}.mp4"
        store.download(outputs["composite"], str(outs[rec]))
    assert frame_hashes(outs["crash"]) == frame_hashes(outs["clean"])
    assert outs["crash"].read_bytes() == outs["clean"].read_bytes()
    assert _steps(engine, "crash")["window.000001"].status == "done"
