"""Self-rescheduling actors: one chain of delayed messages per periodic job.

Each run enqueues the next one (delayed by the interval) with a fresh token, and a Redis
key names the token that may schedule the run after it. A message holding another token
(a duplicate, a retry) still does its work — periodic jobs are idempotent — but schedules
nothing, so chains never multiply. Every worker process kicks each chain when it boots
(token ""), which only schedules when no chain is alive: the key expires a few intervals
after the last run, so a chain lost with Redis restarts itself.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Callable, Optional

import dramatiq
import redis

from core.errors import QueueError
from core.logging import get_logger
from core.queue import enqueue

log = get_logger("workers.periodic")
# SET the key to the next token if it is missing or still ours (atomic compare-and-set).
_CLAIM = """
local current = redis.call('GET', KEYS[1])
if current and current ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""


@dataclass(frozen=True)
class Chain:
    actor_name: str
    key: str  # Redis key holding the token of the chain's live message


def schedule_next(chain: Chain, broker: Any, client: redis.Redis, token: str, interval_s: int) -> Optional[str]:
    """Enqueue the next run if `token` is the chain's current one; returns the next token."""
    if interval_s <= 0:
        return None
    try:
        current = client.get(chain.key)
        if current is not None and current.decode() != token:
            return None
        nxt = uuid.uuid4().hex
        enqueue(broker, chain.actor_name, nxt, delay_ms=interval_s * 1000)
        # Lost race: the message just sent finds another token current and schedules nothing.
        taken = client.eval(_CLAIM, 1, chain.key, token, nxt, (3 * interval_s + 60) * 1000)
    except redis.RedisError as exc:
        raise QueueError(f"{chain.actor_name} schedule: {type(exc).__name__}") from exc
    return nxt if taken else None


class KickChain(dramatiq.Middleware):
    """Start a chain when a worker process boots (a no-op while one is alive)."""

    def __init__(self, chain: Chain, interval_s: Callable[[], int]) -> None:
        self.chain, self.interval_s = chain, interval_s

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if self.interval_s() <= 0:
            return
        try:
            enqueue(broker, self.chain.actor_name, "")
        except QueueError as exc:
            log.warning("periodic_chain_not_kicked", actor=self.chain.actor_name, error=exc.message)
