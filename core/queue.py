"""Enqueue Dramatiq messages by actor name, so API processes never import media code.

`ACTOR_QUEUES` is the contract between producers and `workers/`: every actor name a
producer may enqueue, and the queue it listens on (a test checks workers match it).
"""
from __future__ import annotations

from typing import Any

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker

from core.errors import QueueError

ACTOR_QUEUES: dict[str, str] = {
    "process_chunk": "media",
    "composite_window": "media",
    "finalize_recording": "media",
    "step_failed": "default",  # internal: on_retry_exhausted of every actor (workers.policy)
    "finalize_transcript": "transcribe",
    "transcribe_chunk": "transcribe",
    "retranscribe_recording": "transcribe",
    "index_transcript": "default",
    "auto_finalize_idle": "default",
    "apply_retention": "default",  # run one retention manifest (workers.retention)
    "retention_tick": "default",  # self-rescheduling: preview + run each org's policy (workers.retention)
    "sync_legal_holds": "default",  # S3 legal holds in line with the database's (object-lock buckets)
    "deliver_webhook": "default",
    "audit_checkpoint": "default",  # self-rescheduling: signs the audit chain head (workers.audit)
}


def make_broker(redis_url: str) -> RedisBroker:
    """A Redis broker; set it as Dramatiq's global broker before declaring actors."""
    # Messages of a worker that died (SIGKILL, OOM) go back to the queue once its heartbeat is
    # 60 s old — but only when a broker command happens to run maintenance, by default 0.1% of
    # them (minutes on a quiet stack). 5% makes the recovery follow the timeout closely; the
    # maintenance script is cheap at our message rates.
    broker = RedisBroker(url=redis_url, maintenance_chance=50_000, heartbeat_timeout=60_000)
    dramatiq.set_broker(broker)
    return broker


def enqueue(broker: dramatiq.Broker, actor_name: str, *args: Any, delay_ms: int | None = None,
            **kwargs: Any) -> str:
    """Send a message to `actor_name` without importing it; returns the message id."""
    try:
        queue_name = ACTOR_QUEUES[actor_name]
    except KeyError:
        raise ValueError(f"unknown actor {actor_name!r}; add it to ACTOR_QUEUES") from None
    message = dramatiq.Message(queue_name=queue_name, actor_name=actor_name, args=args,
                               kwargs=kwargs, options={})
    try:
        sent = broker.enqueue(message, delay=delay_ms)
    except (redis.RedisError, OSError) as exc:
        raise QueueError(f"could not enqueue {actor_name}: {exc}") from exc
    return sent.message_id
