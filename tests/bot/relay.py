"""A UDP relay in front of one participant's media path, and a participant that uses it.

The relay has two faces on 127.0.0.1: `front` stands in for the bot (the participant's
packets arrive there) and `back` stands in for the participant (the bot's packets arrive
there). Both peers learn the other's address only from ICE candidates, so rewriting the
candidates they exchange through signaling (`RelayedParticipant`) puts every packet of
that link — STUN, DTLS, RTP, RTCP — through the relay. `pause()` drops everything both
ways: a network cut that the peers' state machines only notice from missing packets.
"""
from __future__ import annotations

import asyncio
import re
from typing import Any

from signaling import protocol as p
from tests.bot.conftest import Participant

_HOST = re.compile(r"127\.0\.0\.1 (\d+) typ")
Addr = tuple[str, int]


class _Face(asyncio.DatagramProtocol):
    def __init__(self, on_packet: Any) -> None:
        self.on_packet = on_packet
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Addr) -> None:
        self.on_packet(data, addr)


class UdpRelay:
    def __init__(self) -> None:
        self.front, self.back = _Face(self._from_participant), _Face(self._from_bot)
        self.bot_addr: Addr | None = None
        self.participant_addr: Addr | None = None
        self.paused = False
        self.forwarded = self.dropped = 0

    async def start(self) -> UdpRelay:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self.front, local_addr=("127.0.0.1", 0))
        await loop.create_datagram_endpoint(lambda: self.back, local_addr=("127.0.0.1", 0))
        return self

    def port(self, face: _Face) -> int:
        assert face.transport is not None
        return face.transport.get_extra_info("sockname")[1]

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False

    def close(self) -> None:
        for face in (self.front, self.back):
            if face.transport is not None:
                face.transport.close()

    def _from_participant(self, data: bytes, addr: Addr) -> None:
        self.participant_addr = addr
        self._forward(self.back, data, self.bot_addr)

    def _from_bot(self, data: bytes, addr: Addr) -> None:
        self.bot_addr = addr
        self._forward(self.front, data, self.participant_addr)

    def _forward(self, face: _Face, data: bytes, to: Addr | None) -> None:
        if self.paused or to is None or face.transport is None:
            self.dropped += 1
            return
        self.forwarded += 1
        face.transport.sendto(data, to)

    # ---- candidate rewriting ------------------------------------------------------------
    def bot_candidates(self, text: str) -> str:
        """The bot's candidates as the participant sees them: the front face."""
        def swap(m: re.Match) -> str:
            self.bot_addr = ("127.0.0.1", int(m.group(1)))
            return f"127.0.0.1 {self.port(self.front)} typ"
        return _HOST.sub(swap, text)

    def participant_candidates(self, text: str) -> str:
        """The participant's candidates as the bot sees them: the back face."""
        def swap(m: re.Match) -> str:
            self.participant_addr = ("127.0.0.1", int(m.group(1)))
            return f"127.0.0.1 {self.port(self.back)} typ"
        return _HOST.sub(swap, text)


def _rewritten(msg: p.Signal, rewrite: Any) -> p.Signal:
    if msg.description is not None:
        return msg.model_copy(update={"description": {**msg.description,
                                                      "sdp": rewrite(msg.description.get("sdp", ""))}})
    cand = dict(msg.candidate or {})
    if cand.get("candidate"):
        cand["candidate"] = rewrite(cand["candidate"])
    return msg.model_copy(update={"candidate": cand})


class RelayedParticipant(Participant):
    """A participant whose link with `remote` (the bot) runs through `relay`."""

    def __init__(self, base: Participant, relay: UdpRelay, remote: str) -> None:
        super().__init__(base.client, base.tracks)
        self.relay, self.remote = relay, remote
        send = self.client.send

        async def send_rewritten(msg: Any) -> None:
            if isinstance(msg, p.Signal) and msg.to == remote:
                msg = _rewritten(msg, relay.participant_candidates)
            await send(msg)

        self.client.send = send_rewritten  # type: ignore[method-assign]

    def incoming(self, msg: p.Signal) -> p.Signal:
        return _rewritten(msg, self.relay.bot_candidates) if msg.from_ == self.remote else msg
