"""The bot records a live room end to end: hidden join, per-track WebM chunks, finalize."""
from __future__ import annotations

import asyncio
from itertools import pairwise
from pathlib import Path

from bot.config import BotConfig
from bot.service import serve
from core.storage import ObjectStore
from tests.bot.conftest import BOT_ID, SEGMENT_S, Api
from tests.media import ffprobe
from tests.signaling.peers import loopback_only

RECORD_S = 7.0


def _check_chunk_media(store: ObjectStore, chunk_key: str, kind: str, tmp: Path) -> dict:
    path = tmp / chunk_key.replace("/", "_")
    store.download(chunk_key, str(path))
    info = ffprobe(path)
    assert "webm" in info["format"]["format_name"] or "matroska" in info["format"]["format_name"]
    assert [s["codec_type"] for s in info["streams"]] == [kind]
    assert info["streams"][0]["codec_name"] == ("vp8" if kind == "video" else "opus")
    return info


def test_bot_records_every_participant_hidden_and_finalizes(bot_settings, settings, live_api, token_for, store,
                                                            monkeypatch, tmp_path):
    loopback_only(monkeypatch)
    cfg = BotConfig.from_settings(bot_settings)

    async def scenario():
        stop = asyncio.Event()
        bot = asyncio.create_task(serve(cfg, stop))
        api = Api(live_api.url, token_for("interviewer"), settings.database_url)
        admin = Api(live_api.url, token_for("admin"), settings.database_url)
        room = await api.room(record=True)
        interviewer = await api.participant(room["id"], "int-1", "interviewer", "Ingrid Interviewer")
        candidate = await api.participant(room["id"], "cand-1", "candidate", "Carl Candidate")
        try:
            await interviewer.join()                       # room becomes active → the bot joins
            await admin.wait_member(room["id"], BOT_ID)    # admins see the recorder in the room
            joined = await candidate.join()                # joins after the bot: must not see it
            await interviewer.wait_peer(BOT_ID)
            await candidate.wait_peer(BOT_ID)
            rec = await api.bot_recording(room["id"])
            await api.wait_chunks(rec["id"], per_track=int(RECORD_S / SEGMENT_S), tracks=4, timeout=60)
            visible = (await api.get(f"/v1/rooms/{room['id']}"))["participants"]
            await api.end(room["id"])
            await api.wait_finalized(rec["id"])
            ledger = await api.get(f"/v1/recordings/{rec['id']}/ledger")
            final = await api.get(f"/v1/recordings/{rec['id']}")
        finally:
            stop.set()
            await asyncio.wait_for(bot, 60)
            for who in (interviewer, candidate):
                await who.close()
            await api.close()
            await admin.close()
        return joined, interviewer.messages, visible, ledger, final

    joined, int_messages, visible, ledger, final = asyncio.run(scenario())

    # hidden: not in the later joiner's list, never announced, not in the room's participant list
    assert [m.participant_id for m in joined.participants] == ["int-1"]
    announced = [m.participant.participant_id for m in int_messages if m.type == "participant_joined"]
    assert announced == ["cand-1"]
    assert sorted(m["participant_id"] for m in visible) == ["cand-1", "int-1"]

    # one recording, finalized by the bot; one track per participant and kind, declared
    assert final["status"] == "processing" and final["source"] == "bot"
    tracks = {t["track_id"]: t for t in final["tracks"]}
    assert set(tracks) == {"int-1-audio", "int-1-video", "cand-1-audio", "cand-1-video"}
    assert tracks["cand-1-video"]["role"] == "candidate" and tracks["cand-1-video"]["display_name"] == "Carl Candidate"
    assert tracks["int-1-audio"]["kind"] == "audio" and tracks["int-1-audio"]["participant_id"] == "int-1"

    for t in ledger["tracks"]:
        chunks = t["chunks"]
        assert [c["seq"] for c in chunks] == list(range(len(chunks))), t["track_id"]
        assert len(chunks) >= 3, t["track_id"]
        for c in chunks[:-1]:  # every closed segment ~ the configured length; the last is the flushed rest
            assert abs(c["duration_ms"] - SEGMENT_S * 1000) <= SEGMENT_S * 100, (t["track_id"], c)
        assert 0 < chunks[-1]["duration_ms"] <= SEGMENT_S * 1100
        for a, b in pairwise(chunks):  # back to back on the timeline (no hole, no overlap > 100 ms)
            assert abs(b["start_ms"] - (a["start_ms"] + a["duration_ms"])) <= 40, (t["track_id"], a, b)
        kind = t["kind"]
        for c in (chunks[0], chunks[-1]):
            info = _check_chunk_media(store, f"acme/recordings/{ledger['recording_id']}/chunks/{t['track_id']}/"
                                      f"{c['seq']:06d}.webm", kind, tmp_path)
            assert abs(float(info["format"]["duration"]) * 1000 - c["duration_ms"]) <= 100


def test_segments_left_in_the_spool_by_a_dead_bot_are_uploaded_first(bot_settings, settings, live_api, token_for,
                                                                    monkeypatch, tmp_path):
    from bot import spool
    from bot.segments import ClosedSegment
    from bot.track import TrackInfo
    from bot.writer import RemuxWriter
    from tests.bot.test_units import opus_packets

    loopback_only(monkeypatch)
    cfg = BotConfig.from_settings(bot_settings)

    async def scenario():
        stop = asyncio.Event()
        api = Api(live_api.url, token_for("interviewer"), settings.database_url)
        room = await api.room(record=True)
        info = TrackInfo("int-1-audio", "int-1", "audio", "interviewer", "Ingrid")
        folder = cfg.spool_dir / room["id"]
        folder.mkdir(parents=True)
        writer = RemuxWriter(folder / "int-1-audio.000005.webm", "audio")
        for i, data in enumerate(opus_packets(50)):
            writer.add(i * 960, data, True, 960)
        size, sha = writer.close()
        left = ClosedSegment("int-1-audio", 5, folder / "int-1-audio.000005.webm", 1_700_000_000_000, 1000, sha,
                             size, "audio/webm", "rtcp_sr")
        spool.save(info, left)
        (folder / "int-1-video.000009.webm").write_bytes(b"never closed")
        bot = asyncio.create_task(serve(cfg, stop))
        interviewer = await api.participant(room["id"], "int-1", "interviewer")
        try:
            await interviewer.join()
            await interviewer.wait_peer(BOT_ID)
            rec = await api.bot_recording(room["id"])
            ledger = await api.wait_chunks(rec["id"], per_track=2, tracks=1, timeout=60)
        finally:
            stop.set()
            await asyncio.wait_for(bot, 60)
            await interviewer.close()
            await api.close()
        return ledger, folder

    ledger, folder = asyncio.run(scenario())
    audio = next(t for t in ledger["tracks"] if t["track_id"] == "int-1-audio")
    seqs = [c["seq"] for c in audio["chunks"]]
    assert seqs[:2] == [5, 6], seqs                  # the leftover, then the live recording after it
    assert audio["chunks"][0]["start_epoch_ms"] == 1_700_000_000_000 and audio["role"] == "interviewer"
    assert not (folder / "int-1-video.000009.webm").exists()
    assert not list(folder.glob("*.json"))           # uploaded (or flushed at stop) → sidecars gone
