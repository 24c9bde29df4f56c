"""Audio/video sync of the bot's chunks: a participant sends beeps and flashes at the same
instants (one clock for both tracks); placed on the timeline by their X-Chunk-Start, every beep
in the audio chunks lands on its flash in the video chunks. Run on both recording paths: encoded
frames remuxed (the tap) and decoded + re-encoded (the fallback when the tap is unavailable)."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

from bot import tap
from bot.config import BotConfig
from bot.service import serve
from tests.bot.avsync import beep_times, download_tracks, flash_times
from tests.bot.conftest import BOT_ID, Api, Participant, SyncedSource
from tests.media import ffprobe
from tests.signaling.peers import loopback_only

EVENTS_S = (1.5, 3.5, 5.5)
CLIP_S = 7.0
SYNC_MS = 40  # ARCHITECTURE: audio/video drift between tracks < 40 ms


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
    files = download_tracks(store, ledger, tmp_path)
    for track_id, chunks in files.items():
        kind = track_id.rsplit("-", 1)[1]
        assert all(ffprobe(f)["streams"][0]["codec_name"] == ("vp8" if kind == "video" else "opus")
                   for f, _ in chunks), track_id
    beeps, flashes = beep_times(files["cand-1-audio"]), flash_times(files["cand-1-video"])
    assert len(beeps) == len(flashes) == len(EVENTS_S), (beeps, flashes)
    skew = [round(b - f, 1) for b, f in zip(beeps, flashes)]
    assert all(abs(s) <= SYNC_MS for s in skew), skew
    spacing = np.diff(beeps).tolist()  # and media time runs at the right speed across segments
    assert all(abs(d - 2000) <= 40 for d in spacing), spacing
