"""Two aiortc peers connect through our signaling (offer/answer/trickled ICE on loopback)
and exchange audio and video; every join phase shows up in the server's JSON logs."""
from __future__ import annotations

import asyncio

import pytest

from tests.signaling.conftest import ProcessServer, join_token, new_room
from tests.signaling.peers import (
    RtcPeer,
    SignalClient,
    loopback_only,
    small_video_track,
    tone_track,
)


@pytest.fixture
def api_process(settings, tmp_path):
    server = ProcessServer(settings, tmp_path / "api.log").start()
    yield server
    server.stop()


def test_two_aiortc_peers_exchange_media_through_signaling(api_process, api_token, monkeypatch):
    loopback_only(monkeypatch)
    server, api = api_process, api_token()
    room = new_room(server.base_url, api)
    rid = room["id"]

    async def scenario():
        interviewer = SignalClient(join_token(server.base_url, api, rid, "int-1", "interviewer")["ws_url"])
        candidate = SignalClient(join_token(server.base_url, api, rid, "cand-1", "candidate")["ws_url"])
        await interviewer.join()
        await candidate.join()
        caller = RtcPeer(interviewer, send_tracks=[tone_track(), small_video_track()])
        callee = RtcPeer(candidate, send_tracks=[tone_track(), small_video_track()])
        pumps = [asyncio.create_task(caller.pump()), asyncio.create_task(callee.pump())]
        try:
            await caller.call("cand-1")
            await asyncio.wait_for(asyncio.gather(caller.connected.wait(), callee.connected.wait()), 20)
            got_callee = await callee.wait_media(audio=25, video=10)
            got_caller = await caller.wait_media(audio=25, video=10)
        finally:
            for task in pumps:
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            await caller.close()
            await callee.close()
            await interviewer.close()
            await candidate.close()
        return got_caller, got_callee

    got_caller, got_callee = asyncio.run(scenario())
    assert got_callee["video"] >= 10 and got_callee["audio"] >= 25
    assert got_caller["video"] >= 10 and got_caller["audio"] >= 25
    want = {("token_minted", "int-1"), ("ws_open", "int-1"), ("joined", "int-1"), ("offer", "int-1"),
            ("answer", "cand-1"), ("ice_connected", "int-1"), ("ice_connected", "cand-1"), ("left", "cand-1")}
    seen = server.phases(rid, want)
    assert want <= seen, sorted(want - seen)
