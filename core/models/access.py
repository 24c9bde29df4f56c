"""Who may see a recording beyond its org's admins: grants and per-org access settings.

A grant opens one recording to one user (`kind="user"`, subject = the token's `sub`) or
to everyone in a group (`kind="group"`, subject = a name from the token's `groups`
claim). Participation (creator, a track's participant, the room's creator) needs no row:
`core.access` derives it from the recording itself.
"""
from __future__ import annotations

from typing import Optional

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from core.models._types import ms_field, now_ms

GRANT_KINDS = ("user", "group")


class RecordingGrant(SQLModel, table=True):
    """One recording opened to one user or group (assessors, other interviewers)."""

    __table_args__ = (UniqueConstraint("recording_id", "kind", "subject", name="uq_recording_grant"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    recording_id: str = Field(foreign_key="recording.id", index=True, max_length=64)
    org: str = Field(index=True, max_length=128)
    kind: str = Field(max_length=8)
    subject: str = Field(index=True, max_length=128)
    granted_by: str = Field(default="", max_length=128)
    created_at: int = ms_field(default_factory=now_ms)


class OrgSettings(SQLModel, table=True):
    """Org-wide switches of the access policy (defaults: least access)."""

    org: str = Field(primary_key=True, max_length=128)
    assessors_see_all: bool = False  # assessors read every recording of the org, not only granted ones
    compliance_reads_content: bool = False  # compliance may read media and transcripts, not only metadata
    retention_approval: bool = False  # policy runs wait for a second compliance user's approval (else automatic)
    updated_by: str = Field(default="", max_length=128)
    updated_at: int = ms_field(default_factory=now_ms)
