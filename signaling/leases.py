"""Redis leases: room idempotency keys, the orphan closer's leader lock, token cache.

A lease is a key set with `SET NX PX`; only its holder (same value) may extend or drop
it (compare-and-set scripts), so a process that lost it by expiry cannot clobber the
next holder.
"""
from __future__ import annotations

import hashlib
import json

import redis.asyncio as aioredis

from core.leases import DROP_IF_HOLDER, EXTEND_IF_HOLDER


def room_lease_key(org: str, slot_id: str, candidate_id: str) -> str:
    digest = hashlib.sha256(json.dumps([org, slot_id, candidate_id]).encode()).hexdigest()[:32]
    return f"sig:lease:{digest}"


def token_field(role: str, display_name: str) -> str:
    return f"{role}|{hashlib.sha256(display_name.encode()).hexdigest()[:16]}"


class Leases:
    """`SET NX` leases with holder-only extend/drop."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        self._extend = client.register_script(EXTEND_IF_HOLDER)
        self._drop = client.register_script(DROP_IF_HOLDER)

    async def take(self, key: str, holder: str, ttl_ms: int) -> bool:
        return bool(await self.client.set(key, holder, nx=True, px=ttl_ms))

    async def holder(self, key: str) -> str | None:
        value = await self.client.get(key)
        return value.decode() if isinstance(value, bytes) else value

    async def extend(self, key: str, holder: str, ttl_ms: int) -> bool:
        return bool(await self._extend(keys=[key], args=[holder, ttl_ms]))

    async def drop(self, key: str, holder: str) -> bool:
        return bool(await self._drop(keys=[key], args=[holder]))

    async def take_or_extend(self, key: str, holder: str, ttl_ms: int) -> bool:
        """Leader election step: True while this holder owns the lock."""
        return await self.take(key, holder, ttl_ms) or await self.extend(key, holder, ttl_ms)
