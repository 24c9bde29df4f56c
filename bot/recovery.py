"""One room's recovery and quality reporting: what the heartbeat decides, carried out.

The session owns the links; this owns what happens to them when media stops:

    PROBLEM       a `network` absence opens at the link's last media; key frames are asked for
    ICE_RESTART   ICE restarted on the same connection where the library can (aiortc cannot:
                  then key frames are asked for again and the ladder goes on to the next rung)
    RENEGOTIATE   a new peer connection and offer to the participant (`relink`)
    WAIT_SOCKET   nothing: signaling is down, there is nothing to restart over
    REJOIN        after `socket_wait_s` without signaling every link is rebuilt at the next join
    media again   the participant's open absence closes where their media came back

Absences also open when a participant leaves (`participant_left`) and when this bot finds
media of an earlier bot in the ledger (`bot_restart`); each closed one is posted with the
quality samples, and the ledger labels the hole between chunks with it. Every step is
logged with `room_id` (bound by the session), `participant` and `phase`.
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from bot.ladder import Step
from bot.monitor import Monitor, MonitorConfig
from bot.outbox import Post, QualityOutbox
from bot.quality import Absences
from core.logging import get_logger

if TYPE_CHECKING:
    from bot.peer import PeerLink

log = get_logger("bot.recovery")
DRAIN_S = 10.0


class Recovery:
    def __init__(self, cfg: MonitorConfig, links: Callable[[], dict[str, PeerLink]],
                 present: Callable[[str], bool], relink: Callable[[str], Awaitable[None]],
                 socket_up: Callable[[], bool], post: Post) -> None:
        self.links, self.present, self.relink = links, present, relink
        self.absences = Absences()
        self.outbox = QualityOutbox(post)
        self.monitor = Monitor(cfg, lambda: list(links().values()), socket_up, self.on_link,
                               lambda samples: self.outbox.add(samples))
        self.relink_all = False
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        if self.task is None:
            self.task = asyncio.ensure_future(self.monitor.run())

    # ---- what the heartbeat found ------------------------------------------------------
    async def on_link(self, link: PeerLink, steps: list[Step], healthy: bool, now: float) -> None:
        pid = link.participant_id
        for step in steps:
            trouble_s = round(now - link.ladder.problem_s, 1) if link.ladder.problem_s is not None else 0.0
            log.info("link_recovery", participant=pid, phase=step.value, trouble_s=trouble_s)
            await self._carry_out(link, step)
        since = self.absences.since(pid)
        if healthy and since is not None and self.links().get(pid) is link:
            back = link.media_since(since)
            if back is not None:
                self.outbox.add(gap=self.absences.end(pid, back))

    async def _carry_out(self, link: PeerLink, step: Step) -> None:
        pid = link.participant_id
        if step is Step.PROBLEM:
            self.outbox.add(gap=self.absences.start(pid, "network", link.last_media_s() or link.created_s))
            link.request_keyframes()
        elif step is Step.ICE_RESTART:
            if not await link.restart_ice():
                log.info("ice_restart_unavailable", participant=pid, phase="ice_restart",
                         reason="aiortc has no ICE restart; waiting for the renegotiation rung")
                link.request_keyframes()
        elif step is Step.RENEGOTIATE and self.links().get(pid) is link and self.present(pid):
            await self.relink(pid)
        elif step is Step.REJOIN:
            self.relink_all = True

    # ---- what the session saw ------------------------------------------------------------
    def failed(self, link: PeerLink) -> None:
        """The link's connection failed (ICE consent expired): its media is missing from its last frame."""
        self.outbox.add(gap=self.absences.start(link.participant_id, "network", link.last_media_s() or time.time()))

    def left(self, pid: str, link: PeerLink | None) -> None:
        at = (link.last_media_s() if link is not None else None) or time.time()
        self.outbox.add(gap=self.absences.start(pid, "participant_left", at))

    def restarted(self, media_ends_ms: dict[str, int]) -> None:
        """An earlier bot recorded this room: each participant's media is missing from where it ends."""
        for pid, end_ms in media_ends_ms.items():
            self.absences.start(pid, "bot_restart", end_ms / 1000)
        if media_ends_ms:
            log.info("bot_restart_gaps_open", participants=sorted(media_ends_ms), phase="bot_start")

    def settle(self) -> None:
        """Before the links close: end the absences their media has ended since the last beat."""
        for pid, link in self.links().items():
            since = self.absences.since(pid)
            back = link.media_since(since) if since is not None else None
            if back is not None:
                self.outbox.add(gap=self.absences.end(pid, back))

    async def stop(self) -> None:
        """Stop the heartbeat; post what is left (open absences of people still gone included)."""
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        for gap in self.absences.close_all(time.time(), keep=("network", "participant_left")):
            self.outbox.add(gap=gap)
        await self.outbox.drain(DRAIN_S)
        m = self.monitor
        log.info("quality_reported", posted=self.outbox.posted, dropped=self.outbox.dropped, reads=m.reads,
                 monitor_ms_per_read=round(1000 * m.cost_s / m.reads, 3) if m.reads else None)
