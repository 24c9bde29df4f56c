"""Stitch one track's chunks into one continuous stream, without re-encoding.

The canonical demux → mux loop (PyAV's examples/basics/remux.py) with two additions:
each source is offset so that its first media instant lands on its real start on the
recording timeline (`compositor.timing.Placer`), and packets whose codec does not
match the output stream (a codec change between chunks) are transcoded — only those.
Holes between chunks stay holes in the timestamps and are reported as gaps; later media
is never moved earlier. Output is Matroska with a 1 ms time base (timeline ms).
"""
from __future__ import annotations

import itertools
import shutil
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import av

from core.errors import InvalidMedia
from core.logging import get_logger
from core.timeline import Span
from compositor.probe import MediaInfo, Spans, StreamInfo, describe, open_media
from compositor.timing import Placement, Placer, ms_scale

__all__ = ["Source", "StitchReport", "stitch", "join_parts"]

MS = Fraction(1, 1000)
log = get_logger("compositor.stitch")


@dataclass(frozen=True)
class Source:
    """One playable file and where it belongs on the timeline.

    origin_ms: the media time that corresponds to `start_ms` (None = its first packet).
    A resumed continuation (init segment + later clusters) passes the header's first
    pts here, because its own first packet is not the recording's first instant.
    """

    path: Path
    start_ms: float
    origin_ms: float | None = None


@dataclass
class StitchReport:
    placements: list[Placement] = field(default_factory=list)
    gaps: list[Span] = field(default_factory=list)
    transcoded: list[int] = field(default_factory=list)  # indexes of sources re-encoded
    packets: int = 0

    @property
    def end_ms(self) -> float:
        return self.placements[-1].end_ms if self.placements else 0.0


def join_parts(parts: Sequence[Path | bytes], out: Path) -> Path:
    """Byte-join a header blob and its continuation blobs into one file."""
    with open(out, "wb") as dst:
        for part in parts:
            if isinstance(part, bytes):
                dst.write(part)
            else:
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, dst, 1024 * 1024)
    return out


def stitch(sources: Sequence[Source], out_path: str | Path, gap_tolerance_ms: float = 40.0) -> StitchReport:
    """Remux `sources` (in timeline order) into `out_path` (Matroska, timestamps = timeline ms).

    One pass over each source: the first packets of every stream are held back just long
    enough to learn where its media starts (so its offset is known), then everything is
    copied; where it ends is learnt while copying, before the next source is placed.
    Sources without media packets (a timeslice header holding only the init segment) are
    skipped; `report.placements` lists the others. InvalidMedia("empty_media") if none has any.
    """
    if not sources:
        raise InvalidMedia("nothing to stitch", code="no_chunks")
    report, placer = StitchReport(), Placer(gap_tolerance_ms)
    with av.open(str(out_path), "w", format="matroska") as out:
        writer = _Writer(out)
        for n, src in enumerate(sources):
            copied = _copy_source(writer, src, placer)
            if copied is not None:
                report.placements.append(copied[0])
                if copied[1]:
                    report.transcoded.append(n)
        report.packets = writer.packets
        if not report.placements:
            raise InvalidMedia("no media packets in any source", code="empty_media")
    report.gaps = [Span(int(p.start_ms - p.gap_before_ms), int(p.start_ms))
                   for p in report.placements if p.gap_before_ms > 0]
    for p in report.placements:
        if p.shifted_ms > 0:
            log.info("chunk_shifted_later", shifted_ms=round(p.shifted_ms, 1), start_ms=p.start_ms)
    return report


LEAD_PACKETS = 256  # held back at most while waiting for every stream's first packet


def _copy_source(writer: "_Writer", src: Source, placer: Placer) -> tuple[Placement, bool] | None:
    """Place and copy one source; (placement, transcoded?) or None if it holds no packets."""
    with open_media(src.path) as c:
        spans = Spans(describe(c, Path(src.path).name))
        packets = _timed(c.demux([c.streams[s.index] for s in spans.header.streams]), spans)
        lead = []
        for pkt in packets:
            lead.append(pkt)
            if spans.seen_all() or len(lead) >= LEAD_PACKETS:
                break
        if not lead:
            return None
        origin = src.origin_ms if src.origin_ms is not None else spans.info().origin_ms
        offset = placer.begin(src.start_ms, origin)
        recoded = writer.copy(c, spans.header, itertools.chain(lead, packets), offset)
    return placer.end(spans.info().origin_end_ms), recoded


def _timed(packets: Iterator[av.Packet], spans: Spans) -> Iterator[av.Packet]:
    """Packets with timestamps (flush/empty packets carry no media), counted into `spans`."""
    for pkt in packets:
        if spans.add(pkt):
            yield pkt


_ENCODER_NAMES = {"h264": "libx264", "vp8": "libvpx", "vp9": "libvpx-vp9"}
# Transcoding is the exception path: favour speed (a short stretch after a codec change).
_FAST = {"libvpx": {"deadline": "realtime", "cpu-used": "8", "b": "1M"},
         "libvpx-vp9": {"deadline": "realtime", "cpu-used": "8", "row-mt": "1", "b": "1M"},
         "libx264": {"preset": "veryfast", "crf": "23"}}


def _make_encoder(t: StreamInfo) -> tuple[av.CodecContext, av.AudioResampler | None]:
    """An encoder producing packets for a stream made from template `t` (+ audio resampler)."""
    enc = av.CodecContext.create(_ENCODER_NAMES.get(t.codec, t.codec), "w")
    if t.kind == "video":
        enc.width, enc.height, enc.pix_fmt, enc.time_base = t.width, t.height, "yuv420p", MS
        enc.thread_type = "AUTO"
        enc.options = _FAST.get(enc.name, {})
        enc.open()
        return enc, None
    enc.sample_rate, enc.layout = t.sample_rate, "stereo" if t.channels == 2 else "mono"
    enc.format = "fltp" if t.codec == "aac" else "flt"
    enc.time_base = Fraction(1, t.sample_rate)
    enc.open()
    return enc, av.AudioResampler(format=enc.format, layout=enc.layout, rate=t.sample_rate,
                                  frame_size=enc.frame_size or None)


class _Writer:
    """Output streams made from the first source that has each kind; tracks last dts."""

    def __init__(self, out: av.container.OutputContainer) -> None:
        self.out = out
        self.templates: dict[str, StreamInfo] = {}
        self.streams: dict[str, av.stream.Stream] = {}
        self.last_dts: dict[str, int] = {}
        self.encoders: dict[str, tuple[av.CodecContext, av.AudioResampler | None]] = {}
        self.packets = 0

    def _ensure_streams(self, container: av.container.InputContainer, info: MediaInfo) -> None:
        for s in info.streams:
            if s.kind not in self.streams:
                self.templates[s.kind] = s
                self.streams[s.kind] = self.out.add_stream_from_template(container.streams[s.index])
                self.streams[s.kind].time_base = MS

    def copy(self, c: av.container.InputContainer, info: MediaInfo, packets: Iterable[av.Packet],
             offset_ms: float) -> bool:
        """Copy (or transcode where codecs differ) one source's packets; True if anything was re-encoded."""
        self._ensure_streams(c, info)
        kinds = {s.index: s for s in info.streams}
        recode = {i for i, s in kinds.items() if not self.templates[s.kind].same_codec(s)}
        for i in recode:
            c.streams[i].thread_type = "AUTO"
        scales = {i: ms_scale(s.time_base) for i, s in kinds.items()}
        for pkt in packets:
            index = pkt.stream_index
            if index in recode:
                self._transcode(kinds[index].kind, pkt, offset_ms)
            else:
                self._write(kinds[index].kind, pkt, offset_ms, *scales[index])
        self.flush()
        return bool(recode)

    def _write(self, kind: str, pkt: av.Packet, offset_ms: float, num: int, den: int) -> None:
        """Copy one packet, its timestamps moved to timeline ms (`pts * num / den` = media ms)."""
        pts = int(round(pkt.pts * num / den + offset_ms))
        dts = int(round(pkt.dts * num / den + offset_ms))
        dur = int(round((pkt.duration or 0) * num / den))
        self._mux(kind, pkt, pts, dts, dur)

    def _mux(self, kind: str, pkt: av.Packet, pts: int, dts: int, dur: int) -> None:
        last = self.last_dts.get(kind)
        if last is not None and dts < last:
            if kind == "audio":
                return  # fully inside the previous chunk's tail (a tolerated overlap): drop it
            dts = last  # video: rounding to 1 ms can reorder neighbours; timestamps must not go back
        pkt.time_base = MS
        pkt.dts, pkt.pts, pkt.duration = dts, max(pts, dts), dur
        pkt.stream = self.streams[kind]
        self.last_dts[kind] = dts
        self.out.mux(pkt)
        self.packets += 1

    def _transcode(self, kind: str, pkt: av.Packet, offset_ms: float) -> None:
        if kind not in self.encoders:
            self.encoders[kind] = _make_encoder(self.templates[kind])
        enc, resampler = self.encoders[kind]
        for frame in pkt.decode():
            t_ms = float(frame.pts * frame.time_base * 1000) + offset_ms
            if resampler is None:
                frame = frame.reformat(enc.width, enc.height, "yuv420p")
                frame.pts, frame.time_base = int(round(t_ms)), MS
                frame.pict_type = av.video.frame.PictureType.NONE
                frames = [frame]
            else:
                frame.pts = int(round(t_ms * frame.sample_rate / 1000))
                frame.time_base = Fraction(1, frame.sample_rate)
                frames = resampler.resample(frame)
            for f in frames:
                self._encode(kind, enc, f)

    def _encode(self, kind: str, enc: av.CodecContext, frame: av.frame.Frame | None) -> None:
        for out_pkt in enc.encode(frame):
            tb = out_pkt.time_base or enc.time_base
            dts = out_pkt.dts if out_pkt.dts is not None else out_pkt.pts
            self._mux(kind, out_pkt, int(round(float(out_pkt.pts * tb * 1000))),
                      int(round(float(dts * tb * 1000))), int(round(float((out_pkt.duration or 0) * tb * 1000))))

    def flush(self) -> None:
        """Drain every open encoder (end of a transcoded source)."""
        for kind, (enc, resampler) in list(self.encoders.items()):
            for f in resampler.resample(None) if resampler else []:
                self._encode(kind, enc, f)
            self._encode(kind, enc, None)
        self.encoders.clear()
