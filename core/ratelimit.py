"""Fixed-window rate limits on Redis counters — the one place limits are counted.

Costly or abusable API actions (search, token minting, recording creation,
re-transcription) are charged twice: once against the caller and once against their org
(`RateLimiter.charge`), with quotas from `Settings.rate_limits`. Over either → 429 with
`Retry-After` (seconds left in the window).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

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

    def charge(self, action: str, principal: Any, quota: "Quota") -> None:
        """Count one `action` for the caller (org + sub) and for their org."""
        self.hit(action, f"p:{principal.org}:{principal.sub}", quota.per_principal, quota.window_s)
        self.hit(action, f"o:{principal.org}", quota.per_org, quota.window_s)


@dataclass(frozen=True)
class Quota:
    per_principal: int
    per_org: int
    window_s: int = 60


CHARGED = ("search", "token", "create_recording", "retranscribe")  # the names `Settings.rate_limits` keys


def quota(limits: dict[str, list[int]], action: str) -> Quota:
    """The quota of a charged action from settings (`[per_principal, per_org]` per minute)."""
    per_principal, per_org = limits[action]
    return Quota(per_principal, per_org)


def charge(state: Any, principal: Any, action: str) -> None:
    """`RateLimiter.charge` with the app's limiter and configured quota (`state` = app.state)."""
    state.limiter.charge(action, principal, quota(state.settings.rate_limits, action))
