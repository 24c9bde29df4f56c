"""Rooms, their lifecycle history and the call history of their participants.

A room is a state machine: created → active → ended, active → orphaned → ended
(orphaned → active when someone comes back). Every transition is one `RoomTransition`
row; every connection session of a participant is one `CallSession` row.
"""
from __future__ import annotations

from typing import Optional

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

from core.models._types import json_field, ms_field, new_id, now_ms

ROOM_STATES = ("created", "active", "orphaned", "ended")


class Room(SQLModel, table=True):
    """One interview room; `(org, slot_id, candidate_id)` is its idempotency key."""

    __table_args__ = (Index("ix_room_slot", "org", "slot_id", "candidate_id"),)

    id: str = Field(default_factory=lambda: new_id("room"), primary_key=True, max_length=64)
    org: str = Field(index=True, max_length=128)
    slot_id: str = Field(max_length=128)
    candidate_id: str = Field(max_length=128)
    state: str = Field(default="created", index=True, max_length=16)
    record: bool = True
    layout: str = Field(default="grid", max_length=16)
    title: str = Field(default="", max_length=256)
    vocabulary: Optional[list[str]] = json_field(default=None)
    created_by: str = Field(default="", max_length=128)
    created_at: int = ms_field(default_factory=now_ms)
    state_changed_at: int = ms_field(default_factory=now_ms)
    started_at: Optional[int] = ms_field()
    ended_at: Optional[int] = ms_field()
    end_reason: Optional[str] = Field(default=None, max_length=64)


class RoomTransition(SQLModel, table=True):
    """One step of a room's lifecycle (`from_state` is None for creation)."""

    id: Optional[int] = Field(default=None, primary_key=True)
    room_id: str = Field(foreign_key="room.id", index=True, max_length=64)
    from_state: Optional[str] = Field(default=None, max_length=16)
    to_state: str = Field(max_length=16)
    reason: str = Field(default="", max_length=64)
    actor: str = Field(default="", max_length=128)
    at: int = ms_field(default_factory=now_ms)


class CallSession(SQLModel, table=True):
    """A participant's presence in a room: one row per joining instance (resumes reuse it)."""

    id: Optional[int] = Field(default=None, primary_key=True)
    room_id: str = Field(foreign_key="room.id", index=True, max_length=64)
    participant_id: str = Field(max_length=128)
    instance_id: str = Field(max_length=128)
    role: str = Field(default="candidate", max_length=32)
    display_name: str = Field(default="", max_length=256)
    hidden: bool = False
    joined_at: int = ms_field(default_factory=now_ms)
    left_at: Optional[int] = ms_field()
    leave_reason: Optional[str] = Field(default=None, max_length=64)
    reconnects: int = 0
