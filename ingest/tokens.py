"""Token routes: `POST /v1/tokens/revoke`, and the beacon's query-token dependency.

    POST /v1/tokens/revoke   {"token": "<jwt>"}  or  {"jti": "…", "exp": <epoch s>}   → 204

Anyone may revoke the token they call with (log out); with an API token, also their own
other tokens (same org, sub and role); a role with `Action.REVOKE_TOKENS` (admin) any
token of their org. `jti` + `exp`
reaches only the caller's org (deny-list entries are per org), so it is for admins, or
for the caller's own token. A revoked token answers 401 `token_revoked` on every API
replica until it would have expired anyway (the list lives in Redis).
"""
from __future__ import annotations

from typing import Annotated, Optional

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from core import audit
from core.access import Action, can
from core.auth import Principal
from core.errors import Forbidden, InvalidInput, TooLarge, Unauthorized
from core.http import (
    CurrentPrincipal,
    QueryTokenPrincipal,
    bearer_token,
    token_verifier,
)
from core.logging import get_logger
from core.revocation import token_id

router = APIRouter(prefix="/v1", tags=["tokens"])
log = get_logger("ingest.tokens")

MAX_BODY_BYTES = 16 * 1024
# sendBeacon cannot set headers: its upload token rides in `?token=` (upload scope only).
BeaconPrincipal = Annotated[Principal, Depends(QueryTokenPrincipal("upload"))]


class RevokeRequest(BaseModel):
    """Either the token itself, or its `jti` with its `exp` (how long to remember it)."""

    model_config = ConfigDict(extra="forbid")
    token: Optional[str] = Field(None, min_length=16, max_length=8192)
    jti: Optional[str] = Field(None, min_length=1, max_length=256)
    exp: Optional[int] = Field(None, gt=0, lt=2**40, description="the token's expiry, epoch seconds")

    @model_validator(mode="after")
    def _one_form(self) -> RevokeRequest:
        if (self.token is None) == (self.jti is None):
            raise ValueError("give either `token` or `jti` + `exp`")
        if self.jti is not None and self.exp is None:
            raise ValueError("`jti` needs `exp` (epoch seconds)")
        return self


async def revoke_body(request: Request) -> RevokeRequest:
    """The request body, read up to MAX_BODY_BYTES and no further."""
    data = bytearray()
    async for part in request.stream():
        data += part
        if len(data) > MAX_BODY_BYTES:
            raise TooLarge(f"body over {MAX_BODY_BYTES} bytes", code="body_too_large")
    try:
        return RevokeRequest.model_validate_json(bytes(data))
    except ValidationError as exc:
        detail = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors())
        raise InvalidInput(detail, code="bad_request") from exc


RevokeBody = Annotated[RevokeRequest, Depends(revoke_body)]
_BODY_DOC = {"requestBody": {"required": True,
                             "content": {"application/json": {"schema": RevokeRequest.model_json_schema()}}}}


def may_revoke(caller: Principal, caller_tid: str, target: Principal | None, tid: str) -> None:
    """Who may revoke what (`target` None = known only by jti, in the caller's org)."""
    if tid == caller_tid and (target is None or target.org == caller.org):
        return  # the caller's own token
    if caller.scope != "api":
        raise Forbidden(f"a {caller.scope!r} token may only revoke itself", code="wrong_scope")
    if target is not None:
        caller.require_org(target.org)
    if can(caller, Action.REVOKE_TOKENS):  # admins: any token of their org
        return
    if target is None or (target.sub, target.role) != (caller.sub, caller.role):
        raise Forbidden("only an admin may revoke another user's token", code="wrong_role")


@router.post("/tokens/revoke", status_code=204, response_class=Response, openapi_extra=_BODY_DOC,
             responses={204: {"description": "revoked (or already expired)"}})
def revoke_token(request: Request, caller: CurrentPrincipal, body: RevokeBody) -> Response:
    """Put a token on the deny-list for the rest of its lifetime."""
    verifier = token_verifier(request)
    target, tid, exp = None, body.jti or "", body.exp or 0
    if body.token is not None:
        try:
            target = verifier.decode(body.token)
        except Unauthorized as exc:
            if exc.code == "token_expired":  # signature checked first: nothing left to revoke
                return Response(status_code=204)
            raise InvalidInput(f"the token to revoke is not valid: {exc.message}", code="invalid_token") from exc
        tid, exp = token_id(target.claims, body.token), int(target.claims["exp"])
    may_revoke(caller, token_id(caller.claims, bearer_token(request)), target, tid)
    org = target.org if target is not None else caller.org
    assert verifier.denylist is not None
    verifier.denylist.revoke(org, tid, exp)
    audit.record(request.app.state.engine, org=org, action=audit.TOKEN_REVOKE, actor=caller, object_type="token",
                 object_id=tid if not tid.startswith("sha256:") else "", detail={
                     "sub": target.sub if target else None, "scope": target.scope if target else None})
    log.info("token_revoked", org=org, by=caller.sub, sub=target.sub if target else None,
             jti=tid if not tid.startswith("sha256:") else None)
    return Response(status_code=204)
