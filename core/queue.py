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
    "media_failed": "media",  # internal: dramatiq's on_retry_exhausted callback of the media actors
    "finalize_transcript": "transcribe",
    "transcribe_chunk": "transcribe",
    "retranscribe_recording": "transcribe",
    "index_transcript": "default",
    "auto_finalize_idle": "default",
    "apply_retention": "default",
}


def make_broker(redis_url: str) -> RedisBroker:
    """A Redis broker; set it as Dramatiq's global broker before declaring actors."""
    broker = RedisBroker(url=redis_url)
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
