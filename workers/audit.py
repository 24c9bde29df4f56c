"""`audit_checkpoint`: sign the audit chain head into the object store (`core.audit.checkpoint`)
every `audit_checkpoint_interval_s` — a self-rescheduling actor.

One chain of messages (`workers.periodic`, Redis key `audit:checkpoint:chain`): a duplicate
or retried message still checkpoints — that is idempotent — but schedules nothing.
"""
from __future__ import annotations

from functools import lru_cache

import dramatiq
import redis

from core import audit
from core.logging import get_logger
from core.signing import Signer
from workers import broker as res
from workers import periodic
from workers.periodic import Chain, KickChain
from workers.policy import actor

log = get_logger("workers.audit")
CHAIN = Chain("audit_checkpoint", "audit:checkpoint:chain")
CHAIN_KEY = CHAIN.key


def schedule_next(broker: dramatiq.Broker, client: redis.Redis, token: str, interval_s: int) -> str | None:
    """Enqueue the next run if `token` is the chain's current one (`workers.periodic`)."""
    return periodic.schedule_next(CHAIN, broker, client, token, interval_s)


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


res.broker.add_middleware(KickChain(CHAIN, lambda: res.settings.audit_checkpoint_interval_s))
