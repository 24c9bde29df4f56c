"""The room state machine, as pure functions over plain values.

    created ──join──▶ active ──everyone gone──▶ orphaned ──timeout──▶ ended
       │                 │  ◀──someone back────────┘                    ▲
       └──end/expired────┴──────────────end─────────────────────────────┘
"""
from __future__ import annotations

from dataclasses import dataclass

TRANSITIONS: dict[str, frozenset[str]] = {
    "created": frozenset({"active", "ended"}),
    "active": frozenset({"orphaned", "ended"}),
    "orphaned": frozenset({"active", "ended"}),
    "ended": frozenset(),
}
LIVE_STATES = ("created", "active", "orphaned")


def can_transition(src: str, dst: str) -> bool:
    return dst in TRANSITIONS.get(src, frozenset())


def sources_for(dst: str) -> tuple[str, ...]:
    """The states from which `dst` may be reached (for compare-and-set updates)."""
    return tuple(sorted(src for src, dsts in TRANSITIONS.items() if dst in dsts))


@dataclass(frozen=True)
class Timeouts:
    """How long an empty room may stay orphaned, and an unused room created (ms)."""

    orphan_ms: int
    unused_ms: int


def sweep_decision(state: str, connected: int, state_age_ms: int, timeouts: Timeouts) -> tuple[str, str] | None:
    """What the orphan closer should do with one room: `(new_state, reason)` or None.

    `connected` counts visible participants with a live socket; `state_age_ms` is the
    time since the room entered `state`.
    """
    if state == "active" and connected == 0:
        return "orphaned", "everyone_left"
    if state == "orphaned" and connected > 0:
        return "active", "rejoined"
    if state == "orphaned" and state_age_ms >= timeouts.orphan_ms:
        return "ended", "orphaned"
    if state == "created" and connected == 0 and state_age_ms >= timeouts.unused_ms:
        return "ended", "unused"
    return None
