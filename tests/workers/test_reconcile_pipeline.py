"""Two sources end to end: one 36-s interview recorded by the bot AND by both call pages.

Two participants (espeak speech, a test pattern, room tone, 1 kHz beeps + white flashes at
known times). The bot's segments (VP8 / Opus, one track per kind) lose [6, 16) s for both
participants (the bot's network); each call page's chunks (H.264 + AAC fragmented MP4, extra
noise, declared 350 ms late by the browser clock) lose 10 s of their own (tab crash). Everything
goes through the real ingest API (bot: `POST /v1/recordings` + chunk PUTs; pages:
`client-upload` + upload tokens); a real worker process runs media and transcription. The
bot recording's final video has no black or silent stretch, every beep and flash within 40 ms,
the transcript holds the words of both holes, and the ledger names the source of every second.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from compositor.decode import audio_samples
from compositor.layout import Rect, grid
from core.db import session_scope
from core.models import Recording
from ingest.ledger import participant_sources
from tests.compositor.test_reconcile import BOT_CODECS, CLIENT_CODECS, _chunk, _ffmpeg, _read_wav, _write_wav
from tests.conftest import auth
from tests.ingest.conftest import sha
from tests.media import SAMPLE_RATE, speech_track
from tests.workers.conftest import WorkerProcess, settings_env, wait_for

pytestmark = pytest.mark.slow

TOTAL_S = 36
T0 = 1_795_000_000_000  # the bot's first segment starts here (epoch ms)
SKEW_MS = 350  # each page declares its chunks this much later than they began (browser clock)
WINDOW_MS = "12000"
# Beeps as loud as speech or louder dominate the cross-correlation (a 1 kHz tone matches itself
# every 1 ms), which halves the alignment's confidence (0.5: ~10.7, near the 10 it needs).
BEEP = 0.15
BOT_HOLE = (6, 16)  # both participants: the bot lost the network
PEOPLE = {  # participant -> role, client hole, marks (beep + flash), speech
    "int-1": ("interviewer", (20, 30), (1.0, 6.8, 17.0, 20.7, 26.0, 33.0),
              [(1.6, "Hello and welcome to the interview."), (7.3, "Kangaroo. Pineapple. Volcano. Harmonica."),
               (21.3, "Saxophone. Umbrella. Lighthouse. Chocolate.")]),
    "cand-1": ("candidate", (22, 32), (5.0, 15.6, 18.5, 30.9, 34.5),
               [(2.2, "Thank you, happy to be here."), (11.4, "I grew up near the ocean with my brother."), (26.5, "Yesterday I cooked dinner for my family.")]),
}
HOLE_WORDS = {  # (participant, which source lost it) -> words spoken inside that hole
    ("int-1", "bot"): ("kangaroo", "pineapple", "volcano", "harmonica"),
    ("cand-1", "bot"): ("grew", "ocean", "brother"),
    ("int-1", "client"): ("saxophone", "umbrella", "lighthouse", "chocolate"),
    ("cand-1", "client"): ("yesterday", "cooked", "dinner", "family"),
}
BOT_TRACK = {"video": ["-map", "0:v", *BOT_CODECS[:10]], "audio": ["-map", "1:a", *BOT_CODECS[10:14]]}


# ---------------------------------------------------------------- media: one interview, two sources each

def _speech(d: Path) -> dict[str, Path]:
    """Each participant's speech; no mark of anyone within 300 ms of it (its onset would be ambiguous)."""
    out, spans = {}, []
    for pid, (_, _, _, lines) in PEOPLE.items():
        out[pid], placed = speech_track(d / f"{pid}-speech.wav", lines, TOTAL_S, container="wav")
        spans += [(a, b) for a, b, _ in placed]
    for s in (m for _, _, marks, _ in PEOPLE.values() for m in marks):
        assert all(not (a - 0.3 < s < b + 0.3) for a, b in spans), (s, spans)
    return out


def _master(d: Path, pid: str, wav: Path, seed: int) -> tuple[Path, Path, Path]:
    """A participant's lossless video (flashes), their audio (speech + room tone + beeps), a noisier copy."""
    marks = PEOPLE[pid][2]
    pcm = _read_wav(wav)
    pcm += 0.004 * np.random.default_rng(seed).standard_normal(pcm.size).astype(np.float32)
    t = np.arange(int(0.1 * SAMPLE_RATE)) / SAMPLE_RATE
    for s in marks:
        first = int(s * SAMPLE_RATE)
        pcm[first:first + t.size] += BEEP * np.sin(2 * np.pi * 1000 * t).astype(np.float32)
    clean = _write_wav(d / f"{pid}-bot.wav", pcm)
    noisy = _write_wav(d / f"{pid}-client.wav", pcm + 0.01 * np.random.default_rng(seed + 1).standard_normal(pcm.size))
    flash = ",".join(f"drawbox=x=0:y=0:w=iw:h=ih:color=white:t=fill:enable='between(t,{s},{s + 0.0999})'"
                     for s in marks)
    video = d / f"{pid}.mkv"
    _ffmpeg("-f", "lavfi", "-i", f"testsrc2=size=320x180:rate=30:duration={TOTAL_S}", "-vf", flash,
            "-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", str(video))
    return video, clean, noisy


def _bot_segment(video: Path, wav: Path, start: float, end: float, kind: str, out: Path) -> Path:
    """One bot segment of one track (the bot writes a file per kind: VP8 or Opus in WebM)."""
    _ffmpeg("-ss", f"{start}", "-t", f"{end - start}", "-i", str(video), "-ss", f"{start}", "-t", f"{end - start}",
            "-i", str(wav), *BOT_TRACK[kind], "-ar", str(SAMPLE_RATE), "-fflags", "+bitexact", "-f", "webm", str(out))
    return out


def _parts(hole: tuple[int, int]) -> list[tuple[int, int]]:
    return [(0, hole[0]), (hole[1], TOTAL_S)]


@pytest.fixture(scope="module")
def interview(tmp_path_factory) -> dict:
    """Per participant: bot segments (video, audio) and page chunks: (path, start_s, end_s)."""
    d = tmp_path_factory.mktemp("two-sources")
    out, speech = {}, _speech(d)
    for n, pid in enumerate(PEOPLE):
        video, clean, noisy = _master(d, pid, speech[pid], seed=10 + 2 * n)
        bot = {kind: [(_bot_segment(video, clean, s, e, kind, d / f"{pid}-bot-{kind}{i}.webm"), s, e)
                      for i, (s, e) in enumerate(_parts(BOT_HOLE))] for kind in BOT_TRACK}
        client = [(_chunk(video, noisy, s, e, CLIENT_CODECS, d / f"{pid}-client{i}.mp4"), s, e)
                  for i, (s, e) in enumerate(_parts(PEOPLE[pid][1]))]
        out[pid] = {"bot": bot, "client": client}
    return out


# ---------------------------------------------------------------- through the real ingest API

def _put(client, token: str, rec: str, track: str, seq: int, path: Path, start_ms: int, dur_ms: int, ctype: str):
    data = path.read_bytes()
    r = client.put(f"/v1/recordings/{rec}/tracks/{track}/chunks/{seq}", content=data,
                   headers={"Content-Type": ctype, "X-Content-SHA256": sha(data), "X-Chunk-Start": str(start_ms),
                            "X-Chunk-Duration": str(dur_ms), **auth(token)})
    assert r.status_code in (200, 201), r.text


def _upload(client, token_for, interview) -> dict[str, str]:
    """The room, both page recordings' chunks, then the bot's; both recordings finalized."""
    iv = auth(token_for(role="interviewer", sub="ines"))
    room = client.post("/v1/rooms", json={"slot_id": "s-two", "candidate_id": "c-two"}, headers=iv).json()["id"]
    page_rec = None
    for pid, (role, *_rest) in PEOPLE.items():
        join = client.post(f"/v1/rooms/{room}/tokens", json={"participant_id": pid, "role": role}, headers=iv)
        opened = client.post(f"/v1/rooms/{room}/client-upload", headers=auth(join.json()["token"])).json()
        page_rec = opened["recording_id"]
        for seq, (path, s, e) in enumerate(interview[pid]["client"]):
            _put(client, opened["token"], page_rec, opened["track_id"], seq, path, T0 + SKEW_MS + s * 1000,
                 (e - s) * 1000, "video/mp4")
    bot = token_for(role="recorder", sub="bot")
    tracks = [{"track_id": f"{pid}-{kind}", "participant_id": pid, "role": role, "display_name": pid, "kind": kind}
              for pid, (role, *_rest) in PEOPLE.items() for kind in ("audio", "video")]
    made = client.post("/v1/recordings", json={"room_id": room, "source": "bot", "tracks": tracks}, headers=auth(bot))
    assert made.status_code in (200, 201), made.text
    bot_rec = made.json()["id"]
    for pid in PEOPLE:
        for kind, ctype in (("video", "video/webm"), ("audio", "audio/webm")):
            for seq, (path, s, e) in enumerate(interview[pid]["bot"][kind]):
                _put(client, bot, bot_rec, f"{pid}-{kind}", seq, path, T0 + s * 1000, (e - s) * 1000, ctype)
    for rec in (page_rec, bot_rec):
        assert client.post(f"/v1/recordings/{rec}/finalize", headers=auth(bot)).status_code == 202
    return {"room": room, "bot": bot_rec, "client": page_rec}


@pytest.fixture
def processed(settings, client, token_for, interview, engine, store, tmp_path) -> dict:
    worker = WorkerProcess(settings_env(settings, RECORDER_WINDOW_MS=WINDOW_MS),
                           ["media", "transcribe", "default"], tmp_path / "worker.log")
    try:
        started = time.monotonic()
        recs = _upload(client, token_for, interview)

        def status() -> str:
            with session_scope(engine) as s:
                st = s.get(Recording, recs["bot"]).status
            assert st != "failed", worker.log()
            return st == "ready"

        wait_for(status, 900, "the bot recording to be ready", interval_s=1.0, on_timeout=worker.log)
        print(f"processed in {time.monotonic() - started:.1f} s")
    finally:
        worker.stop()
    admin = auth(token_for(role="admin"))
    rec = client.get(f"/v1/recordings/{recs['bot']}", headers=admin).json()
    final = tmp_path / "composite.mp4"
    store.download(rec["outputs"]["composite"], str(final))
    transcript = json.loads(store.get_bytes(rec["outputs"]["transcript"]["key"]))
    ledger = client.get(f"/v1/recordings/{recs['bot']}/ledger", headers=admin).json()
    return {**recs, "outputs": rec["outputs"], "final": final, "transcript": transcript, "ledger": ledger}


# ---------------------------------------------------------------- measuring the output

def _tiles(width: int, height: int) -> dict[str, Rect]:
    """Grid tiles of a `width`×`height` output in the compositor's order (participant id), each cut to its centre."""
    rects = grid(len(PEOPLE), width, height)
    return {pid: Rect(r.x + r.w // 4, r.y + r.h // 4, r.w // 2, r.h // 3) for pid, r in zip(sorted(PEOPLE), rects)}


def _tile_luma(path: Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    import av

    times, luma = [], {pid: [] for pid in PEOPLE}
    with av.open(str(path)) as c:
        for frame in c.decode(c.streams.video[0]):
            y = frame.to_ndarray(format="gray")
            times.append(float(frame.pts * frame.time_base * 1000))
            for pid, r in _tiles(frame.width, frame.height).items():
                luma[pid].append(float(y[r.y:r.bottom, r.x:r.right].mean()))
    return np.array(times), {pid: np.array(v) for pid, v in luma.items()}


def _flash_onsets(times: np.ndarray, luma: np.ndarray, marks) -> list[float]:
    out = []
    for s in marks:
        near = (times > s * 1000 - 300) & (times < s * 1000 + 300) & (luma > 200)
        out.append(float(times[near].min()) if near.any() else float("nan"))
    return out


def _beep_onsets(pcm: np.ndarray, rate: int, marks) -> list[float]:
    """Where each 1 kHz mark starts: band energy (950–1050 Hz) crossing half its local peak."""
    spec = np.fft.rfft(pcm.astype(np.float64))
    f = np.fft.rfftfreq(pcm.size, 1 / rate)
    spec[(f < 950) | (f > 1050)] = 0
    env = np.convolve(np.abs(np.fft.irfft(spec, pcm.size)), np.ones(rate // 500) / (rate // 500), "same")
    out = []
    for s in marks:
        lo, hi = int((s - 0.3) * rate), int((s + 0.3) * rate)
        win = env[lo:hi]
        out.append((lo + int(np.argmax(win > win.max() / 2))) * 1000 / rate)
    return out


# ---------------------------------------------------------------- the tests

def test_ledger_expands_a_plan_per_second():
    plan = {"p": {"offset_ms": -350.0, "spans": [{"source": "bot", "start_ms": 0, "end_ms": 2000},
                                                 {"source": "client", "start_ms": 3000, "end_ms": 4000}]}}
    assert participant_sources(plan, 4500)["p"]["by_second"] == ["bot", "bot", None, "client", None]
    assert participant_sources({}, 4500) == {}


@pytest.mark.timeout(1500)
def test_bot_and_page_recordings_of_one_room_make_one_interview(processed):
    """No black or silent stretch, marks within 40 ms, the holes' words, a source per second."""
    _check_ledger_and_media(processed)
    _check_transcript(processed)


def _check_ledger_and_media(processed) -> None:
    ledger, out = processed["ledger"], processed["outputs"]
    # The ledger: each source keeps its own hole; per second, the client plays only where the bot had none.
    tracks = {t["track_id"]: t for t in ledger["tracks"]}
    for pid in PEOPLE:
        gap = [g for g in tracks[f"{pid}-audio"]["gaps"] if g["end_ms"] > g["start_ms"]]
        assert [(round(g["start_ms"], -3), round(g["end_ms"], -3)) for g in gap] == [(6000, 16000)], gap
        plan = ledger["sources"][pid]
        assert plan["by_second"] == ["bot"] * 6 + ["client"] * 10 + ["bot"] * 20, plan
        assert plan["aligned"] and plan["client_recording_id"] == processed["client"]
        print(f"{pid}: client offset {plan['offset_ms']} ms (declared +{SKEW_MS}), confidence {plan['confidence']}")
        assert abs(plan["offset_ms"] + SKEW_MS) <= 40, plan
        for track in (f"{pid}-audio", f"{pid}-video"):  # the composite's gaps: none left in the bot's hole
            assert not [g for g in out["media_gaps"].get(track, []) if g[1] - g[0] > 100], out["media_gaps"]
    assert abs(out["duration_ms"] - TOTAL_S * 1000) <= 100

    # The video: every tile shows its test pattern every second, flashes on time.
    times, luma = _tile_luma(processed["final"])
    assert abs(len(times) - TOTAL_S * 30) <= 2 and np.diff(times).max() < 40
    errors = []
    for pid, (_, _, marks, _) in PEOPLE.items():
        per_second = [luma[pid][(times >= s * 1000) & (times < (s + 1) * 1000)].min() for s in range(TOTAL_S)]
        assert min(per_second) > 40, (pid, np.round(per_second))  # black = 16
        errors += [f - s * 1000 for f, s in zip(_flash_onsets(times, luma[pid], marks), marks)]
    # The sound: room tone in every second, each beep on time (the holes' included).
    rate = 16000
    pcm = audio_samples(processed["final"], 0, TOTAL_S * rate, rate)
    rms = np.sqrt((pcm.reshape(TOTAL_S, rate) ** 2).mean(axis=1))
    assert rms.min() > 0.001, np.round(rms, 4)
    marks = sorted(m for _, _, ms, _ in PEOPLE.values() for m in ms)
    beeps = [b - s * 1000 for b, s in zip(_beep_onsets(pcm, rate, marks), marks)]
    print(f"flash error ms {np.round(errors, 1)}; beep error ms {np.round(beeps, 1)}")
    assert np.abs(errors).max() <= 40 and np.abs(beeps).max() <= 40, (errors, beeps)


def _check_transcript(processed) -> None:
    segs = [s for s in processed["transcript"]["segments"] if not s["suppressed"]]
    for (pid, lost), words in HOLE_WORDS.items():
        text = " ".join(s["text"] for s in segs if s["speaker"]["participant_id"] == pid).lower()
        heard = [w for w in words if w in text]
        assert len(heard) >= 2, (pid, lost, text)
        hole = BOT_HOLE if lost == "bot" else PEOPLE[pid][1]
        inside = [s for s in segs if s["speaker"]["participant_id"] == pid
                  and hole[0] * 1000 <= (s["start_ms"] + s["end_ms"]) / 2 < hole[1] * 1000]
        assert any(w in " ".join(s["text"] for s in inside).lower() for w in words), (pid, lost, inside)
