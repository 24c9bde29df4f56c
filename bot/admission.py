"""Admission: how many participants one bot process records at once (pure).

Every bot process follows every room, and the signaling seat of the recorder participant
admits one of them per room (the others get `already_in_room` and retry while the room
lives). Admission is the step before the seat: a process that would go over its cap by
recording a room does not try the seat, so the room is left to another process, or to this
one on a later retry once its load has dropped. The cap comes from `bench/bot` (CPU per
media-second per participant; one process = one event loop ≈ one core).

A room counts for its connected participants, at least `room_floor` (an interview has two
people, and the second often joins after the bot). A process recording nothing admits any
room, however large: otherwise a room over the cap would never be recorded. A room
already held can still grow past the cap (people join; the bot never drops a room it
records): its live count then counts, and new rooms are refused until load falls.
A process with some load waits a little before trying a seat (`delay_s`, in proportion
to its load), so that among several processes with room the least loaded tends to win.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from core import errors


@dataclass(frozen=True)
class AdmissionPolicy:
    max_participants: int = 16
    room_floor: int = 2
    spread_s: float = 1.0          # seat attempt delay at full load (0 at no load)


@dataclass(frozen=True)
class Decision:
    admitted: bool
    reason: str                    # idle | fits | at_capacity
    needs: int                     # what the room counts for
    load: int                      # participants this process records, without this room
    cap: int
    delay_s: float = 0.0

    def log_fields(self) -> dict[str, object]:
        return {"reason": self.reason, "room_participants": self.needs, "load": self.load, "cap": self.cap}


class AtCapacity(errors.RateLimited):
    """This bot process records as many participants as its cap allows; another one may take the room."""

    code = "bot_at_capacity"


def room_count(present: int, policy: AdmissionPolicy) -> int:
    """What one room counts for against the cap."""
    return max(present, policy.room_floor)


def decide(load: int, present: int, policy: AdmissionPolicy) -> Decision:
    """Admit a room of `present` connected participants to a process recording `load`?"""
    needs, cap = room_count(present, policy), policy.max_participants
    delay = round(policy.spread_s * min(1.0, load / cap), 3)
    if load == 0:
        return Decision(True, "idle", needs, load, cap)
    if load + needs <= cap:
        return Decision(True, "fits", needs, load, cap, delay)
    return Decision(False, "at_capacity", needs, load, cap)


@dataclass
class Admission:
    """One process's admitted rooms and what each was admitted for."""

    policy: AdmissionPolicy
    rooms: dict[str, int] = field(default_factory=dict)

    def load(self, live: Mapping[str, int] | None = None, without: str | None = None) -> int:
        """Participants recorded now: per admitted room its admitted count or its live count, the larger."""
        live = live or {}
        return sum(max(n, live.get(rid, 0)) for rid, n in self.rooms.items() if rid != without)

    def admit(self, room_id: str, present: int, live: Mapping[str, int] | None = None) -> Decision:
        """Decide, and reserve the room's count when admitted (in one step: no other room can slip in)."""
        decision = decide(self.load(live, without=room_id), present, self.policy)
        if decision.admitted:
            self.rooms[room_id] = decision.needs
        return decision

    def release(self, room_id: str) -> None:
        self.rooms.pop(room_id, None)
