"""Transcription actors on real Redis + S3 + SQLite with the real tiny.en model.

In-process (`actor.fn(...)`, resources pointed at the test services) for the detailed
checks; one test runs a real `dramatiq` worker process fed through the Redis broker.
"""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from dramatiq.brokers.redis import RedisBroker
from sqlmodel import select

from core import keys, search
from core.db import session_scope
from core.models import Chunk, OrgVocabulary, ProcessingStep, Recording, Track, TranscriptSegment, TranscriptVersion
from core.queue import enqueue
from tests.media import speech_track, split_chunks
from tests.workers.conftest import ROOT, WorkerProcess, settings_env, wait_for

pytestmark = pytest.mark.slow

T0 = 1_700_000_000_000
LINES = {  # track -> (offset of its first chunk on the recording, utterances)
    "alice": (0, [(0.5, "Welcome to the interview. Please introduce yourself."),
                  (7.0, "What did you build with Kubernetes last year?")]),  # crosses the 8 s cut
    "bob": (1000, [(2.8, "Hello, I am a backend engineer from Lisbon."),
                   (13.5, "I moved our billing jobs to a new cluster.")]),  # crosses the 16 s cut (+1 s)
}
TOTAL_S = 20.0


@pytest.fixture(scope="module")
def chunk_files(tmp_path_factory) -> dict[str, list[tuple[Path, int, int]]]:
    d = tmp_path_factory.mktemp("transcribe-chunks")
    out = {}
    for track, (_, lines) in LINES.items():
        voice = "en-us" if track == "alice" else "en-us+m3"
        src, _ = speech_track(d / f"{track}.webm", [(t, s, voice) for t, s in lines], TOTAL_S, "webm")
        out[track] = split_chunks(src, d / track, chunk_s=8)
    return out


@pytest.fixture
def resources(monkeypatch, settings, engine, store):
    """Point the worker resources (`workers.broker`) at this test's services; chunks are
    transcribed as they arrive (no batching), so the live path does the work."""
    from workers import broker as res
    from workers import transcription

    monkeypatch.setattr(res, "settings", settings.model_copy(update={"transcribe_batch_s": 0.0}))
    monkeypatch.setattr(res, "engine", lambda: engine)
    monkeypatch.setattr(res, "store", lambda: store)
    return transcription


def add_recording(engine, store, rec_id: str, chunks: dict[str, list], continuation: set[str] = frozenset(),
                  vocabulary: list[str] | None = None) -> None:
    """Rows + objects as ingest leaves them."""
    with session_scope(engine) as s:
        s.add(Recording(id=rec_id, org="acme", client_key=rec_id, status="processing", started_at_ms=T0,
                        vocabulary=vocabulary))
    for track, files in chunks.items():
        offset = LINES.get(track, (0, []))[0]
        role = "interviewer" if track == "alice" else "candidate"
        with session_scope(engine) as s:
            s.add(Track(recording_id=rec_id, track_id=track, participant_id=f"p-{track}",
                        display_name=track.title(), role=role, kind="audio"))
        for seq, (data, start, dur) in enumerate(files):
            key = keys.chunk_key("acme", rec_id, track, seq, "webm")
            store.put_bytes(key, data)
            with session_scope(engine) as s:
                s.add(Chunk(recording_id=rec_id, track_id=track, seq=seq, status="stored", start_ms=T0 + offset + start,
                            duration_ms=dur, size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                            container="webm", continuation=track in continuation and seq > 0, object_key=key))


def as_bytes(files: list[tuple[Path, int, int]]) -> list[tuple[bytes, int, int]]:
    return [(Path(p).read_bytes(), start, dur) for p, start, dur in files]


def steps(engine, rec_id: str) -> dict[str, ProcessingStep]:
    with session_scope(engine) as s:
        return {st.step: st for st in s.exec(select(ProcessingStep).where(ProcessingStep.recording_id == rec_id))}


def versions(engine, rec_id: str) -> list[TranscriptVersion]:
    with session_scope(engine) as s:
        return list(s.exec(select(TranscriptVersion).where(TranscriptVersion.recording_id == rec_id)
                           .order_by(TranscriptVersion.version)))


def check_transcript(data: dict, max_wer: float = 0.12) -> None:
    """Words, speakers and timeline of the exported JSON against the script."""
    from transcribe.wer import wer

    for track, (offset, lines) in LINES.items():
        segs = [s for s in data["segments"] if s["speaker"]["track_id"] == track and not s["suppressed"]]
        assert {s["speaker"]["participant_id"] for s in segs} == {f"p-{track}"}
        detail = [(s["text"], s["flags"], s["level_db"], s["voiced_ratio"], s["no_speech_prob"]) for s in segs]
        assert wer(" ".join(t for _, t in lines), " ".join(s["text"] for s in segs)).wer <= max_wer, detail
        for start, _text in lines:  # on the recording timeline: chunk real start + offset
            assert any(abs(s["start_ms"] - (offset + start * 1000)) <= 300 for s in segs), (track, start, segs)
    starts = [s["start_ms"] for s in data["segments"]]
    assert starts == sorted(starts)


def test_live_chunks_then_finalize_then_retranscribe(resources, engine, store, chunk_files) -> None:
    tx = resources
    add_recording(engine, store, "rec_w", {t: as_bytes(f) for t, f in chunk_files.items()},
                  vocabulary=["Kubernetes"])
    for seq in (0, 2, 1):  # seq 2 first: it catches up through seq 1 itself
        tx.transcribe_chunk.fn("rec_w", "alice", seq)
    for seq in (0, 1, 1):  # a redelivered message changes nothing
        tx.transcribe_chunk.fn("rec_w", "bob", seq)
    (live,) = versions(engine, "rec_w")
    assert live.status == "live" and live.version == 1
    with session_scope(engine) as s:  # transcribed while "recording", before finalize
        live_rows = s.exec(select(TranscriptSegment).where(TranscriptSegment.version_id == live.id)).all()
    assert {r.track_id for r in live_rows} == {"alice", "bob"}
    so_far = json.loads(store.get_bytes(live.exports["json"]))  # published for the review API
    assert so_far["status"] == "live" and {s["speaker"]["track_id"] for s in so_far["segments"]} == {"alice", "bob"}
    assert "lisbon" in store.get_bytes(live.exports["txt"]).decode().lower()
    st = steps(engine, "rec_w")
    assert {f"transcript.alice.{i:06d}" for i in range(3)} | {"transcript.bob.000000"} <= set(st)
    assert all(s.status == "done" for s in st.values())

    tx.finalize_transcript.fn("rec_w")
    (final,) = versions(engine, "rec_w")
    assert final.status == "final" and final.is_current and final.time_taken_ms > 0 and final.audio_ms > 0
    assert json.loads(store.get_bytes(final.exports["json"]))["status"] == "final"
    assert not store.exists(live.exports["json"])  # the live exports are gone
    assert steps(engine, "rec_w")["transcript.final"].status == "done"
    data = json.loads(store.get_bytes(keys.output_key("acme", "rec_w", "transcript.json")))
    check_transcript(data)
    vtt = store.get_bytes(final.exports["vtt"]).decode()
    assert vtt.startswith("WEBVTT") and "<v Alice>" in vtt and "<v Bob>" in vtt
    with session_scope(engine) as s:
        rec = s.get(Recording, "rec_w")
    assert rec.outputs["transcript"]["version"] == 1
    hits = search.search(engine, "lisbon", search.Filters(org="acme", role="candidate"))
    assert [h.recording_id for h in hits] == ["rec_w"] and 3.3 <= hits[0].start_ms / 1000 <= 4.2
    assert store.list(keys.recording_prefix("acme", "rec_w") + "work/") == []  # carried tails cleaned up

    with session_scope(engine) as s:  # org vocabulary set after the interview: used by new versions
        s.add(OrgVocabulary(org="acme", terms=["Lisbon"]))
    tx.retranscribe_recording.fn("rec_w", beam_size=1)
    old, new = versions(engine, "rec_w")
    assert (old.version, old.is_current, new.version, new.is_current) == (1, False, 2, True)
    assert new.params["decode"]["beam_size"] == 1 and new.based_on == old.id
    assert old.params["decode"]["vocabulary"] == ["Kubernetes"]
    assert new.params["decode"]["vocabulary"] == ["Lisbon", "Kubernetes"]
    with session_scope(engine) as s:
        counts = {v.id: len(s.exec(select(TranscriptSegment).where(TranscriptSegment.version_id == v.id)).all())
                  for v in (old, new)}
    assert all(n > 0 for n in counts.values())  # the old version is kept
    hits = search.search(engine, "cluster OR lisbon", search.Filters(org="acme"))
    assert hits and all(h.segment_key.startswith(new.id) for h in hits)
    # greedy decoding is the weaker setting: about one more error per 15-word line
    check_transcript(json.loads(store.get_bytes(keys.output_key("acme", "rec_w", "transcript.json"))), 0.25)

    tx.retranscribe_recording.fn("rec_w", start_ms=6000, end_ms=10000)  # only Alice's 2nd question
    span = versions(engine, "rec_w")[2]
    assert (span.version, span.is_current, span.span_start_ms, span.span_end_ms) == (3, True, 6000, 10000)
    with session_scope(engine) as s:
        def texts(v):
            rows = s.exec(select(TranscriptSegment).where(TranscriptSegment.version_id == v.id)).all()
            return sorted((r.start_ms, r.text) for r in rows if not r.suppressed)
        before, after = texts(new), texts(span)
    outside = [t for t in before if not 6000 <= t[0] < 10000]
    assert [t for t in after if not 6000 <= t[0] < 10000] == outside  # kept as they were
    inside = [t for t in after if 6000 <= t[0] < 10000]
    assert len(inside) == 1 and "kubernetes" in inside[0][1].lower()

    with session_scope(engine) as s:
        s.get(Recording, "rec_w").status = "deleted"
    tx.index_transcript.fn("rec_w")
    assert search.search(engine, "cluster OR lisbon", search.Filters(org="acme")) == []


def test_continuation_blobs_bad_chunks_and_vocabulary(resources, engine, store, chunk_files, tmp_path) -> None:
    tx = resources
    src = Path(chunk_files["alice"][0][0]).parent.parent / "alice.webm"
    data = src.read_bytes()
    cuts = [0, len(data) // 3, 2 * len(data) // 3, len(data)]
    blobs = [(data[cuts[i]:cuts[i + 1]], int(i * TOTAL_S * 1000 / 3), None) for i in range(3)]
    bob = as_bytes(chunk_files["bob"])
    bob[1] = (b"\x1aE\xdf\xa3 not really webm" * 50, bob[1][1], bob[1][2])  # corrupt middle chunk
    add_recording(engine, store, "rec_c", {"alice": blobs, "bob": bob}, continuation={"alice"},
                  vocabulary=["Kubernetes"])
    for seq in range(3):
        tx.transcribe_chunk.fn("rec_c", "alice", seq)
        tx.transcribe_chunk.fn("rec_c", "bob", seq)
    tx.finalize_transcript.fn("rec_c")
    st = steps(engine, "rec_c")
    assert st["transcript.bob.000001"].status == "failed" and st["transcript.bob.000001"].error
    assert st["transcript.final"].status == "done"
    (version,) = versions(engine, "rec_c")
    assert version.params["decode"]["vocabulary"] == ["Kubernetes"]
    out = json.loads(store.get_bytes(version.exports["json"]))
    alice = " ".join(s["text"] for s in out["segments"] if s["speaker"]["track_id"] == "alice")
    from transcribe.wer import wer

    assert wer(" ".join(t for _, t in LINES["alice"][1]), alice).wer <= 0.12, alice
    assert "Kubernetes" in alice
    bob_text = " ".join(s["text"] for s in out["segments"] if s["speaker"]["track_id"] == "bob").lower()
    assert "lisbon" in bob_text  # chunks 0 and 2 still transcribed


def test_real_worker_process_through_redis(settings, engine, store, chunk_files, tmp_path) -> None:
    add_recording(engine, store, "rec_q", {t: as_bytes(f) for t, f in chunk_files.items()},
                  vocabulary=["Kubernetes"])
    worker = WorkerProcess(settings_env(settings), ["transcribe", "default"], tmp_path / "worker.log")
    broker = RedisBroker(url=settings.redis_url)
    try:
        for track, files in chunk_files.items():
            for seq in range(len(files)):
                enqueue(broker, "transcribe_chunk", "rec_q", track, seq)
        enqueue(broker, "finalize_transcript", "rec_q")

        def final_done() -> bool:
            st = steps(engine, "rec_q").get("transcript.final")
            assert st is None or st.status != "failed", st.error
            return st is not None and st.status == "done"

        wait_for(final_done, 240, "transcript.final", interval_s=0.5, on_timeout=worker.log)
    finally:
        broker.close()
        worker.stop()
    check_transcript(json.loads(store.get_bytes(keys.output_key("acme", "rec_q", "transcript.json"))))


def recorder_cli(settings, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "recorder.cli", *args], env=settings_env(settings),
                          capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_cli_retranscribes_into_a_new_version(resources, settings, engine, store, chunk_files) -> None:
    tx = resources
    add_recording(engine, store, "rec_cli", {t: as_bytes(f) for t, f in chunk_files.items()})
    tx.finalize_transcript.fn("rec_cli")  # every chunk at once: the catch-up path, batched
    with session_scope(engine) as s:
        s.get(Recording, "rec_cli").status = "ready"
    (first,) = versions(engine, "rec_cli")
    first_json = store.get_bytes(first.exports["json"])

    out = recorder_cli(settings, "transcribe", "rec_cli", "--beam", "1")
    assert out.returncode == 0, out.stderr
    assert "version 2 of rec_cli is current" in out.stdout and "chunks" in out.stderr  # progress bar
    old, new = versions(engine, "rec_cli")
    assert (old.is_current, new.is_current, new.status, new.params["decode"]["beam_size"]) == (False, True, "final", 1)
    assert store.get_bytes(old.exports["json"]) == first_json  # the old version is untouched
    check_transcript(json.loads(store.get_bytes(new.exports["json"])), 0.25)

    for args, code in ((["rec_nope"], "unknown_recording"), (["rec_cli", "--start-ms", "5000", "--end-ms", "1000"],
                       "bad_span"), (["rec_cli", "--model", "/nonexistent/model"], "model_unavailable")):
        out = recorder_cli(settings, "transcribe", *args)
        assert out.returncode == 2 and code in out.stderr, (args, out.stderr)
    assert len(versions(engine, "rec_cli")) == 2  # nothing was created by the bad requests
    with session_scope(engine) as s:
        s.get(Recording, "rec_cli").status = "recording"
    out = recorder_cli(settings, "transcribe", "rec_cli")
    assert out.returncode == 2 and "not_processed" in out.stderr


def test_actor_names_and_queues_match_the_contract() -> None:
    from core.queue import ACTOR_QUEUES
    from workers import transcription as tx

    actors = (tx.transcribe_chunk, tx.finalize_transcript, tx.retranscribe_recording, tx.index_transcript)
    assert {a.actor_name: a.queue_name for a in actors} == {
        name: ACTOR_QUEUES[name] for name in
        ("transcribe_chunk", "finalize_transcript", "retranscribe_recording", "index_transcript")}
