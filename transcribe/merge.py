"""Merge every speaker's segments into one time-ordered transcript (pure)."""
from __future__ import annotations

from typing import Iterable

from transcribe.quality import QualityOptions, crosstalk_pairs, repeated_runs
from transcribe.types import Segment


def order_key(seg: Segment) -> tuple:
    return (seg.start_ms, seg.end_ms, seg.speaker.participant_id, seg.speaker.track_id, seg.seq, seg.idx)


def merge_segments(segments: Iterable[Segment], opts: QualityOptions = QualityOptions()) -> list[Segment]:
    """Sort all speakers' segments by time and add the flags that need several of them.

    Crosstalk: when two microphones pick up the same words at the same time, the quieter
    copy is flagged `crosstalk_duplicate` (and hidden); the louder one is the speaker.
    A speaker's text repeated in three or more consecutive segments is a `repetition_loop`.
    """
    ordered = sorted(segments, key=order_key)
    visible = [s for s in ordered if not s.suppressed]
    dupes = {id(visible[i]) for i in crosstalk_pairs(visible, opts)}
    loops = {id(visible[i]) for i in repeated_runs(visible)}
    out = []
    for s in ordered:
        if id(s) in dupes:
            s = s.with_flags("crosstalk_duplicate")
        if id(s) in loops:
            s = s.with_flags("repetition_loop")
        out.append(s)
    return out
