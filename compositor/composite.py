"""Composite one time window of a recording into an H.264 + AAC MP4 segment.

Each participant's stitched track (timestamps = timeline ms) is sampled at the output
frame rate: the tile shows the latest frame at or before each tick, frozen through
short gaps and black after `freeze_ms` without frames. Tiles are scaled with their
aspect kept (`compositor.layout`), labelled, and drawn into one reused output picture
(`compositor.canvas`: only tiles that changed are redrawn) before libx264, one frame per
output tick (no `fps` filter needed: ticks are the output clock). Output frames are numbered from the window start,
audio frames are whole AAC frames at absolute sample positions (see `timing.audio_bounds`),
so windows concatenate by stream copy into one drift-free recording. The canvas size and
frame rate follow the sources (`output_format`, `compositor.sizing`): x264's time grows
with pixels per second, and upscaled or repeated frames carry nothing new.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Sequence

import av
import numpy as np

from core.logging import get_logger
from compositor.canvas import Canvas
from compositor.decode import DecodeAhead, video_frames
from compositor.labels import render_labels
from compositor.layout import Rect, SpeakerRules, active_speaker, grid, label_box, segments, speaker_tiles
from compositor.mix import VAD_FRAME_MS, WindowAudio, window_audio
from compositor.probe import video_source
from compositor.sizing import FormatLimits, VideoFormat, choose_format, gop_frames
from compositor.timing import frame_ticks

__all__ = ["Participant", "CompositeOptions", "WindowResult", "composite_window", "output_format", "sized"]

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
    # Canvas and rate: the workers set them to what the sources justify (`output_format`, `sized`).
    width: int = 1280
    height: int = 720
    fps: int = 30
    sample_rate: int = 48000
    preset: str = "veryfast"
    crf: int = 23
    gop: int = 150  # 5 s at 30 fps: whole seconds dividing a 30-s window, so HLS segments are regular
    audio_bitrate: int = 96000
    # FFmpeg's "fast" AAC coder: half the CPU of its default "twoloop" here, at no loss that
    # FFmpeg's own maintainers could hear at this bitrate (they made it the default in 2018).
    aac_coder: str = "fast"
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


def output_format(participants: Sequence[Participant], layout: str,
                  limits: FormatLimits = FormatLimits()) -> VideoFormat:
    """The canvas and frame rate these participants' videos justify (`compositor.sizing`)."""
    videos = [p.video for p in participants if p.video is not None]
    if layout == "client":
        videos = videos[:1]
    found = [v for v in (video_source(path) for path in videos) if v is not None]
    return choose_format(layout, found, limits, tiles=len(videos))


def sized(opts: CompositeOptions, fmt: VideoFormat, limits: FormatLimits = FormatLimits()) -> CompositeOptions:
    """`opts` rendering at `fmt`, with a keyframe every `limits.gop_s` seconds."""
    return replace(opts, width=fmt.width, height=fmt.height, fps=fmt.fps, gop=gop_frames(fmt.fps, limits))


def composite_window(participants: Sequence[Participant], index: int, window_ms: int, out_path: str | Path,
                     opts: CompositeOptions = CompositeOptions(), end_ms: int | None = None) -> WindowResult:
    """Render window `index` ([index*window_ms, (index+1)*window_ms) on the timeline) to `out_path`.

    `end_ms` (timeline) cuts the last window at the end of the recording.
    """
    w0, w1 = index * window_ms, (index + 1) * window_ms
    if end_ms is not None:
        w1 = max(w0 + 1000 // opts.fps, min(w1, end_ms))
    out_path = Path(out_path)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="window-audio") as pool:
        mixing = pool.submit(window_audio, [p.audio for p in participants], index, window_ms, opts.sample_rate,
                             opts.lookback_ms, opts.vad_aggressiveness, end_ms=w1)
        # The speaker layout needs the voices before its first frame; other layouts mix while video encodes.
        speaker_of = _speaker_timeline(mixing.result(), participants, opts, w0, w1) \
            if opts.layout == "speaker" else None
        with av.open(str(out_path), "w", format="mp4", options={"movflags": "+faststart"}) as out:
            vstream = _video_stream(out, opts)
            astream = _audio_stream(out, opts)
            tiler = _Tiler(participants, opts)
            frames = _encode_video(out, vstream, tiler, frame_ticks(w0, w1, opts.fps), speaker_of, opts)
            audio = mixing.result()
            _encode_audio(out, astream, audio, w0 * opts.sample_rate // 1000, opts)
    result = WindowResult(out_path, index, frames, audio.first, labels=tiler.labels_drawn)
    if speaker_of is not None:
        result.speakers = speaker_of.segments
    return result


def _video_stream(out: av.container.OutputContainer, opts: CompositeOptions) -> av.VideoStream:
    stream = out.add_stream("libx264", rate=opts.fps, options={
        "preset": opts.preset, "crf": str(opts.crf), "g": str(opts.gop), "keyint_min": str(opts.gop),
        # No extra keyframes at scene cuts: x264 would restart its GOP there, and keyframes
        # (HLS segment starts) would no longer fall on whole seconds.
        "sc_threshold": "0"})
    stream.width, stream.height, stream.pix_fmt = opts.width, opts.height, "yuv420p"
    stream.time_base = stream.codec_context.time_base = Fraction(1, opts.fps)
    stream.thread_type = "AUTO"
    return stream


def _audio_stream(out: av.container.OutputContainer, opts: CompositeOptions) -> av.AudioStream:
    stream = out.add_stream("aac", rate=opts.sample_rate, layout="mono", options={"aac_coder": opts.aac_coder})
    stream.bit_rate = opts.audio_bitrate
    stream.time_base = Fraction(1, opts.sample_rate)
    return stream


def _encode_audio(out, stream, audio: WindowAudio, window_first_sample: int, opts: CompositeOptions) -> None:
    """Whole 1024-sample frames; pts relative to the window start (the first may be negative)."""
    step, time_base = 1024, Fraction(1, opts.sample_rate)
    for i in range(0, audio.mix.size - step + 1, step):
        frame = av.AudioFrame.from_ndarray(audio.mix[None, i:i + step], format="fltp", layout="mono")
        frame.sample_rate = opts.sample_rate
        frame.pts = audio.first + i - window_first_sample
        frame.time_base = time_base
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
    """Follows each participant's decoded frames and draws each slot's tile into the canvas."""

    def __init__(self, participants: Sequence[Participant], opts: CompositeOptions) -> None:
        self.participants, self.opts = participants, opts
        self.video = [i for i, p in enumerate(participants) if p.video is not None]
        n = max(1, len(self.video))
        self.rects = speaker_tiles(n, opts.width, opts.height) if opts.layout == "speaker" \
            else grid(n, opts.width, opts.height)
        # participant → (timeline ms, frame, serial number of that decoded frame)
        self.current: dict[int, tuple[float, av.VideoFrame, int] | None] = {i: None for i in self.video}
        self.pending: dict[int, tuple[float, av.VideoFrame] | None] = {}
        self.decoded = 0
        self.labels_drawn = False

    def open(self, stack: ExitStack, start_ms: float, end_ms: float) -> None:
        """Start decoding every participant's video, each in its own thread, a few frames ahead."""
        self.sources: dict[int, Iterator] = {}
        threads = 0 if len(self.video) * 2 <= (os.cpu_count() or 1) else 1  # see video_frames
        for i in self.video:
            self.sources[i] = DecodeAhead(video_frames(self.participants[i].video, start_ms, end_ms, threads=threads))
            stack.callback(self.sources[i].close)
        for i in self.video:
            self.pending[i] = next(self.sources[i], None)

    def advance(self, t_ms: float) -> None:
        """Make `current` the latest frame at or before t_ms (+ half a frame) for everyone."""
        half = 500.0 / self.opts.fps
        for i in self.video:
            while self.pending[i] is not None and self.pending[i][0] <= t_ms + half:
                self.decoded += 1
                self.current[i] = (*self.pending[i], self.decoded)
                self.pending[i] = next(self.sources[i], None)

    def slots(self, t_ms: float, big: int | None) -> list[int | None]:
        """Participant index for each rect (None = empty tile)."""
        if not self.video:
            return [None]
        if big is None or big not in self.video:
            return list(self.video)
        return [big] + [i for i in self.video if i != big]

    def draw(self, canvas: Canvas, slot: int, who: int | None, t_ms: float) -> None:
        """The slot's tile: the participant's current frame (frozen up to freeze_ms), else black."""
        rect = self.rects[slot]
        cur = self.current.get(who) if who is not None else None
        live = cur is not None and t_ms - cur[0] <= self.opts.freeze_ms
        ident = (who, cur[2] if live else None)  # serial numbers, never id(): ids are reused
        canvas.draw(slot, rect, ident, cur[1] if live else None, self.label(who, rect))

    def label(self, who: int | None, rect: Rect) -> tuple[np.ndarray, Rect] | None:
        """(mask, canvas box) of a participant's name label in `rect`, if labels are on."""
        if who is None or not (self.opts.labels and self.opts.layout != "client") \
                or not self.participants[who].name:
            return None
        height = max(12, min(32, rect.h // 10 // 2 * 2))
        mask = render_labels(tuple(p.name for p in self.participants), height)[who]  # one ffmpeg run, cached
        box = label_box(rect, *(mask.shape[::-1] if mask is not None else (0, 0)))
        if mask is None or box is None:
            return None
        self.labels_drawn = True
        return mask, box


def _encode_video(out, stream, tiler: _Tiler, ticks: range, speaker_of: _SpeakerTimeline | None,
                  opts: CompositeOptions) -> int:
    """One encoded frame per output tick, k/fps s on the timeline (pts from the window start)."""
    canvas = Canvas(opts.width, opts.height)
    frame, frames = canvas.frame, 0
    frame.time_base = Fraction(1, opts.fps)
    with ExitStack() as stack:
        tiler.open(stack, ticks.start * 1000 / opts.fps, ticks.stop * 1000 / opts.fps)
        for k in ticks:
            t_ms = k * 1000 / opts.fps
            tiler.advance(t_ms)
            for slot, who in enumerate(tiler.slots(t_ms, speaker_of.at(t_ms) if speaker_of else None)):
                tiler.draw(canvas, slot, who, t_ms)
            frame.pts = k - ticks.start
            frame.pict_type = NONE_PICT  # input keyframe flags must not leak into x264's decisions
            out.mux(stream.encode(frame))
            frames += 1
    out.mux(stream.encode(None))
    return frames
