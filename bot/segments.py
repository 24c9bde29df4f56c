"""When to cut a track into segments, and what a closed segment is (pure).

Audio (Opus) can be cut before any packet. Video can only start a segment on a key
frame, so shortly before a segment is due the recorder asks the sender for one (RTCP
PLI) and cuts on the first key frame from then on; if none comes, the segment grows
and the request is repeated (a segment that starts on a delta frame would not decode).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_BAD_ID_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class SegmentPolicy:
    segment_ms: int = 30_000
    keyframe_lead_ms: int = 150     # ask for a key frame this long before the cut
    keyframe_retry_ms: int = 1_000  # repeat the request while none arrives
    stall_ms: int = 1_500           # nothing arrived for this long: close the segment (a hole in the ledger)

    def cut_due(self, kind: str, elapsed_ms: float, keyframe: bool) -> bool:
        """Close the open segment before this frame?"""
        if kind == "audio":
            return elapsed_ms >= self.segment_ms
        return keyframe and elapsed_ms >= self.segment_ms - self.keyframe_lead_ms

    def keyframe_due(self, elapsed_ms: float, since_request_ms: float | None) -> bool:
        """Send a key-frame request (PLI) now?"""
        if elapsed_ms < self.segment_ms - self.keyframe_lead_ms:
            return False
        return since_request_ms is None or since_request_ms >= self.keyframe_retry_ms


@dataclass
class OpenSegment:
    """A segment being written: its first timestamp (ticks) and what we know of its start."""

    seq: int
    path: Path
    first_ts: int
    arrival_s: float          # our clock when its first frame arrived (fallback start)
    last_ts: int = 0
    last_duration: int = 0
    frames: int = 0

    def elapsed_ms(self, ts: int, rate: int) -> float:
        return (ts - self.first_ts) * 1000 / rate

    def duration_ms(self, rate: int) -> int:
        return round((self.last_ts + self.last_duration - self.first_ts) * 1000 / rate)


@dataclass(frozen=True)
class ClosedSegment:
    """A finished segment file, ready to upload as one chunk."""

    track_id: str
    seq: int
    path: Path
    start_ms: int             # epoch ms of its first frame (X-Chunk-Start)
    duration_ms: int
    sha256: str
    size: int
    content_type: str
    clock: str                # "rtcp_sr" or "arrival": where start_ms came from


def track_id_for(participant_id: str, kind: str) -> str:
    """A track id the ingest API accepts (`[A-Za-z0-9][A-Za-z0-9_.-]{0,127}`, no '..')."""
    base = _BAD_ID_CHARS.sub("_", participant_id).replace("..", "_").strip("._-") or "participant"
    return f"{base[:100]}-{kind}"


def frame_duration(prev_ts: int | None, ts: int, default: int, longest: int | None = None) -> int:
    """Ticks between two frames, or `default` for the first, a non-increasing pair, or a step
    longer than `longest` (a hole in the media is not one frame's duration)."""
    if prev_ts is None or ts <= prev_ts or (longest is not None and ts - prev_ts > longest):
        return default
    return ts - prev_ts
