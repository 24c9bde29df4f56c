"""What the recorder needs to know about a VP8 frame or an Opus packet, read from its bytes.

Pure functions over `bytes` (no PyAV): the segmenter must know keyframes (a segment may
only start on one, or it is undecodable until the next), the picture size (the WebM
muxer writes it in the track header) and each Opus packet's length (its block duration).
"""
from __future__ import annotations

VP8_START_CODE = b"\x9d\x01\x2a"
# Opus frame sizes in 48 kHz samples, by TOC config (RFC 6716 §3.1):
# 0-11 SILK 10/20/40/60 ms, 12-15 hybrid 10/20 ms, 16-31 CELT 2.5/5/10/20 ms.
_OPUS_FRAME = ([480, 960, 1920, 2880] * 3) + ([480, 960] * 2) + ([120, 240, 480, 960] * 4)


def vp8_keyframe(frame: bytes) -> bool:
    """True for a VP8 key frame: bit 0 of the frame tag is 0 (RFC 6386 §9.1)."""
    return len(frame) >= 10 and not frame[0] & 1 and frame[3:6] == VP8_START_CODE


def vp8_size(frame: bytes) -> tuple[int, int] | None:
    """`(width, height)` from a key frame header, else None (14 bits each, scale bits dropped)."""
    if not vp8_keyframe(frame):
        return None
    width = (frame[6] | frame[7] << 8) & 0x3FFF
    height = (frame[8] | frame[9] << 8) & 0x3FFF
    return (width, height) if width and height else None


def opus_samples(packet: bytes) -> int:
    """Samples (at 48 kHz) one Opus packet decodes to; 0 if it is malformed."""
    if not packet:
        return 0
    toc = packet[0]
    per_frame = _OPUS_FRAME[toc >> 3]
    code = toc & 0x3
    if code == 0:
        frames = 1
    elif code in (1, 2):
        frames = 2
    else:
        if len(packet) < 2:
            return 0
        frames = packet[1] & 0x3F
    total = per_frame * frames
    return total if total <= 5760 else 0  # at most 120 ms per packet
