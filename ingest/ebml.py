"""Structural check of a WebM/Matroska file: walk EBML element headers, seek over payloads.

Reads only element headers, the small Info/Tracks values and the first bytes of each
block (track number, timecode, flags, Opus TOC) through a 256 KiB window over the file;
larger payloads are skipped with a seek. A 2 MB 30-s chunk takes a few milliseconds (the
usual SimpleBlock has a fast path) and memory stays flat.

What it decides (raising `InvalidMedia`/`UnsupportedMedia`):
  - EBML header with DocType webm/matroska, then a Segment;
  - a size that runs past the end of the file → `truncated_media`; past its parent → `corrupt_media`;
  - malformed ids/sizes, an element not allowed in an unknown-size parent, blocks whose track
    number is not in Tracks → `corrupt_media`.
A live recorder (Chromium/Firefox MediaRecorder) writes unknown-size Segment and Clusters and
the first `start(timeslice)` blob ends inside a block: in an unknown-size Segment a Cluster
cut by the end of the file is accepted (`cut_tail`), the media ends at the last whole block.
Later blobs have no header: `read_clusters` walks one from its first Cluster the same way
(`ingest.continuation` decides where that is and what the blob may hold before it).

What it does not model raises `Undecided` (the caller asks ffprobe): EBMLMaxIDLength > 4 or
EBMLMaxSizeLength > 8, content encodings (compression/encryption) on a track, or a second EBML
document after a known-size Segment (a chained file).
"""
from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from typing import BinaryIO

from core.errors import InvalidMedia, UnsupportedMedia
from ingest.matroska import TRACK_TYPES, BlockTail, Matroska, TrackInfo

EBML, SEGMENT, CLUSTER = 0x1A45DFA3, 0x18538067, 0x1F43B675
INFO, TRACKS, TRACK_ENTRY = 0x1549A966, 0x1654AE6B, 0xAE
SEGMENT_LEVEL = {0x114D9B74, INFO, TRACKS, CLUSTER, 0x1C53BB6B, 0x1043A770, 0x1254C367, 0x1941A469}
GLOBAL = {0xEC, 0xBF}  # Void, CRC-32: allowed anywhere
TIMECODE, SIMPLE_BLOCK, BLOCK_GROUP, BLOCK, BLOCK_DURATION = 0xE7, 0xA3, 0xA0, 0xA1, 0x9B
CLUSTER_CHILDREN = {TIMECODE, SIMPLE_BLOCK, BLOCK_GROUP, 0xA7, 0xAB, 0x5854, 0xAF} | GLOBAL
DOC_TYPES = ("webm", "matroska")
WINDOW = 1 << 18  # bytes read at a time; payloads beyond it are skipped with a seek
MAX_VALUE_BYTES = 1 << 16  # strings/numbers we read are tiny; anything larger is not a value


class Undecided(Exception):
    """Legal Matroska this walker does not model: let ffprobe judge it."""


class _Short(Exception):
    """The file ended inside an element header."""


def truncated(msg: str) -> InvalidMedia:
    return InvalidMedia(f"truncated: {msg}", code="truncated_media")


def corrupt(msg: str) -> InvalidMedia:
    return InvalidMedia(f"corrupt: {msg}", code="corrupt_media")


# ---------------------------------------------------------------- pure decoding

_VINT_LEN = bytes([9] + [9 - b.bit_length() for b in range(1, 256)])  # length by first byte
_MASK = [(1 << (7 * n)) - 1 for n in range(10)]  # VINT_DATA bits by length


def vint(buf: bytes, i: int) -> tuple[int, int]:
    """EBML variable-size integer at buf[i]: (raw value with its length marker, length)."""
    try:
        n = _VINT_LEN[buf[i]]
    except IndexError:
        raise _Short from None
    if n > 8:
        raise corrupt("variable-size integer longer than 8 bytes")
    if i + n > len(buf):
        raise _Short
    return int.from_bytes(buf[i:i + n], "big"), n


def element_header(buf: bytes, i: int = 0) -> tuple[int, int | None, int]:
    """(id, payload size or None when unknown, header length) of the element at buf[i]."""
    try:
        n = _VINT_LEN[buf[i]]
        if n > 4:
            raise corrupt(f"element id of {n} bytes")
        m = _VINT_LEN[buf[i + n]]
    except IndexError:
        raise _Short from None
    if m > 8:
        raise corrupt("variable-size integer longer than 8 bytes")
    if i + n + m > len(buf):
        raise _Short
    eid = int.from_bytes(buf[i:i + n], "big")
    if eid == (1 << (8 * n)) - 1 or eid == 1 << (7 * n):
        raise corrupt(f"reserved element id {eid:#x}")  # all-ones / all-zeros VINT_DATA (RFC 8794 §5)
    size = int.from_bytes(buf[i + n:i + n + m], "big") & _MASK[m]
    return eid, (None if size == _MASK[m] else size), n + m


def element_header_or_cut(buf: bytes, i: int = 0) -> tuple[int, int | None, int] | None:
    """`element_header`, or None when `buf` ends inside the header (a blob cut there)."""
    try:
        return element_header(buf, i)
    except _Short:
        return None


def uint(data: bytes) -> int:
    return int.from_bytes(data, "big")


def float_value(data: bytes) -> float:
    if len(data) == 4:
        return struct.unpack(">f", data)[0]
    if len(data) == 8:
        return struct.unpack(">d", data)[0]
    if not data:
        return 0.0
    raise corrupt(f"float element of {len(data)} bytes")


# ---------------------------------------------------------------- the walk (thin I/O)

class _Eof(Exception):
    """An element needs bytes past the end of the file."""


class _Walker:
    """Walks one file top-down; each method handles one element kind."""

    def __init__(self, f: BinaryIO, size: int) -> None:
        self.f, self.size, self.mk = f, size, Matroska()
        self.window, self.base = b"", 0  # WINDOW bytes of the file from `base`

    def at(self, pos: int, need: int) -> int:
        """Offset of `pos` in the window, refilled so that `need` bytes (or the file's rest) follow."""
        off = pos - self.base
        if off < 0 or (off + need > len(self.window) and self.base + len(self.window) < self.size):
            self.f.seek(pos)
            self.window, self.base, off = self.f.read(max(WINDOW, need)), pos, 0
        return off

    def read(self, pos: int, n: int) -> bytes:
        off = self.at(pos, n)
        return self.window[off:off + n]

    def fits(self, need: int, end: int, what: str) -> None:
        """An element must end inside its parent; a parent bounded by the file end means truncation."""
        if need > end:
            if end >= self.size:
                raise _Eof(what)
            raise corrupt(f"{what} runs past its parent element")

    def header(self, pos: int, end: int) -> tuple[int, int | None, int]:
        """(id, size or None, payload start) of the element at `pos` (callers check it fits `end`)."""
        off = self.at(pos, 12)  # before reading self.window: at() may refill it
        try:
            eid, size, n = element_header(self.window, off)
        except _Short:
            self.fits(end + 1, end, "element header")
            raise  # pragma: no cover - fits() always raises here
        return eid, size, pos + n

    def value(self, data: int, size: int) -> bytes:
        if size > MAX_VALUE_BYTES:
            raise corrupt(f"a value element of {size} bytes")
        return self.read(data, size)

    def known_children(self, start: int, end: int) -> Iterator[tuple[int, int, int]]:
        """(id, payload start, size) of each child of a known-size master element."""
        pos = start
        while pos < end:
            eid, size, data = self.header(pos, end)
            if size is None:
                raise corrupt(f"element {eid:#x} has an unknown size (only Segment and Cluster may)")
            self.fits(data + size, end, f"element {eid:#x}")
            yield eid, data, size
            pos = data + size

    # -- top level -------------------------------------------------------------
    def walk(self) -> Matroska:
        try:
            eid, size, data = self.header(0, self.size)
            if eid != EBML or size is None:
                raise corrupt("no EBML header")
            self.fits(data + size, self.size, "EBML header")
            self.ebml_header(data, data + size)
            self.segment_at(data + size)
        except _Eof as exc:
            raise truncated(f"{exc} is cut off by the end of the file") from None
        return self.mk

    def ebml_header(self, start: int, end: int) -> None:
        for eid, data, size in self.known_children(start, end):
            if eid == 0x4282:
                self.mk.doc_type = self.value(data, size).rstrip(b"\0").decode("ascii", "replace")
            elif (eid == 0x42F2 and uint(self.value(data, size)) > 4) or \
                    (eid == 0x42F3 and uint(self.value(data, size)) > 8):
                raise Undecided("EBML ids/sizes longer than Matroska's 4/8 bytes")
        if self.mk.doc_type not in DOC_TYPES:
            raise UnsupportedMedia(f"EBML DocType is {self.mk.doc_type!r}, not webm/matroska",
                                   code="media_type_mismatch")

    def segment_at(self, pos: int) -> None:
        eid, size, data = self.header(pos, self.size)
        while eid == 0xEC and size is not None:  # Void before the Segment
            pos = data + size
            eid, size, data = self.header(pos, self.size)
        if eid != SEGMENT:
            raise corrupt(f"expected a Segment after the EBML header, found element {eid:#x}")
        if size is None:
            self.mk.live = True
            self.segment(data, self.size)
            return
        if data + size > self.size:
            raise truncated(f"Segment declares {data + size} bytes, the file has {self.size}")
        self.segment(data, data + size)
        self.trailer(data + size)

    def trailer(self, pos: int) -> None:
        """After a known-size Segment only Void may follow; another EBML header is a chained file."""
        while pos < self.size:
            eid, size, data = self.header(pos, self.size)
            if eid == EBML:
                raise Undecided("a second EBML document after the Segment (chained file)")
            if eid != 0xEC or size is None:
                raise corrupt(f"element {eid:#x} after the end of the Segment")
            self.fits(data + size, self.size, "Void")
            pos = data + size

    def segment(self, start: int, end: int) -> None:
        pos = start
        while pos < end:
            try:
                eid, size, data = self.header(pos, end)
                if eid == CLUSTER:
                    pos = self.cluster(data, size, end)
                    continue
            except _Eof:
                if self.mk.live and self.mk.tracks:  # a live blob cut inside its last Cluster
                    self.mk.cut_tail = True
                    return
                raise
            if size is None:
                raise corrupt(f"element {eid:#x} has an unknown size (only Segment and Cluster may)")
            self.fits(data + size, end, f"element {eid:#x}")
            if eid == INFO:
                self.info(data, data + size)
            elif eid == TRACKS:
                self.tracks(data, data + size)
            elif eid not in SEGMENT_LEVEL | GLOBAL and self.mk.live:
                raise corrupt(f"element {eid:#x} is not allowed in an unknown-size Segment")
            pos = data + size

    # -- header elements ---------------------------------------------------------
    def info(self, start: int, end: int) -> None:
        duration = None
        for eid, data, size in self.known_children(start, end):
            if eid == 0x2AD7B1:
                self.mk.timecode_scale = uint(self.value(data, size))
            elif eid == 0x4489:
                duration = float_value(self.value(data, size))
        if self.mk.timecode_scale <= 0:
            raise corrupt("TimecodeScale is 0")
        if duration is not None:
            if not 0 <= duration < 1e15:
                raise corrupt(f"Duration {duration!r}")
            self.mk.duration_s = duration * self.mk.timecode_scale / 1e9 or None

    def tracks(self, start: int, end: int) -> None:
        for eid, data, size in self.known_children(start, end):
            if eid == TRACK_ENTRY:
                track = self.track_entry(data, data + size)
                if track.number <= 0 or track.number in self.mk.tracks:
                    raise corrupt(f"TrackNumber {track.number} missing or repeated")
                self.mk.tracks[track.number] = track

    def track_entry(self, start: int, end: int) -> TrackInfo:
        t = TrackInfo(number=0, kind=None)
        for eid, data, size in self.known_children(start, end):
            if eid == 0xD7:
                t.number = uint(self.value(data, size))
            elif eid == 0x83:
                t.kind = TRACK_TYPES.get(uint(self.value(data, size)))
            elif eid == 0x86:
                t.codec_id = self.value(data, size).rstrip(b"\0").decode("ascii", "replace")
            elif eid == 0x23E383:
                t.default_ns = uint(self.value(data, size)) or None
            elif eid == 0x6D80:
                raise Undecided("track with content encodings (compression/encryption)")
            elif eid in (0xE0, 0xE1):
                self.track_format(t, data, data + size)
        return t

    def track_format(self, t: TrackInfo, start: int, end: int) -> None:
        for eid, data, size in self.known_children(start, end):
            if eid == 0xB0:
                t.width = uint(self.value(data, size))
            elif eid == 0xBA:
                t.height = uint(self.value(data, size))
            elif eid == 0xB5:
                t.sample_rate = float_value(self.value(data, size))
            elif eid == 0x9F:
                t.channels = uint(self.value(data, size))

    # -- clusters and blocks -----------------------------------------------------
    def cluster(self, start: int, size: int | None, end: int) -> int:
        """Walk one Cluster; return where the next Segment-level element starts."""
        cend = end if size is None else start + size
        self.fits(cend, end, "Cluster")
        pos, timecode = start, None
        while pos < cend:
            if timecode is not None:
                pos = self.simple_blocks(pos, cend, timecode)
                if pos >= cend:
                    break
            eid, bsize, data = self.header(pos, cend)
            if size is None and eid in SEGMENT_LEVEL:
                return pos  # an unknown-size Cluster ends where the next top-level element starts
            if bsize is None:
                raise corrupt(f"element {eid:#x} has an unknown size (only Segment and Cluster may)")
            self.fits(data + bsize, cend, "block" if eid in (SIMPLE_BLOCK, BLOCK_GROUP) else f"element {eid:#x}")
            if eid == TIMECODE:
                timecode = uint(self.value(data, bsize))
            elif eid in (SIMPLE_BLOCK, BLOCK_GROUP):
                if timecode is None:
                    raise corrupt("block before its Cluster Timecode")
                if eid == SIMPLE_BLOCK:
                    self.block(data, bsize, timecode, None)
                else:
                    self.block_group(data, data + bsize, timecode)
            elif eid not in CLUSTER_CHILDREN and size is None:
                raise corrupt(f"element {eid:#x} is not allowed in an unknown-size Cluster")
            pos = data + bsize
        return pos

    def simple_blocks(self, pos: int, cend: int, timecode: int) -> int:
        """Fast path for the usual run of a Cluster: SimpleBlocks with a 1-byte track number that
        fit the Cluster. Accounts them and returns where the first other element starts (the
        general path then parses it and reports what is wrong with it, if anything)."""
        tails, scale = self.mk.tails, self.mk.timecode_scale
        while pos < cend:
            off, w = pos - self.base, self.window
            if off < 0 or off + 16 > len(w):
                off, w = self.at(pos, 16), self.window
                if off + 16 > len(w):
                    return pos  # the last bytes of the file: general path
            m = _VINT_LEN[w[off + 1]]
            if w[off] != SIMPLE_BLOCK or m > 8:
                return pos
            size = int.from_bytes(w[off + 1:off + 1 + m], "big") & _MASK[m]
            h, end = off + 1 + m, pos + 1 + m + size
            if size == _MASK[m] or end > cend or size < 4 or not w[h] & 0x80:
                return pos
            tail = tails.get(w[h] & 0x7F)
            if tail is None:
                tail = tails[w[h] & 0x7F] = BlockTail()
            rel = ((w[h + 1] << 8 | w[h + 2]) ^ 0x8000) - 0x8000  # signed 16-bit
            tail.add((timecode + rel) * scale, None, w[h + 3:h + 6] if size > 5 else w[h + 3:h + size])
            pos = end
        return pos

    def block_group(self, start: int, end: int, timecode: int) -> None:
        block, duration = None, None
        for eid, data, size in self.known_children(start, end):
            if eid == BLOCK:
                block = (data, size)
            elif eid == BLOCK_DURATION:
                duration = uint(self.value(data, size)) * self.mk.timecode_scale
        if block is None:
            raise corrupt("BlockGroup without a Block")
        self.block(*block, timecode, duration)

    def block(self, data: int, size: int, timecode: int, duration_ns: int | None) -> None:
        head = self.read(data, min(size, 12))
        try:
            raw, n = vint(head, 0)
        except _Short:
            raise corrupt("block shorter than its header") from None
        if n + 3 > size:
            raise corrupt("block shorter than its header")
        track = raw & ((1 << (7 * n)) - 1)
        rel = int.from_bytes(head[n:n + 2], "big", signed=True)
        tail = self.mk.tails.get(track)
        if tail is None:
            tail = self.mk.tails[track] = BlockTail()
        tail.add((timecode + rel) * self.mk.timecode_scale, duration_ns, head[n + 2:n + 5])


def read_matroska(path: str) -> Matroska:
    """Walk a WebM/Matroska file's structure (see the module docstring for what is checked)."""
    with open(path, "rb", buffering=1 << 16) as f:
        mk = _Walker(f, os.fstat(f.fileno()).st_size).walk()
    unknown = sorted(set(mk.tails) - set(mk.tracks))
    if unknown:
        raise corrupt(f"blocks of track(s) {unknown} that Tracks does not declare")
    return mk


def read_clusters(f: BinaryIO, size: int, pos: int) -> Matroska:
    """Walk a continuation blob from its first Cluster at `pos` to its end: Clusters (known or
    unknown size, checked as in a live Segment) and Segment-level elements; the last element
    may be cut by the end of the blob (`cut_tail`). The blob has no Tracks: the caller
    compares the track numbers in `tails` with its stream's."""
    w = _Walker(f, size)
    w.mk.live = True
    try:
        while pos < size:
            eid, esize, data = w.header(pos, size)
            if eid == CLUSTER:
                if esize is not None and data + esize > size:  # cut by the blob's end: walk what is there
                    esize = size - data
                pos = w.cluster(data, esize, size)
                continue
            if esize is None or eid not in SEGMENT_LEVEL | GLOBAL:
                raise corrupt(f"element {eid:#x} is not allowed between Clusters")
            w.fits(data + esize, size, f"element {eid:#x}")
            pos = data + esize
    except _Eof:
        w.mk.cut_tail = True
    return w.mk
