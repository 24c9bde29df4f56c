"""Fixed-window rate limits on Redis counters — the one place limits are counted."""
from __future__ import annotations

import time

import redis

from core.errors import QueueError, RateLimited

_SCRIPT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return {n, redis.call('PTTL', KEYS[1])}
"""


class RateLimiter:
    """`hit(name, key, limit, window_s)` raises `RateLimited` with Retry-After when over."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._script = client.register_script(_SCRIPT)

    def hit(self, name: str, key: str, limit: int, window_s: int = 60) -> int:
        window = int(time.time() // window_s)
        try:
            count, ttl_ms = self._script(keys=[f"rl:{name}:{key}:{window}"], args=[window_s * 1000])
        except redis.RedisError as exc:
            raise QueueError(f"rate limiter unavailable: {exc}") from exc
        if int(count) > limit:
            raise RateLimited(f"{name} limit of {limit} per {window_s}s reached",
                              retry_after=max(int(ttl_ms), 0) / 1000)
        return int(count)
