"""The bot's WebRTC link to one participant: receive-only, VP8 + Opus preferred.

The bot is hidden, so participants never call it: the bot makes the offer (one
recvonly audio and one recvonly video transceiver) and the participant answers with
its tracks. An offer *from* the participant (renegotiation) replaces the link (see
session). Each received track is recorded by a `TrackRecorder`, through the
encoded-frame tap when aiortc's internals allow it (see `bot.tap`).

A link also carries what the heartbeat (`bot.monitor`) keeps about it: its recovery
`Ladder`, its last media activity count and the base readings of its quality windows.
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCSessionDescription,
)
from aiortc.sdp import candidate_from_sdp

from bot import tap
from bot.clock import ClockOffset
from bot.ladder import Ladder, LadderConfig
from bot.monitor import LinkStats
from bot.quality import Counters
from bot.track import TrackRecorder
from core.logging import get_logger
from signaling import protocol as p

log = get_logger("bot.peer")
PREFERRED = {"audio": ("audio/opus",), "video": ("video/VP8", "video/rtx")}

# (participant_id, kind, clock offset, ask-for-keyframe) → a recorder for that track
RecorderFactory = Callable[[str, str, ClockOffset, Callable[[], None]], TrackRecorder]
Send = Callable[[p.Signal], Awaitable[None]]


def preferred_codecs(kind: str) -> list[Any]:
    """The codecs we can store without transcoding, in aiortc's capability objects."""
    return [c for c in RTCRtpReceiver.getCapabilities(kind).codecs if c.mimeType in PREFERRED[kind]]


def ice_configuration(servers: list[dict[str, Any]]) -> RTCConfiguration:
    """Always explicit: with `iceServers=None` aiortc would fall back to a public STUN server."""
    return RTCConfiguration(iceServers=[RTCIceServer(urls=s["urls"], username=s.get("username"),
                                                     credential=s.get("credential")) for s in servers])


class PeerLink:
    def __init__(self, participant_id: str, ice_servers: list[dict[str, Any]], send: Send,
                 make_recorder: RecorderFactory, ladder: LadderConfig | None = None) -> None:
        self.participant_id, self.send, self.make_recorder = participant_id, send, make_recorder
        self.pc = RTCPeerConnection(ice_configuration(ice_servers))
        self.offset = ClockOffset()
        self.recorders: list[TrackRecorder] = []
        self.receivers: list[tuple[Any, TrackRecorder]] = []
        self.kinds: dict[str, str] = {}
        self.created_s = time.time()
        self.ladder = Ladder(ladder or LadderConfig(), self.created_s)
        self.last_activity: int | None = None
        self.sample_base: dict[str, Counters] = {}
        self.stuck_base: dict[str, tuple[int, int]] = {}
        self.sampled_s = self.created_s
        self.tasks: set[asyncio.Task] = set()
        self.failed = asyncio.Event()
        self.tapped = 0
        self.pc.on("track", self._on_track)
        self.pc.on("connectionstatechange", self._on_state)

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def offer(self) -> None:
        for kind in ("audio", "video"):
            transceiver = self.pc.addTransceiver(kind, direction="recvonly")
            transceiver.setCodecPreferences(preferred_codecs(kind))
        await self.pc.setLocalDescription(await self.pc.createOffer())
        await self._send_description()

    async def _send_description(self) -> None:
        desc = self.pc.localDescription
        await self.send(p.Signal(to=self.participant_id, description={"type": desc.type, "sdp": desc.sdp}))

    async def handle(self, msg: p.Signal) -> None:
        """Apply one relayed description or ICE candidate from the participant."""
        if msg.description is not None:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=msg.description.get("sdp", ""),
                                                                     type=msg.description.get("type", "")))
            if msg.description.get("type") == "offer":
                await self.pc.setLocalDescription(await self.pc.createAnswer())
                await self._send_description()
            return
        cand = msg.candidate or {}
        line = str(cand.get("candidate") or "")
        if not line:
            await self.pc.addIceCandidate(None)  # end of candidates
            return
        candidate = candidate_from_sdp(line.split(":", 1)[1] if line.startswith("candidate:") else line)
        candidate.sdpMid, candidate.sdpMLineIndex = cand.get("sdpMid"), cand.get("sdpMLineIndex")
        await self.pc.addIceCandidate(candidate)

    def _on_track(self, track: Any) -> None:
        receiver = next((t.receiver for t in self.pc.getTransceivers() if t.receiver.track is track), None)
        ask = (lambda: self._spawn(tap.request_keyframe(receiver))) if receiver is not None else (lambda: None)
        recorder = self.make_recorder(self.participant_id, track.kind, self.offset, ask)
        self.recorders.append(recorder)
        self.receivers.append((receiver, recorder))
        self.kinds[recorder.info.track_id] = track.kind
        if receiver is not None and tap.install(receiver, recorder):
            self.tapped += 1
        else:
            log.warning("recording_decoded_frames", participant_id=self.participant_id, kind=track.kind)
        self._spawn(recorder.consume(track))
        log.info("track_started", participant_id=self.participant_id, kind=track.kind,
                 track=recorder.info.track_id)

    def _on_state(self) -> None:
        state = self.pc.connectionState
        log.info("peer_state", participant_id=self.participant_id, state=state)
        if state == "failed":
            self.failed.set()

    # ---- what the heartbeat reads ---------------------------------------------------
    async def stats(self) -> LinkStats:
        """One reading: connection state, inbound transport bytes, each track's counters
        (stamped when read: nothing here yields to the loop, so no packet slips in between)."""
        now = time.time()
        state = self.pc.connectionState
        report: dict[str, Any] = {}
        for transceiver in self.pc.getTransceivers():  # each receiver's getStats() (not gathered: no task hops)
            with contextlib.suppress(Exception):       # a closing connection has no stats
                report.update(await transceiver.receiver.getStats())
        received = sum(v.bytesReceived for v in report.values() if getattr(v, "type", "") == "transport")
        tracks = {}
        for receiver, rec in self.receivers:
            got = await tap.inbound_counters(receiver) if receiver is not None else None
            packets, lost, jitter, rate = got or (0, 0, None, 0)
            tracks[rec.info.track_id] = Counters(
                now, packets, lost, jitter, rate or rec.rate, rec.bytes, rec.frames,
                rec.size if rec.info.kind == "video" else None, bytes_known=rec.mode != "transcode")
        return LinkStats(connected=state == "connected", failed=state in ("failed", "closed"), bytes=received,
                         tracks=tracks)

    def last_media_s(self) -> float | None:
        """When the latest frame of any track arrived."""
        return max((r.last_arrival_s for r in self.recorders if r.last_arrival_s is not None), default=None)

    def media_since(self, since_s: float) -> float | None:
        """When media first arrived again at or after `since_s` (any track)."""
        return min((r.resumed_s for r in self.recorders if r.resumed_s is not None and r.resumed_s >= since_s),
                   default=None)

    async def unstick(self) -> None:
        """A video track whose packets arrive but whose frames have not since the last call: its
        jitter buffer waits for packets that are gone (see `tap.skip_lost`)."""
        for receiver, rec in self.receivers:
            if receiver is None or rec.info.kind != "video":
                continue
            got = await tap.inbound_counters(receiver)
            now = (got[0] if got else 0, rec.frames)
            prev, self.stuck_base[rec.info.track_id] = self.stuck_base.get(rec.info.track_id), now
            if prev is not None and now[0] > prev[0] and now[1] == prev[1]:
                skipped = tap.skip_lost(receiver)
                if skipped:
                    log.info("jitter_buffer_unblocked", participant=self.participant_id, track=rec.info.track_id,
                             skipped_packets=skipped)
                    self._spawn(tap.request_keyframe(receiver))

    def request_keyframes(self) -> None:
        for receiver, rec in self.receivers:
            if receiver is not None and rec.info.kind == "video":
                self._spawn(tap.request_keyframe(receiver))

    async def restart_ice(self) -> bool:
        """ICE restart on this connection, re-offered; False where the library has none (aiortc)."""
        if not await tap.restart_ice(self.pc):
            return False
        await self.pc.setLocalDescription(await self.pc.createOffer())
        await self._send_description()
        return True

    async def close(self) -> None:
        """Stop receiving, then close every track's open segment (they are handed on)."""
        with contextlib.suppress(Exception):
            await self.pc.close()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await asyncio.gather(*(r.close() for r in self.recorders), return_exceptions=True)


def restrict_ice_to_loopback() -> None:
    """Gather only 127.0.0.1 host candidates (aioice skips loopback by default).

    For single-machine tests (`RECORDER_BOT_ICE_LOOPBACK=true`); patches aioice's module
    function for this process, so only the bot process should call it.
    """
    import aioice.ice

    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]  # type: ignore[assignment]
