"""Bad frames and bad tokens get a clear error; the server keeps serving everyone."""
from __future__ import annotations

import asyncio
import json

import pytest

from core.auth import mint_token
from signaling import protocol as p
from tests.signaling.conftest import join_token, new_room
from tests.signaling.peers import SignalClient

BAD_FRAMES = [
    ("{not json", "malformed_json"),
    ("[1, 2, 3]", "malformed_json"),
    (json.dumps({"type": "teleport", "to": "x"}), "unknown_type"),
    (json.dumps({"v": 2, "type": "ping"}), "unsupported_version"),
    (json.dumps({"type": "signal", "to": "int-1"}), "invalid_message"),
    (json.dumps({"type": "signal", "to": "int-1", "description": {}, "candidate": {}}), "invalid_message"),
    (json.dumps({"type": "signal", "to": "nobody", "description": {"type": "offer", "sdp": ""}}),
     "unknown_participant"),
    (json.dumps({"type": "signal", "to": "cand-1", "description": {"type": "offer", "sdp": ""}}), "invalid_message"),
    (json.dumps({"type": "report", "phase": "hacked\nline"}), "invalid_message"),
    (json.dumps({"type": "joined", "room_id": "r", "participant_id": "x", "instance_id": "i"}), "unknown_type"),
    (json.dumps({"type": "join", "instance_id": "again"}), "already_joined"),
    (json.dumps({"type": "signal", "to": "int-1", "description": {"sdp": "x" * 70_000}}), "message_too_large"),
]


def test_each_bad_frame_gets_its_error_code_and_the_socket_keeps_working(server, api_token):
    api = api_token()
    room = new_room(server.base_url, api)

    async def scenario():
        a = SignalClient(server.ws_url(join_token(server.base_url, api, room["id"], "cand-1")["token"]))
        b = SignalClient(server.ws_url(join_token(server.base_url, api, room["id"], "int-1", "interviewer")["token"]))
        await a.join()
        await b.join()
        for frame, code in BAD_FRAMES:
            await a.send(frame)
            err = await a.expect("error")
            assert err.code == code, (frame[:60], err)
        await a.send(b'{"type": "ping", "ts": 1}')  # binary frames carry JSON too
        assert (await a.expect("pong")).ts == 1
        await a.send(p.Signal(to="int-1", description={"type": "offer", "sdp": "ok"}))
        assert (await b.expect("signal")).description["sdp"] == "ok"
        await a.close()
        await b.close()

    asyncio.run(scenario())


def test_first_frame_must_be_a_valid_join(server, api_token):
    api = api_token()
    room = new_room(server.base_url, api)
    tok = join_token(server.base_url, api, room["id"], "cand-1")["token"]

    async def scenario():
        for frame, code in [("nope", "malformed_json"), (p.Ping().dumps(), "join_first"),
                            (json.dumps({"type": "join"}), "invalid_message")]:
            c = await SignalClient(server.ws_url(tok)).open()
            await c.send(frame)
            assert (await c.expect("error")).code == code
            assert await c.wait_closed() == p.CLOSE_BAD_REQUEST
        ok = SignalClient(server.ws_url(tok))
        assert (await ok.join()).participant_id == "cand-1"
        await ok.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("case", ["expired", "forged", "api_scope", "missing", "other_org", "no_room"])
def test_bad_tokens_are_refused_with_a_code(server, api_token, settings, case):
    api = api_token()
    room = new_room(server.base_url, api)
    claims = {"sub": "cand-1", "org": "acme", "role": "candidate", "scope": "join", "issuer": settings.jwt_issuer,
              "room_id": room["id"], "participant_id": "cand-1"}
    secret, ttl = settings.jwt_secret, 60
    if case == "expired":
        ttl = -30
    elif case == "forged":
        secret = "not-the-server-secret-0123456789"
    elif case == "api_scope":
        claims["scope"] = "api"
    elif case == "other_org":
        claims["org"] = "globex"
    elif case == "no_room":
        claims["room_id"] = "room_missing"
    token = "" if case == "missing" else mint_token(secret, ttl_s=ttl, **claims)
    expected = {"expired": ("token_expired", p.CLOSE_UNAUTHORIZED), "forged": ("invalid_token", p.CLOSE_UNAUTHORIZED),
                "api_scope": ("invalid_token", p.CLOSE_UNAUTHORIZED),
                "missing": ("missing_token", p.CLOSE_UNAUTHORIZED),
                "other_org": ("other_org", p.CLOSE_FORBIDDEN), "no_room": ("room_not_found", p.CLOSE_NOT_FOUND)}[case]

    async def scenario():
        bad = await SignalClient(server.ws_url(token)).open()
        if case in ("other_org", "no_room"):
            await bad.send(p.Join(instance_id="x"))
        err = await bad.expect("error")
        assert (err.code, await bad.wait_closed()) == expected
        good = SignalClient(server.ws_url(join_token(server.base_url, api, room["id"], "int-1", "interviewer")["token"]))
        assert (await good.join()).room_id == room["id"]
        await good.close()

    asyncio.run(scenario())


def test_flood_is_rate_limited_without_dropping_the_socket(server, api_token):
    api = api_token()
    room = new_room(server.base_url, api)

    async def scenario():
        a = SignalClient(server.ws_url(join_token(server.base_url, api, room["id"], "cand-1")["token"]))
        await a.join()
        for _ in range(400):
            await a.send(p.Ping())
        got = await a.drain(0.5)
        codes = [m.code for m in got if m.type == "error"]
        assert "rate_limited" in codes and sum(m.type == "pong" for m in got) >= 150
        await asyncio.sleep(1.0)
        await a.send(p.Ping(ts=7))
        assert (await a.expect("pong")).ts == 7
        await a.close()

    asyncio.run(scenario())
