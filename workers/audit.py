"""`audit_checkpoint`: sign the audit chain head into the object store (`core.audit.checkpoint`)
every `audit_checkpoint_interval_s` — a self-rescheduling actor.

One chain of messages: each run enqueues the next one (delayed by the interval) with a fresh
token, and the Redis key `audit:checkpoint:chain` names the token that may schedule the run
after it. A message holding another token (a duplicate, a retry) still checkpoints — that is
idempotent — but schedules nothing, so chains never multiply. Every worker process kicks
the chain when it boots (token ""), which only schedules when no chain is alive: the key
expires a few intervals after the last run, so a chain lost with Redis restarts itself.
"""
from __future__ import annotations

import uuid
from functools import lru_cache

import dramatiq
import redis

from core import audit
from core.errors import QueueError
from core.logging import get_logger
from core.queue import enqueue
from core.signing import Signer
from workers import broker as res
from workers.policy import actor

log = get_logger("workers.audit")
CHAIN_KEY = "audit:checkpoint:chain"
# SET the key to the next token if it is missing or still ours (atomic compare-and-set).
_CLAIM = """
local current = redis.call('GET', KEYS[1])
if current and current ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""


def schedule_next(broker: dramatiq.Broker, client: redis.Redis, token: str, interval_s: int) -> str | None:
    """Enqueue the next run if `token` is the chain's current one; returns the next token."""
    if interval_s <= 0:
        return None
    try:
        current = client.get(CHAIN_KEY)
        if current is not None and current.decode() != token:
            return None
        nxt = uuid.uuid4().hex
        enqueue(broker, "audit_checkpoint", nxt, delay_ms=interval_s * 1000)
        # Lost race: the message just sent finds another token current and schedules nothing.
        taken = client.eval(_CLAIM, 1, CHAIN_KEY, token, nxt, (3 * interval_s + 60) * 1000)
    except redis.RedisError as exc:
        raise QueueError(f"audit checkpoint schedule: {type(exc).__name__}") from exc
    return nxt if taken else None


@lru_cache
def signer() -> Signer:
    return Signer.from_settings(res.settings)


@actor("default")
def audit_checkpoint(chain: str = "") -> None:
    """Schedule the next run (if this message is the chain's), then sign the head if it moved."""
    schedule_next(res.broker, res.broker.client, chain, res.settings.audit_checkpoint_interval_s)
    engine = res.engine()
    if audit.head(engine)[0] == 0:
        return  # nothing to sign (and no key to make)
    cp = audit.checkpoint(engine, res.store(), signer())
    if cp is not None:
        log.info("audit_checkpoint_signed", seq=cp.seq, key=cp.key)


class KickCheckpoints(dramatiq.Middleware):
    """Each worker process starts the checkpoint chain when it boots (a no-op if one is alive)."""

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if res.settings.audit_checkpoint_interval_s <= 0:
            return
        try:
            enqueue(broker, "audit_checkpoint", "")
        except QueueError as exc:
            log.warning("audit_checkpoint_not_kicked", error=exc.message)


res.broker.add_middleware(KickCheckpoints())
