"""JWT helpers: mint and verify short-lived tokens bound to an org, role and scope.

Roles: admin, compliance, interviewer, assessor, candidate, service, recorder.
Scopes narrow a token: `upload` tokens name one recording (+ participant), `join`
tokens one room + participant. Verification errors become `Unauthorized`.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt

from core.errors import Forbidden, Unauthorized

ROLES = frozenset({"admin", "compliance", "interviewer", "assessor", "candidate", "service", "recorder"})
ALGORITHM = "HS256"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the verified claims of a token."""

    sub: str
    org: str
    role: str
    scope: str = "api"
    recording_id: str | None = None
    room_id: str | None = None
    participant_id: str | None = None
    claims: dict[str, Any] = field(default_factory=dict, compare=False)

    def require_role(self, *roles: str) -> None:
        if self.role not in roles and self.role != "admin":
            raise Forbidden(f"role {self.role!r} may not do this", code="wrong_role")

    def require_org(self, org: str) -> None:
        if org != self.org:
            raise Forbidden("this object belongs to another organisation", code="other_org")


def mint_token(secret: str, *, sub: str, org: str, role: str, ttl_s: int, scope: str = "api",
               issuer: str = "interview-recorder", now: float | None = None, **extra: Any) -> str:
    """Sign a token; `extra` claims (recording_id, room_id, participant_id…) are kept."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; one of {sorted(ROLES)}")
    issued = int(now if now is not None else time.time())
    claims = {"sub": sub, "org": org, "role": role, "scope": scope, "iss": issuer,
              "iat": issued, "exp": issued + ttl_s, "jti": uuid.uuid4().hex}
    claims.update({k: v for k, v in extra.items() if v is not None})
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(secret: str, token: str, *, issuer: str = "interview-recorder") -> Principal:
    """Check signature, expiry and issuer; return the caller."""
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], issuer=issuer,
                            options={"require": ["exp", "sub", "org", "role"]})
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized("token expired", code="token_expired") from exc
    except jwt.PyJWTError as exc:
        raise Unauthorized(f"invalid token: {exc}", code="invalid_token") from exc
    if claims["role"] not in ROLES:
        raise Unauthorized("invalid token: unknown role", code="invalid_token")
    return Principal(sub=claims["sub"], org=claims["org"], role=claims["role"],
                     scope=claims.get("scope", "api"), recording_id=claims.get("recording_id"),
                     room_id=claims.get("room_id"), participant_id=claims.get("participant_id"),
                     claims=claims)
