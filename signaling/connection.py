"""One participant's WebSocket: join, relay, heartbeat, leave.

The socket keeps no call state beyond itself: presence, buffers and routing live in
Redis (`presence.py`). Outgoing frames go through a bounded queue drained by a writer
task, so a slow client never stalls the process; it is dropped instead (4429).
"""
from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis
from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocket

from core.access import may_end_call
from core.errors import RecorderError
from core.logging import bound, get_logger
from core.models import CallSession
from signaling import protocol as p
from signaling import store
from signaling.presence import Seat

if TYPE_CHECKING:
    from signaling.runtime import Signaling

log = get_logger("signaling.ws")
JOIN_TIMEOUT_S = 10.0
OUTBOX_MAX = 512
CLOSE_FLUSH_S = 1.0
RELEASE_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Identity:
    """Who the join token names."""

    org: str
    room_id: str
    participant_id: str
    role: str
    display_name: str

    @property
    def hidden(self) -> bool:
        return p.is_hidden(self.role)

    def info(self) -> p.ParticipantInfo:
        return p.ParticipantInfo(participant_id=self.participant_id, role=self.role,
                                 display_name=self.display_name)


class TokenBucket:
    """At most `rate` messages per second on average, bursts up to `burst`."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst, self.tokens, self.at = rate, burst, burst, time.monotonic()

    def take(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


def phase(name: str, **fields: Any) -> None:
    """A join-phase log line: grep `"phase":"offer"` to see who got that far."""
    log.info(name, phase=name, **fields)


class Connection:
    """Serves one socket from `join` to close."""

    def __init__(self, ws: WebSocket, sig: Signaling, who: Identity) -> None:
        self.id = uuid.uuid4().hex
        self.ws, self.sig, self.who = ws, sig, who
        self.out: asyncio.Queue[str | None] = asyncio.Queue(OUTBOX_MAX)
        self.held: list[tuple[int, str, str]] | None = []
        self.sent_seq = 0
        self.unanswered = 0
        self.resume_issued = time.time()  # when the client last got a resume token (joined / ping)
        self.instance = ""
        self.seated = False
        self.explicit = False
        self.close_code, self.reason = p.CLOSE_NORMAL, "closed"
        self.done = asyncio.Event()
        self.bucket = TokenBucket(rate=50, burst=200)
        self.reader: asyncio.Task | None = None
        self.writer: asyncio.Task | None = None

    # ---- called by the hub, in the event loop -------------------------------------
    def deliver(self, seq: int, kind: str, envelope: str) -> None:
        if self.held is not None:
            self.held.append((seq, kind, envelope))
        else:
            self._routed(seq, kind, envelope)

    def kick(self) -> None:
        self.finish(p.CLOSE_SUPERSEDED, "superseded")

    def tick(self) -> None:
        if self.unanswered >= 2:
            self.finish(p.CLOSE_HEARTBEAT, "timeout")
            return
        self.unanswered += 1
        now = time.time()
        if now - self.resume_issued < self.sig.cfg.resume_window_s / 2:
            self._put(f'{{"v":1,"type":"ping","ts":{now:.3f}}}')
            return
        # the resume token outlives the resume window by a minute only: renew it while the
        # socket lives, so a drop late in a long interview can still take the seat back
        self.resume_issued = now
        self._put(p.Ping(ts=round(now, 3), resume_token=self.sig.resume_token(self.who)).dumps())

    def shutdown(self, code: int, reason: str) -> None:
        self.finish(code, reason)

    # ---- outgoing ------------------------------------------------------------------
    def _routed(self, seq: int, kind: str, envelope: str) -> None:
        if seq <= self.sent_seq:
            return  # already sent (replay and live delivery overlap on resume)
        self.sent_seq = seq
        self._put(envelope)
        if kind == "end":
            self.finish(p.CLOSE_ROOM_ENDED, "room_ended")

    def send(self, message: p._Message) -> None:
        self._put(message.dumps())

    def _put(self, text: str) -> None:
        try:
            self.out.put_nowait(text)
        except asyncio.QueueFull:
            self.finish(p.CLOSE_TOO_SLOW, "too_slow")

    def error(self, code: str, message: str = "", retry_after: float | None = None) -> None:
        self.send(p.Error(code=code, message=message, retry_after=retry_after))

    def finish(self, code: int, reason: str) -> None:
        if not self.done.is_set():
            self.close_code, self.reason = code, reason
            self.done.set()

    def refuse(self, close_code: int, code: str, message: str, retry_after: float | None = None) -> bool:
        self.error(code, message, retry_after)
        phase("rejected", participant_id=self.who.participant_id, code=code)
        self.finish(close_code, code)
        return False

    # ---- lifecycle -----------------------------------------------------------------
    async def serve(self) -> None:
        with bound(room_id=self.who.room_id):
            phase("ws_open", participant_id=self.who.participant_id, role=self.who.role)
            self.writer = asyncio.create_task(self._write_loop())
            try:
                if await self._join_or_refuse():
                    self.reader = asyncio.create_task(self._read_loop())
                await self.done.wait()
            finally:
                await self._close()

    async def _join_or_refuse(self) -> bool:
        try:
            return await self._join()
        except (RecorderError, redis.RedisError, OSError) as exc:
            log.warning("join_failed", participant_id=self.who.participant_id, error=str(exc))
            return self.refuse(p.CLOSE_TRY_AGAIN, "dependency_down", "try again shortly", retry_after=2.0)

    async def _receive(self) -> str | bytes | None:
        message = await self.ws.receive()
        if message["type"] == "websocket.disconnect":
            return None
        text = message.get("text")
        return text if text is not None else message.get("bytes")

    async def _join(self) -> bool:
        try:
            raw = await asyncio.wait_for(self._receive(), JOIN_TIMEOUT_S)
        except TimeoutError:
            return self.refuse(p.CLOSE_BAD_REQUEST, "join_timeout", "send join first")
        if raw is None:
            self.finish(p.CLOSE_NORMAL, "closed")
            return False
        try:
            msg = p.parse(raw)
        except p.ProtocolError as exc:
            return self.refuse(p.CLOSE_BAD_REQUEST, exc.code, exc.message)
        if not isinstance(msg, p.Join):
            return self.refuse(p.CLOSE_BAD_REQUEST, "join_first", "the first message must be join")
        room = await run_in_threadpool(store.get_room, self.sig.engine, self.who.room_id)
        if room is None:
            return self.refuse(p.CLOSE_NOT_FOUND, "room_not_found", "no such room")
        if room.org != self.who.org:
            return self.refuse(p.CLOSE_FORBIDDEN, "other_org", "this room belongs to another organisation")
        if room.state == "ended":
            return self.refuse(p.CLOSE_ROOM_ENDED, "room_ended", "the room has ended")
        return await self._take_seat(msg, room.state)

    async def _take_seat(self, join: p.Join, state: str) -> bool:
        who, sig = self.who, self.sig
        if not sig.hub.ready.is_set():  # not subscribed: routed messages would not reach us
            return self.refuse(p.CLOSE_TRY_AGAIN, "dependency_down", "relay reconnecting", retry_after=1.0)
        sig.hub.sockets[self.id] = self  # before claiming, so no routed message is missed
        seat = await sig.presence.claim(who.room_id, who.participant_id, join.instance_id, self.id, sig.hub.node,
                                        who.role, who.display_name, who.hidden, _now_ms())
        if seat.status == "busy":
            return self.refuse(p.CLOSE_ALREADY_IN_ROOM, "already_in_room",
                               "this participant is connected from another tab or device",
                               retry_after=sig.cfg.node_ttl_ms / 1000)
        self.instance, self.seated = join.instance_id, True
        resumed = seat.status == "resumed"
        await self._record_join(resumed)
        if state in ("created", "orphaned") and not who.hidden:  # the recorder alone is no call
            await sig.service.change(who.room_id, "active", "joined" if state == "created" else "rejoined",
                                     actor=who.participant_id)
        await self._welcome(join, seat, resumed)
        if not who.hidden:
            await sig.presence.route(who.room_id, p.ParticipantJoined(participant=who.info(), resumed=resumed)
                                     .dumps(), "participant_joined", sender=who.participant_id)
        phase("joined", participant_id=who.participant_id, instance_id=join.instance_id, resumed=resumed)
        return True

    async def _record_join(self, resumed: bool) -> None:
        who = self.who
        if resumed:
            await run_in_threadpool(store.resume_session, self.sig.engine, who.room_id, who.participant_id,
                                    self.instance)
        else:
            await run_in_threadpool(store.open_session, self.sig.engine, CallSession(
                room_id=who.room_id, participant_id=who.participant_id, instance_id=self.instance, role=who.role,
                display_name=who.display_name, hidden=who.hidden))

    async def _welcome(self, join: p.Join, seat: Seat, resumed: bool) -> None:
        """Send `joined`, replay what a resumed instance missed, then release held frames."""
        who, sig = self.who, self.sig
        members = await sig.presence.roster(who.room_id)
        others = [p.ParticipantInfo(participant_id=m.participant_id, role=m.role, display_name=m.display_name)
                  for m in members if m.connected and m.participant_id != who.participant_id
                  and (who.hidden or not m.hidden)]
        after = seat.last_seq
        if resumed:
            after = join.last_seq if join.last_seq is not None else seat.sent_seq
        self.resume_issued = time.time()
        self.send(p.Joined(room_id=who.room_id, participant_id=who.participant_id, instance_id=join.instance_id,
                           resumed=resumed, participants=others, last_seq=after, heartbeat_s=sig.cfg.heartbeat_s,
                           resume_token=sig.resume_token(who)))
        self.sent_seq = after
        if resumed:
            for seq, kind, envelope in await sig.presence.missed(who.room_id, who.participant_id, after):
                self._routed(seq, kind, envelope)
        held, self.held = self.held or [], None
        for seq, kind, envelope in sorted(held):
            self._routed(seq, kind, envelope)

    async def _read_loop(self) -> None:
        try:
            while not self.done.is_set():
                raw = await self._receive()
                if raw is None:
                    self.finish(p.CLOSE_NORMAL, "closed")
                    return
                self.unanswered = 0
                try:
                    await self._handle(raw)
                except (redis.RedisError, OSError) as exc:
                    log.warning("relay_failed", participant_id=self.who.participant_id, error=str(exc))
                    self.error("dependency_down", "the relay is unavailable; retry", retry_after=1.0)
        except Exception as exc:  # noqa: BLE001 - whatever broke, this socket is done; others go on
            log.info("socket_error", participant_id=self.who.participant_id, error=repr(exc))
            self.finish(p.CLOSE_NORMAL, "closed")

    async def _handle(self, raw: str | bytes) -> None:
        limit = self.sig.cfg.max_message_bytes
        if (len(raw) if isinstance(raw, bytes) else len(raw.encode())) > limit:
            self.error("message_too_large", f"messages are limited to {limit} bytes")
            return
        if not self.bucket.take():
            self.error("rate_limited", "too many messages", retry_after=1.0)
            return
        try:
            data = p.decode(raw)
            if p.is_bare_pong(data):
                return  # any frame already counted as a heartbeat answer
            msg = p.parse(data)
        except p.ProtocolError as exc:
            log.info("bad_message", participant_id=self.who.participant_id, code=exc.code)
            self.error(exc.code, exc.message)
            return
        await self._dispatch(msg)

    async def _dispatch(self, msg: Any) -> None:
        if isinstance(msg, p.Ping):
            self.send(p.Pong(ts=msg.ts))
        elif isinstance(msg, (p.Signal, p.Restart)):
            await self._relay(msg)
        elif isinstance(msg, p.Report):
            phase(msg.phase, participant_id=self.who.participant_id, source="client", detail=msg.detail)
        elif isinstance(msg, p.End):
            await self._end(msg)
        elif isinstance(msg, p.Leave):
            self.explicit = True
            self.finish(p.CLOSE_NORMAL, "left")
        elif isinstance(msg, p.Join):
            self.error("already_joined", "this socket has joined already")
        # pong: any frame already counted as a heartbeat answer

    async def _relay(self, msg: p.Signal | p.Restart) -> None:
        who = self.who
        if msg.to == who.participant_id:
            self.error("invalid_message", "cannot signal yourself")
            return
        out = msg.model_copy(update={"from_": who.participant_id, "v": p.PROTOCOL_VERSION})
        n = await self.sig.presence.route(who.room_id, out.dumps(), out.type, sender=who.participant_id, to=msg.to)
        if n < 0:
            self.error("unknown_participant", f"{msg.to!r} is not in this room")
            return
        kind = out.sdp_type if isinstance(out, p.Signal) else "restart"
        if kind in ("offer", "answer", "restart"):
            phase(kind, participant_id=who.participant_id, to=msg.to)

    async def _end(self, msg: p.End) -> None:
        if not may_end_call(self.who.role):
            self.error("forbidden", f"role {self.who.role!r} may not end the room")
            return
        await self.sig.service.change(self.who.room_id, "ended", msg.reason or "ended_by_participant",
                                      actor=self.who.participant_id)

    async def _write_loop(self) -> None:
        try:
            while True:
                text = await self.out.get()
                if text is None:
                    return
                await self.ws.send_text(text)
        except Exception:  # noqa: BLE001 - the peer went away; the read side notices too
            self.finish(p.CLOSE_NORMAL, "closed")

    async def _close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
        self.sig.hub.sockets.pop(self.id, None)
        with contextlib.suppress(asyncio.QueueFull):
            self.out.put_nowait(None)
        if self.writer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.writer, CLOSE_FLUSH_S)
        with contextlib.suppress(Exception):  # bounded: a client that stops reading cannot pin us
            await asyncio.wait_for(self.ws.close(self.close_code), CLOSE_FLUSH_S)
        if self.seated:  # after the close: a client told to retry is not kept waiting on Redis
            with contextlib.suppress(redis.RedisError, OSError, TimeoutError):
                await asyncio.wait_for(self._release(), RELEASE_TIMEOUT_S)

    async def _release(self) -> None:
        who, sig = self.who, self.sig
        mine = await sig.presence.release(who.room_id, who.participant_id, self.id, explicit=self.explicit,
                                          now_ms=_now_ms(), sent_seq=self.sent_seq)
        if not mine:
            return  # superseded by a resumed connection, or the room ended
        if not who.hidden:
            await sig.presence.route(who.room_id, p.ParticipantLeft(participant_id=who.participant_id,
                                                                    reason=self.reason).dumps(),
                                     "participant_left", sender=who.participant_id)
        if self.explicit:
            await sig.client.delete(sig.token_cache(who))
        await run_in_threadpool(store.close_session, sig.engine, who.room_id, who.participant_id, self.instance,
                                self.reason)
        phase("left", participant_id=who.participant_id, reason=self.reason)


def _now_ms() -> int:
    return int(time.time() * 1000)
