"""Simulated call participants for `recorder demo`: real aiortc peers on our signaling.

Each participant joins a room with a join token over the WebSocket signaling, sends its
camera+mic from a media file (aiortc `MediaPlayer`: espeak speech + a test pattern with
its name and a clock) and answers every offer — in particular the hidden recording bot's,
which offers to each participant and records what it receives. Answers carry their ICE
candidates inline (non-trickle), which our relay passes through untouched.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from signaling import protocol as p

OPEN_TIMEOUT_S = 15.0


def loopback_ice() -> None:
    """Gather only 127.0.0.1 host candidates (one machine, no network needed; aioice skips it by default)."""
    import aioice.ice

    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]  # type: ignore[assignment]


class CallParticipant:
    """One participant: a signaling socket, a media file to send, one peer per remote offerer."""

    def __init__(self, ws_url: str, media: Path, name: str) -> None:
        self.ws_url, self.media, self.name = ws_url, media, name
        self.ws: ClientConnection | None = None
        self.peers: dict[str, Any] = {}
        self.players: list[Any] = []
        self.ended = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def join(self) -> None:
        self.ws = await connect(self.ws_url, open_timeout=OPEN_TIMEOUT_S, max_size=2**22, ping_interval=None)
        await self.ws.send(p.Join(instance_id=f"demo-{self.name}").dumps())
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.ws is not None
        with contextlib.suppress(Exception):
            async for raw in self.ws:
                msg = p.parse_server(raw)
                if isinstance(msg, p.Ping):
                    await self.ws.send(p.Pong(ts=msg.ts).dumps())
                elif isinstance(msg, p.Signal):
                    await self._on_signal(msg)
                elif isinstance(msg, (p.End, p.Error)):
                    self.ended.set()
        self.ended.set()

    async def _on_signal(self, msg: p.Signal) -> None:
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
        from aiortc.contrib.media import MediaPlayer

        desc = msg.description
        if not desc or desc.get("type") != "offer":
            return  # candidates arrive inside the offer's SDP or are not needed on loopback
        old = self.peers.pop(msg.from_, None)
        if old is not None:
            await old.close()
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        player = MediaPlayer(str(self.media), loop=True)  # the clip plays for as long as the call lasts
        self.players.append(player)
        for track in (player.audio, player.video):
            if track is not None:
                pc.addTrack(track)
        self.peers[msg.from_] = pc
        await pc.setRemoteDescription(RTCSessionDescription(sdp=desc["sdp"], type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        answer = {"type": pc.localDescription.type, "sdp": pc.localDescription.sdp}
        assert self.ws is not None
        await self.ws.send(p.Signal(to=msg.from_, description=answer).dumps())
        with contextlib.suppress(Exception):
            await self.ws.send(p.Report(phase="ice_connected").dumps())

    async def leave(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.send(json.dumps({"type": "leave"}))
                await self.ws.close()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for pc in self.peers.values():
            with contextlib.suppress(Exception):
                await pc.close()
        for player in self.players:
            for track in (player.audio, player.video):
                if track is not None:
                    track.stop()
