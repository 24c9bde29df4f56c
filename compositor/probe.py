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
from compositor.timing import pts_to_ms

__all__ = ["StreamInfo", "MediaInfo", "probe", "open_media", "ALLOWED_FORMATS"]

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
        """The media instant that maps to the chunk's real start.

        Video's first frame when there is video; otherwise the first audio packet, but not
        before 0 (Opus/AAC priming gives the first packet a slightly negative pts).
        """
        video = self.stream("video")
        if video is not None and video.start_ms is not None:
            return video.start_ms
        start = self.start_ms or 0.0
        return 0.0 if -100.0 < start < 0 else start

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


def probe(path: str | Path, what: str = "") -> MediaInfo:
    """Demux every packet of `path`; raise InvalidMedia unless it is A/V in an allowed container."""
    with open_media(path, what) as c:
        container = ALLOWED_FORMATS.get(c.format.name)
        if container is None:
            raise InvalidMedia(f"{what or Path(path).name}: unsupported container {c.format.name}",
                               code="unsupported_container")
        streams = [s for s in c.streams if s.type in ("audio", "video")]
        if not streams:
            raise InvalidMedia(f"{what or Path(path).name}: no audio or video stream", code="no_streams")
        span: dict[int, list] = {s.index: [None, None, 0] for s in streams}
        for pkt in c.demux(streams):
            if pkt.dts is None or pkt.pts is None:
                continue
            st = span[pkt.stream.index]
            start = pts_to_ms(pkt.pts, pkt.time_base)
            end = pts_to_ms(pkt.pts + (pkt.duration or 0), pkt.time_base)
            st[0] = start if st[0] is None else min(st[0], start)
            st[1] = end if st[1] is None else max(st[1], end)
            st[2] += 1
        infos = [_with_span(_stream_info(s), *span[s.index]) for s in streams]
    if not any(i.packets for i in infos):
        raise InvalidMedia(f"{what or Path(path).name}: no packets", code="empty_media")
    return MediaInfo(container=container, streams=infos)


def _with_span(info: StreamInfo, start: float | None, end: float | None, packets: int) -> StreamInfo:
    return replace(info, start_ms=start, end_ms=end, packets=packets)
