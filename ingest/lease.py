"""Write leases on chunk keys, in Redis: only the holder of a chunk's lease writes its object.

A body is streamed to its chunk key while it arrives, before its SHA-256 is known, so a
second upload of the same seq must never write that key at the same time (a corrupt body
landing after a verified one would replace good bytes). The DB row says *which* bytes a
seq is for (409 for others); the lease says *who* may write them now. It expires on its
own (a killed API process frees it after `ttl_ms`), the holder renews it while a long
body streams, and releases it when done. Redis down → `QueueError` (503).
"""
from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from core.errors import QueueError, RateLimited
from core.leases import DROP_IF_HOLDER, EXTEND_IF_HOLDER
from core.storage import StreamingPut

TTL_MS = 60_000  # > the time one body takes between renewals (`RENEW_S`)
RENEW_S = 15.0


def lease_name(recording_id: str, track_id: str, seq: int) -> str:
    return f"ingest:lease:{len(recording_id)}:{recording_id}:{track_id}:{seq}"


class Leases:
    """`acquire` → a token (or None: someone else writes), `renew`, `release`."""

    def __init__(self, client: redis.Redis, ttl_ms: int = TTL_MS) -> None:
        self.client, self.ttl_ms = client, ttl_ms
        self._renew = client.register_script(EXTEND_IF_HOLDER)
        self._release = client.register_script(DROP_IF_HOLDER)

    def acquire(self, name: str) -> str | None:
        token = uuid.uuid4().hex
        with _translated():
            return token if self.client.set(name, token, nx=True, px=self.ttl_ms) else None

    def renew(self, name: str, token: str) -> bool:
        """Extend a held lease; False if it was lost (expired and taken)."""
        with _translated():
            return bool(self._renew(keys=[name], args=[token, self.ttl_ms]))

    def keep(self, name: str, token: str) -> None:
        """Renew a lease the caller must still hold: lost (lapsed and taken) → 429 `chunk_busy`."""
        if not self.renew(name, token):
            raise RateLimited("the chunk's write lease lapsed and another upload took it; retry",
                              code="chunk_busy", retry_after=2)

    def release(self, name: str, token: str) -> None:
        """Best effort: a lease left behind expires by itself."""
        try:
            self._release(keys=[name], args=[token])
        except (redis.RedisError, OSError):
            pass


@contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except (redis.RedisError, OSError) as exc:
        raise QueueError(f"chunk lease: Redis unavailable ({type(exc).__name__})") from exc


class LeasedPut:
    """A streamed PUT to a chunk key that renews the key's lease while it is fed, so a slow
    body keeps it; a lease lost meanwhile (Redis lost it, or it lapsed) stops the PUT (429)."""

    def __init__(self, put: StreamingPut, leases: Leases, name: str, token: str) -> None:
        self.put, self.leases, self.name, self.token = put, leases, name, token
        self._due = time.monotonic() + RENEW_S

    def feed(self, pieces: list[bytes]) -> None:
        if time.monotonic() >= self._due:
            self.leases.keep(self.name, self.token)
            self._due = time.monotonic() + RENEW_S
        self.put.feed(pieces)

    def finish(self) -> None:
        self.put.finish()

    def abort(self) -> None:
        self.put.abort()
