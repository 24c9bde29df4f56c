"""The audit log over HTTP (`core.audit`).

    GET /v1/audit              the caller's org's events, newest first: filters action, actor,
                               object_type, object_id, from/to (ISO or epoch ms); cursor pages
    GET /v1/audit/verify       recompute the whole chain and check every signed checkpoint
    GET /v1/audit/public-key   the Ed25519 public key that signs checkpoints (no token needed)

Reading the log needs `read_audit` (compliance, admin) and is itself recorded (`audit.read`:
the log holds search queries). The chain is global — one `seq` across orgs — so a page
shows only the caller's org's rows, and the verify answer holds only seq numbers, counts
and a reason, never another org's events.
"""
from __future__ import annotations

import base64
import binascii
from typing import Any, Optional

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel
from sqlmodel import select

from core import audit
from core.access import Action, require
from core.db import session_scope
from core.errors import InvalidInput
from core.http import CurrentPrincipal
from core.models import AuditEvent
from core.signing import Signer
from review_api.deps import EngineDep, StoreDep
from review_api.search import parse_when

router = APIRouter(prefix="/v1", tags=["audit"])
MAX_PAGE = 500


class AuditEventPublic(BaseModel):
    seq: int
    at: int  # epoch ms
    actor: str
    actor_role: str
    action: str
    object_type: str
    object_id: str
    detail: Optional[dict[str, Any]] = None
    hash: str


class AuditPage(BaseModel):
    items: list[AuditEventPublic]
    next_cursor: Optional[str] = None


class VerifyPublic(BaseModel):
    ok: bool
    checked: int
    first_broken_seq: Optional[int] = None
    reason: str = ""
    checkpoints: int = 0
    head_seq: int = 0


class PublicKeyPublic(BaseModel):
    algorithm: str = "Ed25519"
    key_id: str
    public_key_pem: str


def signer_of(request: Request) -> Signer:
    """The service's signing key (loaded, or made on the local stack, on first use)."""
    state = request.app.state
    if getattr(state, "audit_signer", None) is None:
        state.audit_signer = Signer.from_settings(state.settings)
    return state.audit_signer


def _cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"seq:{seq}".encode()).decode().rstrip("=")


def _seq_of(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        tag, _, digits = raw.partition(":")
        if tag != "seq" or not digits.isascii() or not digits.isdigit() or len(digits) > 18:
            raise ValueError(raw)
        return int(digits)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise InvalidInput("cursor is not one this API gave out", code="bad_cursor") from None


@router.get("/audit", response_model=AuditPage)
def list_audit(
    principal: CurrentPrincipal, engine: EngineDep,
    action: Optional[str] = Query(None, max_length=64, description="e.g. media.read, search, grant.add"),
    actor: Optional[str] = Query(None, max_length=256, description="who (a token's sub)"),
    object_type: Optional[str] = Query(None, max_length=32, description="recording, room, org…"),
    object_id: Optional[str] = Query(None, max_length=256, description="e.g. a recording id"),
    from_: Optional[str] = Query(None, alias="from", max_length=64, description="at/after (ISO or ms)"),
    to: Optional[str] = Query(None, max_length=64, description="before (ISO or ms)"),
    cursor: Optional[str] = Query(None, max_length=64),
    limit: int = Query(100, ge=1, le=MAX_PAGE),
) -> AuditPage:
    """The caller's org's audit events, newest first (cursor pagination)."""
    require(principal, Action.READ_AUDIT)
    filters = {"action": action, "actor": actor, "object_type": object_type, "object_id": object_id,
               "from": parse_when(from_, "from"), "to": parse_when(to, "to")}
    q = select(AuditEvent).where(AuditEvent.org == principal.org)
    for name in ("action", "actor", "object_type", "object_id"):
        if filters[name]:
            q = q.where(getattr(AuditEvent, name) == filters[name])
    if filters["from"] is not None:
        q = q.where(AuditEvent.at >= filters["from"])
    if filters["to"] is not None:
        q = q.where(AuditEvent.at < filters["to"])
    if cursor:
        q = q.where(AuditEvent.seq < _seq_of(cursor))
    with session_scope(engine) as s:
        rows = list(s.exec(q.order_by(AuditEvent.seq.desc()).limit(limit + 1)).all())  # type: ignore[union-attr]
    page = rows[:limit]
    audit.record(engine, org=principal.org, action=audit.AUDIT_READ, actor=principal, object_type="audit",
                 detail={**{k: v for k, v in filters.items() if v is not None}, "count": len(page)})
    return AuditPage(items=[AuditEventPublic.model_validate(r.model_dump()) for r in page],
                     next_cursor=_cursor(page[-1].seq) if len(rows) > limit else None)


@router.get("/audit/verify", response_model=VerifyPublic)
def verify_audit(principal: CurrentPrincipal, engine: EngineDep, store: StoreDep, request: Request) -> VerifyPublic:
    """Recompute every row's hash and link and check every checkpoint; names the first broken seq.

    The chain spans all orgs: the answer holds seq numbers and a reason only."""
    require(principal, Action.READ_AUDIT)
    result = audit.verify(engine, store, signer_of(request).public_key_pem())
    return VerifyPublic(**result.as_dict())


@router.get("/audit/public-key", response_model=PublicKeyPublic)
def public_key(request: Request) -> PublicKeyPublic:
    """The public key that checkpoint (and deletion receipt) signatures verify against."""
    signer = signer_of(request)
    return PublicKeyPublic(key_id=signer.key_id, public_key_pem=signer.public_key_pem())
