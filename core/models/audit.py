"""The audit log: one append-only, hash-chained row per security-relevant event.

`seq` orders the chain; `prev_hash` is the previous row's `hash`, `hash` covers this row's
fields and `prev_hash` (see `core.audit.entry_hash`). Rows are never updated or deleted by
the service; an edited, deleted or truncated row breaks the chain, and signed checkpoints
of the head kept in the object store catch a cut tail.
"""
from __future__ import annotations

from typing import Any, Optional

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

from core.models._types import json_field, ms_field, now_ms


class AuditEvent(SQLModel, table=True):
    __table_args__ = (Index("ix_auditevent_org_seq", "org", "seq"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    seq: int = Field(sa_column_kwargs={"unique": True}, index=False)
    at: int = ms_field(default_factory=now_ms)
    org: str = Field(max_length=128)
    actor: str = Field(default="", max_length=256)
    actor_role: str = Field(default="", max_length=32)
    action: str = Field(max_length=64)
    object_type: str = Field(default="", max_length=32)
    object_id: str = Field(default="", max_length=256)
    detail: Optional[dict[str, Any]] = json_field(default=None)
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)
