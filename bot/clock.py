"""Media time → wall clock: RTP timestamps mapped through RTCP sender reports.

Every RTP stream counts in its own clock (90 kHz video, 48 kHz Opus) from a random
origin, so tracks cannot be lined up by their timestamps. A sender report (SR) pairs
one RTP timestamp with the sender's wall clock (NTP), which places every frame of that
stream on the sender's clock; audio and video of one sender then line up exactly.

A report's wall-clock half is not exact either (aiortc stamps it after sending the frame,
i.e. capture + encode + pacing): of the last `REPORTS` reports the one that puts the
stream earliest is used, which filters that jitter and still follows slow clock drift.

The sender's clock may be off from ours (a laptop without NTP). Each participant gets
one `ClockOffset`: the smallest `arrival - sender_ntp` over its reports, i.e. clock
skew + the shortest one-way delay. Adding it places media at "when it would reach us
on the fastest path", on our clock, for both tracks of a participant alike.
Until the first report arrives (or without the tap, which is where reports are read)
the frames' arrival on our clock places them: `ts/rate + min(arrival - hold - ts/rate)`,
where `hold` is how long aiortc's jitter buffer keeps a complete frame before releasing
it (an audio frame waits for 4 more, a video frame for the first packet of the next).
Taking the minimum over frames drops network and event-loop jitter; like the offset it
is frozen at first use so a track's segments stay back to back.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

NTP_UNIX_OFFSET_S = 2_208_988_800  # 1900-01-01 → 1970-01-01
REPORTS = 32
WRAP = 1 << 32


def ntp_to_epoch_s(ntp: int) -> float:
    """64-bit NTP timestamp (32.32 fixed point since 1900) → Unix seconds."""
    return (ntp >> 32) - NTP_UNIX_OFFSET_S + (ntp & 0xFFFFFFFF) / WRAP


def unwrap32(raw: int, near: int) -> int:
    """The extended value ≡ `raw` (mod 2³²) closest to `near` (an extended timestamp)."""
    base = near - (near % WRAP) + (raw % WRAP)
    candidates = (base - WRAP, base, base + WRAP)
    return min(candidates, key=lambda v: abs(v - near))


class ClockOffset:
    """Our clock minus a sender's clock (+ the shortest delay), shared by its tracks.

    The estimate improves with each report until it is first used; from then on it is
    frozen, so every segment of every track of the participant is placed with the same
    value: consecutive segments stay back to back and audio stays on video.
    """

    def __init__(self) -> None:
        self.estimate_s: float | None = None
        self.frozen = False

    def observe(self, arrival_s: float, sender_s: float) -> None:
        delta = arrival_s - sender_s
        if not self.frozen and (self.estimate_s is None or delta < self.estimate_s):
            self.estimate_s = delta

    def use(self) -> float | None:
        """The offset to apply (freezes it), or None before any report."""
        if self.estimate_s is not None:
            self.frozen = True
        return self.estimate_s


@dataclass(frozen=True)
class SenderReport:
    rtp_ext: int       # the report's RTP timestamp, extended like the frames' timestamps
    sender_s: float    # the sender's wall clock at that timestamp (Unix seconds)


class StreamClock:
    """Maps one stream's extended RTP timestamps to wall-clock seconds (see module doc).

    `origin` is the raw 32-bit RTP timestamp of the stream's first frame: frames carry
    timestamps relative to it (aiortc's receiver subtracts it), reports carry raw ones.
    """

    def __init__(self, rate: int, offset: ClockOffset) -> None:
        self.rate, self.offset = rate, offset
        self.origin: int | None = None
        self.last_ext = 0
        self.reports: deque[SenderReport] = deque(maxlen=REPORTS)
        self.anchor_s: float | None = None   # min(arrival - hold - ts/rate)
        self.anchor_frozen = False

    def frame(self, ext_ts: int, arrival_s: float | None = None, hold_s: float = 0.0) -> None:
        self.last_ext = max(self.last_ext, ext_ts)
        if arrival_s is not None and not self.anchor_frozen:
            anchor = arrival_s - hold_s - ext_ts / self.rate
            if self.anchor_s is None or anchor < self.anchor_s:
                self.anchor_s = anchor

    def arrival_s(self, ext_ts: int) -> float | None:
        """Our wall clock for a frame timestamp from arrivals (freezes the anchor)."""
        if self.anchor_s is None:
            return None
        self.anchor_frozen = True
        return ext_ts / self.rate + self.anchor_s

    def sender_report(self, rtp_raw: int, ntp: int, arrival_s: float) -> None:
        """Record an SR; ignored until the stream's origin is known."""
        if self.origin is None:
            return
        sender_s = ntp_to_epoch_s(ntp)
        self.reports.append(SenderReport(unwrap32((rtp_raw - self.origin) % WRAP, self.last_ext), sender_s))
        self.offset.observe(arrival_s, sender_s)

    def reset(self) -> None:
        """After a timestamp discontinuity old reports and arrivals describe other timestamps."""
        self.reports.clear()
        self.anchor_s, self.anchor_frozen = None, False

    def wall_s(self, ext_ts: int) -> float | None:
        """Our wall clock for a frame timestamp, or None before the first report."""
        if not self.reports:
            return None
        offset = self.offset.use()
        if offset is None:
            return None
        best = min(self.reports, key=lambda r: r.sender_s - r.rtp_ext / self.rate)
        return best.sender_s + (ext_ts - best.rtp_ext) / self.rate + offset
