"""Stored chunks → local playable files (used by the media and reconciliation stages).

    download(key, path)                       one object to a local file
    group_source(group, tmp)                  an input group as one playable file, placed
    stitch_chunks(chunks, start, end, out)    a track's chunks over a timeline span, stitched
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from compositor import container as cbytes
from compositor.probe import probe
from compositor.stitch import Source, StitchReport, join_parts, stitch
from compositor.windows import ChunkRef, InputGroup, window_inputs
from core.errors import InvalidMedia
from workers import broker as res

__all__ = ["download", "group_source", "stitch_chunks"]


def download(key: str, path: Path) -> Path:
    res.store().download(key, str(path))
    return path


def group_source(group: InputGroup, tmp: Path) -> Source:
    """One local playable file for an input group, placed at its header's real start."""
    head = download(group.header.key, tmp / f"{group.header.track_id}-{group.header.seq}.{group.header.container}")
    if not group.parts:
        return Source(head, group.header.start_ms)
    parts = [download(p.key, tmp / f"{p.track_id}-{p.seq}.part") for p in group.parts]
    joined = tmp / f"{group.header.track_id}-{group.header.seq}-joined.{group.header.container}"
    if group.contiguous:
        return Source(join_parts([head, *parts], joined), group.header.start_ms)
    first = parts[0].read_bytes()
    sync = cbytes.first_sync_offset(first, group.header.container)
    if sync is None:
        raise InvalidMedia(f"no cluster/fragment start in chunk {group.parts[0].seq}", code="no_sync_point")
    init = cbytes.init_segment(head.read_bytes(), group.header.container)
    join_parts([init, first[sync:], *parts[1:]], joined)
    return Source(joined, group.header.start_ms, origin_ms=probe(head, require_packets=False).origin_ms)


def stitch_groups(groups: Sequence[InputGroup], out: Path, tmp: Path) -> StitchReport | None:
    """Stitch input groups into `out`; None when they hold no media packets."""
    if not groups:
        return None
    try:
        return stitch([group_source(g, tmp) for g in groups], out)
    except InvalidMedia as exc:
        if exc.code != "empty_media":
            raise
        return None


def stitch_chunks(chunks: Sequence[ChunkRef], start_ms: int, end_ms: int, out: Path, tmp: Path) -> Path | None:
    """A track's chunks overlapping [start_ms, end_ms), stitched (timestamps = timeline ms); None if no media."""
    return out if stitch_groups(window_inputs(chunks, start_ms, end_ms), out, tmp) is not None else None
