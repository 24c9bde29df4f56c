"""Pure time math for placing media on the recording timeline (milliseconds).

A chunk's place is its real start on the timeline (from `X-Chunk-Start`), never the
sum of previous container durations: browser timeslices are inexact and the Duration
field of a WebM blob is whatever the recorder wrote. Later media is never moved
earlier; when a chunk claims to start before the previous one ended, it is pushed
later by the overlap (and the shift is reported), because timestamps must increase.
Overlaps up to `overlap_tolerance_ms` are left alone: codec padding (an Opus/AAC chunk's
last packet runs a few ms past its real end) would otherwise push every later chunk a
little later and accumulate into drift; the overlapped few ms are simply replaced.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Sequence

__all__ = [
    "ChunkTiming", "Placement", "Placer", "place_chunks", "ms_to_pts", "pts_to_ms", "ms_scale",
    "audio_bounds", "frame_ticks",
]


@dataclass(frozen=True)
class ChunkTiming:
    """What we know of one source before placing it.

    start_ms: its real start on the recording timeline.
    media_start_ms / media_end_ms: first pts and last pts+duration found in the media
    (its own clock), so `media_end_ms - media_start_ms` is the measured duration.
    """

    start_ms: float
    media_start_ms: float
    media_end_ms: float


@dataclass(frozen=True)
class Placement:
    """Where one source lands: timeline_ms = media_ms + offset_ms."""

    offset_ms: float
    start_ms: float
    end_ms: float
    gap_before_ms: float = 0.0
    shifted_ms: float = 0.0


def place_chunks(chunks: Sequence[ChunkTiming], gap_tolerance_ms: float = 40.0,
                 overlap_tolerance_ms: float = 40.0) -> list[Placement]:
    """Place consecutive sources of one track on the timeline.

    Each source starts at its real start unless that would overlap the previous source,
    in which case it starts where the previous one ended (`shifted_ms` > 0). Holes longer
    than `gap_tolerance_ms` are reported as `gap_before_ms` (the stitcher leaves them as
    holes in the timestamps; the compositor fills them with frozen frames / silence).
    """
    placer = Placer(gap_tolerance_ms, overlap_tolerance_ms)
    out = []
    for c in chunks:
        placer.begin(c.start_ms, c.media_start_ms)
        out.append(placer.end(c.media_end_ms))
    return out


class Placer:
    """`place_chunks` one source at a time, for a single pass over the media.

    `begin` needs only where the source's media starts (its offset is known before its
    packets are copied); `end` takes where its media ended once they have been.
    """

    def __init__(self, gap_tolerance_ms: float = 40.0, overlap_tolerance_ms: float = 40.0) -> None:
        self.gap_tolerance_ms, self.overlap_tolerance_ms = gap_tolerance_ms, overlap_tolerance_ms
        self.prev_end: float | None = None
        self._open: tuple[float, float, float, float] | None = None

    def begin(self, start_ms: float, media_start_ms: float) -> float:
        """Offset (timeline_ms = media_ms + offset) of the next source."""
        start, shifted = float(start_ms), 0.0
        if self.prev_end is not None and start < self.prev_end - self.overlap_tolerance_ms:
            shifted, start = self.prev_end - start, self.prev_end
        gap = 0.0 if self.prev_end is None else max(0.0, start - self.prev_end)
        self._open = (start, media_start_ms, gap if gap > self.gap_tolerance_ms else 0.0, shifted)
        return start - media_start_ms

    def end(self, media_end_ms: float) -> Placement:
        """Close the source `begin` opened, given the end of its media (its own clock)."""
        if self._open is None:
            raise RuntimeError("end() without begin()")
        start, media_start, gap, shifted = self._open
        duration = max(0.0, media_end_ms - media_start)
        self._open, self.prev_end = None, start + duration
        return Placement(offset_ms=start - media_start, start_ms=start, end_ms=start + duration,
                         gap_before_ms=gap, shifted_ms=shifted)


def ms_to_pts(ms: float, time_base: Fraction) -> int:
    """Milliseconds → integer timestamp in `time_base` units (rounded to nearest)."""
    return int(round(Fraction(ms).limit_denominator(10**9) / 1000 / time_base))


def pts_to_ms(pts: int, time_base: Fraction) -> float:
    """Integer timestamp in `time_base` → milliseconds."""
    return float(pts * time_base * 1000)


def ms_scale(time_base: Fraction) -> tuple[int, int]:
    """(num, den) with `pts * num / den == pts_to_ms(pts, time_base)` exactly, for per-packet loops.

    int / int is correctly rounded in Python, as float(Fraction) is, and avoids building
    Fractions for every packet (they dominated remuxing time).
    """
    return time_base.numerator * 1000, time_base.denominator


def audio_bounds(index: int, window_ms: int, rate: int, frame: int = 1024) -> tuple[int, int]:
    """Sample range [first, last) of window `index`, aligned to whole codec frames.

    AAC codes 1024-sample frames; windows are concatenated by stream copy, so each
    window must hold whole frames or every boundary would add padding (audio drift).
    The bounds are absolute sample numbers on the timeline, so the concatenation has
    no drift: window audio starts at most one frame (21 ms at 48 kHz) after its video.
    """
    def edge(i: int) -> int:
        return math.ceil(i * window_ms * rate / 1000 / frame) * frame

    return edge(index), edge(index + 1)


def frame_ticks(start_ms: int, end_ms: int, fps: int) -> range:
    """Indices k of output frames at k/fps seconds that fall in [start_ms, end_ms)."""
    first = math.ceil(start_ms * fps / 1000)
    last = math.ceil(end_ms * fps / 1000)
    return range(first, last)
