"""Redis going away: sockets are told to retry (1013), the API answers 503 + Retry-After,
and everything works again once Redis is back (no dead ends)."""
from __future__ import annotations

import asyncio

import httpx

from recorder.services import free_port, start_redis
from signaling import protocol as p
from tests.signaling.conftest import bearer, join_token, new_room
from tests.signaling.peers import JoinRefused, SignalClient


def test_relay_outage_asks_clients_to_retry_and_recovers(make_server, api_token, tmp_path):
    port = free_port()
    redis_proc = start_redis(tmp_path / "redis", port)
    server = make_server(redis_url=f"redis://127.0.0.1:{port}/0", signal_heartbeat_s=0.3)
    api = api_token()
    room = new_room(server.base_url, api)
    tok = join_token(server.base_url, api, room["id"], "cand-1")["token"]

    async def scenario():
        a = SignalClient(server.ws_url(tok))
        await a.join(instance_id="tab-a")
        redis_proc.stop()
        assert await a.wait_closed(10) == p.CLOSE_TRY_AGAIN
        async with httpx.AsyncClient(headers=bearer(api)) as http:
            r = await http.post(f"{server.base_url}/v1/rooms", json={"slot_id": "s2", "candidate_id": "c2"})
        assert r.status_code == 503 and "Retry-After" in r.headers
        down = SignalClient(server.ws_url(tok))
        try:
            await down.join(instance_id="tab-a")
            raise AssertionError("joined without Redis")
        except JoinRefused as exc:
            assert exc.code in ("dependency_down", "revocation_unavailable")  # the token deny-list is in Redis too
        return start_redis(tmp_path / "redis", port)  # back (empty: Redis kept nothing on disk)

    restarted = asyncio.run(scenario())
    try:
        async def after():
            for delay in (0.2, 0.4, 0.8, 1.6, 3.2, 6.4):  # a client's backoff
                again = SignalClient(server.ws_url(tok))
                try:
                    joined = await again.join(instance_id="tab-a")
                    break
                except JoinRefused as exc:
                    assert exc.code in ("dependency_down", "revocation_unavailable")
                    await again.wait_closed()
                    await asyncio.sleep(delay)
            assert joined.room_id == room["id"]
            await again.send(p.Ping(ts=1))
            assert (await again.expect("pong")).ts == 1
            await again.close()

        asyncio.run(after())
    finally:
        restarted.stop()
