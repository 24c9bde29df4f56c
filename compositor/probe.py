"""Probe media by demuxing it: what it really holds, not what its header says.

A truncated WebM still announces its full Duration, and a PNG renamed `.webm` opens
fine as an image: so we check the detected format and measure the span from the
packets themselves. Library errors become `InvalidMedia` here, once.
"""
from __future__ import annotations

import hashlib
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av

from core.errors import InvalidMedia
from compositor.sizing import frame_rate
from compositor.timing import ms_scale

__all__ = ["StreamInfo", "MediaInfo", "Spans", "probe", "describe", "open_media", "video_source",
           "ALLOWED_FORMATS"]

# Demuxer names (PyAV `container.format.name`) we accept, by our container label.
ALLOWED_FORMATS = {"matroska,webm": "webm", "mov,mp4,m4a,3gp,3g2,mj2": "mp4", "ogg": "ogg"}


@dataclass(frozen=True)
class StreamInfo:
    index: int
    kind: str  # "audio" | "video"
    codec: str
    time_base: Fraction
    width: int = 0
    height: int = 0
    sample_rate: int = 0
    channels: int = 0
    extradata_sha: str = ""
    start_ms: float | None = None
    end_ms: float | None = None
    packets: int = 0

    def same_codec(self, other: "StreamInfo") -> bool:
        """True when packets of `other` can be copied into a stream made for `self`."""
        return (self.kind, self.codec, self.extradata_sha, self.sample_rate, self.channels) == \
            (other.kind, other.codec, other.extradata_sha, other.sample_rate, other.channels)


@dataclass(frozen=True)
class MediaInfo:
    container: str
    streams: list[StreamInfo] = field(default_factory=list)

    @property
    def start_ms(self) -> float | None:
        starts = [s.start_ms for s in self.streams if s.start_ms is not None]
        return min(starts) if starts else None

    @property
    def end_ms(self) -> float | None:
        ends = [s.end_ms for s in self.streams if s.end_ms is not None]
        return max(ends) if ends else None

    @property
    def origin_ms(self) -> float:
        """The media instant that maps to the chunk's real start: its earliest packet.

        A browser's muxer (Chromium's WebM and MP4 writers) counts every track from the
        first frame of *any* track, and the first video frame often arrives tens of ms
        after the first audio: taking video's first frame as the start would play that
        chunk's audio early by as much. Opus/AAC priming gives the first audio packet a
        slightly negative pts: that counts as 0.
        """
        starts = [0.0 if -100.0 < s.start_ms < 0 else s.start_ms for s in self.streams if s.start_ms is not None]
        return min(starts) if starts else 0.0

    @property
    def origin_end_ms(self) -> float:
        """End of the stream `origin_ms` comes from (video's end when there is video)."""
        video = self.stream("video")
        if video is not None and video.end_ms is not None:
            return video.end_ms
        return self.end_ms or 0.0

    @property
    def duration_ms(self) -> float:
        if self.start_ms is None or self.end_ms is None:
            return 0.0
        return self.end_ms - self.start_ms

    def stream(self, kind: str) -> StreamInfo | None:
        return next((s for s in self.streams if s.kind == kind), None)


@contextmanager
def open_media(path: str | Path, what: str = "") -> Iterator[av.container.InputContainer]:
    """av.open for reading, with FFmpeg errors translated to InvalidMedia."""
    try:
        container = av.open(str(path), "r")
    except (av.error.FFmpegError, UnicodeDecodeError) as exc:
        raise InvalidMedia(f"cannot open {what or Path(path).name}: {exc}", code="invalid_media") from exc
    try:
        yield container
    except av.error.FFmpegError as exc:
        raise InvalidMedia(f"cannot read {what or Path(path).name}: {exc}", code="invalid_media") from exc
    finally:
        container.close()


def _stream_info(stream: av.stream.Stream) -> StreamInfo:
    ctx = stream.codec_context
    extra = ctx.extradata or b""
    common = dict(index=stream.index, kind=stream.type, codec=ctx.name, time_base=stream.time_base,
                  extradata_sha=hashlib.sha256(extra).hexdigest()[:16] if extra else "")
    if stream.type == "video":
        return StreamInfo(**common, width=ctx.width, height=ctx.height)
    return StreamInfo(**common, sample_rate=ctx.sample_rate, channels=ctx.channels)


def probe(path: str | Path, what: str = "", require_packets: bool = True) -> MediaInfo:
    """Demux every packet of `path`; raise InvalidMedia unless it is A/V in an allowed container.

    `require_packets=False` accepts a header without media (Chromium's timeslice MP4
    header blob is only `ftyp` + `moov`: every fragment comes in continuations).
    """
    with open_media(path, what) as c:
        header = describe(c, what or Path(path).name)
        spans = Spans(header)
        for pkt in c.demux([c.streams[s.index] for s in header.streams]):
            spans.add(pkt)
        info = spans.info()
    if require_packets and not any(i.packets for i in info.streams):
        raise InvalidMedia(f"{what or Path(path).name}: no packets", code="empty_media")
    return info


def video_source(path: str | Path) -> tuple[int, int, float] | None:
    """(width, height, frame rate) of the first video stream, the rate measured from its packets'
    timestamps (demux only, no decoding); None without video."""
    with open_media(path) as c:
        if not c.streams.video:
            return None
        stream = c.streams.video[0]
        num, den = ms_scale(stream.time_base)
        pts = [pkt.pts * num / den for pkt in c.demux(stream) if pkt.pts is not None]
        return stream.codec_context.width, stream.codec_context.height, frame_rate(pts)


def describe(c: av.container.InputContainer, what: str) -> MediaInfo:
    """What an open file's header declares (no spans); InvalidMedia unless A/V in an allowed container."""
    container = ALLOWED_FORMATS.get(c.format.name)
    if container is None:
        raise InvalidMedia(f"{what}: unsupported container {c.format.name}", code="unsupported_container")
    streams = [_stream_info(s) for s in c.streams if s.type in ("audio", "video")]
    if not streams:
        raise InvalidMedia(f"{what}: no audio or video stream", code="no_streams")
    return MediaInfo(container=container, streams=streams)


class Spans:
    """Accumulates each stream's first pts, last pts + duration and packet count (ms)."""

    def __init__(self, header: MediaInfo) -> None:
        self.header = header
        self.span: dict[int, list] = {s.index: [None, None, 0] for s in header.streams}
        self.scale = {s.index: ms_scale(s.time_base) for s in header.streams}

    def add(self, pkt: av.Packet) -> bool:
        """Count one packet; False (ignored) if it has no timestamps (a flush packet)."""
        pts = pkt.pts
        if pts is None or pkt.dts is None:
            return False
        index = pkt.stream_index
        st, (num, den) = self.span[index], self.scale[index]
        start = pts * num / den  # = pts_to_ms(pts, time_base), without a Fraction per packet
        end = (pts + (pkt.duration or 0)) * num / den
        st[0] = start if st[0] is None else min(st[0], start)
        st[1] = end if st[1] is None else max(st[1], end)
        st[2] += 1
        return True

    def seen_all(self) -> bool:
        return all(st[2] for st in self.span.values())

    def info(self) -> MediaInfo:
        return replace(self.header, streams=[replace(s, start_ms=self.span[s.index][0], end_ms=self.span[s.index][1],
                                                     packets=self.span[s.index][2]) for s in self.header.streams])
