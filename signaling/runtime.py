"""Signaling's per-process resources, built at app start-up and closed at shutdown."""
from __future__ import annotations

import redis.asyncio as aioredis
from fastapi import FastAPI
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from core.auth import mint_token
from signaling.config import SignalingConfig
from signaling.hub import Hub
from signaling.presence import Presence, token_cache_key
from signaling.rooms import RoomService
from signaling.sweeper import OrphanCloser


class Signaling:
    """Everything the routes and sockets of one API process share (hung on `app.state`)."""

    def __init__(self, app: FastAPI) -> None:
        state = app.state
        self.cfg = SignalingConfig.from_settings(state.settings)
        self.engine = state.engine
        # A blocking pool: bursts wait for a connection instead of failing with "too many".
        # Short retries: a relay that waits seconds for Redis is worse than an error + resume.
        # No per-command socket timeout: redis-py wraps every send in `wait_for` (a task per
        # command, the relay's largest cost); TCP keepalive catches dead peers instead.
        pool = aioredis.BlockingConnectionPool.from_url(
            state.settings.redis_url, max_connections=128, timeout=10, socket_connect_timeout=2,
            socket_keepalive=True, retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 2))
        self.client = aioredis.Redis(connection_pool=pool)
        self.presence = Presence(self.client, resume_window_ms=self.cfg.resume_window_ms)
        self.hub = Hub(self.client, self.cfg)
        self.service = RoomService(self.cfg, self.engine, self.client, state.limiter, self.presence)
        self.closer = OrphanCloser(self)

    async def start(self) -> None:
        await self.hub.start()
        self.closer.start()

    async def stop(self) -> None:
        await self.closer.stop()
        await self.hub.stop()
        await self.client.aclose(close_connection_pool=True)

    def resume_token(self, who) -> str:
        """A join token for the same seat that outlives the resume window."""
        c = self.cfg
        return mint_token(c.jwt_secret, sub=who.participant_id, org=who.org, role=who.role,
                          ttl_s=c.resume_window_s + 60, scope="join", issuer=c.jwt_issuer, room_id=who.room_id,
                          participant_id=who.participant_id, display_name=who.display_name)

    def token_cache(self, who) -> str:
        return token_cache_key(who.room_id, who.participant_id)
