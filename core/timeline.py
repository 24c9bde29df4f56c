"""Pure time math on a recording's timeline (milliseconds from its start).

Never take chunk boundaries as timestamps: a chunk's place is its real start time.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class Span:
    """A half-open interval [start_ms, end_ms) on the recording timeline."""

    start_ms: int
    end_ms: int

    @property
    def duration_ms(self) -> int:
        return max(0, self.end_ms - self.start_ms)


def to_timeline(epoch_ms: int, recording_start_ms: int) -> int:
    """Wall-clock epoch ms → ms from the recording start (never negative)."""
    return max(0, epoch_ms - recording_start_ms)


def merge_spans(spans: Iterable[Span], tolerance_ms: int = 0) -> list[Span]:
    """Union of spans; neighbours closer than `tolerance_ms` are joined."""
    out: list[Span] = []
    for span in sorted((s for s in spans if s.duration_ms > 0), key=lambda s: s.start_ms):
        if out and span.start_ms <= out[-1].end_ms + tolerance_ms:
            last = out[-1]
            out[-1] = Span(last.start_ms, max(last.end_ms, span.end_ms))
        else:
            out.append(span)
    return out


def find_gaps(spans: Iterable[Span], start_ms: int, end_ms: int, tolerance_ms: int = 0) -> list[Span]:
    """Holes in [start_ms, end_ms) not covered by any span (beyond `tolerance_ms`)."""
    gaps: list[Span] = []
    cursor = start_ms
    for span in merge_spans(spans, tolerance_ms):
        if span.start_ms - cursor > tolerance_ms:
            gaps.append(Span(cursor, span.start_ms))
        cursor = max(cursor, span.end_ms)
    if end_ms - cursor > tolerance_ms:
        gaps.append(Span(cursor, end_ms))
    return gaps


def window_index(t_ms: int, window_ms: int) -> int:
    """Index of the aligned window containing timeline time `t_ms`."""
    return max(0, t_ms) // window_ms


def windows_overlapping(span: Span, window_ms: int) -> range:
    """Indices of aligned windows a span touches."""
    if span.duration_ms <= 0:
        return range(0)
    return range(window_index(span.start_ms, window_ms), window_index(span.end_ms - 1, window_ms) + 1)


def ms_to_timestamp(ms: float, sep: str = ".") -> str:
    """`3723004` → `01:02:03.004` (WebVTT) or with sep=',' (SRT)."""
    total = int(round(ms))
    h, rem = divmod(total, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, milli = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{milli:03d}"
