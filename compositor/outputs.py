"""Deliverables built from window segments by stream copy: MP4, HLS, poster, thumbnails.

Window k's MP4 has timestamps from its own start; k × window_ms is added back here.
Each window (but the first) encodes one extra AAC frame before its own audio so that
the decoder's overlap at the seam comes from real audio; that frame is dropped when
windows are joined (`_keep_audio`). Nothing here re-encodes audio or video.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Sequence

import av
import numpy as np

from compositor.probe import open_media
from compositor.timing import audio_bounds

__all__ = ["concat_windows", "window_hls", "HlsSegment", "hls_playlist", "grab_jpeg", "thumbnail_strip"]

HLS_OFFSET_MS = 1000  # keep MPEG-TS timestamps positive (B-frames give window 0 a negative dts)


@dataclass(frozen=True)
class HlsSegment:
    uri: str
    duration_s: float


def _first_audio_pts(index: int, window_ms: int, rate: int) -> int:
    """First kept audio sample of window `index`, relative to the window start."""
    a0, _ = audio_bounds(index, window_ms, rate)
    return a0 - index * window_ms * rate // 1000


def _window_packets(path: Path, index: int, window_ms: int, keep_priming: bool,
                    extra_ms: int = 0) -> Iterator[tuple[str, av.Packet]]:
    """Packets of one window with timeline timestamps (in their own stream time base)."""
    with open_media(path) as c:
        streams = [s for s in c.streams if s.type in ("audio", "video")]
        # Per stream, once: its kind, the timeline shift in its time base, the first audio pts kept.
        kinds = {s.index: s.type for s in streams}
        shifts = {s.index: int(round(Fraction(index * window_ms + extra_ms, 1000) / s.time_base)) for s in streams}
        drop_before = {s.index: _first_audio_pts(index, window_ms, s.codec_context.sample_rate)
                       for s in streams if s.type == "audio" and not (keep_priming and index == 0)}
        for pkt in c.demux(streams):
            if pkt.dts is None or pkt.pts is None:
                continue
            i = pkt.stream_index
            if i in drop_before and pkt.pts < drop_before[i]:
                continue
            pkt.pts += shifts[i]
            pkt.dts += shifts[i]
            yield kinds[i], pkt


def concat_windows(windows: Sequence[Path], window_ms: int, out_path: str | Path) -> int:
    """Join window MP4s (index = position) into one faststart MP4; returns packets written."""
    count = 0
    with av.open(str(out_path), "w", format="mp4", options={"movflags": "+faststart"}) as out:
        streams: dict[str, av.stream.Stream] = {}
        with open_media(windows[0]) as first:
            for s in first.streams:
                if s.type in ("audio", "video"):
                    streams[s.type] = out.add_stream_from_template(s)
        for index, path in enumerate(windows):
            for kind, pkt in _window_packets(Path(path), index, window_ms, keep_priming=True):
                pkt.stream = streams[kind]
                out.mux(pkt)
                count += 1
    return count


def window_hls(window: Path, index: int, window_ms: int, out_dir: Path, prefix: str,
               segment_s: float = 5.0) -> list[HlsSegment]:
    """Cut one window into MPEG-TS segments `{prefix}{index:06d}_{n:03d}.ts` on the timeline.

    Segments of different windows play back to back: their timestamps are absolute
    (plus HLS_OFFSET_MS), so the final playlist just lists them in order.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{prefix}{index:06d}_"
    playlist = out_dir / f"{stem}.m3u8"
    opts = {"hls_time": str(segment_s), "hls_list_size": "0", "hls_playlist_type": "vod",
            "hls_segment_filename": str(out_dir / f"{stem}%03d.ts"), "hls_flags": "independent_segments"}
    with av.open(str(playlist), "w", format="hls", options=opts) as out:
        streams: dict[str, av.stream.Stream] = {}
        with open_media(window) as src:
            for s in src.streams:
                if s.type in ("audio", "video"):
                    streams[s.type] = out.add_stream_from_template(s)
        for kind, pkt in _window_packets(window, index, window_ms, keep_priming=False, extra_ms=HLS_OFFSET_MS):
            pkt.stream = streams[kind]
            out.mux(pkt)
    segments = _parse_playlist(playlist.read_text())
    playlist.unlink()
    return segments


def _parse_playlist(text: str) -> list[HlsSegment]:
    segs, duration = [], None
    for line in text.splitlines():
        m = re.match(r"#EXTINF:([0-9.]+)", line)
        if m:
            duration = float(m.group(1))
        elif line and not line.startswith("#") and duration is not None:
            segs.append(HlsSegment(Path(line).name, duration))
            duration = None
    return segs


def hls_playlist(segments: Sequence[HlsSegment]) -> str:
    """A VOD media playlist over every window's segments, in order."""
    target = max((math.ceil(s.duration_s) for s in segments), default=1)
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", f"#EXT-X-TARGETDURATION:{target}", "#EXT-X-MEDIA-SEQUENCE:0",
             "#EXT-X-PLAYLIST-TYPE:VOD", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for s in segments:
        lines += [f"#EXTINF:{s.duration_s:.6f},", s.uri]
    lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def grab_jpeg(video: Path, at_ms: float, width: int, quality: int = 4) -> bytes:
    """One frame at or after `at_ms` (the last one if the video is shorter) as JPEG bytes,
    `width` wide at most (never wider than the video: upscaling adds bytes, not detail).

    Decoding starts at the keyframe before `at_ms` (one GOP at most), not at the start."""
    frame = None
    with open_media(video) as c:
        stream = c.streams.video[0]
        stream.thread_type = "AUTO"
        if at_ms > 0:
            try:
                c.seek(int(at_ms * 1000), backward=True, any_frame=False)  # AV_TIME_BASE (µs)
            except av.error.FFmpegError:
                c.seek(0)
        for frame in c.decode(stream):
            if frame.pts is not None and frame.pts * frame.time_base * 1000 >= at_ms:
                break
    if frame is None:
        raise ValueError(f"{video} has no video frames")
    return _jpeg(frame.to_ndarray(format="rgb24"), min(width, frame.width), quality)


def thumbnail_strip(jpegs: Sequence[bytes], height: int = 90, quality: int = 5) -> bytes:
    """Thumbnails side by side (one per window) as one JPEG."""
    images = [_decode_jpeg(j) for j in jpegs]
    images = [_resize_h(img, height) for img in images]
    strip = np.concatenate(images, axis=1)
    return _jpeg(strip, strip.shape[1] // 2 * 2, quality)


def _resize_h(rgb: np.ndarray, height: int) -> np.ndarray:
    if rgb.shape[0] == height:
        return rgb
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
    width = max(2, round(rgb.shape[1] * height / rgb.shape[0]) // 2 * 2)
    return frame.reformat(width, height).to_ndarray()


def _decode_jpeg(data: bytes) -> np.ndarray:
    codec = av.CodecContext.create("mjpeg", "r")
    frames = codec.decode(av.Packet(data))
    return frames[0].to_ndarray(format="rgb24")


def _jpeg(rgb: np.ndarray, width: int, quality: int) -> bytes:
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    height = max(2, round(rgb.shape[0] * width / rgb.shape[1]) // 2 * 2)
    frame = frame.reformat(width // 2 * 2, height, "yuvj420p")
    enc = av.CodecContext.create("mjpeg", "w")
    enc.width, enc.height, enc.pix_fmt = frame.width, frame.height, "yuvj420p"
    enc.time_base = Fraction(1, 25)
    enc.options = {"qmin": str(quality), "qmax": str(quality)}
    enc.open()
    packets = enc.encode(frame) + enc.encode(None)
    return b"".join(bytes(p) for p in packets)
