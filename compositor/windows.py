"""Pure planning of incremental work: which windows can be composited, from which chunks.

A window is an aligned slot [i·W, (i+1)·W) of the recording timeline. It is *ready*
when every track's chunks reach past its end, or when any track reaches `grace_ms`
beyond it (a participant stopped sending: composite with a gap rather than wait).
Its *inputs* are the chunks overlapping it (plus a look-back for VAD and AAC priming);
a timeslice continuation needs its chain's header blob too. The fingerprint of the
inputs decides whether a stored window is still valid (late chunks change it).
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

__all__ = ["ChunkRef", "InputGroup", "with_ends", "timeline_end", "ready_windows", "window_inputs",
           "window_count", "fingerprint"]


@dataclass(frozen=True)
class ChunkRef:
    """A stored chunk, placed on the timeline (ms from the recording start)."""

    track_id: str
    seq: int
    start_ms: int
    end_ms: int | None = None
    continuation: bool = False
    sha256: str = ""
    key: str = ""
    container: str = "webm"


@dataclass(frozen=True)
class InputGroup:
    """Chunks read as one source: a self-contained chunk, or a header + continuations.

    `contiguous` is True when `parts` directly follow `header` (plain byte-join); False
    means resume from the init segment at the first cluster/fragment of parts[0].
    """

    header: ChunkRef
    parts: tuple[ChunkRef, ...] = field(default_factory=tuple)
    contiguous: bool = True


def with_ends(chunks: Sequence[ChunkRef]) -> list[ChunkRef]:
    """Chunks of one track by seq, unknown ends filled with the next chunk's start."""
    ordered = sorted(chunks, key=lambda c: c.seq)
    out = []
    for i, c in enumerate(ordered):
        end = c.end_ms
        if end is None:
            end = ordered[i + 1].start_ms if i + 1 < len(ordered) else c.start_ms
        out.append(ChunkRef(c.track_id, c.seq, c.start_ms, max(end, c.start_ms), c.continuation, c.sha256,
                            c.key, c.container))
    return out


def timeline_end(tracks: Mapping[str, Sequence[ChunkRef]]) -> int:
    """The last instant any track covers."""
    return max((c.end_ms or c.start_ms for cs in tracks.values() for c in with_ends(cs)), default=0)


def window_count(end_ms: int, window_ms: int) -> int:
    return max(1, math.ceil(end_ms / window_ms))


def ready_windows(tracks: Mapping[str, Sequence[ChunkRef]], window_ms: int, grace_ms: int) -> list[int]:
    """Windows whose inputs are all present (or given up waiting for), while recording."""
    ends = [max((c.end_ms or 0 for c in with_ends(cs)), default=0) for cs in tracks.values() if cs]
    if not ends:
        return []
    complete, furthest = min(ends), max(ends)
    last = max(complete // window_ms, max(0, furthest - grace_ms) // window_ms)
    return list(range(last))


def window_inputs(chunks: Sequence[ChunkRef], start_ms: int, end_ms: int) -> list[InputGroup]:
    """Input groups of one track for timeline span [start_ms, end_ms) (look-back included by caller)."""
    ordered = with_ends(chunks)
    groups: list[InputGroup] = []
    header: ChunkRef | None = None
    for c in ordered:
        if not c.continuation:
            header = c
        overlaps = c.start_ms < end_ms and (c.end_ms or c.start_ms) > start_ms
        if not overlaps:
            continue
        if not c.continuation:
            groups.append(InputGroup(c))
        elif header is None:
            continue  # a continuation without its header cannot be read
        elif groups and groups[-1].header == header:
            last = groups[-1]
            groups[-1] = InputGroup(header, last.parts + (c,), last.contiguous)
        else:
            contiguous = c.seq == header.seq + 1
            groups.append(InputGroup(header, (c,), contiguous))
    return groups


def fingerprint(payload: object) -> str:
    """Stable hash of a JSON-able description of a window's inputs and settings."""
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]
