"""The recovery ladder of one peer link (pure): a health reading per heartbeat in, steps out.

Thresholds from the video-call postmortem we follow (seed 004), seen from the bot's side
of each link (the bot makes the offers, so it is the side that drives recovery):

    heartbeat 2.5 s   one health reading: connected, and inbound bytes moved since the last
    2 bad ticks       → PROBLEM (the debounce that removes most false alarms)
    9 s of trouble    → ICE_RESTART (cheap; keeps the peer connection)
    18 s of trouble   → RENEGOTIATE (new peer connection, new offer)
    socket down       → WAIT_SOCKET instead (nothing to restart over), up to 60 s → REJOIN
    healthy again     → RECOVERED

"Trouble" is timed from the later of the problem and the signaling socket coming back,
so a socket that flaps restarts the clock rather than killing a link that just healed.
A failed connection (ICE consent expired) skips straight to RENEGOTIATE. A link is not
judged during its warm-up (first media can take seconds after `connected`).
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Step(str, Enum):
    PROBLEM = "problem"
    ICE_RESTART = "ice_restart"
    RENEGOTIATE = "renegotiate"
    WAIT_SOCKET = "wait_socket"
    REJOIN = "rejoin"
    RECOVERED = "recovered"


@dataclass(frozen=True)
class LadderConfig:
    heartbeat_s: float = 2.5
    bad_ticks: int = 2
    ice_restart_s: float = 9.0
    renegotiate_s: float = 18.0
    socket_wait_s: float = 60.0
    warmup_s: float = 8.0

    def __post_init__(self) -> None:
        if not 0 < self.heartbeat_s <= self.ice_restart_s < self.renegotiate_s:
            raise ValueError("recovery ladder: need 0 < heartbeat_s <= ice_restart_s < renegotiate_s")
        if self.bad_ticks < 1 or self.socket_wait_s <= 0 or self.warmup_s < 0:
            raise ValueError("recovery ladder: bad_ticks >= 1, socket_wait_s > 0, warmup_s >= 0")


class Ladder:
    """One link's climb; `tick()` once per heartbeat with the link's health."""

    def __init__(self, cfg: LadderConfig, started_s: float) -> None:
        self.cfg, self.started_s = cfg, started_s
        self.bad = 0
        self.problem_s: float | None = None   # when the problem was declared
        self.clock_s: float | None = None     # start of the recovery clock
        self.socket_down_s: float | None = None
        self.taken: set[Step] = set()

    @property
    def in_trouble(self) -> bool:
        return self.problem_s is not None

    def tick(self, now: float, healthy: bool, socket_up: bool = True, failed: bool = False) -> list[Step]:
        self._socket(now, socket_up)
        if healthy and not failed:
            steps = [Step.RECOVERED] if self.problem_s is not None else []
            self.bad, self.problem_s, self.clock_s, self.taken = 0, None, None, set()
            return steps
        if not failed and now - self.started_s < self.cfg.warmup_s:
            return []
        self.bad += 1
        if self.bad < self.cfg.bad_ticks and not failed:
            return []
        steps = []
        if self.problem_s is None:
            self.problem_s = self.clock_s = now
            steps.append(Step.PROBLEM)
        return steps + self._climb(now, failed)

    def _socket(self, now: float, up: bool) -> None:
        if not up and self.socket_down_s is None:
            self.socket_down_s = now
        elif up and self.socket_down_s is not None:
            self.socket_down_s = None
            self.taken -= {Step.WAIT_SOCKET, Step.REJOIN}
            if self.clock_s is not None:
                self.clock_s = now  # the socket is back: give the link its full chance again

    def _climb(self, now: float, failed: bool) -> list[Step]:
        assert self.clock_s is not None
        if self.socket_down_s is not None:
            steps = self._once(Step.WAIT_SOCKET)
            if now - self.socket_down_s >= self.cfg.socket_wait_s:
                steps += self._once(Step.REJOIN)
            return steps
        elapsed = now - self.clock_s
        if failed or elapsed >= self.cfg.renegotiate_s:
            return self._once(Step.RENEGOTIATE)
        if elapsed >= self.cfg.ice_restart_s:
            return self._once(Step.ICE_RESTART)
        return []

    def _once(self, step: Step) -> list[Step]:
        if step in self.taken:
            return []
        self.taken.add(step)
        return [step]
