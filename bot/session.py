"""One room, recorded: join hidden through signaling, link to every participant, upload.

Lifecycle: room + join token + the room's bot recording (idempotent; a restarted bot
continues its seqs from the ledger) → WebSocket `join` as role `recorder` (the server
never announces it) → offer a receive-only link to each participant already there and to
each one who joins → every closed segment is uploaded at once → on `end`: close every
link (the open segments are flushed and uploaded), then `finalize`. On shutdown the bot
leaves and uploads what it has but does not finalize (another bot may take over).
A dropped socket is resumed (same instance id + last seq); the media links stay up.
Each link's health, its recovery ladder, the quality samples and the gap causes are
`bot.recovery`'s (started once the seat is held, stopped before finalize).
"""
from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection, connect

from bot import spool
from bot.api import ApiClient, media_ends, next_seqs_of
from bot.clock import ClockOffset
from bot.config import BotConfig
from bot.peer import PeerLink
from bot.recovery import Recovery
from bot.segments import ClosedSegment, track_id_for
from bot.track import TrackInfo, TrackRecorder
from core import errors
from core.logging import bound, get_logger
from signaling import protocol as p

log = get_logger("bot.session")
RECONNECT_S = (0.5, 1, 2, 4, 8)
FATAL_CLOSES = {p.CLOSE_ROOM_ENDED: "ended", p.CLOSE_SUPERSEDED: "superseded", p.CLOSE_FORBIDDEN: "forbidden",
                p.CLOSE_NOT_FOUND: "not_found"}


class AlreadyRecording(errors.Conflict):
    """Another recorder holds this room's seat."""

    code = "already_in_room"


def track_role(role: str) -> str:
    """A participant role as ingest's track role (`[a-z_]{1,32}`)."""
    return re.sub(r"[^a-z_]", "_", role.lower())[:32] or "participant"


class RoomSession:
    def __init__(self, api: ApiClient, cfg: BotConfig, org: str, room_id: str,
                 admit: Callable[[dict[str, Any]], Awaitable[None]] | None = None) -> None:
        self.api, self.cfg, self.org, self.room_id = api, cfg, org, room_id
        self.admit = admit  # before the seat: raises `bot.admission.AtCapacity` to leave the room to others
        self.ended, self.stopping = asyncio.Event(), asyncio.Event()
        self.room: dict[str, Any] = {}
        self.recording_id: str | None = None
        self.people: dict[str, p.ParticipantInfo] = {}
        self.links: dict[str, PeerLink] = {}
        self.seqs: dict[str, int] = {}
        self.declared: set[str] = set()
        self.uploads: set[asyncio.Task] = set()
        self.tasks: set[asyncio.Task] = set()
        self.watchers: dict[str, asyncio.Task] = {}
        self.ws: ClientConnection | None = None
        self.instance_id = uuid.uuid4().hex[:16]
        self.last_seq: int | None = None
        self.uploaded = 0
        self.prepared = False
        self.folder = cfg.spool_dir / room_id
        self.ice: list[dict[str, Any]] = []
        self.socket_up = False
        self.recovery = Recovery(cfg.monitor, lambda: self.links, lambda pid: pid in self.people, self._relink,
                                 lambda: self.socket_up, self._post_quality)

    def end(self) -> None:
        self.ended.set()

    def stop(self) -> None:
        self.stopping.set()

    # ---- run ---------------------------------------------------------------------
    async def run(self) -> str:
        """Record until the room ends ("ended") or we are told to stop ("stopped")."""
        with bound(room_id=self.room_id, phase="bot_start"):
            self.room = await self.api.room(self.org, self.room_id)
            if self.room.get("state") == "ended":
                log.info("room_already_ended")
                return "ended"
            if self.admit is not None:
                await self.admit(self.room)
            token = await self.api.join_token(self.org, self.room_id, self.cfg.participant_id, self.cfg.display_name)
            rec = await self.api.open_recording(self.org, self.room)
            self.recording_id = rec["id"]
            if rec.get("status") != "recording":
                log.info("recording_closed", recording_id=self.recording_id, status=rec.get("status"))
                return "ended"
        with bound(room_id=self.room_id, recording_id=self.recording_id):
            outcome = "stopped"
            try:
                outcome = await self._signal(token)
            finally:
                await self._wind_down(finalize=outcome == "ended")
            return outcome

    async def _signal(self, token: dict[str, Any]) -> str:
        attempt = 0
        while True:
            try:
                outcome = await self._connection(token)
            except (OSError, websockets.WebSocketException, TimeoutError) as exc:
                outcome = None
                log.info("signaling_lost", phase="reconnect", error=repr(exc))
            if outcome is not None:
                return outcome
            if self.ended.is_set() or self.stopping.is_set():
                return "ended" if self.ended.is_set() else "stopped"
            await asyncio.sleep(RECONNECT_S[min(attempt, len(RECONNECT_S) - 1)])
            attempt += 1
            try:
                token = await self.api.join_token(self.org, self.room_id, self.cfg.participant_id,
                                                  self.cfg.display_name)
            except errors.InvalidState:  # the room ended while we were away
                self.ended.set()
                return "ended"

    async def _connection(self, token: dict[str, Any]) -> str | None:
        """One socket: join (or resume), then serve it; None = reconnect."""
        async with connect(token["ws_url"], open_timeout=10, ping_interval=None, max_size=2**22) as ws:
            self.ws = ws
            await ws.send(p.Join(instance_id=self.instance_id, last_seq=self.last_seq).dumps())
            reader = asyncio.ensure_future(self._read(ws, token.get("ice_servers") or []))
            waits = [reader, asyncio.ensure_future(self.ended.wait()), asyncio.ensure_future(self.stopping.wait())]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                self.socket_up = False
                for w in waits[1:]:
                    w.cancel()
            if not reader.done():
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
                if self.stopping.is_set() and not self.ended.is_set():
                    with contextlib.suppress(Exception):
                        await ws.send(p.Leave().dumps())
                return "ended" if self.ended.is_set() else "stopped"
            return reader.result()

    async def _read(self, ws: ClientConnection, ice: list[dict[str, Any]]) -> str | None:
        try:
            async for raw in ws:
                try:
                    msg = p.parse_server(raw)
                except p.ProtocolError as exc:  # a newer server's message: skip it, keep the room
                    log.warning("signaling_message_skipped", code=exc.code, error=exc.message)
                    continue
                if msg.seq is not None:
                    self.last_seq = max(self.last_seq or 0, msg.seq)
                outcome = await self._on_message(msg, ice)
                if outcome is not None:
                    return outcome
        except websockets.ConnectionClosed:
            pass
        code = ws.close_code
        if code == p.CLOSE_ALREADY_IN_ROOM:
            raise AlreadyRecording("another recorder is in this room")
        if code in FATAL_CLOSES:
            if code == p.CLOSE_ROOM_ENDED:
                self.ended.set()
            return FATAL_CLOSES[code]
        return None

    # ---- messages ----------------------------------------------------------------
    async def _on_message(self, msg: Any, ice: list[dict[str, Any]]) -> str | None:
        if isinstance(msg, p.Ping):
            await self._send(p.Pong(ts=msg.ts))
        elif isinstance(msg, p.Joined):
            await self._joined(msg, ice)
        elif isinstance(msg, p.ParticipantJoined):
            await self._participant_joined(msg, ice)
        elif isinstance(msg, p.ParticipantLeft):
            self.people.pop(msg.participant_id, None)
            self.recovery.left(msg.participant_id, self.links.get(msg.participant_id))
            self._unlink(msg.participant_id)
        elif isinstance(msg, p.Signal):
            await self._on_signal(msg, ice)
        elif isinstance(msg, p.Restart) and msg.from_ in self.people:
            await self._link(msg.from_, ice)
        elif isinstance(msg, p.End):
            self.ended.set()
            return "ended"
        elif isinstance(msg, p.Error):
            log.info("signaling_error", code=msg.code, message=msg.message)
        return None

    async def _participant_joined(self, msg: p.ParticipantJoined, ice: list[dict[str, Any]]) -> None:
        who = msg.participant
        if p.is_hidden(who.role):
            return
        self.people[who.participant_id] = who
        link = self.links.get(who.participant_id)
        if msg.resumed and link is not None and link.pc.connectionState in ("new", "connecting", "connected"):
            return  # only their socket blipped: the media link is fine
        await self._link(who.participant_id, ice)

    async def _joined(self, msg: p.Joined, ice: list[dict[str, Any]]) -> None:
        with bound(phase="bot_joined"):
            log.info("bot_joined", resumed=msg.resumed, participants=[m.participant_id for m in msg.participants])
        if not self.prepared:
            await self._prepare()
        self.ice, self.socket_up = ice, True
        rebuild, self.recovery.relink_all = not msg.resumed or self.recovery.relink_all, False
        present = {m.participant_id: m for m in msg.participants if not p.is_hidden(m.role)}
        for gone in set(self.links) - set(present):
            self.recovery.left(gone, self.links.get(gone))
            self._unlink(gone)
        self.people = present
        for pid in present:
            if pid not in self.links or rebuild:
                await self._link(pid, ice)

    async def _prepare(self) -> None:
        """Once we hold the seat: continue the seqs, upload what an earlier run left behind."""
        assert self.recording_id is not None
        left = spool.leftovers(self.folder)
        ledger = await self.api.ledger(self.org, self.recording_id)
        self.seqs = next_seqs_of(ledger)
        self.recovery.restarted(media_ends(ledger))
        for info, seg in left:
            self.seqs[seg.track_id] = max(self.seqs.get(seg.track_id, 0), seg.seq + 1)
            self._on_segment(info, seg)
        if left:
            log.info("spool_recovered", segments=len(left))
        self.prepared = True
        self.recovery.start()

    async def _on_signal(self, msg: p.Signal, ice: list[dict[str, Any]]) -> None:
        pid = msg.from_ or ""
        if pid not in self.people:
            return
        if msg.sdp_type == "offer":  # the participant renegotiates: answer on a fresh link
            await self._link(pid, ice, offer=False)
        link = self.links.get(pid)
        if link is None:
            return
        try:
            await link.handle(msg)
        except Exception as exc:  # noqa: BLE001 - a bad description must not stop the room
            log.warning("signal_rejected", participant_id=pid, error=repr(exc))

    async def _send(self, msg: p._Message) -> None:
        if self.ws is not None:
            with contextlib.suppress(websockets.ConnectionClosed, OSError):
                await self.ws.send(msg.dumps())

    # ---- links -------------------------------------------------------------------
    async def _link(self, pid: str, ice: list[dict[str, Any]], offer: bool = True) -> None:
        self._unlink(pid)
        link = PeerLink(pid, ice, self._send, self._recorder, self.cfg.monitor.ladder)
        self.links[pid] = link
        self.watchers[pid] = asyncio.ensure_future(self._watch(link, ice))
        if offer:
            with bound(phase="bot_offer"):
                log.info("bot_offer", participant_id=pid)
            await link.offer()

    def _unlink(self, pid: str) -> None:
        link = self.links.pop(pid, None)
        watcher = self.watchers.pop(pid, None)
        if watcher is not None and watcher is not asyncio.current_task():
            watcher.cancel()
        if link is not None:
            self._spawn(link.close())

    async def _watch(self, link: PeerLink, ice: list[dict[str, Any]]) -> None:
        """Re-offer when a link fails while its participant is still in the room."""
        await link.failed.wait()
        self.recovery.failed(link)
        await asyncio.sleep(1.0)
        if self.links.get(link.participant_id) is link and link.participant_id in self.people:
            log.info("link_failed_reoffer", participant_id=link.participant_id, participant=link.participant_id,
                     phase="renegotiate")
            await self._link(link.participant_id, ice)

    async def _relink(self, pid: str) -> None:
        with bound(phase="renegotiate"):
            await self._link(pid, self.ice)

    async def _post_quality(self, samples: list[dict[str, Any]], gaps: list[dict[str, Any]]) -> None:
        assert self.recording_id is not None
        await self.api.post_quality(self.org, self.recording_id, samples, gaps)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _recorder(self, pid: str, kind: str, offset: ClockOffset, ask: Any) -> TrackRecorder:
        who = self.people.get(pid) or p.ParticipantInfo(participant_id=pid, role="participant")
        info = TrackInfo(track_id_for(pid, kind), pid, kind, track_role(who.role), who.display_name)
        return TrackRecorder(info, self.folder, self.cfg.policy, offset,
                             lambda: self._next_seq(info.track_id), lambda seg: self._on_segment(info, seg), ask)

    def _next_seq(self, track_id: str) -> int:
        seq = self.seqs.get(track_id, 0)
        self.seqs[track_id] = seq + 1
        return seq

    # ---- uploads -----------------------------------------------------------------
    def _on_segment(self, info: TrackInfo, seg: ClosedSegment) -> None:
        task = asyncio.ensure_future(self._upload(info, seg))
        self.uploads.add(task)
        task.add_done_callback(self.uploads.discard)

    async def _upload(self, info: TrackInfo, seg: ClosedSegment) -> None:
        assert self.recording_id is not None
        with bound(phase="bot_upload"):
            try:
                await asyncio.to_thread(spool.save, info, seg)
                await self._declare(info)
                await self.api.put_chunk(self.org, self.recording_id, seg, self._declare_headers(info))
            except errors.Conflict as exc:  # stored with other bytes / recording finalized: cannot land
                log.warning("segment_refused", track=seg.track_id, seq=seg.seq, code=exc.code, error=exc.message)
                spool.discard(seg)
                return
            except (errors.RecorderError, OSError) as exc:
                log.warning("segment_not_uploaded", track=seg.track_id, seq=seg.seq, error=str(exc),
                            kept=str(seg.path))
                return
            spool.discard(seg)
            self.uploaded += 1
            log.info("segment_uploaded", track=seg.track_id, seq=seg.seq, start_ms=seg.start_ms,
                     duration_ms=seg.duration_ms, clock=seg.clock)

    async def _declare(self, info: TrackInfo) -> None:
        """Declare the track (unicode display name in JSON) before its first chunk."""
        if info.track_id in self.declared:
            return
        track = {"track_id": info.track_id, "participant_id": info.participant_id, "kind": info.kind,
                 "role": info.role, "display_name": info.display_name}
        await self.api.open_recording(self.org, self.room, tracks=[track])
        self.declared.add(info.track_id)

    @staticmethod
    def _declare_headers(info: TrackInfo) -> dict[str, str]:
        return {"X-Track-Kind": info.kind, "X-Track-Role": info.role, "X-Participant-Id": info.participant_id}

    async def _wind_down(self, finalize: bool) -> None:
        with bound(phase="bot_leave"):
            self.recovery.settle()
            links, self.links = list(self.links.values()), {}
            for watcher in self.watchers.values():
                watcher.cancel()
            await asyncio.gather(*(link.close() for link in links), return_exceptions=True)
            await asyncio.gather(*self.tasks, return_exceptions=True)
            if self.prepared:
                await self.recovery.stop()
            if self.uploads:
                _, pending = await asyncio.wait(set(self.uploads),
                                                   timeout=None if finalize else self.cfg.stop_grace_s)
                for task in pending:
                    task.cancel()
            log.info("bot_left", uploaded=self.uploaded, finalize=finalize)
            if finalize and self.recording_id:
                await self.api.finalize(self.org, self.recording_id)
                with bound(phase="bot_finalized"):
                    log.info("bot_finalized")
