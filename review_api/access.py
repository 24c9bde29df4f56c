"""Who else may see a recording (grants) and the org's access switches.

    GET    /v1/recordings/{id}/access                      the grants of a recording
    POST   /v1/recordings/{id}/access  {kind, subject}     open it to a user or a group
    DELETE /v1/recordings/{id}/access?kind=…&subject=…     withdraw that grant
    GET|PUT /v1/org/settings                               assessors_see_all, compliance_reads_content

Grants are made by an admin or by an interviewer who took part in the recording.
"""
from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from core import audit
from core.access import Action, recording_for, require
from core.db import session_scope
from core.errors import InvalidInput, NotFound
from core.http import CurrentPrincipal
from core.logging import get_logger
from core.models import OrgSettings, RecordingGrant
from core.models._types import now_ms
from review_api.deps import EngineDep

router = APIRouter(prefix="/v1", tags=["access"])
log = get_logger("review_api.access")
MAX_GRANTS = 200  # per recording
SUBJECT = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@:+-]{0,127}$")


class GrantRequest(BaseModel):
    kind: Literal["user", "group"]
    subject: str = SUBJECT


class GrantPublic(GrantRequest):
    granted_by: str
    created_at: int


class OrgSettingsPublic(BaseModel):
    assessors_see_all: bool = False
    compliance_reads_content: bool = False


@router.get("/recordings/{recording_id}/access", response_model=list[GrantPublic])
def list_grants(recording_id: str, principal: CurrentPrincipal, engine: EngineDep) -> list[GrantPublic]:
    """Users and groups this recording is opened to (participants see it without a grant)."""
    with session_scope(engine) as s:
        rec = recording_for(s, principal, Action.READ_GRANTS, recording_id)
        rows = s.exec(select(RecordingGrant).where(RecordingGrant.recording_id == rec.id)
                      .order_by(RecordingGrant.id)).all()
        return [GrantPublic(kind=r.kind, subject=r.subject, granted_by=r.granted_by,  # type: ignore[arg-type]
                            created_at=r.created_at) for r in rows]


@router.post("/recordings/{recording_id}/access", response_model=GrantPublic, status_code=201,
             responses={200: {"model": GrantPublic, "description": "the grant existed already"}})
def post_grant(recording_id: str, body: GrantRequest, principal: CurrentPrincipal, engine: EngineDep,
               response: Response) -> GrantPublic:
    """Open the recording to a user (`sub`) or a group (token claim `groups`); idempotent."""
    try:
        with session_scope(engine) as s:
            rec = recording_for(s, principal, Action.MANAGE_GRANTS, recording_id)
            existing = _grant(s, rec.id, body)
            if existing is None:
                count = len(s.exec(select(RecordingGrant.id).where(RecordingGrant.recording_id == rec.id)).all())
                if count >= MAX_GRANTS:
                    raise InvalidInput(f"a recording has at most {MAX_GRANTS} grants", code="too_many_grants")
                existing = RecordingGrant(recording_id=rec.id, org=rec.org, kind=body.kind, subject=body.subject,
                                          granted_by=principal.sub)
                s.add(existing)
                audit.record(engine, org=rec.org, action=audit.GRANT_ADD, actor=principal, object_type="recording",
                             object_id=rec.id, detail=body.model_dump(), session=s)
                response.status_code = 201
            else:
                response.status_code = 200
    except IntegrityError:  # a concurrent identical grant won
        response.status_code = 200
        with session_scope(engine) as s:
            existing = _grant(s, recording_id, body)
    assert existing is not None
    log.info("grant_added", recording_id=recording_id, kind=body.kind, by=principal.sub)
    return GrantPublic(kind=existing.kind, subject=existing.subject,  # type: ignore[arg-type]
                       granted_by=existing.granted_by, created_at=existing.created_at)


@router.delete("/recordings/{recording_id}/access", status_code=204, response_class=Response)
def delete_grant(recording_id: str, principal: CurrentPrincipal, engine: EngineDep,
                 kind: Literal["user", "group"] = Query(...),
                 subject: str = Query(..., min_length=1, max_length=128)) -> Response:
    """Withdraw a grant; media URLs already issued from it stop working too."""
    with session_scope(engine) as s:
        rec = recording_for(s, principal, Action.MANAGE_GRANTS, recording_id)
        gone = s.exec(delete(RecordingGrant).where(  # type: ignore[call-overload]
            RecordingGrant.recording_id == rec.id, RecordingGrant.kind == kind,
            RecordingGrant.subject == subject)).rowcount
        if gone:
            audit.record(engine, org=rec.org, action=audit.GRANT_REMOVE, actor=principal, object_type="recording",
                         object_id=rec.id, detail={"kind": kind, "subject": subject}, session=s)
    if not gone:
        raise NotFound(f"no {kind} grant for {subject!r} on this recording", code="unknown_grant")
    log.info("grant_removed", recording_id=recording_id, kind=kind, by=principal.sub)
    return Response(status_code=204)


def _grant(s, recording_id: str, body: GrantRequest) -> RecordingGrant | None:  # type: ignore[no-untyped-def]
    return s.exec(select(RecordingGrant).where(RecordingGrant.recording_id == recording_id,
                                               RecordingGrant.kind == body.kind,
                                               RecordingGrant.subject == body.subject)).first()


@router.get("/org/settings", response_model=OrgSettingsPublic)
def get_org_settings(principal: CurrentPrincipal, engine: EngineDep) -> OrgSettingsPublic:
    """The org's access switches (defaults: least access)."""
    require(principal, Action.READ_ORG_SETTINGS)
    with session_scope(engine) as s:
        row = s.get(OrgSettings, principal.org)
    return OrgSettingsPublic.model_validate(row.model_dump()) if row else OrgSettingsPublic()


@router.put("/org/settings", response_model=OrgSettingsPublic)
def put_org_settings(body: OrgSettingsPublic, principal: CurrentPrincipal, engine: EngineDep) -> OrgSettingsPublic:
    """Change the org's access switches (admin)."""
    require(principal, Action.MANAGE_ORG_SETTINGS)
    with session_scope(engine) as s:
        row = s.get(OrgSettings, principal.org) or OrgSettings(org=principal.org)
        before = OrgSettingsPublic(assessors_see_all=bool(row.assessors_see_all),
                                   compliance_reads_content=bool(row.compliance_reads_content))
        row.assessors_see_all, row.compliance_reads_content = body.assessors_see_all, body.compliance_reads_content
        row.updated_by, row.updated_at = principal.sub, now_ms()
        s.add(row)
        audit.record(engine, org=principal.org, action=audit.ORG_SETTINGS, actor=principal, object_type="org",
                     object_id=principal.org, detail={"before": before.model_dump(), "after": body.model_dump()},
                     session=s)
    log.info("org_settings_changed", org=principal.org, by=principal.sub, **body.model_dump())
    return body
