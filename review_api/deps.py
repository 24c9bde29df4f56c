"""Dependencies of the review routes: app resources and who may read what."""
from __future__ import annotations

from typing import Annotated

import dramatiq
from fastapi import Depends, Request
from sqlalchemy.engine import Engine
from sqlmodel import Session

from core import keys
from core.auth import Principal
from core.errors import Forbidden, NotFound
from core.models import Recording
from core.storage import ObjectStore

# Who may read transcripts and search (candidates and upload/join tokens may not).
READERS = ("admin", "interviewer", "assessor", "compliance")
# Who may spend compute on re-transcription and change vocabulary hints.
EDITORS = ("admin", "interviewer")


def _engine(request: Request) -> Engine:
    return request.app.state.engine


def _store(request: Request) -> ObjectStore:
    return request.app.state.store


def _broker(request: Request) -> dramatiq.Broker:
    return request.app.state.broker


EngineDep = Annotated[Engine, Depends(_engine)]
StoreDep = Annotated[ObjectStore, Depends(_store)]
BrokerDep = Annotated[dramatiq.Broker, Depends(_broker)]


def require_reader(principal: Principal, roles: tuple[str, ...] = READERS) -> None:
    if principal.scope != "api":
        raise Forbidden(f"a {principal.scope!r} token cannot read recordings", code="wrong_scope")
    principal.require_role(*roles)


def visible_recording(s: Session, principal: Principal, recording_id: str) -> Recording:
    """The recording if the caller's org owns it: 404 unknown or deleted, 403 other org."""
    keys.check_id(recording_id, "recording_id")
    rec = s.get(Recording, recording_id)
    if rec is None or rec.status == "deleted":
        raise NotFound(f"recording {recording_id} not found", code="unknown_recording")
    principal.require_org(rec.org)
    return rec
