"""The orphan closer: a background task in every API process, working in one at a time.

Each period every process tries to take (or keep) a Redis lease; only its holder
sweeps. Transitions are compare-and-set on the state the sweep saw, so even two
sweepers racing (a lease lost mid-sweep) store each step once.
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING

import redis
from starlette.concurrency import run_in_threadpool

from core.errors import RecorderError
from core.logging import get_logger
from core.models import Room
from core.tasks import STOP_TASKS_S, stop_tasks
from signaling import protocol as p
from signaling import store
from signaling.leases import Leases, room_lease_key
from signaling.lifecycle import Timeouts, sweep_decision

if TYPE_CHECKING:
    from signaling.runtime import Signaling

log = get_logger("signaling.sweeper")
LOCK_KEY = "sig:lock:orphan-closer"
ACTOR = "orphan-closer"


class OrphanCloser:
    def __init__(self, sig: Signaling) -> None:
        self.sig = sig
        self.leases = Leases(sig.client)
        self.period = sig.cfg.orphan_sweep_s
        self.lock_ms = int(max(3 * self.period, 2.0) * 1000)
        self.timeouts = Timeouts(orphan_ms=sig.cfg.orphan_timeout_s * 1000,
                                 unused_ms=sig.cfg.room_unused_ttl_s * 1000)
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="orphan-closer")

    async def stop(self) -> None:
        await stop_tasks([self._task], STOP_TASKS_S, what="orphan_closer")
        with contextlib.suppress(redis.RedisError, OSError):
            await self.leases.drop(LOCK_KEY, self.sig.hub.node)

    async def _run(self) -> None:
        while True:
            try:
                if await self.leases.take_or_extend(LOCK_KEY, self.sig.hub.node, self.lock_ms):
                    await self.sweep()
            except (redis.RedisError, OSError, RecorderError) as exc:
                log.warning("orphan_sweep_failed", error=str(exc))
            await asyncio.sleep(self.period)

    async def sweep(self, now_ms: int | None = None) -> int:
        """One pass over every live room; returns how many transitions it made."""
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        rooms = await run_in_threadpool(store.live_rooms, self.sig.engine)
        changed = 0
        for room in rooms:
            changed += await self._sweep_room(room, now)
        return changed

    async def _sweep_room(self, room: Room, now: int) -> int:
        sig = self.sig
        for pid, instance, hidden in await sig.presence.reap(room.id, now):
            if not hidden:
                await sig.presence.route(room.id, p.ParticipantLeft(participant_id=pid, reason="gone").dumps(),
                                         "participant_left", sender=pid)
            await run_in_threadpool(store.close_session, sig.engine, room.id, pid, instance, "gone")
        members = await sig.presence.roster(room.id)
        connected = sum(1 for m in members if m.connected and not m.hidden)
        decision = sweep_decision(room.state, connected, now - room.state_changed_at, self.timeouts)
        done = 0
        if decision is not None:
            to, reason = decision
            changed, src = await sig.service.change(room.id, to, reason, actor=ACTOR, expect=room.state)
            done = int(src is not None)
            if changed is not None and changed.state == "ended":
                return done
        await self.leases.extend(room_lease_key(room.org, room.slot_id, room.candidate_id), room.id,
                                 sig.cfg.room_lease_ttl_s * 1000)
        return done
