"""Structural check of an MP4 (ISO BMFF, fragmented or not): walk boxes, seek over `mdat`.

Top-level box headers are read from the file and `mdat` payloads are skipped; the small
`moov` and each `moof` are read whole (capped) and parsed in memory. What it decides:
  - a box whose size runs past the end of the file → `truncated_media`; a child box past its
    parent, a malformed box type/size, a missing `moov`, a zero timescale → `corrupt_media`;
  - sample data (`stco`/`co64` + `stsc` + `stsz`, or `trun` data offsets + sizes) that lies past
    the end of the file → `truncated_media`.
Streams come from `hdlr` + the `stsd` sample entry; where the media ends from `stts` (plain
files) or `tfdt` + `trun` sample durations (fragments), with `trex`/`tfhd` defaults.

Raises `Undecided` (the caller asks ffprobe) for encrypted sample entries (`encv`/`enca`)
and for a `moov`/`moof` larger than `MAX_META_BYTES`.
"""
from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from core.errors import InvalidMedia

MAX_META_BYTES = 8 << 20
CONTAINERS = {b"trak", b"mdia", b"minf", b"stbl", b"mvex", b"traf", b"edts", b"dinf"}
HANDLERS = {b"vide": "video", b"soun": "audio"}
CODECS = {b"avc1": "h264", b"avc3": "h264", b"hvc1": "hevc", b"hev1": "hevc", b"vp08": "vp8", b"vp09": "vp9",
          b"av01": "av1", b"mp4a": "aac", b"Opus": "opus", b"fLaC": "flac", b"ac-3": "ac3", b"ec-3": "eac3",
          b"mp4v": "mpeg4", b"alac": "alac", b"ulaw": "pcm_mulaw", b"alaw": "pcm_alaw"}
MP3_OTI = (0x69, 0x6B)  # esds objectTypeIndication of MPEG-1/2 layer 3 inside `mp4a`
_PRINTABLE = frozenset(range(0x20, 0x7F)) | {0xA9}


class Undecided(Exception):
    """Legal MP4 this walker does not model: let ffprobe judge it."""


def truncated(msg: str) -> InvalidMedia:
    return InvalidMedia(f"truncated: {msg}", code="truncated_media")


def corrupt(msg: str) -> InvalidMedia:
    return InvalidMedia(f"corrupt: {msg}", code="corrupt_media")


# ---------------------------------------------------------------- pure box parsing

def box_header(buf: bytes, pos: int, end: int) -> tuple[bytes, int, int]:
    """(type, payload start, box end) of the box at buf[pos]; size 0 means "to `end`"."""
    if pos + 8 > len(buf):
        raise corrupt("box header cut short")
    size, kind = struct.unpack_from(">I4s", buf, pos)
    head = 8
    if size == 1:
        if pos + 16 > len(buf):
            raise corrupt("box header cut short")
        size, head = struct.unpack_from(">Q", buf, pos + 8)[0], 16
    elif size == 0:
        size = end - pos
    if size < head or not _PRINTABLE.issuperset(kind):
        raise corrupt(f"malformed box {kind!r} of {size} bytes")
    return kind, pos + head, pos + size


def boxes(buf: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, payload end) of each box in buf[start:end]; overruns are corrupt."""
    pos = start
    while pos < end:
        kind, data, box_end = box_header(buf, pos, end)
        if box_end > end:
            raise corrupt(f"box {kind.decode('latin1')} runs past its parent")
        yield kind, data, box_end
        pos = box_end


def full_box(buf: bytes, data: int, v0: str, v1: str) -> tuple[int, int, tuple]:
    """(version, flags, fields) of a FullBox whose fields differ by version."""
    if data + 4 > len(buf):
        raise corrupt("FullBox cut short")
    version, flags = buf[data], int.from_bytes(buf[data + 1:data + 4], "big")
    fmt = ">" + (v1 if version == 1 else v0)
    try:
        return version, flags, struct.unpack_from(fmt, buf, data + 4)
    except struct.error:
        raise corrupt("FullBox cut short") from None


def u32s(buf: bytes, pos: int, count: int, end: int) -> tuple[int, ...]:
    """`count` big-endian u32 at buf[pos:end]; a count the box cannot hold is corrupt."""
    if count < 0 or pos + 4 * count > end:
        raise corrupt(f"table of {count} entries does not fit its box")
    return struct.unpack_from(f">{count}I", buf, pos)


def _descriptor(buf: bytes, i: int) -> tuple[int, int]:
    """(tag, payload start) of an MPEG-4 descriptor (tag byte, then a 7-bit-per-byte length)."""
    tag, i = buf[i], i + 1
    for _ in range(4):
        i += 1
        if not buf[i - 1] & 0x80:
            break
    return tag, i


def esds_audio(buf: bytes, data: int) -> tuple[str, int | None]:
    """(codec, channels) from an `esds` box: MPEG audio layer 3 or AAC with its AudioSpecificConfig
    (the AudioSampleEntry's channelcount is always 2 for AAC; the real layout lives here)."""
    try:
        tag, i = _descriptor(buf, data + 4)                 # ES_Descriptor
        flags = buf[i + 2]
        i += 3 + (2 if flags & 0x80 else 0)
        i += 1 + buf[i] if flags & 0x40 else 0
        i += 2 if flags & 0x20 else 0
        tag2, i = _descriptor(buf, i)                       # DecoderConfigDescriptor
        if tag != 0x03 or tag2 != 0x04:
            return "aac", None
        if buf[i] in MP3_OTI:
            return "mp3", None
        tag, j = _descriptor(buf, i + 13)                   # DecoderSpecificInfo
        bits, left = int.from_bytes(buf[j:j + 8].ljust(8, b"\0"), "big"), 64
        obj = bits >> 59
        left -= 5 + (6 if obj == 31 else 0)
        freq = (bits >> (left - 4)) & 0xF
        left -= 4 + (24 if freq == 15 else 0)
        config = (bits >> (left - 4)) & 0xF
        return "aac", ({7: 8}.get(config, config) or None) if tag == 0x05 else None
    except IndexError:
        return "aac", None


# ---------------------------------------------------------------- what the walk finds

@dataclass
class Mp4Track:
    track_id: int = 0
    kind: str | None = None
    codec: str = ""
    timescale: int = 0
    width: int | None = None
    height: int | None = None
    sample_rate: int | None = None
    channels: int | None = None
    media_end: int = 0          # in timescale units: stts total, or max(tfdt + trun durations)
    default_duration: int = 0   # trex
    default_size: int = 0       # trex

    def stream(self, index: int) -> dict[str, Any]:
        return {"index": index, "type": self.kind, "codec": self.codec, "width": self.width, "height": self.height,
                "sample_rate": str(self.sample_rate) if self.sample_rate else None, "channels": self.channels}


@dataclass
class Mp4:
    """Facts of a walked file; `media.judge` decides what they mean."""

    brand: str = ""
    timescale: int = 0
    declared: int = 0             # mehd fragment_duration, else mvhd duration (movie timescale)
    fragmented: bool = False
    has_moov: bool = False
    tracks: dict[int, Mp4Track] = field(default_factory=dict)

    @property
    def duration_s(self) -> float | None:
        return self.declared / self.timescale if self.declared and self.timescale else None

    @property
    def end_s(self) -> float | None:
        ends = [t.media_end / t.timescale for t in self.tracks.values() if t.kind and t.timescale]
        return max(ends) if ends else None

    def streams(self) -> list[dict[str, Any]]:
        media = [t for t in self.tracks.values() if t.kind]
        return [t.stream(i) for i, t in enumerate(media)]


def parse_tfhd(buf: bytes, data: int, end: int) -> tuple[int, int, int | None, int | None, int | None]:
    """(flags, track_ID, base_data_offset, default_sample_duration, default_sample_size)."""
    _, flags, (track_id,) = full_box(buf, data, "I", "I")
    pos, base, duration, size = data + 8, None, None, None
    if flags & 0x1:
        base, pos = int.from_bytes(buf[pos:pos + 8], "big"), pos + 8
    pos += 4 if flags & 0x2 else 0
    if flags & 0x8:
        duration, pos = int.from_bytes(buf[pos:pos + 4], "big"), pos + 4
    if flags & 0x10:
        size, pos = int.from_bytes(buf[pos:pos + 4], "big"), pos + 4
    if pos + (4 if flags & 0x20 else 0) > end:
        raise corrupt("tfhd cut short")
    return flags, track_id, base, duration, size


def parse_trun(buf: bytes, data: int, end: int, default_duration: int,
               default_size: int) -> tuple[int | None, int, int]:
    """(data_offset or None, total sample duration, total sample bytes) of one track run."""
    _, flags, (count,) = full_box(buf, data, "I", "I")
    pos, offset = data + 8, None
    if flags & 0x1:
        offset, pos = struct.unpack_from(">i", buf, pos)[0] if pos + 4 <= end else 0, pos + 4
    pos += 4 if flags & 0x4 else 0
    fields = [bit for bit in (0x100, 0x200, 0x400, 0x800) if flags & bit]
    table = u32s(buf, pos, count * len(fields), end)
    k = len(fields)
    total_duration = sum(table[fields.index(0x100)::k]) if 0x100 in fields else count * default_duration
    total_size = sum(table[fields.index(0x200)::k]) if 0x200 in fields else count * default_size
    return offset, total_duration, total_size


def sample_data_end(stsc: tuple[int, ...], sample_size: int, sizes: tuple[int, ...], count: int,
                    offsets: tuple[int, ...]) -> int:
    """Largest byte the sample table points at (stsc runs of chunks × stsz sizes + stco offsets)."""
    runs = [(stsc[i], stsc[i + 1]) for i in range(0, len(stsc) - 2, 3)]
    end, sample = 0, 0
    for r, (first, per_chunk) in enumerate(runs):
        last = min(runs[r + 1][0] - 1 if r + 1 < len(runs) else len(offsets), len(offsets))
        if first < 1 or (r and first <= runs[r - 1][0]):
            raise corrupt("stsc runs out of order")
        for chunk in range(first, last + 1):
            if sample + per_chunk > count:
                raise corrupt("stsc describes more samples than stsz")
            nbytes = per_chunk * sample_size if sample_size else sum(sizes[sample:sample + per_chunk])
            end = max(end, offsets[chunk - 1] + nbytes)
            sample += per_chunk
    return end


# ---------------------------------------------------------------- the walk (thin I/O)

class _Walker:
    def __init__(self, f: BinaryIO, size: int) -> None:
        self.f, self.size, self.mp4 = f, size, Mp4()
        self.trex: dict[int, tuple[int, int]] = {}

    def read_meta(self, data: int, end: int, kind: bytes) -> bytes:
        if end - data > MAX_META_BYTES:
            raise Undecided(f"{kind.decode('latin1')} box of {end - data} bytes")
        self.f.seek(data)
        return self.f.read(end - data)

    def walk(self) -> Mp4:
        pos = 0
        while pos < self.size:
            self.f.seek(pos)
            head = self.f.read(16)
            if len(head) < 8 or (head[:4] == b"\0\0\0\1" and len(head) < 16):
                raise truncated("a box header is cut by the end of the file")
            kind, data, end = box_header(head, 0, self.size - pos)
            data, end = pos + data, pos + end
            if end > self.size:
                raise truncated(f"{kind.decode('latin1')} box declares {end - pos} bytes, "
                                f"{self.size - pos} are left in the file")
            if kind in (b"ftyp", b"styp") and not self.mp4.brand:
                self.mp4.brand = self.read_meta(data, min(end, data + 4), kind).decode("latin1")
            elif kind == b"moov":
                self.moov(self.read_meta(data, end, kind))
            elif kind == b"moof":
                self.moof(pos, data, self.read_meta(data, end, kind))
            pos = end
        if not self.mp4.has_moov:
            raise corrupt("no moov (movie header) box")
        return self.mp4

    # -- moov ------------------------------------------------------------------------
    def moov(self, buf: bytes) -> None:
        if self.mp4.has_moov:
            raise corrupt("a second moov box")
        self.mp4.has_moov = True
        for kind, d, e in boxes(buf, 0, len(buf)):
            if kind == b"mvhd":
                self.mp4.timescale, duration = full_box(buf, d, "4x4xII", "8x8xIQ")[2]
                self.mp4.declared = self.mp4.declared or duration
            elif kind == b"trak":
                track = self.trak(buf, d, e)
                if track.track_id in self.mp4.tracks:
                    raise corrupt(f"track_ID {track.track_id} repeated")
                self.mp4.tracks[track.track_id] = track
            elif kind == b"mvex":
                self.mvex(buf, d, e)

    def mvex(self, buf: bytes, start: int, end: int) -> None:
        for kind, d, _ in boxes(buf, start, end):
            if kind == b"mehd":
                self.mp4.declared = full_box(buf, d, "I", "Q")[2][0] or self.mp4.declared
            elif kind == b"trex":
                track_id, _, duration, size = full_box(buf, d, "IIII", "IIII")[2]
                self.trex[track_id] = (duration, size)

    def tree(self, buf: bytes, start: int, end: int, depth: int = 0) -> Iterator[tuple[bytes, int, int]]:
        if depth > 8:
            raise corrupt("boxes nested too deep")
        for kind, d, e in boxes(buf, start, end):
            yield kind, d, e
            if kind in CONTAINERS:
                yield from self.tree(buf, d, e, depth + 1)

    def trak(self, buf: bytes, start: int, end: int) -> Mp4Track:
        t, table, stsd = Mp4Track(), {}, None
        for kind, d, e in self.tree(buf, start, end):
            if kind == b"tkhd":
                t.track_id = full_box(buf, d, "4x4xI", "8x8xI")[2][0]
            elif kind == b"mdhd":
                t.timescale = full_box(buf, d, "4x4xI", "8x8xI")[2][0]
            elif kind == b"hdlr" and d + 12 <= e:
                t.kind = HANDLERS.get(buf[d + 8:d + 12])
            elif kind == b"stsd":
                stsd = (d, e)
            elif kind in (b"stts", b"stsc", b"stsz", b"stco", b"co64"):
                table[kind] = (d, e)
        if t.kind and not t.timescale:
            raise corrupt(f"track {t.track_id} has a zero timescale")
        if stsd:
            self.sample_entry(t, buf, *stsd)
        self.sample_table(t, buf, table)
        return t

    def sample_entry(self, t: Mp4Track, buf: bytes, start: int, end: int) -> None:
        for kind, d, e in boxes(buf, start + 8, end):
            if kind in (b"encv", b"enca"):
                raise Undecided("encrypted samples")
            t.codec = CODECS.get(kind, kind.decode("latin1").strip().lower())
            if t.kind == "video" and d + 28 <= e:
                t.width, t.height = struct.unpack_from(">HH", buf, d + 24)
            elif t.kind == "audio" and d + 28 <= e:
                version, t.channels = struct.unpack_from(">H6xH", buf, d + 8)
                t.sample_rate = struct.unpack_from(">I", buf, d + 24)[0] >> 16
                children = d + 28 + {1: 16, 2: 36}.get(version, 0)
                if kind == b"mp4a" and children <= e:
                    esds = [cd for ck, cd, _ in boxes(buf, children, e) if ck == b"esds"]
                    if esds:
                        t.codec, channels = esds_audio(buf, esds[0])
                        t.channels = channels or t.channels
            return  # the first entry describes the stream

    def sample_table(self, t: Mp4Track, buf: bytes, table: dict[bytes, tuple[int, int]]) -> None:
        if b"stts" in table:
            d, e = table[b"stts"]
            (n,) = full_box(buf, d, "I", "I")[2]
            runs = u32s(buf, d + 8, 2 * n, e)
            t.media_end = sum(runs[i] * runs[i + 1] for i in range(0, len(runs), 2))
        if not (b"stsz" in table and b"stsc" in table and (b"stco" in table or b"co64" in table)):
            return
        d, e = table[b"stsz"]
        sample_size, count = full_box(buf, d, "II", "II")[2]
        sizes = () if sample_size else u32s(buf, d + 12, count, e)
        d, e = table[b"stsc"]
        stsc = u32s(buf, d + 8, 3 * full_box(buf, d, "I", "I")[2][0], e)
        if b"co64" in table:
            d, e = table[b"co64"]
            n = full_box(buf, d, "I", "I")[2][0]
            wide = u32s(buf, d + 8, 2 * n, e)
            offsets = tuple((wide[i] << 32) | wide[i + 1] for i in range(0, len(wide), 2))
        else:
            d, e = table[b"stco"]
            offsets = u32s(buf, d + 8, full_box(buf, d, "I", "I")[2][0], e)
        if sample_data_end(stsc, sample_size, sizes, count, offsets) > self.size:
            raise truncated(f"samples of track {t.track_id} lie past the end of the file")

    # -- fragments -----------------------------------------------------------------------
    def moof(self, moof_start: int, data: int, buf: bytes) -> None:
        if not self.mp4.has_moov:
            raise corrupt("moof before moov")
        self.mp4.fragmented = True
        next_base = moof_start
        for kind, d, e in boxes(buf, 0, len(buf)):
            if kind == b"traf":
                next_base = self.traf(buf, d, e, moof_start, next_base)

    def traf(self, buf: bytes, start: int, end: int, moof_start: int, default_base: int) -> int:
        """Account one track fragment; returns where its sample data ends (the next traf's base)."""
        tfhd, tfdt, truns = None, None, []
        for kind, d, e in boxes(buf, start, end):
            if kind == b"tfhd":
                tfhd = parse_tfhd(buf, d, e)
            elif kind == b"tfdt":
                tfdt = full_box(buf, d, "I", "Q")[2][0]
            elif kind == b"trun":
                truns.append((d, e))
        if tfhd is None:
            raise corrupt("traf without tfhd")
        flags, track_id, base, duration, size = tfhd
        track = self.mp4.tracks.get(track_id)
        if track is None:
            raise corrupt(f"fragment of track {track_id} that moov does not declare")
        trex_duration, trex_size = self.trex.get(track_id, (0, 0))
        base = base if base is not None else (moof_start if flags & 0x20000 else default_base)
        time, pos = (tfdt if tfdt is not None else track.media_end), base
        for d, e in truns:
            offset, run_duration, run_bytes = parse_trun(buf, d, e, duration if duration is not None else trex_duration,
                                                         size if size is not None else trex_size)
            pos = base + offset if offset is not None else pos
            if pos < 0 or pos + run_bytes > self.size:
                raise truncated(f"fragment samples of track {track_id} lie past the end of the file")
            pos, time = pos + run_bytes, time + run_duration
        track.media_end = max(track.media_end, time)
        return pos


def read_mp4(path: str) -> Mp4:
    """Walk an MP4 file's box structure (see the module docstring for what is checked)."""
    with open(path, "rb", buffering=1 << 16) as f:
        return _Walker(f, os.fstat(f.fileno()).st_size).walk()
