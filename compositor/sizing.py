"""Output picture size and frame rate, chosen from what the sources carry (pure math).

The composite shows no more than its sources hold: two 320×180 webcams side by side fit
a 640×360 grid pixel for pixel, and encoding them at 1280×720 spent ~4× the x264 time
(and ~2× the bytes) on upscaled pixels. Nor does it tick faster than its fastest source:
a 15 fps camera composited at 30 fps only repeats frames. Sizes are 16:9 rungs
(`CANVAS_HEIGHTS`) between configured limits: the smallest rung whose tiles hold every
source without shrinking it, else the largest allowed. Frame rates are standard rates at
or above the fastest source (`FRAME_RATES`), capped; the GOP is then a whole number of
seconds (`gop_frames`), so HLS segments stay regular.
"""
from __future__ import annotations

from dataclasses import dataclass
from statistics import median
from typing import Sequence

from compositor.layout import Rect, grid, speaker_tiles

__all__ = ["VideoFormat", "FormatLimits", "CANVAS_HEIGHTS", "FRAME_RATES", "canvas_width", "canvas_size",
           "output_fps", "frame_rate", "choose_format", "common_format", "gop_frames"]

CANVAS_HEIGHTS = (360, 480, 540, 720, 1080)  # 640×360, 854×480, 960×540, 1280×720, 1920×1080
FRAME_RATES = (10, 12, 15, 20, 24, 25, 30, 50, 60)
RATE_TOLERANCE = 0.97  # a source measured at 14.7 fps (ms-rounded timestamps, jitter) is a 15 fps source


@dataclass(frozen=True)
class VideoFormat:
    width: int
    height: int
    fps: int

    def as_list(self) -> list[int]:
        return [self.width, self.height, self.fps]


@dataclass(frozen=True)
class FormatLimits:
    max_height: int = 720
    min_height: int = 360
    max_fps: int = 30
    fallback_fps: int = 15  # no source has video (audio-only tiles): nothing moves but the labels
    gop_s: int = 5  # keyframe interval; divides the 30-s window, so HLS segments are regular


def canvas_width(height: int) -> int:
    """16:9 width for `height`, even (yuv420p)."""
    return 2 * round(height * 8 / 9)


def _rungs(limits: FormatLimits) -> list[int]:
    rungs = [h for h in CANVAS_HEIGHTS if limits.min_height <= h <= limits.max_height]
    if not rungs or rungs[-1] < limits.max_height and limits.max_height not in CANVAS_HEIGHTS:
        rungs.append(limits.max_height // 2 * 2)
    return rungs


def _tiles(layout: str, n: int, width: int, height: int) -> list[Rect]:
    """The rects a source may be shown in (speaker: the big tile, which anyone may get)."""
    if layout == "client":
        return [Rect(0, 0, width, height)]
    if layout == "speaker":
        return speaker_tiles(n, width, height)[:1]
    return grid(n, width, height)[:1]  # grid tiles are all the same size


def _holds(tile: Rect, size: tuple[int, int]) -> bool:
    w, h = size
    return w <= 0 or h <= 0 or (tile.w >= w and tile.h >= h)


def canvas_size(layout: str, sources: Sequence[tuple[int, int]], limits: FormatLimits = FormatLimits(),
                tiles: int | None = None) -> tuple[int, int]:
    """(width, height): the smallest allowed rung whose tiles show every source unshrunk.

    sources: (width, height) of each participant's video; tiles: how many video tiles the
    layout has (default: one per source).
    """
    n = max(1, tiles if tiles is not None else len(sources))
    rungs = _rungs(limits)
    for h in rungs:
        w = canvas_width(h)
        if all(_holds(t, s) for t in _tiles(layout, n, w, h) for s in sources):
            return w, h
    return canvas_width(rungs[-1]), rungs[-1]


def output_fps(rates: Sequence[float], limits: FormatLimits = FormatLimits()) -> int:
    """The lowest standard rate at or above the fastest source (capped at max_fps)."""
    allowed = sorted({r for r in FRAME_RATES if r <= limits.max_fps} | {limits.max_fps})
    known = [r for r in rates if r > 0]
    if not known:
        return min(limits.fallback_fps, limits.max_fps)
    need = max(known) * RATE_TOLERANCE
    return next((r for r in allowed if r >= need), allowed[-1])


def frame_rate(pts_ms: Sequence[float]) -> float:
    """A source's frame rate from its frame timestamps: the typical (median) frame interval,
    so gaps and stalls do not count. 0.0 with fewer than two frames."""
    ordered = sorted(pts_ms)
    steps = [b - a for a, b in zip(ordered, ordered[1:]) if b > a]
    return 1000.0 / median(steps) if steps else 0.0


def choose_format(layout: str, sources: Sequence[tuple[int, int, float]], limits: FormatLimits = FormatLimits(),
                  tiles: int | None = None) -> VideoFormat:
    """Output format for sources given as (width, height, fps)."""
    w, h = canvas_size(layout, [(s[0], s[1]) for s in sources], limits, tiles)
    return VideoFormat(w, h, output_fps([s[2] for s in sources], limits))


def common_format(formats: Sequence[VideoFormat]) -> VideoFormat:
    """One format for windows that are joined by stream copy: the largest of each."""
    if not formats:
        raise ValueError("no formats")
    top = max(formats, key=lambda f: (f.height, f.width))
    return VideoFormat(top.width, top.height, max(f.fps for f in formats))


def gop_frames(fps: int, limits: FormatLimits = FormatLimits()) -> int:
    """Keyframe interval in frames: a whole number of seconds."""
    return fps * limits.gop_s
