"""Decode stitched tracks (timestamps = timeline ms) into what the compositor needs.

`video_frames` yields (timeline_ms, frame) from a little before a window; `audio_samples`
returns a mono float32 buffer covering an exact sample range of the timeline, with
silence wherever the track had no audio. Audio frames are laid end to end unless their
timestamps jump by more than `resync_ms` (a gap, or an overlap at a chunk seam, where the
later chunk wins), so 1-ms timestamp rounding in Matroska never produces clicks and
codec padding at chunk ends never accumulates into drift.
"""
from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Iterator

import av
import numpy as np

from compositor.probe import open_media

__all__ = ["video_frames", "audio_samples"]

AV_TIME_BASE = 1_000_000


def _seek(container: av.container.InputContainer, stream: av.stream.Stream, ms: float) -> None:
    if ms <= 0:
        return
    try:
        container.seek(int(ms * 1000), backward=True, any_frame=False)  # AV_TIME_BASE (µs)
    except av.error.FFmpegError:
        container.seek(0)


def video_frames(path: Path, start_ms: float, end_ms: float, stack: ExitStack,
                 preroll_ms: float = 1000.0) -> Iterator[tuple[float, av.VideoFrame]]:
    """Frames of the first video stream from the keyframe before `start_ms - preroll_ms` to `end_ms`."""
    container = stack.enter_context(open_media(path))
    if not container.streams.video:
        return
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    _seek(container, stream, start_ms - preroll_ms)
    for frame in container.decode(stream):
        if frame.pts is None:
            continue
        t_ms = float(frame.pts * frame.time_base * 1000)
        yield t_ms, frame
        if t_ms >= end_ms:
            return


def audio_samples(path: Path, first: int, last: int, rate: int = 48000, resync_ms: float = 3.0) -> np.ndarray:
    """Mono float32 samples [first, last) of the timeline (sample numbers at `rate`)."""
    out = np.zeros(max(0, last - first), dtype=np.float32)
    with open_media(path) as container:
        if not container.streams.audio:
            return out
        stream = container.streams.audio[0]
        _seek(container, stream, first * 1000 / rate - 500)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        cursor: int | None = None
        tolerance = int(resync_ms * rate / 1000)
        for frame in container.decode(stream):
            if frame.pts is None:
                continue
            at = int(round(float(frame.pts * frame.time_base) * rate))
            if at >= last:
                break
            for piece in resampler.resample(frame):
                pcm = piece.to_ndarray().reshape(-1)
                if cursor is None or abs(at - cursor) > tolerance:
                    cursor = at  # first frame, or a real jump (gap): trust the timestamp
                _place(out, pcm, cursor - first)
                cursor += pcm.size
                at = cursor
    return out


def _place(out: np.ndarray, pcm: np.ndarray, offset: int) -> None:
    lo, hi = max(0, offset), min(out.size, offset + pcm.size)
    if hi > lo:
        out[lo:hi] = pcm[lo - offset:hi - offset]
