"""Retention for compliance teams: policies, outcome events, matters, legal holds, previews
(frozen manifests), runs, candidate erasure and deletion receipts.

    GET|PUT /v1/retention/policy                    keep-rules per artifact kind; lock; run mode
    POST    /v1/candidates/{id}/events              hired | rejected | withdrawn (rules count from it)
    GET     /v1/recordings/{id}/retention           per kind: due_at, held_by
    PUT     /v1/recordings/{id}/matters             the recording's matter tags
    GET|POST /v1/legal-holds, POST …/{id}/release   holds (+ whether the store enforces them)
    GET     /v1/retention/preview?at=DATE           a frozen manifest of what is due at DATE
    GET     /v1/retention/manifests[/{id}]          manifests and their items
    POST    /v1/retention/manifests/{id}/approve    disposition review: another compliance user
    POST    /v1/retention/manifests/{id}/run        queued (202); 409 until approved where required
    POST    /v1/erasure-requests, GET …/{id}        a candidate's erasure; 409 naming the holds
    GET     /v1/receipts/{id}                       the signed receipt (`recorder receipt verify`)

Reading needs `read_retention`, changing `manage_retention` (compliance, admin). Deletion
runs in the workers (`apply_retention`); this module only plans and enqueues.
"""
from __future__ import annotations

from typing import Any, Literal, Optional

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlmodel import Session, select

from core import audit
from core.access import Action, recording_for, require
from core.artifacts import (KINDS, covered_recordings, plan, policy_row, recording_retention, request_erasure,
                            rules_of)
from core.db import session_scope
from core.errors import Conflict, Forbidden, InvalidInput, NotFound, StorageError
from core.http import CurrentPrincipal
from core.limits import ID_CHARS, ID_PATTERN
from core.models import (CandidateEvent, DeletionReceipt, ErasureRequest, LegalHold, ManifestItem, OrgSettings,
                         Recording, RecordingMatter, RetentionManifest)
from core.models._types import now_ms
from core.queue import enqueue
from core.retention import Hold, canonical, parse_rules, rules_json, shortened
from review_api.deps import BrokerDep, EngineDep, StoreDep
from review_api.search import parse_when

router = APIRouter(prefix="/v1", tags=["retention"])
NAME = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@:+-]{0,127}$")
CANDIDATE = Field(min_length=1, max_length=ID_CHARS, pattern=ID_PATTERN)  # as rooms take them
TEXT = r"^[^\x00-\x1f\x7f]*$"  # one line of text, no control characters
R, M = Action.READ_RETENTION, Action.MANAGE_RETENTION


class RulePublic(BaseModel):
    days: int = Field(ge=0, le=36600)
    after: Literal["end", "hired", "rejected", "withdrawn"] = "end"


class PolicyBody(BaseModel):
    rules: dict[str, list[RulePublic]] = Field(default_factory=dict, description="kind → keep rules")
    locked: bool = False
    run_mode: Literal["automatic", "approval"] = "automatic"


class PolicyPublic(PolicyBody):
    locked_by: str = ""
    locked_at: Optional[int] = None
    updated_by: str = ""
    updated_at: Optional[int] = None
    kinds: list[str] = list(KINDS)


class EventBody(BaseModel):
    type: Literal["hired", "rejected", "withdrawn"]
    at: Optional[str] = Field(None, max_length=64, description="when (ISO or epoch ms); default now")


class MattersBody(BaseModel):
    matters: list[str] = Field(default_factory=list, max_length=50)


class HoldBody(BaseModel):
    scope: Literal["recording", "candidate", "room", "matter"]
    target: str = NAME
    reason: str = Field(min_length=1, max_length=1024, pattern=TEXT)


class ReleaseBody(BaseModel):
    reason: str = Field("", max_length=1024, pattern=TEXT)


class ErasureBody(BaseModel):
    candidate_id: str = CANDIDATE


# ---------------------------------------------------------------- policy, events, matters

def _policy_public(s: Session, org: str) -> PolicyPublic:
    row, settings = policy_row(s, org), s.get(OrgSettings, org)
    return PolicyPublic(rules=rules_json(rules_of(s, org)), locked=row.locked, locked_by=row.locked_by,
                        locked_at=row.locked_at, updated_by=row.updated_by, updated_at=row.updated_at,
                        run_mode="approval" if settings and settings.retention_approval else "automatic")


@router.get("/retention/policy", response_model=PolicyPublic)
def get_policy(principal: CurrentPrincipal, engine: EngineDep) -> PolicyPublic:
    """The org's keep-rules per artifact kind (no rule: kept), its lock and run mode."""
    require(principal, R)
    with session_scope(engine) as s:
        return _policy_public(s, principal.org)


@router.put("/retention/policy", response_model=PolicyPublic)
def put_policy(body: PolicyBody, principal: CurrentPrincipal, engine: EngineDep) -> PolicyPublic:
    """Replace the rules. A locked policy only keeps longer (409 `policy_locked`) and stays locked."""
    require(principal, M)
    raw = {kind: [r.model_dump() for r in rules] for kind, rules in body.rules.items()}
    try:
        new = parse_rules(raw, KINDS)
    except ValueError as exc:
        raise InvalidInput(str(exc), code="bad_policy") from None
    with session_scope(engine) as s:
        row, old = policy_row(s, principal.org), rules_of(s, principal.org)
        if row.locked:
            problems = shortened(old, new) + ([] if body.locked else ["a locked policy cannot be unlocked"])
            if problems:
                raise Conflict("the policy is locked: retention can only be made longer",
                               code="policy_locked", problems=problems)
        before = rules_json(old)
        row.rules, row.updated_by, row.updated_at = rules_json(new), principal.sub, now_ms()
        if body.locked and not row.locked:
            row.locked, row.locked_by, row.locked_at = True, principal.sub, now_ms()
        settings = s.get(OrgSettings, principal.org) or OrgSettings(org=principal.org)
        settings.retention_approval = body.run_mode == "approval"
        s.add(row)
        s.add(settings)
        audit.record(engine, session=s, org=principal.org, action=audit.POLICY_CHANGE, actor=principal,
                     object_type="policy", object_id=principal.org,
                     detail={"before": before, "after": row.rules, "locked": row.locked, "run_mode": body.run_mode})
        s.flush()
        return _policy_public(s, principal.org)


@router.post("/candidates/{candidate_id}/events", status_code=201)
def post_event(body: EventBody, principal: CurrentPrincipal, engine: EngineDep,
               candidate_id: str = Path(min_length=1, max_length=ID_CHARS, pattern=TEXT)) -> dict:
    """A hiring outcome of a candidate (their latest one counts for rules "… after rejected")."""
    require(principal, M)
    at = parse_when(body.at, "at") if body.at else now_ms()
    with session_scope(engine) as s:
        if not _known_candidate(s, principal.org, candidate_id):
            raise NotFound("no room or recording of this org has this candidate", code="unknown_candidate")
        row = CandidateEvent(org=principal.org, candidate_id=candidate_id, type=body.type, at=at,
                             created_by=principal.sub)
        s.add(row)
        s.flush()
        return {"id": row.id, "candidate_id": candidate_id, "type": row.type, "at": row.at}


def _known_candidate(s: Session, org: str, candidate_id: str) -> bool:
    sql = ("SELECT 1 FROM room WHERE org = :org AND candidate_id = :cid UNION ALL SELECT 1 FROM track t "
           "JOIN recording r ON r.id = t.recording_id WHERE r.org = :org AND t.participant_id = :cid")
    return s.connection().execute(text(f"SELECT 1 FROM ({sql}) AS k LIMIT 1"),
                                  {"org": org, "cid": candidate_id}).first() is not None


@router.get("/recordings/{recording_id}/retention")
def get_recording_retention(recording_id: str, principal: CurrentPrincipal, engine: EngineDep) -> dict:
    """When each artifact kind of this recording is due (null: kept) and the holds keeping it."""
    with session_scope(engine) as s:
        rec = recording_for(s, principal, R, recording_id)
        return recording_retention(s, principal.org, rec.id)


@router.put("/recordings/{recording_id}/matters")
def put_matters(recording_id: str, body: MattersBody, principal: CurrentPrincipal, engine: EngineDep) -> dict:
    """Replace the recording's matter tags (holds on a matter cover its recordings)."""
    for matter in body.matters:
        _check_name(matter, "matter")
    with session_scope(engine) as s:
        rec = recording_for(s, principal, M, recording_id)
        s.exec(select(Recording).where(Recording.id == rec.id).with_for_update()).first()  # as holds and runs do
        rows = s.exec(select(RecordingMatter).where(RecordingMatter.recording_id == rec.id)).all()
        wanted = set(body.matters)
        for row in rows:
            if row.matter not in wanted:
                s.delete(row)
        for matter in sorted(wanted - {r.matter for r in rows}):
            s.add(RecordingMatter(recording_id=rec.id, org=rec.org, matter=matter, created_by=principal.sub))
    return {"recording_id": recording_id, "matters": sorted(wanted)}


def _check_name(value: str, what: str) -> None:
    if not (0 < len(value) <= 128) or not value[0].isalnum() or not all(c.isalnum() or c in "_.@:+-" for c in value):
        raise InvalidInput(f"invalid {what}", code=f"invalid_{what}")


# ---------------------------------------------------------------- legal holds

def _hold_public(h: LegalHold) -> dict[str, Any]:
    return h.model_dump()


def storage_enforced(request: Request) -> Optional[bool]:
    """Does the object store refuse to delete held objects? Probed once per process (None:
    the store did not answer; probed again next time)."""
    state = request.app.state
    if getattr(state, "retention_storage_enforced", None) is None:
        try:
            state.retention_storage_enforced = state.store.legal_hold_enforced()
        except StorageError:
            return None
    return state.retention_storage_enforced


@router.get("/legal-holds")
def list_holds(principal: CurrentPrincipal, engine: EngineDep, request: Request,
               active: bool = Query(False, description="only holds not released")) -> dict:
    """The org's legal holds, newest first, and whether the store itself enforces them."""
    require(principal, R)
    with session_scope(engine) as s:
        q = select(LegalHold).where(LegalHold.org == principal.org)
        if active:
            q = q.where(LegalHold.released_at == None)  # noqa: E711
        rows = s.exec(q.order_by(LegalHold.created_at.desc()).limit(500)).all()  # type: ignore[union-attr]
        holds = [_hold_public(h) for h in rows]
    return {"storage_enforced": storage_enforced(request), "holds": holds}


@router.post("/legal-holds", status_code=201)
def create_hold(body: HoldBody, principal: CurrentPrincipal, engine: EngineDep, broker: BrokerDep,
                request: Request) -> dict:
    """Hold a recording, a candidate, a room or a matter: no policy run or erasure deletes
    what it covers. `in_deletion`: covered recordings a run had already started deleting."""
    require(principal, M)
    with session_scope(engine) as s:
        if body.scope == "recording":
            recording_for(s, principal, M, body.target)
        covered = covered_recordings(s, principal.org, Hold("new", body.scope, body.target))
        if covered:  # serialize with a run's re-check (it locks the recording row too)
            s.exec(select(Recording).where(Recording.id.in_(covered)).with_for_update()).all()
        hold = LegalHold(org=principal.org, scope=body.scope, target=body.target, reason=body.reason,
                         created_by=principal.sub)
        s.add(hold)
        deleting = sorted({i.recording_id for i in s.exec(select(ManifestItem).where(
            ManifestItem.recording_id.in_(covered), ManifestItem.status == "deleting")).all()}) if covered else []
        audit.record(engine, session=s, org=principal.org, action=audit.HOLD_CREATE, actor=principal,
                     object_type="hold", object_id=hold.id,
                     detail={"scope": body.scope, "recordings": len(covered), "reason": body.reason})
        out = {**_hold_public(hold), "recordings": covered, "in_deletion": deleting}
    if covered and storage_enforced(request):
        enqueue(broker, "sync_legal_holds", principal.org, covered)
    return out


@router.post("/legal-holds/{hold_id}/release")
def release_hold(hold_id: str, body: ReleaseBody, principal: CurrentPrincipal, engine: EngineDep,
                 broker: BrokerDep, request: Request) -> dict:
    """Release a hold (idempotent). What it kept is due again at the next run."""
    require(principal, M)
    with session_scope(engine) as s:
        hold = s.get(LegalHold, hold_id)
        if hold is None or hold.org != principal.org:
            raise NotFound(f"legal hold {hold_id} not found", code="unknown_hold")
        if hold.released_at is None:
            hold.released_at, hold.released_by, hold.release_reason = now_ms(), principal.sub, body.reason
            s.add(hold)
            audit.record(engine, session=s, org=principal.org, action=audit.HOLD_RELEASE, actor=principal,
                         object_type="hold", object_id=hold.id, detail={"reason": body.reason})
        covered = covered_recordings(s, principal.org, Hold(hold.id, hold.scope, hold.target))
        out = _hold_public(hold)
    if covered and storage_enforced(request):
        enqueue(broker, "sync_legal_holds", principal.org, covered)
    return out


# ---------------------------------------------------------------- manifests: preview, approve, run

def _manifest_public(s: Session, m: RetentionManifest, items: bool = True) -> dict[str, Any]:
    out = m.model_dump()
    if items:
        rows = s.exec(select(ManifestItem).where(ManifestItem.manifest_id == m.id).order_by(ManifestItem.id)).all()
        out["items"] = [i.model_dump(exclude={"objects", "deleted_objects"}) for i in rows]
    return out


def _manifest(s: Session, principal: Any, manifest_id: str) -> RetentionManifest:
    m = s.get(RetentionManifest, manifest_id)
    if m is None or m.org != principal.org:
        raise NotFound(f"manifest {manifest_id} not found", code="unknown_manifest")
    return m


@router.get("/retention/preview")
def preview(principal: CurrentPrincipal, engine: EngineDep, store: StoreDep,
            at: Optional[str] = Query(None, max_length=64, description="evaluate at (ISO or epoch ms); default now")
            ) -> dict:
    """What the policy deletes at `at`, frozen as a manifest (items: recording × kind, with
    objects, bytes and rows; held items with the holds that keep them)."""
    require(principal, R)
    when = parse_when(at, "at") if at else now_ms()
    with session_scope(engine) as s:
        settings = s.get(OrgSettings, principal.org)
    m = plan(engine, store, principal.org, when, created_by=principal.sub,
             needs_approval=bool(settings and settings.retention_approval))
    assert m is not None
    audit.record(engine, org=principal.org, action=audit.RETENTION_PREVIEW, actor=principal,
                 object_type="manifest", object_id=m.id, detail={"at": when, **(m.summary or {})})
    with session_scope(engine) as s:
        return _manifest_public(s, m)


@router.get("/retention/manifests")
def list_manifests(principal: CurrentPrincipal, engine: EngineDep,
                   status: Optional[Literal["pending", "running", "done"]] = None,
                   limit: int = Query(50, ge=1, le=200)) -> dict:
    """The org's manifests, newest first (summaries; items on the manifest itself)."""
    require(principal, R)
    with session_scope(engine) as s:
        q = select(RetentionManifest).where(RetentionManifest.org == principal.org)
        if status:
            q = q.where(RetentionManifest.status == status)
        rows = s.exec(q.order_by(RetentionManifest.created_at.desc()).limit(limit)).all()  # type: ignore[union-attr]
        return {"items": [_manifest_public(s, m, items=False) for m in rows]}


@router.get("/retention/manifests/{manifest_id}")
def get_manifest(manifest_id: str, principal: CurrentPrincipal, engine: EngineDep) -> dict:
    require(principal, R)
    with session_scope(engine) as s:
        return _manifest_public(s, _manifest(s, principal, manifest_id))


@router.post("/retention/manifests/{manifest_id}/approve")
def approve_manifest(manifest_id: str, principal: CurrentPrincipal, engine: EngineDep) -> dict:
    """Disposition review: a compliance user other than the manifest's creator approves it."""
    require(principal, M)
    with session_scope(engine) as s:
        m = _manifest(s, principal, manifest_id)
        if m.created_by == principal.sub:
            raise Forbidden("a manifest is approved by someone other than its creator", code="own_manifest")
        if m.status != "pending":
            raise Conflict(f"the manifest is {m.status}", code="manifest_not_pending")
        if not m.approved_by:
            m.approved_by, m.approved_at = principal.sub, now_ms()
            s.add(m)
        return _manifest_public(s, m, items=False)


@router.post("/retention/manifests/{manifest_id}/run", status_code=202)
def run_manifest(manifest_id: str, principal: CurrentPrincipal, engine: EngineDep, broker: BrokerDep,
                 response: Response) -> dict:
    """Queue the run (the workers delete what it lists and is still due). 409 `not_approved`
    while it waits for approval; a done manifest answers 200 as it is."""
    require(principal, M)
    with session_scope(engine) as s:
        m = _manifest(s, principal, manifest_id)
        if m.needs_approval and not m.approved_by:
            raise Conflict("this manifest waits for a compliance user's approval (not its creator's)",
                           code="not_approved")
        out = _manifest_public(s, m, items=False)
    if m.status == "done":
        response.status_code = 200
        return out
    enqueue(broker, "apply_retention", m.id, principal.sub)
    return {**out, "queued": True}


# ---------------------------------------------------------------- erasure, receipts

def _erasure_public(e: ErasureRequest) -> dict[str, Any]:
    return e.model_dump(exclude={"candidate_id"})


@router.post("/erasure-requests", status_code=202)
def create_erasure(body: ErasureBody, principal: CurrentPrincipal, engine: EngineDep, store: StoreDep,
                   broker: BrokerDep) -> dict:
    """Erase a candidate: every recording they took part in and everything derived, then a
    signed receipt. Under a hold: recorded as deferred, 409 `erasure_held` naming the holds."""
    require(principal, M)
    e = request_erasure(engine, store, principal.org, body.candidate_id, principal.sub, now_ms())
    audit.record(engine, org=principal.org, action=audit.ERASURE_REQUEST, actor=principal, object_type="erasure",
                 object_id=e.id, detail={"candidate_hash": e.candidate_hash, "recordings": len(e.recordings or []),
                                         "held_by": e.held_by or []})
    if e.status == "deferred":
        raise Conflict("legal holds cover this candidate's data: the erasure is deferred until they are released",
                       code="erasure_held", holds=e.held_by, erasure_request_id=e.id)
    enqueue(broker, "apply_retention", e.manifest_id, principal.sub)
    return _erasure_public(e)


@router.get("/erasure-requests/{erasure_id}")
def get_erasure(erasure_id: str, principal: CurrentPrincipal, engine: EngineDep) -> dict:
    require(principal, R)
    with session_scope(engine) as s:
        e = s.get(ErasureRequest, erasure_id)
        if e is None or e.org != principal.org:
            raise NotFound(f"erasure request {erasure_id} not found", code="unknown_erasure")
        return _erasure_public(e)


@router.get("/receipts/{receipt_id}")
def get_receipt(receipt_id: str, principal: CurrentPrincipal, engine: EngineDep) -> Response:
    """The signed receipt as a file: `recorder receipt verify FILE` checks it offline."""
    require(principal, R)
    with session_scope(engine) as s:
        r = s.get(DeletionReceipt, receipt_id)
        if r is None or r.org != principal.org:
            raise NotFound(f"receipt {receipt_id} not found", code="unknown_receipt")
        doc = {"receipt": r.body, "signature": r.signature, "public_key": r.public_key}
    return Response(canonical(doc), media_type="application/json",
                    headers={"Content-Disposition": f'attachment; filename="{r.id}.json"'})

