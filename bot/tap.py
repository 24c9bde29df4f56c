"""The encoded-frame tap: the ONE place that touches aiortc internals (aiortc 1.16).

aiortc has no public API for the encoded frames it receives. `RTCRtpReceiver` reassembles
RTP packets into whole frames in its jitter buffer and puts `(codec, JitterFrame)` on a
`queue.Queue` (`_RTCRtpReceiver__decoder_queue`) read by its decoder thread. Replacing
that queue before the receiver starts lets us take VP8 frames and Opus packets as they
are, so the recorder remuxes them instead of decoding and re-encoding (~20× less CPU).
Other codecs (and the end-of-stream `None`) still reach the decoder thread, so the
track's `recv()` yields decoded frames and ends as usual: that is the fallback path.

Also here, because they are private too: RTCP sender reports (for cross-track sync; we
wrap the receiver's `_handle_rtcp_packet`), the RTP timestamp origin (aiortc rebases
frame timestamps to 0), sending a PLI to ask the sender for a key frame, the media SSRC's
receive statistics (`inbound_counters`), a STUN round trip on the ICE pair (`ice_rtt_ms`)
and skipping packets the video jitter buffer waits for in vain (`skip_lost`).

`install()` returns False when these internals are not what we expect (another aiortc
version); the caller then records decoded frames instead (`TranscodeWriter`).
"""
from __future__ import annotations

import asyncio
import queue
import time
from collections.abc import Callable
from typing import Any, Protocol

from aiortc.rtp import RtcpSrPacket

from core.logging import get_logger

log = get_logger("bot.tap")
TAPPED_CODECS = frozenset({"VP8", "opus"})
_QUEUE = "_RTCRtpReceiver__decoder_queue"
_MAPPER = "_RTCRtpReceiver__timestamp_mapper"
_RTX = "_RTCRtpReceiver__rtx_ssrc"  # retransmission SSRC → media SSRC (their SRs are skipped)
_STREAMS = "_RTCRtpReceiver__remote_streams"  # SSRC → StreamStatistics (what getStats() reports)
_JITTER = "_RTCRtpReceiver__jitter_buffer"


class FrameSink(Protocol):
    def encoded(self, codec: str, ts: int, data: bytes, arrival_s: float) -> None: ...
    def origin(self, raw_ts: int) -> None: ...
    def sender_report(self, rtp_raw: int, ntp: int, arrival_s: float) -> None: ...


class _TapQueue(queue.Queue):
    """Stands in for the decoder queue: tapped codecs go to the sink, the rest to the decoder."""

    def __init__(self, receiver: Any, sink: FrameSink) -> None:
        super().__init__()
        self.receiver, self.sink, self.seen_origin = receiver, sink, False

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is not None:
            codec, frame = item
            if codec.name in TAPPED_CODECS:
                if not self.seen_origin:
                    self.seen_origin = True
                    mapper = getattr(self.receiver, _MAPPER, None)
                    origin = getattr(mapper, "_origin", None)
                    if isinstance(origin, int):
                        self.sink.origin(origin % (1 << 32))
                self.sink.encoded(codec.name, frame.timestamp, frame.data, time.time())
                return
        super().put(item, block, timeout)


def install(receiver: Any, sink: FrameSink) -> bool:
    """Route this (not yet started) receiver's encoded frames and SRs to `sink`."""
    if not isinstance(getattr(receiver, _QUEUE, None), queue.Queue) or getattr(receiver, "_RTCRtpReceiver__started",
                                                                               True):
        log.warning("encoded_tap_unavailable", reason="receiver internals differ or receiver already started")
        return False
    if not hasattr(receiver, "_handle_rtcp_packet") or not hasattr(receiver, _MAPPER):
        log.warning("encoded_tap_unavailable", reason="receiver has no RTCP handler / timestamp mapper")
        return False
    setattr(receiver, _QUEUE, _TapQueue(receiver, sink))
    original: Callable[[Any], Any] = receiver._handle_rtcp_packet

    async def handle_rtcp(packet: Any) -> None:
        if isinstance(packet, RtcpSrPacket) and packet.ssrc not in getattr(receiver, _RTX, {}):
            info = packet.sender_info
            sink.sender_report(info.rtp_timestamp, info.ntp_timestamp, time.time())
        await original(packet)

    receiver._handle_rtcp_packet = handle_rtcp
    return True


async def request_keyframe(receiver: Any) -> bool:
    """Send an RTCP PLI for the receiver's active SSRC(s); False if none is known yet."""
    sources = receiver.getSynchronizationSources()
    send = getattr(receiver, "_send_rtcp_pli", None)
    if not sources or send is None:
        return False
    for source in sources:
        await send(source.source)
    return True


async def inbound_counters(receiver: Any) -> tuple[int, int, int, int] | None:
    """`(packets received, packets lost, jitter in RTP clock units, clock rate)` of the media SSRC.

    The numbers of aiortc's `RTCInboundRtpStreamStats`, read where `getStats()` reads them:
    its report keeps one inbound entry per receiver, so once retransmissions (RTX) arrive the
    RTX stream's small counts can replace the media stream's. Falls back to `getStats()`."""
    streams, rtx = getattr(receiver, _STREAMS, None), getattr(receiver, _RTX, None)
    if isinstance(streams, dict) and isinstance(rtx, dict):
        media = [st for ssrc, st in list(streams.items()) if ssrc not in rtx]
        if not media:
            return 0, 0, 0, 0
        st = max(media, key=lambda x: x.packets_received)
        return st.packets_received, st.packets_lost, st.jitter, getattr(st, "_clockrate", 0)
    try:
        report = await receiver.getStats()
    except Exception:  # noqa: BLE001 - a closed receiver has no stats
        return None
    inbound = [v for v in report.values() if getattr(v, "type", "") == "inbound-rtp"]
    if not inbound:
        return 0, 0, 0, 0
    return inbound[0].packetsReceived, inbound[0].packetsLost, inbound[0].jitter, 0


class _Probe:
    """Stands in for an aioice STUN transaction: notes when the answer came."""

    def __init__(self, future: asyncio.Future) -> None:
        self.future = future

    def response_received(self, message: Any, addr: Any) -> None:
        if not self.future.done():
            self.future.set_result(time.perf_counter())


async def ice_rtt_ms(pc: Any, timeout_s: float = 1.0) -> float | None:
    """Round trip of one STUN binding request on the nominated ICE pair, in ms.

    What browsers report as the candidate pair's `currentRoundTripTime`. aiortc has no RTT
    for a receive-only peer (RTCP receiver reports give the round trip to the *sender*), so
    the bot sends a consent-style check (RFC 7675) itself. None: no pair yet, or no answer
    within `timeout_s` (a path that is down)."""
    try:
        conn = pc.getTransceivers()[0].receiver.transport.transport._connection
        pair = next(iter(conn._nominated.values()))
        request = conn.build_request(pair, nominate=False)
        request.add_message_integrity(conn.remote_password.encode("utf8"))
        protocol = pair.protocol
    except (IndexError, StopIteration, AttributeError, TypeError) as exc:
        log.debug("ice_rtt_unavailable", reason=repr(exc))
        return None
    future = asyncio.get_running_loop().create_future()
    protocol.transactions[request.transaction_id] = _Probe(future)
    try:
        sent = time.perf_counter()
        protocol.send_stun(request, pair.remote_addr)
        return round((await asyncio.wait_for(future, timeout_s) - sent) * 1000, 2)
    except (TimeoutError, OSError):
        return None
    finally:
        protocol.transactions.pop(request.transaction_id, None)


async def restart_ice(pc: Any) -> bool:
    """Restart ICE on the same peer connection where the library can (aiortc 1.16 cannot:
    its ICE credentials are fixed per connection); False means the caller must wait for the
    next rung (a new peer connection)."""
    restart = getattr(pc, "restartIce", None)
    if restart is None:
        return False
    result = restart()
    if asyncio.iscoroutine(result):
        await result
    return True


def skip_lost(receiver: Any) -> int:
    """Skip the first hole in the receiver's jitter buffer (and the frame stuck before it);
    returns how many missing packets were skipped.

    aiortc's jitter buffer releases a frame only once the first packet of the next one is in,
    in sequence order: after a loss that NACKs cannot repair (a network cut longer than the
    sender's retransmission history) it holds every later frame until the hole is `capacity`
    (512 for video) packets behind — seconds of media. Skipping the hole lets the next frames
    out (the recorder waits for a key frame, which the caller asks for)."""
    jb = getattr(receiver, _JITTER, None)
    packets, origin = getattr(jb, "_packets", None), getattr(jb, "_origin", None)
    if not isinstance(packets, list) or origin is None or not hasattr(jb, "remove"):
        return 0
    capacity = len(packets)

    def present(i: int) -> bool:
        return packets[(origin + i) % capacity] is not None

    head = next((i for i in range(capacity) if not present(i)), capacity)
    after = next((i for i in range(head, capacity) if present(i)), capacity)
    if after == capacity:
        return 0
    jb.remove(after)
    return after - head
