"""Media quality of received tracks, and why media went missing (pure: no aiortc, no I/O).

A **sample** compares two readings of one track's cumulative counters: RTP packets
received and lost and the interarrival jitter (RFC 3550 §6.4.1, as aiortc's
`RTCInboundRtpStreamStats` has them), payload bytes and frames as the recorder got them
(aiortc's stats have no per-track bytes or frame rate), the picture size from VP8 key
frames, and a round trip measured on the ICE pair. **Frozen** is counters, not a state
machine: the link is connected, yet neither a packet nor a byte of the track moved for
the whole window (after the first media, or after the warm-up for a track that never
sent any).

An **absence** is an interval in which a participant's media is missing, with its cause:
`network` (the link's recovery ladder saw the problem), `participant_left`, `bot_restart`
(a new bot found chunks of an earlier one). One is open per participant at a time; it is
closed when that participant's media flows again, on whatever link.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Counters:
    """One reading of a received track's cumulative counters."""

    at_s: float                      # epoch seconds of the reading
    packets: int                     # RTP packets received
    lost: int                        # RTP packets lost (cumulative; may shrink when late ones arrive)
    jitter: int | None            # interarrival jitter, RTP clock units
    clock_rate: int
    bytes: int                       # payload bytes the recorder received
    frames: int                      # frames (or audio packets) the recorder received
    size: tuple[int, int] | None = None
    bytes_known: bool = True         # False on the decoded-frame fallback (no encoded bytes seen)


@dataclass(frozen=True)
class TrackRef:
    participant_id: str
    track_id: str
    kind: str                        # audio | video


@dataclass(frozen=True)
class Sample:
    """One window of one track, shaped as `POST /v1/recordings/{id}/quality` takes it."""

    participant_id: str
    track_id: str
    at_ms: int
    window_ms: int
    packets: int
    lost: int
    jitter_ms: float | None
    rtt_ms: float | None
    bitrate_kbps: float | None
    fps: float | None
    width: int | None
    height: int | None
    frozen: bool

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def frozen(prev: Counters, cur: Counters, connected: bool, warm: bool) -> bool:
    """Connected, but not one packet or byte of the track moved between the two readings."""
    moved = cur.packets > prev.packets or cur.bytes > prev.bytes or cur.frames > prev.frames
    return connected and not moved and (warm or prev.packets > 0)


def sample(track: TrackRef, prev: Counters, cur: Counters, *, connected: bool, warm: bool,
           rtt_ms: float | None = None) -> Sample | None:
    """The window between two readings (None if it is empty)."""
    window_s = cur.at_s - prev.at_s
    if window_s <= 0:
        return None
    packets = max(0, cur.packets - prev.packets)
    video = track.kind == "video"
    size = cur.size if video else None
    return Sample(
        participant_id=track.participant_id, track_id=track.track_id, at_ms=round(prev.at_s * 1000),
        window_ms=round(window_s * 1000), packets=packets, lost=max(0, cur.lost - prev.lost),
        jitter_ms=round(cur.jitter * 1000 / cur.clock_rate, 2) if cur.jitter is not None and cur.clock_rate else None,
        rtt_ms=round(rtt_ms, 2) if rtt_ms is not None else None,
        bitrate_kbps=round((cur.bytes - prev.bytes) * 8 / window_s / 1000, 1) if cur.bytes_known else None,
        fps=round((cur.frames - prev.frames) / window_s, 1) if video else None,
        width=size[0] if size else None, height=size[1] if size else None,
        frozen=frozen(prev, cur, connected, warm))


@dataclass(frozen=True)
class GapReport:
    """A closed absence, shaped as the quality route takes it (epoch ms)."""

    participant_id: str
    cause: str
    start_s: float
    end_s: float

    def to_json(self) -> dict[str, Any]:
        return {"participant_id": self.participant_id, "cause": self.cause,
                "start_ms": round(self.start_s * 1000), "end_ms": round(self.end_s * 1000)}


class Absences:
    """Open absences per participant; every transition returns the absence it closed, if any."""

    def __init__(self) -> None:
        self.open: dict[str, tuple[str, float]] = {}

    def start(self, pid: str, cause: str, at_s: float) -> GapReport | None:
        """Media of `pid` is missing since `at_s` because of `cause`. An open absence of the same
        cause is kept (it started earlier); one of another cause ends where this one starts."""
        current = self.open.get(pid)
        if current is not None and current[0] == cause:
            return None
        begin = at_s if current is None else max(at_s, current[1])
        self.open[pid] = (cause, begin)
        if current is None or begin <= current[1]:
            return None
        return GapReport(pid, current[0], current[1], begin)

    def since(self, pid: str) -> float | None:
        current = self.open.get(pid)
        return current[1] if current else None

    def end(self, pid: str, at_s: float) -> GapReport | None:
        """Media of `pid` flows again from `at_s`."""
        current = self.open.pop(pid, None)
        if current is None or at_s <= current[1]:
            return None
        return GapReport(pid, current[0], current[1], at_s)

    def close_all(self, at_s: float, keep: tuple[str, ...] = ()) -> list[GapReport]:
        """End every open absence whose cause is in `keep` at `at_s`; forget the others."""
        out = [GapReport(pid, cause, start, at_s) for pid, (cause, start) in self.open.items()
               if cause in keep and at_s > start]
        self.open.clear()
        return out
