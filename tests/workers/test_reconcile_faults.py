"""Two sources, the faults: the client recording is a fallback, never a reason to fail or to repeat.

One participant, 12 s (espeak speech, room tone, a test pattern). The bot's audio is whole but
its video misses [4, 8) s, so the page's chunk (H.264 + AAC fragmented MP4) plays those
seconds; the words spoken there must still be transcribed once. Bad client media (garbage,
audio only) keeps the participant on the bot alone; an unreadable stored plan is computed
again. Rows and objects are written as ingest leaves them; the worker functions run in this
process against the test's real Redis, S3 server and database (the real tiny.en model).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from dramatiq.brokers.redis import RedisBroker

from compositor.reconcile import SourceSpan
from core import keys
from core.db import session_scope
from core.models import Chunk, Recording, Track
from tests.compositor.test_reconcile import CLIENT_CODECS, _chunk, _ffmpeg, _read_wav, _write_wav
from tests.media import SAMPLE_RATE, speech_track
from tests.workers.test_reconcile_pipeline import _bot_segment

pytestmark = pytest.mark.slow

T0 = 1_795_000_000_000
TOTAL_S = 12
VIDEO_HOLE = (4, 8)  # the bot lost its video of the participant here, not its audio
LINES = [(0.3, "Hello and welcome to the interview."), (4.3, "Kangaroo. Pineapple. Volcano."),
         (8.4, "Thank you, that is all.")]
HOLE_WORDS = ("kangaroo", "pineapple", "volcano")
GARBAGE = b"\x1aE\xdf\xa3 not really media " * 200


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, list[tuple[Path, int, int]]]:
    """Per track: (file, start_s, end_s). Bot: Opus audio whole, VP8 video with a hole; page: A/V or audio only."""
    d = tmp_path_factory.mktemp("reconcile-faults")
    wav, placed = speech_track(d / "speech.wav", LINES, TOTAL_S, container="wav")
    start, end, _ = placed[1]
    assert VIDEO_HOLE[0] < start and end < VIDEO_HOLE[1], placed  # the hole's words are all inside it
    pcm = _read_wav(wav) + 0.004 * np.random.default_rng(5).standard_normal(TOTAL_S * SAMPLE_RATE).astype(np.float32)
    clean = _write_wav(d / "bot.wav", pcm)
    noisy = _write_wav(d / "client.wav", pcm + 0.01 * np.random.default_rng(6).standard_normal(pcm.size))
    video = d / "master.mkv"
    _ffmpeg("-f", "lavfi", "-i", f"testsrc2=size=320x180:rate=30:duration={TOTAL_S}", "-c:v", "libx264",
            "-preset", "ultrafast", "-qp", "0", str(video))
    audio_only = d / "client-audio.webm"
    _ffmpeg("-i", str(noisy), "-c:a", "libopus", "-b:a", "32k", "-f", "webm", str(audio_only))
    return {
        "p-audio": [(_bot_segment(video, clean, 0, TOTAL_S, "audio", d / "bot-audio.webm"), 0, TOTAL_S)],
        "p-video": [(_bot_segment(video, clean, s, e, "video", d / f"bot-video{i}.webm"), s, e)
                    for i, (s, e) in enumerate([(0, VIDEO_HOLE[0]), (VIDEO_HOLE[1], TOTAL_S)])],
        "p-av": [(_chunk(video, noisy, 0, TOTAL_S, CLIENT_CODECS, d / "client.mp4"), 0, TOTAL_S)],
        "p-audio-only": [(audio_only, 0, TOTAL_S)],
    }


@pytest.fixture
def res(monkeypatch, settings, engine, store, redis_url):
    """The worker resources (`workers.broker`) pointed at this test's services."""
    from workers import broker as res

    monkeypatch.setattr(res, "settings", settings.model_copy(update={"transcribe_batch_s": 0.0}))
    monkeypatch.setattr(res, "engine", lambda: engine)
    monkeypatch.setattr(res, "store", lambda: store)
    monkeypatch.setattr(res, "broker", RedisBroker(url=redis_url))
    return res


def _add_chunk(engine, store, rec_id: str, track: str, seq: int, data: bytes, start_s: int, end_s: int,
               container: str) -> None:
    key = keys.chunk_key("acme", rec_id, track, seq, container)
    store.put_bytes(key, data)
    with session_scope(engine) as s:
        s.add(Chunk(recording_id=rec_id, track_id=track, seq=seq, status="stored", start_ms=T0 + start_s * 1000,
                    duration_ms=(end_s - start_s) * 1000, size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                    container=container, object_key=key))


def add_room(engine, store, media, room: str, client: str = "p-av", client_data: bytes | None = None) -> Recording:
    """The bot's recording and the page's recording of one room; `client` names the page's media."""
    bot_id, page_id = f"{room}-bot", f"{room}-page"
    with session_scope(engine) as s:
        s.add(Recording(id=bot_id, org="acme", client_key=bot_id, status="processing", started_at_ms=T0,
                        source="bot", room_id=room))
        s.add(Recording(id=page_id, org="acme", client_key=f"room:{room}:client", status="processing",
                        started_at_ms=T0, source="client", room_id=room))
        for rec_id, track, kind in (bot_id, "p-audio", "audio"), (bot_id, "p-video", "video"), (page_id, "p-av", "av"):
            s.add(Track(recording_id=rec_id, track_id=track, participant_id="p", display_name="Pat",
                        role="candidate", kind=kind))
    for track in ("p-audio", "p-video"):
        for seq, (path, start, end) in enumerate(media[track]):
            _add_chunk(engine, store, bot_id, track, seq, path.read_bytes(), start, end, "webm")
    path, start, end = media[client][0]
    _add_chunk(engine, store, page_id, "p-av", 0, client_data or path.read_bytes(), start, end, path.suffix[1:])
    with session_scope(engine) as s:
        return s.get(Recording, bot_id)


def _client_spans(spans) -> list[tuple[int, int]]:
    return [(s.start_ms, s.end_ms) for s in spans if s.source == "client"]


# ---------------------------------------------------------------- 1: a word is transcribed once

def test_the_bot_lost_only_video_the_client_plays_but_words_are_transcribed_once(res, engine, store, media):
    from workers import reconcile, transcription

    rec = add_room(engine, store, media, "room-v")
    (plan,) = reconcile.reconciliation(rec).participants
    assert _client_spans(plan.spans) == [(4000, 8000)], plan.spans  # the client's picture fills the hole
    assert _client_spans(plan.transcript) == [], plan.transcript  # the bot's audio is whole: its words stand
    transcription.finalize_transcript.fn(rec.id)
    data = json.loads(store.get_bytes(keys.output_key("acme", rec.id, "transcript.json")))
    text = " ".join(s["text"] for s in data["segments"] if not s["suppressed"]).lower()
    heard = {w: text.count(w) for w in HOLE_WORDS}
    assert sum(n > 0 for n in heard.values()) >= 2 and max(heard.values()) == 1, (heard, text)


# ---------------------------------------------------------------- 2: bad client media keeps the bot alone

def test_a_client_without_video_is_not_planned(res, engine, store, media):
    from workers import reconcile

    rec = add_room(engine, store, media, "room-a", client="p-audio-only")
    recon = reconcile.reconciliation(rec)
    assert recon is not None and recon.participants == ()  # the bot alone (logged), the plan is stored
    assert reconcile.stored(rec) == recon


def _hand_made(store, rec, spans: list[SourceSpan]):
    """A plan as an earlier final step stored it (same inputs), playing the client in `spans`."""
    from workers import reconcile

    pairs, bot = reconcile._pairings(rec)
    plan = reconcile.ParticipantPlan(pairs[0], 0.0, 50.0, True, tuple(spans), tuple(spans))
    recon = reconcile.Reconciliation(reconcile._fingerprint(pairs, bot), TOTAL_S * 1000, (plan,))
    store.put_bytes(reconcile._key(rec), recon.to_json(), "application/json")
    return recon


@pytest.mark.parametrize("client", ["garbage", "p-audio-only"])
def test_a_window_whose_client_cannot_be_rendered_keeps_the_bot_files(res, engine, store, media, client, tmp_path):
    from workers import media as media_stage

    garbage = client == "garbage"
    rec = add_room(engine, store, media, f"room-w-{client}", client="p-av" if garbage else client,
                   client_data=GARBAGE if garbage else None)
    recon = _hand_made(store, rec, [SourceSpan("client", 0, TOTAL_S * 1000)])
    plan = media_stage._plan(rec, {}, 0, TOTAL_S * 1000, recon)  # a window where only the client has media
    assert [ws.plan.pairing.participant_id for ws in plan.sources] == ["p"]
    files, gaps = {}, {}
    media_stage._use_sources(plan, files, gaps, tmp_path)
    assert files == {} and gaps == {}  # logged; the participant's tiles keep the bot's (no) media


def test_a_client_whose_audio_cannot_be_read_adds_nothing_to_the_transcript(res, engine, store, media):
    from workers import transcription

    rec = add_room(engine, store, media, "room-t", client_data=GARBAGE)
    _hand_made(store, rec, [SourceSpan("bot", 0, 4000), SourceSpan("client", 4000, 8000),
                            SourceSpan("bot", 8000, TOTAL_S * 1000)])
    transcription.finalize_transcript.fn(rec.id)  # the bot's own transcript, final
    data = json.loads(store.get_bytes(keys.output_key("acme", rec.id, "transcript.json")))
    assert "welcome" in " ".join(s["text"] for s in data["segments"]).lower(), data["segments"]


# ---------------------------------------------------------------- 3: an unreadable stored plan is computed again

@pytest.mark.parametrize("stored", [b"{not json", b'{"fingerprint": "x", "total_ms": 1, "participants": [{}]}',
                                    b'{"fingerprint": "x", "total_ms": 1, "participants": [{"pairing": 3}]}'])
def test_an_unreadable_stored_plan_is_computed_again(res, engine, store, media, stored):
    from workers import reconcile

    rec = add_room(engine, store, media, f"room-s{len(stored)}")
    store.put_bytes(reconcile._key(rec), stored, "application/json")
    assert reconcile.stored(rec) is None
    recon = reconcile.reconciliation(rec)
    assert _client_spans(recon.participants[0].spans) == [(4000, 8000)]
    assert reconcile.stored(rec) == recon  # stored again, readable
