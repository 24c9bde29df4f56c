"""Retention: per-org policies, candidate outcome events, matter tags, legal holds, frozen
deletion manifests and their items, erasure requests, signed deletion receipts, tombstones.

Item statuses (one row per recording × artifact kind, plus kind "record" for the
recording's own metadata, which goes last):

    due ──run: still due, no hold──▶ deleting ──objects, then rows──▶ deleted
     │                                  (a SIGKILL here: the re-run finishes it)
     └──run: held now, or no longer due──▶ skipped
    held   (listed by the preview as kept, with the holds that keep it; never deleted)

Manifest statuses: pending → running → done. With the org's `retention_approval` on, a
policy manifest runs only once approved by another compliance user.
"""
from __future__ import annotations

from typing import Any, Optional

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from core.models._types import json_field, ms_field, new_id, now_ms

ITEM_STATES = ("due", "held", "deleting", "deleted", "skipped")
MANIFEST_STATES = ("pending", "running", "done")
ERASURE_STATES = ("pending", "deferred", "running", "complete")


class RetentionPolicy(SQLModel, table=True):
    """An org's keep-rules (`core.retention.Rule`s as `{kind: [{days, after}]}`) and its lock.

    `salt` is the org's secret for salted hashes of candidate ids and object keys."""

    org: str = Field(primary_key=True, max_length=128)
    rules: Optional[dict[str, Any]] = json_field(default=None)
    locked: bool = False
    locked_by: str = Field(default="", max_length=128)
    locked_at: Optional[int] = ms_field()
    salt: str = Field(max_length=64)
    updated_by: str = Field(default="", max_length=128)
    updated_at: int = ms_field(default_factory=now_ms)


class CandidateEvent(SQLModel, table=True):
    """A hiring outcome (hired | rejected | withdrawn) that rules can count from."""

    __table_args__ = (Index("ix_candidateevent_org_candidate", "org", "candidate_id"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    org: str = Field(max_length=128)
    candidate_id: str = Field(max_length=128)  # a salted hash once the candidate is erased
    type: str = Field(max_length=16)
    at: int = ms_field(default_factory=now_ms)
    created_by: str = Field(default="", max_length=128)
    created_at: int = ms_field(default_factory=now_ms)


class RecordingMatter(SQLModel, table=True):
    """A matter tag on a recording (legal holds can name a matter)."""

    __table_args__ = (UniqueConstraint("recording_id", "matter", name="uq_recording_matter"),
                      Index("ix_recordingmatter_org_matter", "org", "matter"))

    id: Optional[int] = Field(default=None, primary_key=True)
    recording_id: str = Field(foreign_key="recording.id", index=True, max_length=64)
    org: str = Field(max_length=128)
    matter: str = Field(max_length=128)
    created_by: str = Field(default="", max_length=128)
    created_at: int = ms_field(default_factory=now_ms)


class LegalHold(SQLModel, table=True):
    """Keeps everything of the recordings it covers (scope: recording | candidate | room |
    matter) from policy runs and erasures until released."""

    __table_args__ = (Index("ix_legalhold_org_scope_target", "org", "scope", "target"),)

    id: str = Field(default_factory=lambda: new_id("hold"), primary_key=True, max_length=64)
    org: str = Field(max_length=128)
    scope: str = Field(max_length=16)
    target: str = Field(max_length=128)
    reason: str = Field(default="", max_length=1024)
    created_by: str = Field(default="", max_length=128)
    created_at: int = ms_field(default_factory=now_ms)
    released_at: Optional[int] = ms_field()
    released_by: str = Field(default="", max_length=128)
    release_reason: str = Field(default="", max_length=1024)


class RetentionManifest(SQLModel, table=True):
    """A frozen preview: what a run may delete (its items), made at `at` by `created_by`."""

    id: str = Field(default_factory=lambda: new_id("rman"), primary_key=True, max_length=64)
    org: str = Field(index=True, max_length=128)
    purpose: str = Field(default="policy", max_length=16)  # policy | erasure
    at: int = ms_field(default_factory=now_ms)
    status: str = Field(default="pending", max_length=16)
    needs_approval: bool = False
    approved_by: str = Field(default="", max_length=128)
    approved_at: Optional[int] = ms_field()
    erasure_id: Optional[str] = Field(default=None, max_length=64)
    receipt_id: Optional[str] = Field(default=None, max_length=64)
    summary: Optional[dict[str, Any]] = json_field(default=None)
    created_by: str = Field(default="", max_length=128)
    created_at: int = ms_field(default_factory=now_ms)
    started_at: Optional[int] = ms_field()
    finished_at: Optional[int] = ms_field()


class ManifestItem(SQLModel, table=True):
    """One artifact kind of one recording in a manifest (see the module doc for statuses)."""

    __table_args__ = (UniqueConstraint("manifest_id", "recording_id", "kind", name="uq_manifest_item"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    manifest_id: str = Field(foreign_key="retentionmanifest.id", index=True, max_length=64)
    recording_id: str = Field(index=True, max_length=64)
    kind: str = Field(max_length=16)
    due_at: Optional[int] = ms_field()
    status: str = Field(default="due", max_length=16)
    held_by: Optional[list[str]] = json_field(default=None)
    objects: Optional[list[Any]] = json_field(default=None)  # [[key, size], …] when previewed
    object_count: int = 0
    bytes: int = ms_field(default=0)
    rows: Optional[dict[str, int]] = json_field(default=None)  # table → rows when previewed
    deleted_objects: Optional[list[Any]] = json_field(default=None)  # [[key, size], …] by the run
    deleted_rows: Optional[dict[str, int]] = json_field(default=None)
    note: str = Field(default="", max_length=256)
    done_at: Optional[int] = ms_field()


class ErasureRequest(SQLModel, table=True):
    """A candidate's erasure (GDPR Art. 17). `candidate_id` is kept only until complete;
    `candidate_hash` (salted) stays."""

    id: str = Field(default_factory=lambda: new_id("era"), primary_key=True, max_length=64)
    org: str = Field(index=True, max_length=128)
    candidate_id: Optional[str] = Field(default=None, max_length=128)
    candidate_hash: str = Field(max_length=64)
    status: str = Field(default="pending", max_length=16)
    held_by: Optional[list[str]] = json_field(default=None)
    recordings: Optional[list[str]] = json_field(default=None)
    manifest_id: Optional[str] = Field(default=None, max_length=64)
    receipt_id: Optional[str] = Field(default=None, max_length=64)
    requested_by: str = Field(default="", max_length=128)
    requested_at: int = ms_field(default_factory=now_ms)
    completed_at: Optional[int] = ms_field()


class DeletionReceipt(SQLModel, table=True):
    """What a run deleted (counts, bytes, salted key hashes per kind), signed (Ed25519)."""

    id: str = Field(default_factory=lambda: new_id("rcpt"), primary_key=True, max_length=64)
    org: str = Field(index=True, max_length=128)
    manifest_id: str = Field(index=True, max_length=64)
    erasure_id: Optional[str] = Field(default=None, max_length=64)
    body: Optional[dict[str, Any]] = json_field(default=None)
    signature: str = Field(default="", max_length=256)
    public_key: str = Field(default="", max_length=1024)
    created_at: int = ms_field(default_factory=now_ms)


class RecordingTombstone(SQLModel, table=True):
    """A recording deleted whole: its row stays (status "deleted", personal fields cleared)
    with this row pointing at the receipt that proves it."""

    recording_id: str = Field(foreign_key="recording.id", primary_key=True, max_length=64)
    org: str = Field(index=True, max_length=128)
    deleted_at: int = ms_field(default_factory=now_ms)
    manifest_id: str = Field(max_length=64)
    receipt_id: Optional[str] = Field(default=None, max_length=64)
