"""Quality samples and gap reports on their way to `POST /v1/recordings/{id}/quality`.

Posted in batches (≤ 500 samples, ≤ 100 gaps), one request at a time, in the background:
quality data never holds up media or uploads. A batch that fails after the API client's
own retries is put back (transient) or dropped (refused); the buffer is bounded, oldest
samples go first. `drain()` is the last flush before the bot finalizes.
"""
from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from bot.quality import GapReport, Sample
from core import errors
from core.logging import get_logger

log = get_logger("bot.outbox")
BATCH_SAMPLES, BATCH_GAPS = 500, 100

Post = Callable[[list[dict[str, Any]], list[dict[str, Any]]], Awaitable[Any]]


class QualityOutbox:
    def __init__(self, post: Post, limit: int = 5000) -> None:
        self.post = post
        self.samples: deque[dict[str, Any]] = deque(maxlen=limit)
        self.gaps: deque[dict[str, Any]] = deque(maxlen=limit)
        self.task: asyncio.Task | None = None
        self.posted = self.dropped = 0

    def add(self, samples: list[Sample] = (), gap: GapReport | None = None) -> None:  # type: ignore[assignment]
        self.samples.extend(s.to_json() for s in samples)
        if gap is not None:
            log.info("media_gap", participant=gap.participant_id, cause=gap.cause,
                     seconds=round(gap.end_s - gap.start_s, 3))
            self.gaps.append(gap.to_json())
        self.kick()

    def kick(self) -> None:
        if (self.samples or self.gaps) and (self.task is None or self.task.done()):
            self.task = asyncio.ensure_future(self.flush())

    async def flush(self) -> None:
        while self.samples or self.gaps:
            samples = [self.samples.popleft() for _ in range(min(BATCH_SAMPLES, len(self.samples)))]
            gaps = [self.gaps.popleft() for _ in range(min(BATCH_GAPS, len(self.gaps)))]
            try:
                await self.post(samples, gaps)
            except errors.RecorderError as exc:
                if exc.retryable:
                    self.samples.extendleft(reversed(samples))
                    self.gaps.extendleft(reversed(gaps))
                    log.warning("quality_post_deferred", error=str(exc), queued=len(self.samples))
                    return
                self.dropped += len(samples) + len(gaps)
                log.warning("quality_post_refused", code=exc.code, error=exc.message, dropped=len(samples))
                continue
            self.posted += len(samples) + len(gaps)

    async def drain(self, timeout_s: float) -> None:
        """Wait for the running post, then post what is left (bounded)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                if self.task is not None:
                    await asyncio.gather(self.task, return_exceptions=True)
                await self.flush()
