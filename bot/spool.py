"""Closed segments stay on local disk until uploaded, with a JSON sidecar describing them.

A bot that dies (or gives up retrying) leaves `<seg>.webm` + `<seg>.json` behind; the
next session of that room uploads them first. A `.webm` without a sidecar is a segment
that was still open: it has no WebM trailer and no known end, so it is dropped.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from bot.segments import ClosedSegment
from bot.track import TrackInfo
from core.logging import get_logger

log = get_logger("bot.spool")


def sidecar(seg: ClosedSegment) -> Path:
    return seg.path.with_suffix(".json")


def save(info: TrackInfo, seg: ClosedSegment) -> None:
    data = {"track": dataclasses.asdict(info), "segment": {**dataclasses.asdict(seg), "path": seg.path.name}}
    tmp = sidecar(seg).with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(sidecar(seg))


def discard(seg: ClosedSegment) -> None:
    seg.path.unlink(missing_ok=True)
    sidecar(seg).unlink(missing_ok=True)


def leftovers(folder: Path) -> list[tuple[TrackInfo, ClosedSegment]]:
    """Closed, not uploaded segments of an earlier run (incomplete ones are deleted)."""
    if not folder.is_dir():
        return []
    out = []
    for meta in sorted(folder.glob("*.json")):
        try:
            data = json.loads(meta.read_text())
            seg = ClosedSegment(**{**data["segment"], "path": folder / data["segment"]["path"]})
            info = TrackInfo(**data["track"])
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("spool_entry_unreadable", file=meta.name, error=str(exc))
            meta.unlink(missing_ok=True)
            continue
        if seg.path.exists():
            out.append((info, seg))
        else:
            meta.unlink(missing_ok=True)
    kept = {seg.path.name for _, seg in out}
    for media in folder.glob("*.webm"):
        if media.name not in kept:
            log.info("spool_incomplete_segment_dropped", file=media.name)
            media.unlink(missing_ok=True)
    return out
