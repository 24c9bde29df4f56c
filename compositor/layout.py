"""Pure layout math: grid tiles, active-speaker tiles, label boxes, speaker hysteresis.

Nothing here touches media: rectangles and per-frame activity in, rectangles and
speaker indices out, so every rule is tested with plain values.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

__all__ = ["Rect", "fit", "grid_shape", "grid", "speaker_tiles", "label_box",
           "SpeakerRules", "active_speaker", "segments"]


@dataclass(frozen=True)
class Rect:
    x: int
    y: int
    w: int
    h: int

    @property
    def right(self) -> int:
        return self.x + self.w

    @property
    def bottom(self) -> int:
        return self.y + self.h


def _even(v: float) -> int:
    """yuv420p needs even sizes and offsets (chroma is subsampled 2×2)."""
    return max(2, int(v) // 2 * 2)


def fit(src_w: int, src_h: int, box: Rect) -> Rect:
    """The largest rect with the source's aspect ratio, centered in `box` (even numbers)."""
    if src_w <= 0 or src_h <= 0:
        return box
    scale = min(box.w / src_w, box.h / src_h)
    w, h = min(box.w, _even(src_w * scale)), min(box.h, _even(src_h * scale))
    return Rect(box.x + (box.w - w) // 4 * 2, box.y + (box.h - h) // 4 * 2, w, h)


def grid_shape(n: int, width: int, height: int, aspect: float = 16 / 9) -> tuple[int, int]:
    """(cols, rows) giving the largest tiles of `aspect` for n tiles; ties → fewer rows."""
    if not 1 <= n <= 9:
        raise ValueError(f"grid supports 1-9 tiles, not {n}")
    best: tuple[float, int, int, int] | None = None
    for cols in range(1, n + 1):
        rows = math.ceil(n / cols)
        tile_w = min(width / cols, height / rows * aspect)
        key = (round(tile_w, 3), -rows, cols, rows)
        if best is None or key[:2] > best[:2]:
            best = key
    assert best is not None
    return best[2], best[3]


def grid(n: int, width: int, height: int, aspect: tuple[int, int] = (16, 9)) -> list[Rect]:
    """Tiles of `aspect` (w, h) for n participants, centered; an incomplete last row is centered too."""
    cols, rows = grid_shape(n, width, height, aspect[0] / aspect[1])
    tile = fit(*aspect, Rect(0, 0, width // cols, height // rows))
    top = (height - rows * tile.h) // 4 * 2
    tiles = []
    for i in range(n):
        row, col = divmod(i, cols)
        in_row = min(cols, n - row * cols)
        left = (width - in_row * tile.w) // 4 * 2
        tiles.append(Rect(left + col * tile.w, top + row * tile.h, tile.w, tile.h))
    return tiles


def speaker_tiles(n: int, width: int, height: int, aspect: tuple[int, int] = (16, 9)) -> list[Rect]:
    """Slot 0 = the large speaker tile; slots 1..n-1 = thumbnails in a strip below it."""
    if n <= 1:
        return grid(1, width, height, aspect)
    strip_h = _even(height / 5)
    big = fit(*aspect, Rect(0, 0, width, height - strip_h))
    thumbs = n - 1
    thumb = fit(*aspect, Rect(0, 0, min(width // thumbs, _even(strip_h * aspect[0] / aspect[1])), strip_h))
    left = (width - thumbs * thumb.w) // 4 * 2
    return [big] + [Rect(left + i * thumb.w, height - strip_h, thumb.w, thumb.h) for i in range(thumbs)]


def label_box(tile: Rect, text_w: int, text_h: int, margin: int = 4) -> Rect | None:
    """Where a name label goes inside a tile (bottom-left); None if the tile is too small."""
    w, h = min(text_w, tile.w - 2 * margin), text_h
    if w < 8 or h + 2 * margin > tile.h:
        return None
    return Rect(tile.x + margin, tile.bottom - margin - h, _even(w), _even(h))


@dataclass(frozen=True)
class SpeakerRules:
    """Hysteresis for the active speaker.

    frame_ms: VAD frame length. smooth_ms: a participant "speaks" when at least
    `threshold` of the VAD frames in the last smooth_ms are speech. sustain_ms: a new
    speaker must speak this long before the big tile moves. min_hold_ms: after a switch,
    no other switch for this long (no flicker on cross-talk).
    """

    frame_ms: int = 30
    smooth_ms: int = 300
    threshold: float = 0.5
    sustain_ms: int = 1000
    min_hold_ms: int = 2000


def active_speaker(activity: Sequence[Sequence[bool]], rules: SpeakerRules = SpeakerRules(),
                   initial: int = 0) -> list[int]:
    """The speaker shown in the big tile for each VAD frame (participants × frames in)."""
    if not activity:
        return []
    n, frames = len(activity), min(len(a) for a in activity)
    k = max(1, rules.smooth_ms // rules.frame_ms)
    sums, runs = [0] * n, [0] * n
    current, held = initial, rules.min_hold_ms
    out: list[int] = []
    for f in range(frames):
        levels = []
        for p in range(n):
            sums[p] += int(bool(activity[p][f])) - (int(bool(activity[p][f - k])) if f >= k else 0)
            level = sums[p] / k
            runs[p] = runs[p] + rules.frame_ms if level >= rules.threshold else 0
            levels.append(level)
        held += rules.frame_ms
        ready = [p for p in range(n) if p != current and runs[p] >= rules.sustain_ms
                 and levels[p] > levels[current]]
        if ready and held >= rules.min_hold_ms:
            current, held = max(ready, key=lambda p: (runs[p], -p)), 0
        out.append(current)
    return out


def segments(per_frame: Sequence[int], frame_ms: int, start_ms: int = 0) -> list[tuple[int, int, int]]:
    """Run-length encode per-frame speakers into (start_ms, end_ms, speaker)."""
    out: list[tuple[int, int, int]] = []
    for f, who in enumerate(per_frame):
        t = start_ms + f * frame_ms
        if out and out[-1][2] == who:
            out[-1] = (out[-1][0], t + frame_ms, who)
        else:
            out.append((t, t + frame_ms, who))
    return out
