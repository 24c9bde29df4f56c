"""Pure byte-level helpers for timeslice continuation blobs (WebM and fragmented MP4).

A `MediaRecorder.start(timeslice)` recording arrives as one header blob (EBML header +
Tracks, or ftyp + moov) followed by continuation blobs whose cuts fall anywhere, even
inside a block. Joined in order they are one valid file. To read only a late part of
the recording we keep the header's *init segment* and resume at the first complete
cluster (WebM) or fragment (MP4) of a later blob: cluster/fragment timestamps are
absolute, so the resumed file keeps the recording's own clock.
"""
from __future__ import annotations

__all__ = ["init_segment", "first_sync_offset"]

_CLUSTER = b"\x1f\x43\xb6\x75"
_TIMESTAMP = 0xE7


def _vint_len(first: int) -> int:
    for n in range(8):
        if first & (0x80 >> n):
            return n + 1
    return 0


def _is_cluster(data: bytes, at: int) -> bool:
    """A Cluster ID followed by a valid size and its Timestamp child (rules out lookalikes)."""
    size_at = at + 4
    if size_at >= len(data):
        return False
    n = _vint_len(data[size_at])
    return n > 0 and size_at + n < len(data) and data[size_at + n] == _TIMESTAMP


def _is_moof(data: bytes, at: int) -> bool:
    """`moof` box type at `at` with a sane size and an `mfhd` first child."""
    box = at - 4
    if box < 0 or at + 8 > len(data):
        return False
    size = int.from_bytes(data[box:at], "big")
    return size >= 16 and data[at + 8:at + 12] == b"mfhd"


def first_sync_offset(data: bytes, container: str, start: int = 0) -> int | None:
    """Byte offset of the first complete cluster (webm) / fragment (mp4) at or after `start`."""
    if container == "webm":
        at = data.find(_CLUSTER, start)
        while at != -1 and not _is_cluster(data, at):
            at = data.find(_CLUSTER, at + 1)
        return None if at == -1 else at
    if container == "mp4":
        at = data.find(b"moof", start + 4)
        while at != -1 and not _is_moof(data, at):
            at = data.find(b"moof", at + 1)
        return None if at == -1 else at - 4
    raise ValueError(f"continuations are supported for webm and mp4, not {container!r}")


def init_segment(header_blob: bytes, container: str) -> bytes:
    """The header's bytes before its first cluster/fragment (all of it if it has none)."""
    at = first_sync_offset(header_blob, container)
    return header_blob if at is None else header_blob[:at]
