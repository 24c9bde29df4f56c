"""Dependencies of the review routes: app resources and who may read what."""
from __future__ import annotations

from typing import Annotated

import dramatiq
from fastapi import Depends, Request
from sqlalchemy.engine import Engine

from core.access import visible_recording  # noqa: F401  (re-exported for routes)
from core.auth import Principal
from core.errors import Forbidden
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
