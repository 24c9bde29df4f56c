"""Test peers that talk to `/v1/signal` like a browser would (reusable by the bot tests).

- `SignalClient`: one real WebSocket participant (the `websockets` library): joins,
  answers server pings, tracks `seq` for resume, queues everything else.
- `RtcPeer`: an aiortc peer connection driven through a `SignalClient`: offer/answer,
  trickled ICE candidates as separate `signal{candidate}` messages (as browsers send
  them), `report{phase: ice_connected}`, and frame counters for received media.
- `loopback_only(monkeypatch)`: aioice skips 127.0.0.1 when gathering; loopback-only
  tests restrict host candidates to it.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection, connect

from signaling import protocol as p

TIMEOUT_S = 10.0


class SignalClient:
    """A participant socket; `expect(type)` returns the next message of that type."""

    def __init__(self, ws_url: str, *, answer_pings: bool = True) -> None:
        self.ws_url, self.answer_pings = ws_url, answer_pings
        self.ws: ClientConnection | None = None
        self.inbox: asyncio.Queue[Any] = asyncio.Queue()
        self.last_seq = 0
        self.instance_id = uuid.uuid4().hex[:12]
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self.last_ping: Any = None  # the server's latest heartbeat (may carry a renewed resume token)
        self._reader: asyncio.Task | None = None

    async def open(self) -> SignalClient:
        self.ws = await connect(self.ws_url, open_timeout=TIMEOUT_S, max_size=2**22, ping_interval=None)
        self.closed.clear()
        self._reader = asyncio.create_task(self._read())
        return self

    async def join(self, instance_id: str | None = None, last_seq: int | None = None) -> p.Joined:
        """Open (if needed), send join, return `joined` (raises on an error frame)."""
        if self.ws is None or self.closed.is_set():
            await self.open()
        self.instance_id = instance_id or self.instance_id
        try:
            await self.send(p.Join(instance_id=self.instance_id, last_seq=last_seq))
        except websockets.ConnectionClosed:
            pass  # refused before our join went out (e.g. the token check needs Redis): the error frame is queued
        msg = await self.expect("joined", "error")
        if isinstance(msg, p.Error):
            await self.wait_closed()  # the server closes a refused socket; let it finish cleanly
            raise JoinRefused(msg.code, self)
        return msg

    async def send(self, msg: p._Message | dict | str | bytes) -> None:
        text = msg if isinstance(msg, (str, bytes)) else json.dumps(msg) if isinstance(msg, dict) else msg.dumps()
        assert self.ws is not None
        await self.ws.send(text)

    async def expect(self, *types: str, timeout: float = TIMEOUT_S) -> Any:
        """The next message whose type is in `types`; others are dropped."""
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.inbox.get()
                if msg is None:
                    raise ConnectionError(f"socket closed ({self.close_code}) while waiting for {types}")
                if msg.type in types:
                    return msg

    async def drain(self, settle_s: float = 0.2) -> list[Any]:
        """Everything received within `settle_s` of quiet."""
        out = []
        with contextlib.suppress(TimeoutError):
            while True:
                msg = await asyncio.wait_for(self.inbox.get(), settle_s)
                if msg is None:
                    break
                out.append(msg)
        return out

    async def wait_closed(self, timeout: float = TIMEOUT_S) -> int | None:
        await asyncio.wait_for(self.closed.wait(), timeout)
        return self.close_code

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    async def drop(self) -> None:
        """Vanish without a close handshake (a network cut)."""
        if self.ws is not None:
            self.ws.transport.abort()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    async def _read(self) -> None:
        assert self.ws is not None
        try:
            async for raw in self.ws:
                msg = p.parse_server(raw)
                if msg.seq is not None:
                    self.last_seq = max(self.last_seq, msg.seq)
                if isinstance(msg, p.Ping):
                    self.last_ping = msg
                    if self.answer_pings:
                        await self.ws.send(p.Pong(ts=msg.ts).dumps())
                    continue
                await self.inbox.put(msg)
        except websockets.ConnectionClosed:
            pass
        finally:
            self.close_code = self.ws.close_code
            self.closed.set()
            await self.inbox.put(None)


class JoinRefused(Exception):
    def __init__(self, code: str, client: SignalClient) -> None:
        super().__init__(code)
        self.code, self.client = code, client


def split_candidates(sdp: str) -> tuple[str, list[dict[str, Any]]]:
    """Take `a=candidate` lines out of an SDP: `(sdp, [RTCIceCandidateInit…])` (trickle ICE)."""
    lines, candidates, mid, index = [], [], None, -1
    for line in sdp.splitlines():
        if line.startswith("m="):
            index += 1
            mid = None
        elif line.startswith("a=mid:"):
            mid = line[6:]
        if line.startswith("a=candidate:"):
            candidates.append({"candidate": line[2:], "sdpMid": mid, "sdpMLineIndex": index})
            continue
        if line.startswith("a=end-of-candidates"):
            continue
        lines.append(line)
    for cand in candidates:  # a=mid may follow the candidates of its section
        cand["sdpMid"] = cand["sdpMid"] or _mid_of(lines, cand["sdpMLineIndex"])
    return "\r\n".join(lines) + "\r\n", candidates


def _mid_of(lines: list[str], index: int) -> str | None:
    section = -1
    for line in lines:
        if line.startswith("m="):
            section += 1
        elif line.startswith("a=mid:") and section == index:
            return line[6:]
    return None


def loopback_only(monkeypatch: Any) -> None:
    import aioice.ice

    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


def small_video_track():
    """A 160×120 test-pattern video track (cheap to encode on 2 cores)."""
    import av
    import numpy as np
    from aiortc import VideoStreamTrack

    class _Small(VideoStreamTrack):
        async def recv(self):
            pts, time_base = await self.next_timestamp()
            level = (pts // 3000) % 255
            frame = av.VideoFrame.from_ndarray(np.full((120, 160, 3), level, dtype=np.uint8), format="rgb24")
            frame.pts, frame.time_base = pts, time_base
            return frame

    return _Small()


def tone_track():
    from aiortc import AudioStreamTrack

    return AudioStreamTrack()


@dataclass
class RtcPeer:
    """An aiortc peer whose offer/answer/ICE go through our signaling server."""

    client: SignalClient
    send_tracks: list[Any] = field(default_factory=list)
    trickle: bool = True

    def __post_init__(self) -> None:
        from aiortc import RTCConfiguration, RTCPeerConnection

        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.frames: dict[str, int] = {"audio": 0, "video": 0}
        self.connected = asyncio.Event()
        self.remote: str | None = None
        self._tasks: list[asyncio.Task] = []
        for track in self.send_tracks:
            self.pc.addTrack(track)
        self.pc.on("track", self._on_track)
        self.pc.on("iceconnectionstatechange", self._on_ice)

    def _on_track(self, track: Any) -> None:
        self._tasks.append(asyncio.ensure_future(self._consume(track)))

    async def _consume(self, track: Any) -> None:
        from aiortc.mediastreams import MediaStreamError

        with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
            while True:
                await track.recv()
                self.frames[track.kind] += 1

    async def _on_ice(self) -> None:
        if self.pc.iceConnectionState in ("connected", "completed") and not self.connected.is_set():
            self.connected.set()
            with contextlib.suppress(Exception):
                await self.client.send(p.Report(phase="ice_connected"))

    async def call(self, to: str) -> None:
        """Make the offer to `to`."""
        self.remote = to
        for kind in ("audio", "video"):
            if not any(t.kind == kind for t in self.send_tracks):
                self.pc.addTransceiver(kind, direction="recvonly")
        await self.pc.setLocalDescription(await self.pc.createOffer())
        await self._send_description()

    async def _send_description(self) -> None:
        desc = self.pc.localDescription
        sdp, candidates = split_candidates(desc.sdp) if self.trickle else (desc.sdp, [])
        await self.client.send(p.Signal(to=self.remote, description={"type": desc.type, "sdp": sdp}))
        for cand in candidates:
            await self.client.send(p.Signal(to=self.remote, candidate=cand))
        if self.trickle:
            await self.client.send(p.Signal(to=self.remote, candidate={"candidate": ""}))

    async def handle(self, msg: p.Signal) -> None:
        """Apply one relayed signal (in arrival order)."""
        from aiortc import RTCSessionDescription
        from aiortc.sdp import candidate_from_sdp

        self.remote = msg.from_
        if msg.description is not None:
            await self.pc.setRemoteDescription(RTCSessionDescription(**msg.description))
            if msg.description["type"] == "offer":
                await self.pc.setLocalDescription(await self.pc.createAnswer())
                await self._send_description()
            return
        line = msg.candidate.get("candidate", "")
        if not line:
            await self.pc.addIceCandidate(None)
            return
        cand = candidate_from_sdp(line.split(":", 1)[1])
        cand.sdpMid, cand.sdpMLineIndex = msg.candidate.get("sdpMid"), msg.candidate.get("sdpMLineIndex")
        await self.pc.addIceCandidate(cand)

    async def pump(self) -> None:
        """Handle signals until the socket closes (run as a task)."""
        while True:
            msg = await self.client.expect("signal", timeout=3600)
            await self.handle(msg)

    async def wait_media(self, audio: int, video: int, timeout: float = 20.0) -> dict[str, int]:
        async with asyncio.timeout(timeout):
            while self.frames["audio"] < audio or self.frames["video"] < video:
                await asyncio.sleep(0.05)
        return dict(self.frames)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.pc.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)

