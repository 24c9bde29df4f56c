"""Rooms, transitions and call history in the SQL database (sync; call from a thread).

Transitions are compare-and-set updates on the current state, so any number of API
processes (joins, `POST …/end`, the orphan closer) can race and each step is stored once.
"""
from __future__ import annotations

from sqlalchemy import func, update
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from core.db import session_scope
from core.models import CallSession, Room, RoomTransition
from core.models._types import now_ms
from signaling.lifecycle import LIVE_STATES, can_transition


def insert_room(engine: Engine, room: Room, actor: str) -> Room:
    """Store a new room and its creation step."""
    with session_scope(engine) as s:
        s.add(room)
        s.flush()
        s.add(RoomTransition(room_id=room.id, from_state=None, to_state=room.state, reason="created",
                             actor=actor, at=room.created_at))
    return room


def get_room(engine: Engine, room_id: str) -> Room | None:
    with session_scope(engine) as s:
        return s.get(Room, room_id)


def live_rooms_for_key(engine: Engine, org: str, slot_id: str, candidate_id: str) -> list[Room]:
    with session_scope(engine) as s:
        return list(s.exec(select(Room).where(Room.org == org, Room.slot_id == slot_id,
                                              Room.candidate_id == candidate_id,
                                              col(Room.state).in_(LIVE_STATES))))


def live_rooms(engine: Engine) -> list[Room]:
    """Every room not ended (the orphan closer's worklist)."""
    with session_scope(engine) as s:
        return list(s.exec(select(Room).where(col(Room.state).in_(LIVE_STATES))))


def transition(engine: Engine, room_id: str, to: str, reason: str, actor: str = "",
               now: int | None = None, expect: str | None = None) -> tuple[Room | None, str | None]:
    """Move a room to `to` if allowed from its current state (and it is `expect`, if given).

    Returns `(room, from_state)`; `(room, None)` when the room exists but the step is not
    allowed (or another process took it first), `(None, None)` when there is no such room.
    """
    at = now if now is not None else now_ms()
    for _ in range(3):
        with session_scope(engine) as s:
            room = s.get(Room, room_id)
            if room is None:
                return None, None
            src = room.state
            if not can_transition(src, to) or (expect is not None and src != expect):
                return room, None
            values = _step_values(room, to, reason, at)
            done = s.execute(update(Room).where(col(Room.id) == room_id, col(Room.state) == src).values(**values)
                             .execution_options(synchronize_session=False))
            if done.rowcount != 1:
                s.rollback()
                continue
            s.add(RoomTransition(room_id=room_id, from_state=src, to_state=to, reason=reason, actor=actor, at=at))
            if to == "ended":
                _close_open_sessions(s, room_id, "room_ended", at)
            changed = Room.model_validate({**room.model_dump(), **values})
        return changed, src
    return get_room(engine, room_id), None


def _step_values(room: Room, to: str, reason: str, at: int) -> dict:
    """Columns a step sets (the state compare-and-set makes the read-modify-write safe)."""
    values: dict = {"state": to, "state_changed_at": at}
    if to == "active" and room.started_at is None:
        values["started_at"] = at
    if to == "ended":
        values.update(ended_at=at, end_reason=reason)
    return values


def _close_open_sessions(s, room_id: str, reason: str, at: int) -> None:
    s.execute(update(CallSession).where(col(CallSession.room_id) == room_id, col(CallSession.left_at).is_(None))
              .values(left_at=at, leave_reason=reason))


def transitions_of(engine: Engine, room_id: str) -> list[RoomTransition]:
    with session_scope(engine) as s:
        return list(s.exec(select(RoomTransition).where(RoomTransition.room_id == room_id)
                           .order_by(col(RoomTransition.id))))


def open_session(engine: Engine, session: CallSession) -> None:
    """A participant instance joined (fresh, not resumed)."""
    with session_scope(engine) as s:
        s.add(session)


def resume_session(engine: Engine, room_id: str, participant_id: str, instance_id: str) -> None:
    """The same instance came back: it never really left."""
    with session_scope(engine) as s:
        latest = select(func.max(CallSession.id)).where(*_session_key(room_id, participant_id, instance_id))
        s.execute(update(CallSession).where(col(CallSession.id) == latest.scalar_subquery())
                  .values(left_at=None, leave_reason=None, reconnects=CallSession.reconnects + 1))


def close_session(engine: Engine, room_id: str, participant_id: str, instance_id: str, reason: str,
                  now: int | None = None) -> None:
    with session_scope(engine) as s:
        s.execute(update(CallSession).where(*_session_key(room_id, participant_id, instance_id),
                                            col(CallSession.left_at).is_(None))
                  .values(left_at=now if now is not None else now_ms(), leave_reason=reason))


def _session_key(room_id: str, participant_id: str, instance_id: str) -> tuple:
    return (col(CallSession.room_id) == room_id, col(CallSession.participant_id) == participant_id,
            col(CallSession.instance_id) == instance_id)


def history_of(engine: Engine, room_id: str) -> list[CallSession]:
    with session_scope(engine) as s:
        return list(s.exec(select(CallSession).where(CallSession.room_id == room_id)
                           .order_by(col(CallSession.id))))
