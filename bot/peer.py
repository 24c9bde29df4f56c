"""The bot's WebRTC link to one participant: receive-only, VP8 + Opus preferred.

The bot is hidden, so participants never call it: the bot makes the offer (one
recvonly audio and one recvonly video transceiver) and the participant answers with
its tracks. An offer *from* the participant (renegotiation) replaces the link (see
session). Each received track is recorded by a `TrackRecorder`, through the
encoded-frame tap when aiortc's internals allow it (see `bot.tap`).
"""
from __future__ import annotations

import asyncio
import contextlib
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
                 make_recorder: RecorderFactory) -> None:
        self.participant_id, self.send, self.make_recorder = participant_id, send, make_recorder
        self.pc = RTCPeerConnection(ice_configuration(ice_servers))
        self.offset = ClockOffset()
        self.recorders: list[TrackRecorder] = []
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
