"""Two `recorder api` processes sharing Redis and the database: peers on each talk."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from core.db import create_all, make_engine
from signaling import protocol as p
from tests.signaling.conftest import ProcessServer, join_token, new_room
from tests.signaling.peers import SignalClient


@pytest.fixture
def two_processes(settings, tmp_path: Path):
    s = settings.model_copy(update={"signal_heartbeat_s": 0.5, "orphan_sweep_s": 0.3, "orphan_timeout_s": 60})
    engine = make_engine(s.database_url)
    create_all(engine)  # as a deploy's migration step would: create_all races across processes
    engine.dispose()
    servers = []
    try:
        for name in ("a", "b"):  # start both, then wait: imports take seconds on 2 cores
            servers.append(ProcessServer(s, tmp_path / f"api-{name}.log").launch())
        yield [server.wait_ready() for server in servers]
    finally:
        for server in servers:
            server.stop()


def test_relay_resume_and_crash_across_processes(two_processes, api_token):
    one, two = two_processes
    api = api_token()
    room = new_room(one.base_url, api)
    rid = room["id"]

    async def scenario():
        tok_a = join_token(one.base_url, api, rid, "cand-1")["token"]
        a = SignalClient(one.ws_url(tok_a))
        b = SignalClient(two.ws_url(join_token(two.base_url, api, rid, "int-1", "interviewer")["token"]))
        await a.join(instance_id="tab-a")
        await b.join()
        assert (await a.expect("participant_joined")).participant.participant_id == "int-1"
        await b.send(p.Signal(to="cand-1", description={"type": "offer", "sdp": "from-b"}))
        assert (await a.expect("signal")).description["sdp"] == "from-b"
        await a.send(p.Signal(to="int-1", description={"type": "answer", "sdp": "from-a"}))
        assert (await b.expect("signal")).description["sdp"] == "from-a"

        # cand-1's process link drops; it comes back through the other process
        seen = a.last_seq
        await a.drop()
        await b.expect("participant_left", timeout=10)
        await b.send(p.Restart(to="cand-1"))
        a2 = SignalClient(two.ws_url(tok_a))
        assert (await a2.join(instance_id="tab-a", last_seq=seen)).resumed is True
        assert (await a2.expect("restart")).from_ == "int-1"
        back = await b.expect("participant_joined")
        assert (back.participant.participant_id, back.resumed) == ("cand-1", True)

        # a third participant on process one; process one dies without a word
        c = SignalClient(one.ws_url(join_token(one.base_url, api, rid, "obs-1", "assessor")["token"]))
        await c.join()
        assert (await b.expect("participant_joined")).participant.participant_id == "obs-1"
        one.proc.kill()
        gone = await b.expect("participant_left", timeout=15)
        assert (gone.participant_id, gone.reason) == ("obs-1", "gone")
        await a2.close()
        await b.close()
        await c.drop()

    asyncio.run(scenario())
    want = {("token_minted", "cand-1"), ("ws_open", "cand-1"), ("joined", "cand-1"), ("offer", "int-1"),
            ("answer", "cand-1"), ("left", "cand-1"), ("joined", "int-1")}
    seen = one.phases(rid, set(), 0) | two.phases(rid, want, 5)
    assert want <= seen, sorted(want - seen)
