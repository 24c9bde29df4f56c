"""The recovery ladder and gap causes end to end, with real aiortc peers on loopback.

1. A participant whose media stops while the connection stays up (a frozen sender): the bot
   climbs problem → ICE restart (aiortc has none: logged, key frames asked for) → a new peer
   connection, which the participant answers with fresh tracks; the hole is a `network` gap.
   The ladder runs on a shortened clock (same rungs, ×0.2) to keep the test short.
2. A participant leaves and rejoins (new segments on the same tracks, a `participant_left`
   gap between), and a late audio-only participant gets an audio track and nothing else.
"""
from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

from bot.config import BotConfig
from bot.ladder import LadderConfig
from bot.monitor import MonitorConfig
from bot.service import serve
from signaling import protocol as p
from tests.bot.conftest import (
    BOT_ID,
    Api,
    Participant,
    captured_events,
    default_tracks,
    first_event,
    holes,
)
from tests.signaling.peers import loopback_only, tone_track

FAST = MonitorConfig(ladder=LadderConfig(heartbeat_s=0.5, ice_restart_s=1.8, renegotiate_s=3.6, warmup_s=2.0),
                     quality_s=1.0)


def _gated(inner: Any, gate: asyncio.Event) -> Any:
    """`inner`, but `recv()` blocks while `gate` is clear (a sender whose media stops)."""
    from aiortc import MediaStreamTrack

    class Gated(MediaStreamTrack):
        kind = inner.kind

        async def recv(self) -> Any:
            await gate.wait()
            return await inner.recv()

    return Gated()


async def _tracks_after(api: Api, rec_id: str, pid: str, after_s: float, timeout: float = 40) -> dict:
    async with asyncio.timeout(timeout):
        while True:
            ledger = await api.get(f"/v1/recordings/{rec_id}/ledger")
            mine = [t for t in ledger["tracks"] if t["participant_id"] == pid]
            if mine and all(sum(c["start_epoch_ms"] > after_s * 1000 for c in t["chunks"]) >= 2 for t in mine):
                return ledger
            await asyncio.sleep(0.25)


def test_frozen_sender_climbs_the_ladder_to_a_new_peer_connection(bot_settings, settings, live_api, token_for,
                                                                  monkeypatch):
    loopback_only(monkeypatch)
    cfg = dataclasses.replace(BotConfig.from_settings(bot_settings), monitor=FAST)
    gate = asyncio.Event()
    made: list[int] = []

    def candidate_tracks() -> list[Any]:  # the first peer's tracks can be stopped; a rebuilt peer's cannot
        made.append(1)
        return [_gated(t, gate) for t in default_tracks()] if len(made) == 1 else default_tracks()

    async def scenario():
        gate.set()
        stop = asyncio.Event()
        api = Api(live_api.url, token_for("interviewer"), settings.database_url)
        with captured_events() as events:
            bot = asyncio.create_task(serve(cfg, stop))
            room = await api.room(record=True)
            base = await api.participant(room["id"], "cand-1", "candidate", "Carl Candidate")
            candidate = Participant(base.client, candidate_tracks)
            try:
                await candidate.join()
                await candidate.wait_peer(BOT_ID)
                rec = await api.bot_recording(room["id"])
                await api.wait_chunks(rec["id"], per_track=2, tracks=2, timeout=60)
                stopped_at = time.time()
                gate.clear()
                async with asyncio.timeout(30):
                    while not first_event(events, "media_gap", participant="cand-1"):
                        await asyncio.sleep(0.1)
                await _tracks_after(api, rec["id"], "cand-1", stopped_at)
                await api.end(room["id"])
                await api.wait_finalized(rec["id"])
                ledger = await api.get(f"/v1/recordings/{rec['id']}/ledger")
            finally:
                gate.set()
                stop.set()
                await asyncio.wait_for(bot, 60)
                await candidate.close()
                await api.close()
        return stopped_at, list(events), ledger

    stopped_at, events, ledger = asyncio.run(scenario())
    phases = [(e["phase"], round(e["t"] - stopped_at, 2)) for e in events
              if e.get("event") == "link_recovery" and e.get("participant") == "cand-1"]
    assert [ph for ph, _ in phases] == ["problem", "ice_restart", "renegotiate"], phases
    t = dict(phases)
    assert 0.9 <= t["problem"] <= 3.0 and 1.7 <= t["ice_restart"] - t["problem"] <= 2.5, phases
    assert 3.5 <= t["renegotiate"] - t["problem"] <= 4.3, phases
    assert first_event(events, "ice_restart_unavailable", participant="cand-1") is not None
    assert all(e.get("room_id") for e in events if e.get("event") == "link_recovery")
    assert len(made) == 2                                    # the participant answered a second offer
    for track in ledger["tracks"]:
        chunks = track["chunks"]
        assert [c["seq"] for c in chunks] == list(range(len(chunks))), track["track_id"]  # same track, next seqs
        (gap,) = holes(track)
        assert gap["cause"] == "network" and gap["detected"] == "timeline_hole", gap
        assert 4.0 <= gap["seconds"] <= 9.0, gap


def test_leave_and_rejoin_is_a_participant_left_gap_and_a_late_audio_only_joiner_gets_audio(
        bot_settings, settings, live_api, token_for, monkeypatch):
    loopback_only(monkeypatch)
    cfg = dataclasses.replace(BotConfig.from_settings(bot_settings), monitor=FAST)
    away_s = 4.0

    async def scenario():
        stop = asyncio.Event()
        api = Api(live_api.url, token_for("interviewer"), settings.database_url)
        bot = asyncio.create_task(serve(cfg, stop))
        room = await api.room(record=True)
        interviewer = await api.participant(room["id"], "int-1", "interviewer", "Ingrid")
        candidate = await api.participant(room["id"], "cand-1", "candidate", "Carl")
        people = [interviewer, candidate]
        try:
            for who in people:
                await who.join()
                await who.wait_peer(BOT_ID)
            rec = await api.bot_recording(room["id"])
            await api.wait_chunks(rec["id"], per_track=2, tracks=4, timeout=60)
            await candidate.client.send(p.Leave())
            left_at = time.time()
            await asyncio.sleep(away_s)
            observer = await api.participant(room["id"], "obs-1", "assessor", "Olga Observer")
            observer.tracks = lambda: [tone_track()]
            again = await api.participant(room["id"], "cand-1", "candidate", "Carl")
            people += [observer, again]
            for who in (observer, again):
                await who.join()
                await who.wait_peer(BOT_ID)
            await _tracks_after(api, rec["id"], "cand-1", left_at + away_s)
            await _tracks_after(api, rec["id"], "obs-1", 0)
            await api.end(room["id"])
            await api.wait_finalized(rec["id"])
            ledger = await api.get(f"/v1/recordings/{rec['id']}/ledger")
            final = await api.get(f"/v1/recordings/{rec['id']}")
        finally:
            stop.set()
            await asyncio.wait_for(bot, 60)
            for who in people:
                await who.close()
            await api.close()
        return ledger, final

    ledger, final = asyncio.run(scenario())
    tracks = {t["track_id"]: t for t in ledger["tracks"]}
    assert set(tracks) == {"int-1-audio", "int-1-video", "cand-1-audio", "cand-1-video", "obs-1-audio"}
    assert {t["track_id"]: t["kind"] for t in final["tracks"]}["obs-1-audio"] == "audio"
    for kind in ("audio", "video"):
        cand = tracks[f"cand-1-{kind}"]
        assert [c["seq"] for c in cand["chunks"]] == list(range(len(cand["chunks"])))   # the same track goes on
        (gap,) = holes(cand)
        assert gap["cause"] == "participant_left" and gap["detected"] == "timeline_hole", gap
        assert away_s - 0.5 <= gap["seconds"] <= away_s + 5, gap
        assert holes(tracks[f"int-1-{kind}"]) == []
    assert holes(tracks["obs-1-audio"]) == [] and len(tracks["obs-1-audio"]["chunks"]) >= 2
