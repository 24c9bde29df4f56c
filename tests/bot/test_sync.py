"""Audio/video sync of the bot's chunks: a participant sends beeps and flashes at the same
instants (one clock for both tracks); placed on the timeline by their X-Chunk-Start, every beep
in the audio chunks lands on its flash in the video chunks. Run on both recording paths: encoded
frames remuxed (the tap) and decoded + re-encoded (the fallback when the tap is unavailable)."""
from __future__ import annotations

import asyncio
from pathlib import Path

import av
import numpy as np
import pytest

from bot import tap
from bot.config import BotConfig
from bot.service import serve
from tests.bot.conftest import BOT_ID, Api, Participant, SyncedSource
from tests.media import ffprobe
from tests.signaling.peers import loopback_only

EVENTS_S = (1.5, 3.5, 5.5)
CLIP_S = 7.0
SYNC_MS = 40  # ARCHITECTURE: audio/video drift between tracks < 40 ms


def _onsets(times_ms: list[float], gap_ms: float = 300) -> list[float]:
    """First time of each burst (bursts are > gap_ms apart)."""
    ts = sorted(times_ms)
    return [t for i, t in enumerate(ts) if i == 0 or t - ts[i - 1] > gap_ms]


def _decode(path: Path, kind: str):
    with av.open(str(path)) as c:
        yield from c.decode(**{kind: 0})


def beep_times(chunks: list[tuple[Path, int]]) -> list[float]:
    loud: list[float] = []
    for path, start in chunks:
        for frame in _decode(path, "audio"):
            x = np.abs(frame.to_ndarray().astype(np.float32)).max(axis=0)
            if frame.format.name.startswith("s16"):
                x /= 32768
            t0 = start + float(frame.pts * frame.time_base) * 1000
            loud += [t0 + i * 1000 / frame.sample_rate for i in np.flatnonzero(x > 0.1)[:1]]
    return _onsets(loud)


def flash_times(chunks: list[tuple[Path, int]]) -> list[float]:
    bright: list[float] = []
    for path, start in chunks:
        for frame in _decode(path, "video"):
            if frame.to_ndarray(format="gray").mean() > 200:
                bright.append(start + float(frame.pts * frame.time_base) * 1000)
    return _onsets(bright)


@pytest.mark.parametrize("path", ["remux", "transcode"])
def test_beeps_land_on_flashes_across_audio_and_video_chunks(path, bot_settings, settings, live_api, token_for,
                                                             store, monkeypatch, tmp_path):
    loopback_only(monkeypatch)
    if path == "transcode":
        monkeypatch.setattr(tap, "install", lambda receiver, sink: False)
    cfg = BotConfig.from_settings(bot_settings)

    async def scenario():
        stop = asyncio.Event()
        bot = asyncio.create_task(serve(cfg, stop))
        api = Api(live_api.url, token_for("interviewer"), settings.database_url)
        room = await api.room(record=True)
        who: Participant = await api.participant(room["id"], "cand-1", "candidate")
        who.tracks = SyncedSource(EVENTS_S).tracks
        try:
            await who.join()
            await who.wait_peer(BOT_ID)
            rec = await api.bot_recording(room["id"])
            await asyncio.sleep(CLIP_S + 1)
            await api.end(room["id"])
            await api.wait_finalized(rec["id"])
            return await api.get(f"/v1/recordings/{rec['id']}/ledger")
        finally:
            stop.set()
            await asyncio.wait_for(bot, 60)
            await who.close()
            await api.close()

    ledger = asyncio.run(scenario())
    files: dict[str, list[tuple[Path, int]]] = {}
    for t in ledger["tracks"]:
        for c in t["chunks"]:
            local = tmp_path / f"{t['track_id']}-{c['seq']}.webm"
            store.download(f"acme/recordings/{ledger['recording_id']}/chunks/{t['track_id']}/{c['seq']:06d}.webm",
                           str(local))
            codec = ffprobe(local)["streams"][0]["codec_name"]
            assert codec == ("vp8" if t["kind"] == "video" else "opus")
            files.setdefault(t["kind"], []).append((local, c["start_ms"]))
    beeps, flashes = beep_times(files["audio"]), flash_times(files["video"])
    assert len(beeps) == len(flashes) == len(EVENTS_S), (beeps, flashes)
    skew = [round(b - f, 1) for b, f in zip(beeps, flashes)]
    assert all(abs(s) <= SYNC_MS for s in skew), skew
    spacing = np.diff(beeps).tolist()  # and media time runs at the right speed across segments
    assert all(abs(d - 2000) <= 40 for d in spacing), spacing
