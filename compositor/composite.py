"""Composite one time window of a recording into an H.264 + AAC MP4 segment.

Each participant's stitched track (timestamps = timeline ms) is sampled at the output
frame rate: the tile shows the latest frame at or before each tick, frozen through
short gaps and black after `freeze_ms` without frames. Tiles are scaled with their
aspect kept (`compositor.layout`), labelled, and stacked by an FFmpeg filter graph
(xstack → pad → fps) before libx264. Output frames are numbered from the window start,
audio frames are whole AAC frames at absolute sample positions (see `timing.audio_bounds`),
so windows concatenate by stream copy into one drift-free recording.
"""
from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Sequence

import av
import numpy as np

from core.logging import get_logger
from compositor.decode import video_frames
from compositor.labels import burn_label, render_labels
from compositor.layout import Rect, SpeakerRules, active_speaker, fit, grid, label_box, segments, speaker_tiles
from compositor.mix import VAD_FRAME_MS, WindowAudio, window_audio
from compositor.timing import frame_ticks

__all__ = ["Participant", "CompositeOptions", "WindowResult", "composite_window"]

log = get_logger("compositor.composite")
NONE_PICT = av.video.frame.PictureType.NONE


@dataclass(frozen=True)
class Participant:
    """One person (or the client's composite video): stitched files on the timeline."""

    name: str = ""
    video: Path | None = None
    audio: Path | None = None


@dataclass(frozen=True)
class CompositeOptions:
    layout: str = "grid"  # grid | speaker | client (one pre-composited video, no labels)
    width: int = 1280
    height: int = 720
    fps: int = 30
    sample_rate: int = 48000
    preset: str = "veryfast"
    crf: int = 23
    gop: int = 150  # 5 s at 30 fps: divides a 30-s window, so HLS segments are regular
    audio_bitrate: int = 96000
    freeze_ms: float = 1000.0
    labels: bool = True
    lookback_ms: int = 5000
    vad_aggressiveness: int = 2
    speaker: SpeakerRules = field(default_factory=SpeakerRules)


@dataclass
class WindowResult:
    path: Path
    index: int
    frames: int
    audio_first: int  # absolute sample number of the first encoded sample (incl. priming frame)
    speakers: list[tuple[int, int, int]] = field(default_factory=list)  # (start_ms, end_ms, participant)
    labels: bool = False


def composite_window(participants: Sequence[Participant], index: int, window_ms: int, out_path: str | Path,
                     opts: CompositeOptions = CompositeOptions(), end_ms: int | None = None) -> WindowResult:
    """Render window `index` ([index*window_ms, (index+1)*window_ms) on the timeline) to `out_path`.

    `end_ms` (timeline) cuts the last window at the end of the recording.
    """
    w0, w1 = index * window_ms, (index + 1) * window_ms
    if end_ms is not None:
        w1 = max(w0 + 1000 // opts.fps, min(w1, end_ms))
    audio = window_audio([p.audio for p in participants], index, window_ms, opts.sample_rate,
                         opts.lookback_ms, opts.vad_aggressiveness, end_ms=w1)
    speaker_of = _speaker_timeline(audio, participants, opts, w0, w1) if opts.layout == "speaker" else None
    out_path = Path(out_path)
    with av.open(str(out_path), "w", format="mp4", options={"movflags": "+faststart"}) as out:
        vstream = _video_stream(out, opts)
        astream = _audio_stream(out, opts)
        _encode_audio(out, astream, audio, w0 * opts.sample_rate // 1000, opts)
        tiler = _Tiler(participants, opts)
        frames = _encode_video(out, vstream, tiler, frame_ticks(w0, w1, opts.fps), speaker_of, opts)
    result = WindowResult(out_path, index, frames, audio.first, labels=tiler.labels_drawn)
    if speaker_of is not None:
        result.speakers = speaker_of.segments
    return result


def _video_stream(out: av.container.OutputContainer, opts: CompositeOptions) -> av.VideoStream:
    stream = out.add_stream("libx264", rate=opts.fps, options={
        "preset": opts.preset, "crf": str(opts.crf), "g": str(opts.gop), "keyint_min": str(opts.gop)})
    stream.width, stream.height, stream.pix_fmt = opts.width, opts.height, "yuv420p"
    stream.time_base = stream.codec_context.time_base = Fraction(1, opts.fps)
    stream.thread_type = "AUTO"
    return stream


def _audio_stream(out: av.container.OutputContainer, opts: CompositeOptions) -> av.AudioStream:
    stream = out.add_stream("aac", rate=opts.sample_rate, layout="mono")
    stream.bit_rate = opts.audio_bitrate
    stream.time_base = Fraction(1, opts.sample_rate)
    return stream


def _encode_audio(out, stream, audio: WindowAudio, window_first_sample: int, opts: CompositeOptions) -> None:
    """Whole 1024-sample frames; pts relative to the window start (the first may be negative)."""
    step = 1024
    for i in range(0, audio.mix.size - step + 1, step):
        frame = av.AudioFrame.from_ndarray(audio.mix[None, i:i + step], format="fltp", layout="mono")
        frame.sample_rate = opts.sample_rate
        frame.pts = audio.first + i - window_first_sample
        frame.time_base = Fraction(1, opts.sample_rate)
        out.mux(stream.encode(frame))
    out.mux(stream.encode(None))


class _SpeakerTimeline:
    def __init__(self, per_frame: list[int], start_ms: int) -> None:
        self.per_frame, self.start_ms = per_frame, start_ms
        self.segments: list[tuple[int, int, int]] = []

    def at(self, t_ms: float) -> int:
        f = int((t_ms - self.start_ms) // VAD_FRAME_MS)
        return self.per_frame[min(max(f, 0), len(self.per_frame) - 1)] if self.per_frame else 0


def _speaker_timeline(audio: WindowAudio, participants: Sequence[Participant],
                      opts: CompositeOptions, w0: int, w1: int) -> _SpeakerTimeline:
    """Who is in the big tile, per VAD frame (only participants with video can be)."""
    with_video = [i for i, p in enumerate(participants) if p.video is not None]
    frames = max((a.size for a in audio.activity), default=0)
    rows = [np.pad(audio.activity[i], (0, frames - audio.activity[i].size)) for i in with_video]
    picks = active_speaker(rows, opts.speaker, initial=0) if rows else []
    timeline = _SpeakerTimeline([with_video[p] for p in picks], audio.vad_start_ms)
    timeline.segments = [(max(s, w0), min(e, w1), who)
                         for s, e, who in segments(timeline.per_frame, VAD_FRAME_MS, audio.vad_start_ms)
                         if e > w0 and s < w1]
    return timeline


class _Tiler:
    """Turns each participant's current decoded frame into a tile-sized, labelled frame."""

    def __init__(self, participants: Sequence[Participant], opts: CompositeOptions) -> None:
        self.participants, self.opts = participants, opts
        self.video = [i for i, p in enumerate(participants) if p.video is not None]
        n = max(1, len(self.video))
        self.rects = speaker_tiles(n, opts.width, opts.height) if opts.layout == "speaker" \
            else grid(n, opts.width, opts.height)
        self.current: dict[int, tuple[float, av.VideoFrame] | None] = {i: None for i in self.video}
        self.pending: dict[int, tuple[float, av.VideoFrame] | None] = {}
        self.cache: dict[tuple[int, int, int], tuple[int, av.VideoFrame]] = {}
        self.labels_drawn = False

    def open(self, stack: ExitStack, start_ms: float, end_ms: float) -> None:
        self.sources: dict[int, Iterator] = {
            i: video_frames(self.participants[i].video, start_ms, end_ms, stack) for i in self.video}
        for i in self.video:
            self.pending[i] = next(self.sources[i], None)

    def advance(self, t_ms: float) -> None:
        """Make `current` the latest frame at or before t_ms (+ half a frame) for everyone."""
        half = 500.0 / self.opts.fps
        for i in self.video:
            while self.pending[i] is not None and self.pending[i][0] <= t_ms + half:
                self.current[i] = self.pending[i]
                self.pending[i] = next(self.sources[i], None)

    def slots(self, t_ms: float, big: int | None) -> list[int | None]:
        """Participant index for each rect (None = empty tile)."""
        if not self.video:
            return [None]
        if big is None or big not in self.video:
            return list(self.video)
        return [big] + [i for i in self.video if i != big]

    def tile(self, who: int | None, rect: Rect, t_ms: float) -> av.VideoFrame:
        """The tile for one slot: the participant's frame scaled to the slot, or black."""
        cur = self.current.get(who) if who is not None else None
        live = cur is not None and t_ms - cur[0] <= self.opts.freeze_ms
        key = (who if who is not None else -1, rect.w, rect.h)
        ident = id(cur[1]) if live else 0
        cached = self.cache.get(key)
        if cached is not None and cached[0] == ident:
            return cached[1]
        frame = _scaled(cur[1], rect) if live else _black(rect)
        self.cache[key] = (ident, frame)
        return frame

    def _mask(self, who: int, rect: Rect) -> np.ndarray | None:
        height = max(12, min(32, rect.h // 10 // 2 * 2))
        names = tuple(p.name for p in self.participants)  # one ffmpeg run renders them all
        return render_labels(names, height)[who]

    def labels(self, who: Sequence[int | None]) -> list[tuple[np.ndarray, Rect]]:
        """(mask, canvas box) of each slot's name label, for the composed frame."""
        if not (self.opts.labels and self.opts.layout != "client"):
            return []
        out = []
        for p, rect in zip(who, self.rects):
            if p is None or not self.participants[p].name:
                continue
            mask = self._mask(p, rect)
            box = label_box(rect, *(mask.shape[::-1] if mask is not None else (0, 0)))
            if mask is not None and box is not None:
                out.append((mask, box))
        self.labels_drawn = self.labels_drawn or bool(out)
        return out


def _scaled(src: av.VideoFrame, rect: Rect) -> av.VideoFrame:
    """`src` scaled into a rect.w × rect.h yuv420p frame, aspect kept (letterboxed if needed)."""
    inner = fit(src.width, src.height, Rect(0, 0, rect.w, rect.h))
    if (src.width, src.height, src.format.name) == (rect.w, rect.h, "yuv420p"):
        return src  # already tile-sized: nothing to do (xstack copies it into the canvas)
    if (inner.w, inner.h) == (rect.w, rect.h):
        return src.reformat(rect.w, rect.h, "yuv420p")
    small = src.reformat(inner.w, inner.h, "yuv420p")
    canvas = _black(rect)
    for idx, div in ((0, 1), (1, 2), (2, 2)):
        dst = _plane(canvas, idx, rect.h // div)
        part = _plane(small, idx, inner.h // div)
        y, x, h, w = inner.y // div, inner.x // div, inner.h // div, inner.w // div
        dst[y:y + h, x:x + w] = part[:, :w]
    return canvas


def _plane(frame: av.VideoFrame, index: int, rows: int) -> np.ndarray:
    plane = frame.planes[index]
    return np.frombuffer(plane, dtype=np.uint8).reshape(rows, plane.line_size)


def _black(rect: Rect) -> av.VideoFrame:
    data = np.full((rect.h * 3 // 2, rect.w), 128, dtype=np.uint8)
    data[:rect.h] = 16
    return av.VideoFrame.from_ndarray(data, format="yuv420p")


def _graph(rects: list[Rect], opts: CompositeOptions):
    """buffer × n → xstack (n > 1) → pad to the canvas → fps → sink."""
    graph = av.filter.Graph()
    tb = Fraction(1, opts.fps)
    srcs = [graph.add_buffer(width=r.w, height=r.h, format="yuv420p", time_base=tb) for r in rects]
    if len(rects) > 1:
        layout = "|".join(f"{r.x}_{r.y}" for r in rects)
        stack = graph.add("xstack", f"inputs={len(rects)}:layout={layout}:fill=black")
        for i, s in enumerate(srcs):
            s.link_to(stack, 0, i)
        x, y = 0, 0
    else:
        stack, x, y = srcs[0], rects[0].x, rects[0].y
    pad = graph.add("pad", f"{opts.width}:{opts.height}:{x}:{y}:black")
    fps = graph.add("fps", f"fps={opts.fps}:eof_action=pass")
    sink = graph.add("buffersink")
    stack.link_to(pad)
    pad.link_to(fps)
    fps.link_to(sink)
    graph.configure()
    return graph, srcs, sink


def _drain(sink, stream, out, labels: dict[int, list[tuple[np.ndarray, Rect]]]) -> int:
    """Encode what the graph has ready; labels are burnt into the composed frame (cheap: small boxes)."""
    count = 0
    while True:
        try:
            frame = sink.pull()
        except (av.error.BlockingIOError, av.error.EOFError):
            return count
        boxes = labels.pop(frame.pts, [])
        if boxes:
            frame.make_writable()  # the fps filter may still hold a reference to this frame
            for mask, box in boxes:
                burn_label(frame, mask, box)
        frame.pict_type = NONE_PICT  # input keyframe flags must not leak into x264's decisions
        out.mux(stream.encode(frame))
        count += 1


def _encode_video(out, stream, tiler: _Tiler, ticks: range, speaker_of: _SpeakerTimeline | None,
                  opts: CompositeOptions) -> int:
    _, srcs, sink = _graph(tiler.rects, opts)
    frames, labels = 0, {}
    with ExitStack() as stack:
        tiler.open(stack, ticks.start * 1000 / opts.fps, ticks.stop * 1000 / opts.fps)
        for k in ticks:
            t_ms = k * 1000 / opts.fps
            tiler.advance(t_ms)
            who = tiler.slots(t_ms, speaker_of.at(t_ms) if speaker_of else None)
            labels[k - ticks.start] = tiler.labels(who)
            for src, rect, p in zip(srcs, tiler.rects, who):
                tile = tiler.tile(p, rect, t_ms)
                tile.pts, tile.time_base, tile.duration = k - ticks.start, Fraction(1, opts.fps), 1
                src.push(tile)
            frames += _drain(sink, stream, out, labels)
        for src in srcs:
            src.push(None)
        frames += _drain(sink, stream, out, labels)
    out.mux(stream.encode(None))
    return frames
