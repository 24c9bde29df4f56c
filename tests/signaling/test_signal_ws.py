"""The WebSocket relay with real clients against a real uvicorn server."""
from __future__ import annotations

import asyncio

import httpx
import redis

from core.db import make_engine
from signaling import protocol as p
from signaling import store
from tests.signaling.conftest import bearer, join_token, new_room
from tests.signaling.peers import JoinRefused, SignalClient

OFFER = {"type": "offer", "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=x-odd:\"quoted\" ünïcode\r\n"}


async def _client(server, api, room_id, pid, role="candidate", **kw) -> SignalClient:
    tok = join_token(server.base_url, api, room_id, pid, role)["token"]
    return SignalClient(server.ws_url(tok), **kw)


def test_two_participants_relay_untouched_and_presence(server, api_token, redis_url):
    api = api_token()
    room = new_room(server.base_url, api)

    async def scenario():
        a = await _client(server, api, room["id"], "cand-1")
        b = await _client(server, api, room["id"], "int-1", "interviewer")
        ja = await a.join()
        assert ja.participants == [] and ja.resumed is False
        jb = await b.join()
        assert [x.participant_id for x in jb.participants] == ["cand-1"]
        joined = await a.expect("participant_joined")
        assert joined.participant.participant_id == "int-1" and joined.participant.role == "interviewer"

        await b.send(p.Signal(to="cand-1", description=OFFER))
        got = await a.expect("signal")
        assert got.from_ == "int-1" and got.description == OFFER
        cand = {"candidate": "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host", "sdpMid": "0",
                "sdpMLineIndex": 0, "usernameFragment": "abcd"}
        await a.send(p.Signal(to="int-1", candidate=cand))
        back = await b.expect("signal")
        assert back.from_ == "cand-1" and back.candidate == cand
        await a.send(p.Restart(to="int-1"))
        assert (await b.expect("restart")).from_ == "cand-1"

        await a.send(p.Ping(ts=12.5))
        assert (await a.expect("pong")).ts == 12.5

        cache = redis.Redis.from_url(redis_url)
        assert cache.exists(f"sig:{{{room['id']}}}:tok:int-1")
        await b.send(p.Leave())
        left = await a.expect("participant_left")
        assert left.participant_id == "int-1" and left.reason == "left"
        assert await b.wait_closed() == p.CLOSE_NORMAL
        for _ in range(50):  # leave drops the cached token (right after the close)
            if not cache.exists(f"sig:{{{room['id']}}}:tok:int-1"):
                break
            await asyncio.sleep(0.05)
        assert not cache.exists(f"sig:{{{room['id']}}}:tok:int-1")
        await a.close()

    asyncio.run(scenario())
    detail = httpx.get(f"{server.base_url}/v1/rooms/{room['id']}", headers=bearer(api)).json()
    assert detail["state"] == "active"
    history = {h["participant_id"]: h for h in detail["history"]}
    assert history["int-1"]["leave_reason"] == "left" and history["int-1"]["left_at"] >= history["int-1"]["joined_at"]
    assert [t["to_state"] for t in detail["transitions"]] == ["created", "active"]


def test_hidden_recorder_receives_everything_but_is_not_announced(server, api_token):
    api, service = api_token(), api_token(role="service", sub="bot-svc")
    room = new_room(server.base_url, api)

    async def scenario():
        bot = await _client(server, service, room["id"], "bot", "recorder")
        a = await _client(server, api, room["id"], "cand-1")
        b = await _client(server, api, room["id"], "int-1", "interviewer")
        await bot.join()
        ja = await a.join()
        assert ja.participants == []  # the bot is not listed
        await b.join()
        seen = await bot.expect("participant_joined")
        assert seen.participant.participant_id == "cand-1"
        jb_for_bot = await bot.expect("participant_joined")
        assert jb_for_bot.participant.participant_id == "int-1"
        # the bot offers to a visible participant, who answers it
        await bot.send(p.Signal(to="cand-1", description=OFFER))
        offer = await a.expect("signal")
        assert offer.from_ == "bot"
        await a.send(p.Signal(to="bot", description={"type": "answer", "sdp": "v=0\r\n"}))
        assert (await bot.expect("signal")).description["type"] == "answer"
        await bot.close()
        rest = await a.drain(0.5) + await b.drain(0.1)
        assert all(getattr(m, "participant_id", None) != "bot" for m in rest)
        assert not any(m.type == "participant_joined" and m.participant.participant_id == "bot" for m in rest)
        await a.close()
        await b.close()

    asyncio.run(scenario())
    url = f"{server.base_url}/v1/rooms/{room['id']}"
    seen_by_interviewer = httpx.get(url, headers=bearer(api)).json()
    assert all(h["participant_id"] != "bot" for h in seen_by_interviewer["history"])
    seen_by_admin = httpx.get(url, headers=bearer(api_token(role="admin"))).json()
    assert any(h["participant_id"] == "bot" and h["role"] == "recorder" for h in seen_by_admin["history"])


def test_second_tab_is_rejected_and_first_keeps_working(server, api_token):
    api = api_token()
    room = new_room(server.base_url, api)

    async def scenario():
        tok = join_token(server.base_url, api, room["id"], "cand-1")["token"]
        first, second = SignalClient(server.ws_url(tok)), SignalClient(server.ws_url(tok))
        other = await _client(server, api, room["id"], "int-1", "interviewer")
        await first.join(instance_id="tab-a")
        await other.join()
        try:
            await second.join(instance_id="tab-b")
            raise AssertionError("second tab was admitted")
        except JoinRefused as exc:
            assert exc.code == "already_in_room"
        assert await second.wait_closed() == p.CLOSE_ALREADY_IN_ROOM
        await other.send(p.Signal(to="cand-1", description=OFFER))
        assert (await first.expect("signal")).description == OFFER
        assert not any(m.type == "participant_left" for m in await other.drain(0.3))
        await first.close()
        await other.close()

    asyncio.run(scenario())


def test_resume_delivers_missed_messages_once(server, api_token):
    api = api_token()
    room = new_room(server.base_url, api)

    async def scenario():
        tok = join_token(server.base_url, api, room["id"], "cand-1")["token"]
        a = SignalClient(server.ws_url(tok))
        b = await _client(server, api, room["id"], "int-1", "interviewer")
        await a.join(instance_id="tab-a")
        await b.join()
        await b.send(p.Signal(to="cand-1", description={"type": "offer", "sdp": "first"}))
        assert (await a.expect("signal")).description["sdp"] == "first"
        seen = a.last_seq
        await a.drop()  # network cut, no close frame
        left = await b.expect("participant_left", timeout=15)
        assert left.participant_id == "cand-1" and left.reason in ("closed", "timeout")
        for i in range(3):  # sent while cand-1 is away: buffered, not refused
            await b.send(p.Signal(to="cand-1", candidate={"candidate": f"candidate:{i} 1 udp 1 127.0.0.1 {i} typ host"}))
        assert not any(m.type == "error" for m in await b.drain(0.3))
        again = SignalClient(server.ws_url(tok))
        joined = await again.join(instance_id="tab-a", last_seq=seen)
        assert joined.resumed is True
        replay = [await again.expect("signal") for _ in range(3)]
        assert [m.candidate["candidate"].split(":")[1][0] for m in replay] == ["0", "1", "2"]
        assert [m.seq for m in replay] == sorted(m.seq for m in replay) and replay[0].seq > seen
        assert not any(m.type == "signal" for m in await again.drain(0.3))
        back = await b.expect("participant_joined")
        assert back.resumed is True
        await b.send(p.Signal(to="cand-1", description={"type": "offer", "sdp": "after"}))
        assert (await again.expect("signal")).description["sdp"] == "after"
        await again.close()
        await b.close()

    asyncio.run(scenario())
    engine = make_engine(server.settings.database_url)
    sessions = [s for s in store.history_of(engine, room["id"]) if s.participant_id == "cand-1"]
    engine.dispose()
    assert len(sessions) == 1 and sessions[0].reconnects == 1


def test_resume_token_reconnects_after_join_token_expiry(server, api_token, settings):
    api = api_token()
    room = new_room(server.base_url, api)

    async def scenario():
        a = await _client(server, api, room["id"], "cand-1")
        joined = await a.join(instance_id="tab-a")
        assert joined.resume_token
        await a.drop()
        again = SignalClient(server.ws_url(joined.resume_token))
        assert (await again.join(instance_id="tab-a")).resumed is True
        await again.close()

    asyncio.run(scenario())


def test_heartbeat_two_missed_pings_means_gone(make_server, api_token):
    server = make_server(signal_heartbeat_s=0.3)
    api = api_token()
    room = new_room(server.base_url, api)

    async def scenario():
        silent = await _client(server, api, room["id"], "cand-1", answer_pings=False)
        other = await _client(server, api, room["id"], "int-1", "interviewer")
        await silent.join()
        await other.join()
        assert await silent.wait_closed(5) == p.CLOSE_HEARTBEAT
        left = await other.expect("participant_left", timeout=5)
        assert left.participant_id == "cand-1" and left.reason == "timeout"
        await asyncio.sleep(1.0)  # several heartbeats: the answering client stays
        await other.send(p.Ping())
        assert (await other.expect("pong")).type == "pong"
        await other.close()

    asyncio.run(scenario())


def test_end_by_interviewer_closes_everyone_and_candidates_cannot_end(server, api_token, redis_url):
    api = api_token()
    room = new_room(server.base_url, api)

    async def scenario():
        a = await _client(server, api, room["id"], "cand-1")
        b = await _client(server, api, room["id"], "int-1", "interviewer")
        await a.join()
        await b.join()
        await a.send(p.End())
        err = await a.expect("error")
        assert err.code == "forbidden"
        await b.send(p.End(reason="done"))
        assert (await a.expect("end")).reason == "done"
        assert await a.wait_closed() == p.CLOSE_ROOM_ENDED
        assert await b.wait_closed() == p.CLOSE_ROOM_ENDED

    asyncio.run(scenario())
    detail = httpx.get(f"{server.base_url}/v1/rooms/{room['id']}", headers=bearer(api)).json()
    assert detail["state"] == "ended" and detail["end_reason"] == "done"
    assert all(h["left_at"] is not None for h in detail["history"])
    r = httpx.post(f"{server.base_url}/v1/rooms/{room['id']}/tokens", headers=bearer(api),
                   json={"participant_id": "cand-9"})
    assert r.status_code == 422 and r.json()["code"] == "room_ended"
    keys = redis.Redis.from_url(redis_url).keys(f"sig:{{{room['id']}}}:*")
    assert keys == []


def test_join_after_end_is_refused(server, api_token):
    api = api_token()
    room = new_room(server.base_url, api)
    tok = join_token(server.base_url, api, room["id"], "cand-1")["token"]
    r = httpx.post(f"{server.base_url}/v1/rooms/{room['id']}/end", headers=bearer(api))
    assert r.status_code == 200 and r.json()["state"] == "ended"

    async def scenario():
        c = SignalClient(server.ws_url(tok))
        try:
            await c.join()
            raise AssertionError("joined an ended room")
        except JoinRefused as exc:
            assert exc.code == "room_ended"
        assert await c.wait_closed() == p.CLOSE_ROOM_ENDED

    asyncio.run(scenario())


def test_long_calls_get_a_renewed_resume_token_with_the_heartbeat(make_server, api_token) -> None:
    """The resume token outlives the resume window by a minute only: the server renews it
    on the heartbeat once half its window has passed, so a drop late in a long call can
    still take the seat back."""
    from core.auth import verify_token

    server = make_server(resume_window_s=4, signal_heartbeat_s=1.0)
    room = new_room(server.base_url, api_token())
    tok = join_token(server.base_url, api_token(), room["id"], "cand-1")["token"]

    async def scenario() -> None:
        client = SignalClient(server.ws_url(tok))
        joined = await client.join()
        first = joined.resume_token
        async with asyncio.timeout(15):
            while client.last_ping is None or client.last_ping.resume_token is None:
                await asyncio.sleep(0.1)
        renewed = client.last_ping.resume_token
        s = server.settings
        a, b = verify_token(s.jwt_secret, first, issuer=s.jwt_issuer), verify_token(s.jwt_secret, renewed,
                                                                                     issuer=s.jwt_issuer)
        assert (b.scope, b.room_id, b.participant_id) == ("join", room["id"], "cand-1")
        assert b.claims["exp"] > a.claims["exp"]
        await client.close()

    asyncio.run(scenario())
