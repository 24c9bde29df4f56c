"""Does a continuation blob continue its track's stream? (pure apart from reading the blob)

One `MediaRecorder.start(timeslice)` writes the header (EBML header + Tracks, or ftyp +
moov) only into its first blob; every later blob goes on where the previous one stopped.
What Chromium 156 does, measured (VP8/Opus WebM, timeslices of 1 ms to 5 s):
  - a blob ends right after the *first byte* of the element being written (0xA3 of a
    SimpleBlock, 0x1F of a Cluster), so the next one starts inside that element;
  - every flush starts a new Cluster a few frames later: with timeslices ≥ 250 ms each
    continuation held a Cluster within its first 6.2 KB (the lead: the rest of the cut
    block and of its Cluster);
  - the blob of `stop()` may hold no Cluster: just the rest of the Cluster in progress,
    ending on a block boundary (a 3.8 KB last blob of a 1-s timeslice recording); with
    timeslices below a frame interval blobs without a Cluster are common, and end right
    after an element's first byte.
  - fragmented MP4 continuations start with `moof` (whole `moof` + `mdat` fragments, then
    `mfra`).

The rule (WebM):
  1. the first Cluster (id, size, then a Timecode/Void/CRC child) must start within
     `MAX_LEAD` bytes; the lead before it cannot be checked without the previous blob;
  2. from it the blob is walked strictly (`ebml.read_clusters`): Clusters of known or
     unknown size, their children, blocks only of the stream's tracks; the blob may end
     inside an element (the next blob's lead);
  3. a blob without a Cluster (`stop()`, tiny timeslices) is accepted only if it is no
     longer than `MAX_FLUSH` and, from some offset on (before it: the cut element's tail),
     it is whole Cluster children holding at least one block of the stream's tracks, up to
     its end or into an element header cut by its end (a truncated blob ends mid-payload).
     A blob that is only the tail of one block and the next element's first byte (Chromium
     with a timeslice below a frame interval) has nothing to check and is refused; such a
     recorder's first blob is the first byte of the EBML header, refused as a header already.
MP4: a `moof` (with an `mfhd` first child) within `MAX_LEAD` bytes, from there only
fragment-level boxes, each `moof` followed by its `mdat`, every `traf` of a stream track;
the last box may be cut by the end of the blob.

A blob that starts like a whole file (EBML header; ftyp/moov) is no continuation either.
Anything else is `InvalidMedia` with code `not_a_continuation`. `tracks=None` (the header
chunk is not known yet, or was judged by ffprobe) skips the track check only.
"""
from __future__ import annotations

import io
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import BinaryIO

from core.errors import InvalidMedia, UnsupportedMedia
from ingest import ebml, isobmff

__all__ = ["MAX_FLUSH", "MAX_LEAD", "check_continuation", "first_cluster", "first_moof", "flush_start"]

MAX_LEAD = 4 << 20  # ≥ 600× the lead measured on Chromium; a 1080p keyframe is ~100–300 KB
MAX_FLUSH = 1 << 20  # a blob without a Cluster: ≥ 250× the measured 3.8 KB; bounds the resync scan
NOT_A_CONTINUATION = "not_a_continuation"
_CLUSTER_ID, _EBML_ID = ebml.CLUSTER.to_bytes(4, "big"), ebml.EBML.to_bytes(4, "big")
_BLOCKS = (ebml.SIMPLE_BLOCK, ebml.BLOCK_GROUP)
_TAIL_IDS = (ebml.CLUSTER_CHILDREN | ebml.SEGMENT_LEVEL) - {ebml.CLUSTER}  # may follow the cut element
_TAIL_START = re.compile(b"[" + b"".join(re.escape(bytes([i.to_bytes(4, "big").lstrip(b"\0")[0]]))
                                         for i in _TAIL_IDS) + b"]")
_FRAGMENT_BOXES = {b"moof", b"mdat", b"free", b"skip", b"styp", b"sidx", b"prft", b"emsg", b"mfra"}


def reject(msg: str) -> InvalidMedia:
    return InvalidMedia(f"not a continuation of this track's stream: {msg}", code=NOT_A_CONTINUATION)


def check_continuation(source: str | bytes, tracks: set[int] | None, container: str) -> None:
    """Raise `InvalidMedia` (`not_a_continuation`) unless the blob at `source` (a path, or the
    bytes) continues a stream with these track numbers (see the module docstring)."""
    checks: dict[str, Callable[[BinaryIO, int, set[int] | None], None]] = {"webm": _webm, "mp4": _mp4}
    if container not in checks:
        raise UnsupportedMedia(f"continuation blobs of {container} are not supported", code="unsupported_continuation")
    try:
        with _opened(source) as (f, size):
            checks[container](f, size, tracks)
    except InvalidMedia as exc:  # the walkers' corrupt/truncated verdicts, said as what they mean here
        if exc.code == NOT_A_CONTINUATION:
            raise
        raise reject(exc.message) from None


@contextmanager
def _opened(source: str | bytes) -> Iterator[tuple[BinaryIO, int]]:
    if isinstance(source, bytes):
        yield io.BytesIO(source), len(source)
        return
    with open(source, "rb", buffering=1 << 16) as f:
        yield f, os.fstat(f.fileno()).st_size


# ---------------------------------------------------------------- WebM

def first_cluster(buf: bytes, limit: int = MAX_LEAD) -> int | None:
    """Offset of the first Cluster starting before `limit`: its id and size, then a Timecode
    (or Void/CRC-32) child or the end of `buf` (rules out the id inside block payloads)."""
    at = buf.find(_CLUSTER_ID)
    while 0 <= at < limit:
        try:
            head = ebml.element_header_or_cut(buf, at)
            child = head and ebml.element_header_or_cut(buf, at + head[2])
        except InvalidMedia:
            head = child = None
        if head is not None and (child is None or child[0] in {ebml.TIMECODE} | ebml.GLOBAL):
            return at
        at = buf.find(_CLUSTER_ID, at + 1)
    return None


def _webm(f: BinaryIO, size: int, tracks: set[int] | None) -> None:
    lead = f.read(MAX_LEAD + 32)
    if lead.startswith(_EBML_ID):
        raise reject("it starts with an EBML header (a whole file: upload it without X-Chunk-Continuation)")
    at = first_cluster(lead)
    if at is None:
        if size > MAX_FLUSH or flush_start(lead, tracks) is None:
            raise reject(f"no Cluster within its first {MAX_LEAD} bytes, and it is not the end of one "
                         f"(whole blocks of the stream's tracks, at most {MAX_FLUSH} bytes)")
        return
    mk = ebml.read_clusters(f, size, at)
    unknown = sorted(set(mk.tails) - tracks) if tracks is not None else []
    if unknown:
        raise reject(f"blocks of track(s) {unknown}; the stream has {sorted(tracks or ())}")


def flush_start(buf: bytes, tracks: set[int] | None) -> int | None:
    """Smallest offset from which `buf` is whole Cluster children (at least one block of
    `tracks`) up to its end, the last possibly an element header cut by the end; else None.
    Chains from different offsets merge, so each offset is parsed at most once."""
    memo: dict[int, int] = {}
    for m in _TAIL_START.finditer(buf):
        if _blocks_to_end(buf, m.start(), tracks, memo) > 0:
            return m.start()
    return None


def _blocks_to_end(buf: bytes, pos: int, tracks: set[int] | None, memo: dict[int, int]) -> int:
    """Blocks in the chain of whole elements from `pos` to the end of `buf`, -1 if there is none."""
    path: list[tuple[int, int]] = []
    while pos not in memo and pos < len(buf):
        step = _tail_element(buf, pos, tracks)
        if step is None:
            memo[pos] = -1
            break
        path.append((pos, step[1]))
        pos = step[0]
    result = memo.get(pos, 0)
    for at, blocks in reversed(path):
        result = result + blocks if result >= 0 else -1
        memo[at] = result
    return result


def _tail_element(buf: bytes, pos: int, tracks: set[int] | None) -> tuple[int, int] | None:
    """(where the next element starts, blocks in this one) for a whole element that may end a
    Cluster; (len(buf), 0) for a header cut by the end of `buf`; None for anything else."""
    try:
        head = ebml.element_header_or_cut(buf, pos)
    except InvalidMedia:
        return None
    if head is None:
        return len(buf), 0
    eid, size, n = head
    start, end = pos + n, pos + n + (size or 0)
    if eid not in _TAIL_IDS or size is None or end > len(buf):
        return None
    if eid == ebml.BLOCK_GROUP:
        start, end = _group_block(buf, start, end)
    if eid in _BLOCKS and not _block_of(buf[start:min(end, start + 11)], end - start, tracks):
        return None
    return pos + n + size, int(eid in _BLOCKS)


def _group_block(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """(start, end) of the Block in the BlockGroup payload buf[pos:end]; (0, 0) if it has none."""
    while pos < end:
        try:
            head = ebml.element_header_or_cut(buf, pos)
        except InvalidMedia:
            return 0, 0
        if head is None or head[1] is None or pos + head[2] + head[1] > end:
            return 0, 0
        if head[0] == ebml.BLOCK:
            return pos + head[2], pos + head[2] + head[1]
        pos += head[2] + head[1]
    return 0, 0


def _block_of(head: bytes, size: int, tracks: set[int] | None) -> bool:
    """A block (its first bytes and its size) with a whole header of one of `tracks`: track
    number, 16-bit timecode, flags."""
    n = 9 - head[0].bit_length() if head else 9
    if n > 8 or size < n + 3:
        return False
    track = int.from_bytes(head[:n], "big") & ((1 << (7 * n)) - 1)
    return track > 0 and (tracks is None or track in tracks)


# ---------------------------------------------------------------- fragmented MP4

def first_moof(buf: bytes, limit: int = MAX_LEAD) -> int | None:
    """Offset of the first `moof` box starting before `limit` (sane size, `mfhd` first child)."""
    at = buf.find(b"moof", 4)
    while 4 <= at < limit + 4:
        if int.from_bytes(buf[at - 4:at], "big") >= 16 and buf[at + 8:at + 12] == b"mfhd":
            return at - 4
        at = buf.find(b"moof", at + 1)
    return None


def _mp4(f: BinaryIO, size: int, tracks: set[int] | None) -> None:
    lead = f.read(MAX_LEAD + 16)
    if lead[4:8] in (b"ftyp", b"moov"):
        raise reject(f"it starts with a {lead[4:8].decode()} box (a whole file: upload it without "
                     "X-Chunk-Continuation)")
    pos = first_moof(lead)
    if pos is None:
        raise reject(f"no moof box in its first {MAX_LEAD} bytes")
    moofs, after_moof = 0, False
    while pos < size:
        f.seek(pos)
        head = f.read(16)
        if len(head) < 8 or (head[:4] == b"\0\0\0\1" and len(head) < 16):
            break  # a box header cut by the end of the blob
        kind, data, end = isobmff.box_header(head, 0, size - pos)
        data, end = pos + data, pos + end
        if kind not in _FRAGMENT_BOXES or (after_moof and kind != b"mdat"):
            raise reject(f"box {kind!r} where fragments (moof + mdat) go on")
        if end > size:
            break  # the last box is cut by the end of the blob (the next blob's lead)
        if kind == b"moof":
            if end - data > isobmff.MAX_META_BYTES:
                raise reject(f"a moof box of {end - data} bytes")
            f.seek(data)
            _moof(f.read(end - data), tracks)
            moofs += 1
        after_moof, pos = kind == b"moof", end
    if not moofs:
        raise reject("no whole moof box")


def _moof(buf: bytes, tracks: set[int] | None) -> None:
    for kind, data, end in isobmff.boxes(buf, 0, len(buf)):
        if kind != b"traf":
            continue
        tfhd = [isobmff.parse_tfhd(buf, d, e) for k, d, e in isobmff.boxes(buf, data, end) if k == b"tfhd"]
        if len(tfhd) != 1:
            raise reject("a traf without exactly one tfhd")
        if tracks is not None and tfhd[0][1] not in tracks:
            raise reject(f"a fragment of track {tfhd[0][1]}; the stream has {sorted(tracks)}")
