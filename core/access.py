"""Who may see which recording: the one org check every API package shares."""
from __future__ import annotations

from sqlmodel import Session

from core import keys
from core.auth import Principal
from core.errors import NotFound
from core.models import Recording


def visible_recording(s: Session, principal: Principal, recording_id: str) -> Recording:
    """The recording if the caller's org owns it: 404 unknown or deleted, 403 other org."""
    keys.check_id(recording_id, "recording_id")
    rec = s.get(Recording, recording_id)
    if rec is None or rec.status == "deleted":
        raise NotFound(f"recording {recording_id} not found", code="unknown_recording")
    principal.require_org(rec.org)
    return rec
