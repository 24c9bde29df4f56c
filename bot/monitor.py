"""The heartbeat over every peer link of a room: health → recovery ladder, and quality samples.

Every `heartbeat_s` (2.5 s) each link is read once (`PeerLink.stats`: aiortc `getStats()`
for the transport's inbound bytes and each receiver's packets, the recorder's counters for
bytes and frames). A link is healthy when it is connected and media moved since the last
beat (RTP packets or payload bytes of any track; transport bytes before it has tracks —
RTCP alone keeps flowing from a sender whose media stopped, so it does not count); its
`Ladder` turns that into recovery steps, which `on_link` carries out. Every `quality_s`
(5 s) each track's window becomes a `Sample` (with a STUN round trip measured on the ICE
pair, all links at once) handed to `on_samples`.

Every `UNSTICK_S` (1 s) video links are also checked for frames stuck in aiortc's jitter
buffer behind packets that will never come (`PeerLink.unstick`): after a network cut that
would otherwise hold the video for up to 512 packets.

`cost_s` / `reads` measure the monitor's own work (readings, ladders, samples; not the
awaited round trips or recovery actions): the sampling overhead the bot pays.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bot import tap
from bot.ladder import LadderConfig, Step
from bot.quality import Counters, Sample, TrackRef, sample
from core.logging import get_logger

if TYPE_CHECKING:
    from bot.peer import PeerLink

log = get_logger("bot.monitor")
UNSTICK_S = 1.0


@dataclass(frozen=True)
class MonitorConfig:
    ladder: LadderConfig = field(default_factory=LadderConfig)
    quality_s: float = 5.0
    rtt_timeout_s: float = 1.0

    def __post_init__(self) -> None:
        if self.quality_s < self.ladder.heartbeat_s:
            raise ValueError("quality samples cannot be more frequent than the heartbeat")


@dataclass(frozen=True)
class LinkStats:
    connected: bool
    failed: bool
    bytes: int                          # transport bytes received (every track of the link)
    tracks: dict[str, Counters]

    @property
    def activity(self) -> int:
        """A count that grows while media arrives."""
        if not self.tracks:
            return self.bytes
        return sum(c.packets + c.bytes for c in self.tracks.values())


OnLink = Callable[["PeerLink", list[Step], bool, float], Awaitable[None]]


class Monitor:
    def __init__(self, cfg: MonitorConfig, links: Callable[[], list[PeerLink]], socket_up: Callable[[], bool],
                 on_link: OnLink, on_samples: Callable[[list[Sample]], None]) -> None:
        self.cfg, self.links, self.socket_up = cfg, links, socket_up
        self.on_link, self.on_samples = on_link, on_samples
        self.cost_s, self.reads = 0.0, 0

    async def run(self) -> None:
        """Beat until cancelled, on a fixed schedule (a slow beat does not push the later ones,
        so quality windows stay `quality_s` long); one bad beat never stops the next."""
        unstick = asyncio.ensure_future(self._unstick())
        beat = self.cfg.ladder.heartbeat_s
        due = time.monotonic()
        try:
            while True:
                due += beat
                late = time.monotonic() - due
                if late > beat:  # the loop was blocked for whole beats: skip them, do not burst
                    due += beat * int(late // beat)
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                try:
                    await self.tick(time.time())
                except Exception as exc:  # noqa: BLE001 - the recording goes on without this beat
                    log.warning("monitor_tick_failed", error=repr(exc))
        finally:
            unstick.cancel()
            await asyncio.gather(unstick, return_exceptions=True)

    async def _unstick(self) -> None:
        while True:
            await asyncio.sleep(UNSTICK_S)
            for link in list(self.links()):
                try:
                    await link.unstick()
                except Exception as exc:  # noqa: BLE001 - as above
                    log.warning("unstick_failed", error=repr(exc))

    async def tick(self, now: float) -> None:
        due: list[tuple[PeerLink, LinkStats]] = []
        for link in list(self.links()):
            started = time.perf_counter()
            st = await link.stats()
            healthy = st.connected and (link.last_activity is None or st.activity > link.last_activity)
            link.last_activity = st.activity
            for track_id, reading in st.tracks.items():  # a new track's first window starts now
                link.sample_base.setdefault(track_id, reading)
            steps = link.ladder.tick(now, healthy, self.socket_up(), st.failed)
            self._count(started)
            await self.on_link(link, steps, healthy, now)
            if now - link.sampled_s >= self.cfg.quality_s - 0.05:
                due.append((link, st))
        if due:
            rtts = await asyncio.gather(*(tap.ice_rtt_ms(link.pc, self.cfg.rtt_timeout_s) for link, _ in due))
            started = time.perf_counter()
            out = [s for (link, st), rtt in zip(due, rtts) for s in self._samples(link, st, rtt, now)]
            self._count(started)
            if out:
                self.on_samples(out)

    def _count(self, started: float) -> None:
        self.cost_s += time.perf_counter() - started
        self.reads += 1

    def _samples(self, link: PeerLink, st: LinkStats, rtt_ms: float | None, now: float) -> list[Sample]:
        warm = now - link.created_s >= self.cfg.ladder.warmup_s
        out = []
        for track_id, cur in st.tracks.items():
            ref = TrackRef(link.participant_id, track_id, link.kinds.get(track_id, "audio"))
            made = sample(ref, link.sample_base[track_id], cur, connected=st.connected, warm=warm, rtt_ms=rtt_ms)
            if made is not None:
                out.append(made)
        link.sample_base, link.sampled_s = dict(st.tracks), now
        return out
