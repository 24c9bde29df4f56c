"""The completeness ledger (pure): which seconds of which track are present or missing.

Chunk order of arrival does not matter: everything is derived from (seq, real start,
duration). A gap's cause is `missing_seq` (a sequence number never arrived),
`rejected_chunk` (it arrived but was refused as invalid media) or `timeline_hole`
(all seqs present but their real times leave a hole, e.g. a paused recorder).

Why media went missing is reported separately (`CauseSpan`s: the bot saw the participant's
network fail, the bot itself restart, the participant leave): `label_gaps` gives a
`missing_seq` / `timeline_hole` gap the reported cause that overlaps it most; `detected`
keeps what the chunks alone show.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Iterable

from core.timeline import Span, merge_spans

HOLE_TOLERANCE_MS = 500


@dataclass(frozen=True)
class ChunkSpan:
    seq: int
    start_ms: int          # on the recording timeline
    duration_ms: int | None


@dataclass(frozen=True)
class Gap:
    start_ms: int
    end_ms: int
    cause: str
    seqs: tuple[int, ...] = ()
    detected: str = ""     # what the chunk spans show, when `cause` is a reported reason

    @property
    def seconds(self) -> float:
        return round((self.end_ms - self.start_ms) / 1000, 3)

    def to_dict(self) -> dict:
        return {**asdict(self), "seqs": list(self.seqs), "seconds": self.seconds,
                "detected": self.detected or self.cause}


@dataclass(frozen=True)
class CauseSpan:
    """A reported reason for missing media, on the recording timeline."""

    start_ms: int
    end_ms: int
    cause: str              # network | bot_restart | participant_left


@dataclass
class TrackLedger:
    spans: list[Span] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    missing_seqs: list[int] = field(default_factory=list)

    @property
    def covered_seconds(self) -> float:
        return round(sum(s.duration_ms for s in merge_spans(self.spans)) / 1000, 3)


def effective_spans(chunks: Iterable[ChunkSpan]) -> dict[int, Span]:
    """Each chunk's span; an unknown duration runs to the next chunk's start (continuations)."""
    ordered = sorted(chunks, key=lambda c: c.seq)
    out: dict[int, Span] = {}
    for i, c in enumerate(ordered):
        duration = c.duration_ms
        if duration is None:
            nxt = ordered[i + 1] if i + 1 < len(ordered) and ordered[i + 1].seq == c.seq + 1 else None
            duration = max(0, nxt.start_ms - c.start_ms) if nxt else 0
        out[c.seq] = Span(c.start_ms, c.start_ms + duration)
    return out


def build_track_ledger(chunks: Iterable[ChunkSpan], rejected_seqs: Iterable[int] = (),
                       tolerance_ms: int = HOLE_TOLERANCE_MS) -> TrackLedger:
    """Spans, gaps (with cause) and missing seqs of one track."""
    spans = effective_spans(chunks)
    rejected = set(rejected_seqs) - set(spans)
    if not spans:
        return TrackLedger(missing_seqs=sorted(rejected),
                           gaps=[Gap(0, 0, "rejected_chunk", tuple(sorted(rejected)))] if rejected else [])
    present = sorted(spans)
    missing = sorted(set(range(0, present[-1] + 1)) - set(present))
    gaps: list[Gap] = []
    for prev, nxt in zip(present, present[1:]):
        hole = Span(spans[prev].end_ms, spans[nxt].start_ms)
        between = tuple(range(prev + 1, nxt))
        if between:
            cause = "rejected_chunk" if all(s in rejected for s in between) else "missing_seq"
            gaps.append(Gap(hole.start_ms, max(hole.start_ms, hole.end_ms), cause, between))
        elif hole.duration_ms > tolerance_ms:
            gaps.append(Gap(hole.start_ms, hole.end_ms, "timeline_hole"))
    if present[0] > 0:
        lead = tuple(range(0, present[0]))
        cause = "rejected_chunk" if all(s in rejected for s in lead) else "missing_seq"
        gaps.insert(0, Gap(0, spans[present[0]].start_ms, cause, lead))
    trailing = tuple(sorted(s for s in rejected if s > present[-1]))
    if trailing:
        gaps.append(Gap(spans[present[-1]].end_ms, spans[present[-1]].end_ms, "rejected_chunk", trailing))
    return TrackLedger(spans=list(spans.values()), gaps=gaps,
                       missing_seqs=sorted(set(missing) | set(trailing)))


RELABELED = ("missing_seq", "timeline_hole")  # a refused chunk stays `rejected_chunk`


def _overlap(gap: Gap, span: CauseSpan) -> int:
    """How much of the gap the span explains (a zero-length gap: 1 if the span holds it)."""
    if gap.end_ms <= gap.start_ms:
        return int(span.start_ms <= gap.start_ms <= span.end_ms)
    return max(0, min(gap.end_ms, span.end_ms) - max(gap.start_ms, span.start_ms))


def label_gaps(gaps: Iterable[Gap], causes: Iterable[CauseSpan]) -> list[Gap]:
    """Each missing-media gap with the reported cause that overlaps it most (else as it was)."""
    spans = list(causes)
    out = []
    for gap in gaps:
        best = max(spans, key=lambda c: _overlap(gap, c), default=None) if gap.cause in RELABELED else None
        if best is not None and _overlap(gap, best) > 0:
            gap = Gap(gap.start_ms, gap.end_ms, best.cause, gap.seqs, detected=gap.cause)
        out.append(gap)
    return out


def source_by_second(spans: Iterable[dict], total_ms: int) -> list[str | None]:
    """Which source ("bot" | "client") plays each second of a participant (the one holding its
    midpoint), from the plan the media stage stored; None = neither had media."""
    ordered = sorted(spans, key=lambda s: s["start_ms"])
    out: list[str | None] = []
    for second in range(-(-total_ms // 1000)):
        mid = second * 1000 + 500
        out.append(next((s["source"] for s in ordered if s["start_ms"] <= mid < s["end_ms"]), None))
    return out


def participant_sources(sources: dict[str, dict], total_ms: int) -> dict[str, dict]:
    """The ledger's view of a reconciled recording: per participant its plan plus `by_second`."""
    return {pid: {**plan, "by_second": source_by_second(plan.get("spans", []), total_ms)}
            for pid, plan in sorted(sources.items())}
