"""The room service over HTTP against a real server (Redis, S3, SQLite/Postgres)."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time

import httpx
import jwt
import redis

from core.db import make_engine
from signaling import store
from signaling.leases import room_lease_key
from tests.signaling.conftest import bearer, join_token, new_room


async def _create_many(base_url: str, token: str, n: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=base_url, headers=bearer(token), timeout=30) as http:
        body = {"slot_id": "slot-42", "candidate_id": "cand-7", "record": True, "layout": "speaker",
                "vocabulary": ["Kubernetes", "PostgreSQL"]}
        return await asyncio.gather(*(http.post("/v1/rooms", json=body) for _ in range(n)))


def test_fifty_concurrent_creates_make_one_room(make_server, any_db_settings, api_token):
    server = make_server(any_db_settings)
    responses = asyncio.run(_create_many(server.base_url, api_token(), 50))
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] * 49 + [201], codes
    ids = {r.json()["id"] for r in responses}
    assert len(ids) == 1
    engine = make_engine(any_db_settings.database_url)
    rooms = store.live_rooms(engine)
    steps = store.transitions_of(engine, ids.pop())
    engine.dispose()
    assert len(rooms) == 1 and rooms[0].layout == "speaker" and rooms[0].vocabulary == ["Kubernetes", "PostgreSQL"]
    assert [(t.from_state, t.to_state) for t in steps] == [(None, "created")]


def test_repeat_create_returns_same_room_other_key_new_room(server, api_token):
    tok = api_token()
    first = httpx.post(f"{server.base_url}/v1/rooms", json={"slot_id": "s1", "candidate_id": "c1"},
                       headers=bearer(tok))
    again = httpx.post(f"{server.base_url}/v1/rooms", json={"slot_id": "s1", "candidate_id": "c1"},
                       headers=bearer(api_token(sub="bob")))
    other = httpx.post(f"{server.base_url}/v1/rooms", json={"slot_id": "s1", "candidate_id": "c2"},
                       headers=bearer(tok))
    assert (first.status_code, again.status_code, other.status_code) == (201, 200, 201)
    assert first.json()["id"] == again.json()["id"] != other.json()["id"]
    assert first.json()["state"] == "created" and first.json()["record"] is True


def test_stale_lease_makes_a_new_room_and_closes_the_old(server, api_token, redis_url):
    tok = api_token()
    old = new_room(server.base_url, tok, "slot-9", "cand-9")
    redis.Redis.from_url(redis_url).delete(room_lease_key("acme", "slot-9", "cand-9"))  # lease lost in a crash
    r = httpx.post(f"{server.base_url}/v1/rooms", json={"slot_id": "slot-9", "candidate_id": "cand-9"},
                   headers=bearer(tok))
    assert r.status_code == 201 and r.json()["id"] != old["id"]
    stale = httpx.get(f"{server.base_url}/v1/rooms/{old['id']}", headers=bearer(tok)).json()
    assert stale["state"] == "ended" and stale["end_reason"] == "stale_lease"
    again = httpx.post(f"{server.base_url}/v1/rooms", json={"slot_id": "slot-9", "candidate_id": "cand-9"},
                       headers=bearer(tok))
    assert again.status_code == 200 and again.json()["id"] == r.json()["id"]


def test_ended_room_is_replaced_on_next_create(server, api_token):
    tok = api_token()
    room = new_room(server.base_url, tok)
    assert httpx.post(f"{server.base_url}/v1/rooms/{room['id']}/end", headers=bearer(tok)).status_code == 200
    r = httpx.post(f"{server.base_url}/v1/rooms", json={"slot_id": "slot-1", "candidate_id": "cand-1"},
                   headers=bearer(tok))
    assert r.status_code == 201 and r.json()["id"] != room["id"]


def test_who_may_call_what(server, api_token, settings):
    base = server.base_url
    room = new_room(base, api_token())
    url = f"{base}/v1/rooms/{room['id']}"
    body = {"slot_id": "s", "candidate_id": "c"}
    assert httpx.post(f"{base}/v1/rooms", json=body, headers=bearer(api_token(role="candidate"))).status_code == 403
    assert httpx.post(f"{base}/v1/rooms", json=body, headers=bearer(api_token(role="service"))).status_code == 201
    assert httpx.post(f"{base}/v1/rooms", json=body).status_code == 401
    other_org = bearer(api_token(org="globex"))
    for r in (httpx.get(url, headers=other_org), httpx.post(f"{url}/end", headers=other_org),
              httpx.post(f"{url}/tokens", json={"participant_id": "x"}, headers=other_org)):
        assert r.status_code == 404 and r.json()["code"] == "room_not_found"  # not even its existence
    assert httpx.get(f"{base}/v1/rooms/room_nope", headers=bearer(api_token())).status_code == 404
    join = join_token(base, api_token(), room["id"], "cand-1")["token"]
    assert httpx.get(url, headers=bearer(join)).status_code == 200  # a participant may see its room
    r = httpx.post(f"{url}/tokens", json={"participant_id": "x"}, headers=bearer(join))
    assert r.status_code == 403 and r.json()["code"] == "wrong_scope"
    r = httpx.post(f"{url}/tokens", json={"participant_id": "bot", "role": "recorder"}, headers=bearer(api_token()))
    assert r.status_code == 403  # interviewers cannot mint invisible participants
    r = httpx.post(f"{url}/tokens", json={"participant_id": "bot", "role": "recorder"},
                   headers=bearer(api_token(role="service")))
    assert r.status_code == 200
    r = httpx.post(f"{base}/v1/rooms", json={"slot_id": "../x", "candidate_id": "c"}, headers=bearer(api_token()))
    assert r.status_code == 400


def test_join_token_claims_cache_and_ice(make_server, api_token, redis_url):
    server = make_server(stun_urls=["stun:stun.example.org:3478"], turn_urls=["turns:turn.example.org:443"],
                         turn_secret="turn-shared-secret", turn_credential_ttl_s=3600, join_token_ttl_s=300)
    s = server.settings
    tok = api_token()
    room = new_room(server.base_url, tok)
    before = time.time()
    first = join_token(server.base_url, tok, room["id"], "cand-1", "candidate", "Cara")
    second = join_token(server.base_url, api_token(sub="bob"), room["id"], "cand-1", "candidate", "Cara")
    assert first == second  # the join storm gets the cached token
    claims = jwt.decode(first["token"], s.jwt_secret, algorithms=["HS256"], issuer=s.jwt_issuer)
    assert (claims["scope"], claims["room_id"], claims["participant_id"], claims["role"], claims["org"],
            claims["display_name"]) == ("join", room["id"], "cand-1", "candidate", "acme", "Cara")
    assert 295 <= claims["exp"] - before <= 301
    assert first["ws_url"].startswith(f"ws://127.0.0.1:{server.port}/v1/signal?token=")
    stun, turn = first["ice_servers"]
    assert stun == {"urls": ["stun:stun.example.org:3478"]}
    expiry, user = turn["username"].split(":")
    assert user == "cand-1" and 3590 <= int(expiry) - before <= 3601
    mac = hmac.new(b"turn-shared-secret", turn["username"].encode(), hashlib.sha1).digest()
    assert turn["credential"] == base64.b64encode(mac).decode()
    ttl = redis.Redis.from_url(redis_url).ttl(f"sig:{{{room['id']}}}:tok:cand-1")
    assert 60 <= ttl <= 90
    other = join_token(server.base_url, tok, room["id"], "cand-1", "candidate", "Someone else")
    assert other["token"] != first["token"]


def test_rate_limits_answer_429_with_retry_after(make_server, api_token):
    server = make_server(room_create_rate_per_minute=3, join_token_rate_per_minute=2)
    tok = api_token()
    codes = [httpx.post(f"{server.base_url}/v1/rooms", json={"slot_id": f"s{i}", "candidate_id": "c"},
                        headers=bearer(tok)) for i in range(4)]
    assert [r.status_code for r in codes] == [201, 201, 201, 429]
    assert codes[-1].json()["code"] == "rate_limited" and 1 <= int(codes[-1].headers["Retry-After"]) <= 60
    room_id = codes[0].json()["id"]
    mints = [httpx.post(f"{server.base_url}/v1/rooms/{room_id}/tokens", json={"participant_id": f"p{i}"},
                        headers=bearer(tok)) for i in range(3)]
    assert [r.status_code for r in mints] == [200, 200, 429] and "Retry-After" in mints[-1].headers
    cached = httpx.post(f"{server.base_url}/v1/rooms/{room_id}/tokens", json={"participant_id": "p0"},
                        headers=bearer(tok))
    assert cached.status_code == 200  # a cached token is not a new mint
