"""Room lifecycle: transitions stored and published, orphans closed by one sweeper."""
from __future__ import annotations

import asyncio
import json
import time

import httpx
import redis

from core.db import make_engine
from signaling import protocol as p
from signaling import store
from tests.signaling.conftest import bearer, join_token, new_room
from tests.signaling.peers import SignalClient

FAST = {"orphan_timeout_s": 1, "orphan_sweep_s": 0.2, "signal_heartbeat_s": 0.5}


def _events(redis_url: str):
    pubsub = redis.Redis.from_url(redis_url).pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(p.ROOM_EVENTS_CHANNEL)
    return pubsub


def _drain_events(pubsub, room_id: str, until: str, timeout_s: float = 10) -> list[dict]:
    out, deadline = [], time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        msg = pubsub.get_message(timeout=0.2)
        if msg:
            event = json.loads(msg["data"])
            if event["room_id"] == room_id:
                out.append(event)
                if event["to"] == until:
                    break
    pubsub.close()
    return out


def test_orphan_room_is_closed_and_every_step_is_stored_and_published(make_server, api_token, redis_url):
    first = make_server(**FAST)
    second = make_server(first.settings)  # two API processes' sweepers share the work
    events = _events(redis_url)
    api, svc = api_token(), api_token(role="service")
    room = new_room(first.base_url, api)

    async def scenario():
        cand = SignalClient(first.ws_url(join_token(first.base_url, api, room["id"], "cand-1")["token"]))
        bot = SignalClient(second.ws_url(join_token(second.base_url, svc, room["id"], "bot", "recorder")["token"]))
        await bot.join()
        await cand.join()
        await cand.send(p.Leave())
        await cand.wait_closed()
        ended = await bot.expect("end", timeout=10)  # the hidden bot does not keep a room alive
        assert ended.reason == "orphaned"
        assert await bot.wait_closed() == p.CLOSE_ROOM_ENDED

    asyncio.run(scenario())
    published = _drain_events(events, room["id"], "ended")
    assert [(e["from"], e["to"]) for e in published] == [
        (None, "created"), ("created", "active"), ("active", "orphaned"), ("orphaned", "ended")]
    assert published[-1]["reason"] == "orphaned" and published[-1]["record"] is True
    engine = make_engine(first.settings.database_url)
    steps = store.transitions_of(engine, room["id"])
    engine.dispose()
    assert [(t.to_state, t.reason, t.actor) for t in steps] == [
        ("created", "created", "alice"), ("active", "joined", "cand-1"), ("orphaned", "everyone_left", "orphan-closer"),
        ("ended", "orphaned", "orphan-closer")]
    stream = redis.Redis.from_url(redis_url).xrange(p.ROOM_EVENTS_STREAM)
    assert sum(json.loads(fields[b"event"])["room_id"] == room["id"] for _, fields in stream) == 4


def test_someone_coming_back_reactivates_an_orphaned_room(make_server, api_token):
    server = make_server(orphan_timeout_s=60, orphan_sweep_s=0.2)
    api = api_token()
    room = new_room(server.base_url, api)
    url = f"{server.base_url}/v1/rooms/{room['id']}"

    async def scenario():
        tok = join_token(server.base_url, api, room["id"], "cand-1")["token"]
        cand = SignalClient(server.ws_url(tok))
        await cand.join()
        await cand.close()
        await _wait_state(url, api, "orphaned")
        back = SignalClient(server.ws_url(tok))
        await back.join()
        async with httpx.AsyncClient(headers=bearer(api)) as http:
            detail = (await http.get(url)).json()
        await back.close()
        return detail

    detail = asyncio.run(scenario())
    assert detail["state"] == "active"
    assert [(t["to_state"], t["reason"]) for t in detail["transitions"]] == [
        ("created", "created"), ("active", "joined"), ("orphaned", "everyone_left"), ("active", "rejoined")]


def test_unused_room_expires(make_server, api_token):
    server = make_server(room_unused_ttl_s=1, orphan_sweep_s=0.2)
    api = api_token()
    room = new_room(server.base_url, api)
    url = f"{server.base_url}/v1/rooms/{room['id']}"
    asyncio.run(_wait_state(url, api, "ended"))
    assert httpx.get(url, headers=bearer(api)).json()["end_reason"] == "unused"


async def _wait_state(url: str, token: str, state: str, timeout_s: float = 30) -> None:
    async with httpx.AsyncClient(headers=bearer(token)) as http:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if (await http.get(url)).json()["state"] == state:
                return
            await asyncio.sleep(0.1)
    raise AssertionError(f"room never became {state}")


def test_closer_lock_has_one_holder_at_a_time(redis_url):
    import redis.asyncio as aioredis

    from signaling.leases import Leases
    from signaling.sweeper import LOCK_KEY

    async def scenario():
        client = aioredis.Redis.from_url(redis_url)
        leases = Leases(client)
        try:
            assert await leases.take_or_extend(LOCK_KEY, "node-a", 2000)
            assert not await leases.take_or_extend(LOCK_KEY, "node-b", 2000)
            assert await leases.take_or_extend(LOCK_KEY, "node-a", 2000)  # the holder keeps it
            assert not await leases.drop(LOCK_KEY, "node-b")  # nor can others drop it
            assert await leases.drop(LOCK_KEY, "node-a")
            assert await leases.take_or_extend(LOCK_KEY, "node-b", 2000)
        finally:
            await client.aclose()

    asyncio.run(scenario())
