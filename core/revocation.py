"""The token deny-list: revoked token ids in Redis, each kept only as long as its token lives.

A token's id is its `jti`, or the SHA-256 of the token when it has none (some identity
providers omit `jti`). Entries are namespaced by org, so an admin revoking an id can
only ever reach tokens of their own org. Redis down → `QueueError` (503): the check
fails closed rather than letting a revoked token through.
"""
from __future__ import annotations

import hashlib
import time
from typing import Any

import redis

from core.errors import QueueError

MAX_TTL_S = 366 * 24 * 3600  # an entry outlives no token by more than a year


def token_id(claims: dict[str, Any], token: str) -> str:
    """The id a token is revoked by: its `jti`, else a digest of the whole token."""
    jti = claims.get("jti")
    if isinstance(jti, str) and jti:
        return jti
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


class DenyList:
    """Revoked token ids over a Redis client (`SET key 1 EX remaining-lifetime`)."""

    def __init__(self, client: redis.Redis, prefix: str = "revoked") -> None:
        self.client, self.prefix = client, prefix

    def key(self, org: str, tid: str) -> str:
        return f"{self.prefix}:{len(org)}:{org}:{tid}"  # length-prefixed: org may contain ':'

    def revoke(self, org: str, tid: str, exp: int, now: float | None = None) -> bool:
        """Deny `tid` until `exp` (epoch s); False when the token has expired anyway."""
        ttl = int(exp - (now if now is not None else time.time())) + 1
        if ttl <= 1:
            return False
        try:
            self.client.set(self.key(org, tid), b"1", ex=min(ttl, MAX_TTL_S))
        except (redis.RedisError, OSError) as exc:
            raise QueueError(f"token revocation: Redis unavailable ({type(exc).__name__})",
                             code="revocation_unavailable") from exc
        return True

    def is_revoked(self, org: str, tid: str) -> bool:
        try:
            return bool(self.client.exists(self.key(org, tid)))
        except (redis.RedisError, OSError) as exc:
            raise QueueError(f"token revocation check: Redis unavailable ({type(exc).__name__})",
                             code="revocation_unavailable") from exc
