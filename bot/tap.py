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
frame timestamps to 0), and sending a PLI to ask the sender for a key frame.

`install()` returns False when these internals are not what we expect (another aiortc
version); the caller then records decoded frames instead (`TranscodeWriter`).
"""
from __future__ import annotations

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
