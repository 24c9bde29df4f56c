"""Room lifecycle events: published on Redis pub/sub and appended to a capped stream.

Pub/sub serves live listeners; the stream (`XREAD`/consumer groups) lets a consumer
that was down (e.g. the recording bot) catch up. One JSON object per transition:
`{room_id, org, from, to, reason, actor, at, record, layout}`.
"""
from __future__ import annotations

import json
from typing import Any

import redis
import redis.asyncio as aioredis

from core.errors import QueueError
from core.logging import get_logger
from core.models import Room
from signaling.protocol import ROOM_EVENTS_CHANNEL, ROOM_EVENTS_STREAM

log = get_logger("signaling.events")
STREAM_MAXLEN = 10_000


def room_event(room: Room, src: str | None, reason: str, actor: str) -> dict[str, Any]:
    return {"room_id": room.id, "org": room.org, "from": src, "to": room.state, "reason": reason,
            "actor": actor, "at": room.state_changed_at, "record": room.record, "layout": room.layout}


async def publish(client: aioredis.Redis, event: dict[str, Any]) -> None:
    """Send one event; a Redis outage is logged and raised as `QueueError` (the DB row stays)."""
    data = json.dumps(event, separators=(",", ":"))
    try:
        async with client.pipeline(transaction=False) as pipe:
            pipe.publish(ROOM_EVENTS_CHANNEL, data)
            pipe.xadd(ROOM_EVENTS_STREAM, {"event": data}, maxlen=STREAM_MAXLEN, approximate=True)
            await pipe.execute()
    except redis.RedisError as exc:
        log.warning("room_event_not_published", room_id=event["room_id"], to=event["to"], error=str(exc))
        raise QueueError(f"room event not published: {exc}") from exc
