"""One API process's share of signaling: its sockets and its Redis channel.

Each process (node) subscribes to one channel, `sig:node:<id>:ch`; the routing script
publishes each envelope straight to the node that owns the recipient's socket. A
ticker refreshes the node's liveness key and pings every local socket.
"""
from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Protocol

import redis
import redis.asyncio as aioredis

from core.logging import get_logger
from core.tasks import STOP_TASKS_S, stop_tasks
from signaling.config import SignalingConfig
from signaling.presence import decode_route, node_channel, node_key

log = get_logger("signaling.hub")
TICK_SLOTS = 10


class LocalSocket(Protocol):
    def deliver(self, seq: int, kind: str, envelope: str) -> None: ...
    def kick(self) -> None: ...
    def tick(self) -> None: ...
    def shutdown(self, code: int, reason: str) -> None: ...


class Hub:
    """Routes envelopes from Redis to this process's sockets; pings them."""

    def __init__(self, client: aioredis.Redis, cfg: SignalingConfig) -> None:
        self.node = uuid.uuid4().hex[:16]
        self.client, self.cfg = client, cfg
        self.sockets: dict[str, LocalSocket] = {}
        self.ready = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    async def start(self, wait_s: float = 1.0) -> None:
        self._tasks = [asyncio.create_task(self._listen(), name=f"hub-listen-{self.node}"),
                       asyncio.create_task(self._tick(), name=f"hub-tick-{self.node}")]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.ready.wait(), wait_s)

    async def stop(self, drain_s: float = 2.0) -> None:
        """Close local sockets (clients resume on another process), then stop."""
        for sock in list(self.sockets.values()):
            sock.shutdown(1001, "server_shutdown")
        deadline = asyncio.get_running_loop().time() + drain_s
        while self.sockets and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        await stop_tasks(self._tasks, STOP_TASKS_S, what="signaling_hub")
        with contextlib.suppress(redis.RedisError, OSError):
            await self.client.delete(node_key(self.node))

    async def _listen(self) -> None:
        backoff = 0.1
        while True:
            pubsub = self.client.pubsub()
            try:
                await pubsub.subscribe(node_channel(self.node))
                await self._alive()
                self.ready.set()
                backoff = 0.1
                async for message in pubsub.listen():
                    if message["type"] == "message":
                        self.dispatch(message["data"])
            except (redis.RedisError, OSError) as exc:
                self.ready.clear()
                log.warning("signal_relay_down", node=self.node, error=str(exc), retry_in_s=backoff)
                self.drop_all("relay_lost")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                with contextlib.suppress(redis.RedisError, OSError, RuntimeError):
                    await pubsub.aclose()

    def drop_all(self, reason: str) -> None:
        """Close every local socket with 1013 (try again): while this process was cut off
        from Redis its seats may have been reaped, so clients reconnect and resume."""
        for sock in list(self.sockets.values()):
            sock.shutdown(1013, reason)

    def dispatch(self, data: bytes | str) -> None:
        kind, conn, seq, mtype, envelope = decode_route(data)
        sock = self.sockets.get(conn)
        if sock is None:
            return  # the socket closed; the envelope stays buffered for a resume
        if kind == "K":
            sock.kick()
        else:
            sock.deliver(seq, mtype, envelope)

    async def _alive(self) -> None:
        await self.client.set(node_key(self.node), "1", px=self.cfg.node_ttl_ms)

    async def _tick(self) -> None:
        """Ping each socket once per heartbeat, a tenth of them at a time (no bursts)."""
        slot = 0
        while True:
            await asyncio.sleep(self.cfg.heartbeat_s / TICK_SLOTS)
            if slot == 0:
                try:
                    await self._alive()
                except (redis.RedisError, OSError) as exc:
                    log.warning("node_heartbeat_failed", node=self.node, error=str(exc))
                    self.drop_all("relay_lost")
            for conn, sock in list(self.sockets.items()):
                if tick_slot(conn) == slot:
                    sock.tick()
            slot = (slot + 1) % TICK_SLOTS


def tick_slot(conn: str) -> int:
    """Which tenth of the heartbeat a connection (a uuid hex id) is pinged in."""
    return int(conn[:4], 16) % TICK_SLOTS
