"""`recorder bot`: watch room events, record every room that has recording on.

Rooms are found on the room-event stream signaling appends to in Redis
(`ROOM_EVENTS_STREAM`): on start the bot replays it to find rooms that are live now
(latest state `active`/`orphaned`, `record: true`), then follows it with `XREAD BLOCK`.
A room becoming `active` gets a `RoomSession`; `ended` ends it (the WebSocket `end`
does too, whichever comes first). Several bot processes may run: the signaling seat
of the recorder participant admits one per room; the others retry while it lives.
Before trying a seat each process asks its own `Admission` (a cap on participants per
process, `bot.admission`): a process at its cap leaves the room to the others and asks
again on its next retry. `recorder bot --processes N` runs N such processes (`bot.fleet`).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from typing import Any

import redis
import redis.asyncio as aioredis

from bot.admission import Admission, AtCapacity
from bot.api import ApiClient
from bot.config import BotConfig
from bot.session import AlreadyRecording, RoomSession
from core import errors
from core.logging import bound, configure_logging, get_logger
from core.settings import Settings
from signaling.protocol import ROOM_EVENTS_STREAM

log = get_logger("bot.service")
LIVE_STATES = ("active", "orphaned")
PAGE = 500


def live_rooms(events: list[dict[str, Any]]) -> dict[str, str]:
    """`{room_id: org}` of rooms whose latest event says live with recording on (pure)."""
    latest: dict[str, dict[str, Any]] = {}
    for ev in events:
        latest[ev["room_id"]] = ev
    return {rid: ev["org"] for rid, ev in latest.items() if ev.get("record") and ev.get("to") in LIVE_STATES}


def _event(fields: dict[Any, Any]) -> dict[str, Any] | None:
    raw = fields.get(b"event") or fields.get("event")
    try:
        ev = json.loads(raw)
    except (TypeError, ValueError):
        return None
    return ev if isinstance(ev, dict) and "room_id" in ev and "org" in ev else None


class RecorderBot:
    def __init__(self, cfg: BotConfig, api: ApiClient, client: aioredis.Redis) -> None:
        self.cfg, self.api, self.redis = cfg, api, client
        self.sessions: dict[str, RoomSession] = {}
        self.tasks: dict[str, asyncio.Task] = {}
        self.stopping = asyncio.Event()
        self.admission = Admission(cfg.admission)
        self.refused: set[str] = set()

    async def serve(self, stop: asyncio.Event) -> None:
        """Follow room events until `stop` is set, then leave every room (no finalize)."""
        last_id = await self._catch_up()
        log.info("bot_ready", phase="bot_ready", rooms=sorted(self.tasks), cap=self.cfg.admission.max_participants,
                 name=self.cfg.display_name)
        failures = 0
        try:
            while not stop.is_set():
                try:
                    reply = await self.redis.xread({ROOM_EVENTS_STREAM: last_id}, block=1000, count=100)
                    failures = 0
                except (redis.RedisError, OSError) as exc:
                    failures += 1
                    log.warning("room_events_unavailable", error=str(exc))
                    await _sleep_or(stop, min(30.0, 0.5 * 2 ** failures))
                    continue
                for _, entries in reply or []:
                    for entry_id, fields in entries:
                        last_id = entry_id
                        ev = _event(fields)
                        if ev is not None:
                            self.on_event(ev)
        finally:
            await self.shutdown()

    async def _catch_up(self) -> bytes | str:
        """Replay the stream; start sessions for rooms live now; return the last id read."""
        events, last = [], "0-0"
        while True:
            try:
                page = await self.redis.xrange(ROOM_EVENTS_STREAM, min=f"({last}" if last != "0-0" else "-",
                                               count=PAGE)
            except (redis.RedisError, OSError) as exc:
                raise errors.QueueError(f"room events: {exc}") from exc
            for entry_id, fields in page:
                last = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                ev = _event(fields)
                if ev is not None:
                    events.append(ev)
            if len(page) < PAGE:
                break
        for room_id, org in live_rooms(events).items():
            self.ensure(org, room_id)
        return last

    def on_event(self, ev: dict[str, Any]) -> None:
        if not ev.get("record"):
            return
        room_id, to = ev["room_id"], ev.get("to")
        if to in LIVE_STATES:
            self.ensure(ev["org"], room_id)
        elif to == "ended" and room_id in self.sessions:
            self.sessions[room_id].end()

    def ensure(self, org: str, room_id: str) -> None:
        """A supervised session for this room, unless one runs already."""
        if room_id in self.tasks or self.stopping.is_set():
            return
        task = asyncio.ensure_future(self._supervise(org, room_id))
        self.tasks[room_id] = task
        task.add_done_callback(lambda _: (self.tasks.pop(room_id, None), self.refused.discard(room_id)))

    async def _supervise(self, org: str, room_id: str) -> None:
        """Run the room's session; retry failures while the room lives."""
        with bound(room_id=room_id):
            while not self.stopping.is_set():
                session = RoomSession(self.api, self.cfg, org, room_id, admit=lambda room: self._admit(room_id, room))
                self.sessions[room_id] = session
                try:
                    outcome = await session.run()
                    log.info("session_over", outcome=outcome)
                    return
                except AlreadyRecording:
                    log.info("room_held_by_other_recorder")
                except AtCapacity:
                    pass  # logged once by _admit; retried below while the room lives
                except (errors.NotFound, errors.Forbidden, errors.Unauthorized, errors.InvalidState) as exc:
                    log.warning("room_not_recordable", code=exc.code, error=exc.message)
                    return
                except Exception as exc:
                    log.exception("session_failed", error=repr(exc))
                finally:
                    self.sessions.pop(room_id, None)
                    self.admission.release(room_id)
                if session.ended.is_set():
                    return
                await _sleep_or(self.stopping, self.cfg.rejoin_after_s)

    async def _admit(self, room_id: str, room: dict[str, Any]) -> None:
        """Admission before the seat (see `bot.admission`); raises `AtCapacity` when refused."""
        present = sum(1 for m in room.get("participants") or [] if m.get("connected"))
        live = {rid: len(s.people) for rid, s in self.sessions.items()}
        decision = self.admission.admit(room_id, present, live)
        if not decision.admitted:
            if room_id not in self.refused:
                self.refused.add(room_id)
                log.warning("room_refused_at_capacity", phase="bot_admission", retry_s=self.cfg.rejoin_after_s,
                            **decision.log_fields())
            raise AtCapacity(f"this bot process records {decision.load} of {decision.cap} participants",
                             retry_after=self.cfg.rejoin_after_s, **decision.log_fields())
        self.refused.discard(room_id)
        log.info("room_admitted", phase="bot_admission", delay_s=decision.delay_s, **decision.log_fields())
        if decision.delay_s:
            await _sleep_or(self.stopping, decision.delay_s)

    async def shutdown(self) -> None:
        self.stopping.set()
        for session in list(self.sessions.values()):
            session.stop()
        if self.tasks:
            await asyncio.gather(*list(self.tasks.values()), return_exceptions=True)


async def _sleep_or(event: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)


async def serve(cfg: BotConfig, stop: asyncio.Event) -> None:
    """The bot over its own API and Redis clients, until `stop` is set."""
    if cfg.ice_loopback:
        from bot.peer import restrict_ice_to_loopback

        restrict_ice_to_loopback()
    client = aioredis.Redis.from_url(cfg.redis_url, socket_connect_timeout=5, socket_timeout=10)
    try:
        async with ApiClient(cfg.api) as api:
            await RecorderBot(cfg, api, client).serve(stop)
    finally:
        await client.aclose()


def run() -> None:
    """Entry point of `recorder bot`: SIGTERM / Ctrl-C leave every room cleanly."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_json)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        log.info("bot_starting", phase="bot_start", api=settings.bot_api_url or settings.api_base_url,
                 segment_s=settings.bot_segment_s)
        await serve(BotConfig.from_settings(settings), stop)

    asyncio.run(main())
