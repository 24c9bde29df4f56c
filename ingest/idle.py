"""Auto-finalize recordings whose clients went silent (runs in API processes).

One API process at a time does the sweep (Redis lock), so N replicas are safe.
"""
from __future__ import annotations

import asyncio

import redis
from sqlmodel import select
from starlette.concurrency import run_in_threadpool

from core.db import session_scope
from core.errors import RecorderError
from core.logging import get_logger
from core.models import Recording
from core.models._types import now_ms
from core.tasks import STOP_TASKS_S, stop_tasks
from ingest.service import Ingest

log = get_logger("recorder.ingest.idle")
LOCK_KEY = "ingest:idle-sweep"


def idle_recordings(ing: Ingest, idle_s: int, now: int | None = None) -> list[str]:
    cutoff = (now or now_ms()) - idle_s * 1000
    with session_scope(ing.engine) as s:
        rows = s.exec(select(Recording.id).where(Recording.status == "recording",
                                                 Recording.last_chunk_at.is_not(None),  # type: ignore[union-attr]
                                                 Recording.last_chunk_at < cutoff)).all()
    return list(rows)


def sweep(ing: Ingest, client: redis.Redis, idle_s: int, interval_s: float) -> list[str]:
    """Finalize every idle recording, if this process holds the sweep lock."""
    if not client.set(LOCK_KEY, "1", nx=True, px=int(interval_s * 900)):
        return []
    done = []
    for rec_id in idle_recordings(ing, idle_s):
        ing.finalize(rec_id, reason="idle")
        done.append(rec_id)
    return done


async def run_sweeper(ing: Ingest, client: redis.Redis, idle_s: int, interval_s: float) -> None:
    while True:
        try:
            await run_in_threadpool(sweep, ing, client, idle_s, interval_s)
        except (RecorderError, redis.RedisError) as exc:
            log.warning("idle_sweep_failed", error=str(exc))
        await asyncio.sleep(interval_s)


def start_sweeper(app) -> None:  # noqa: ANN001
    s = app.state.settings

    async def _start(app) -> None:  # noqa: ANN001
        app.state.idle_task = asyncio.create_task(
            run_sweeper(app.state.ingest, app.state.redis, s.finalize_idle_s, min(10.0, s.finalize_idle_s / 3)))

    async def _stop(app) -> None:  # noqa: ANN001
        await stop_tasks([app.state.idle_task], STOP_TASKS_S, what="idle_sweeper")

    app.state.on_startup.append(_start)
    app.state.on_shutdown.append(_stop)
