"""JWT helpers: mint and verify short-lived tokens bound to an org, role and scope.

Roles: admin, compliance, interviewer, assessor, candidate, service, recorder.
Scopes narrow a token: `upload` tokens name one recording (+ participant), `join`
tokens one room + participant. Verification errors become `Unauthorized`.

Two signers, told apart by the token header's `alg` (never by the key at hand):
- HS256 with the shared secret: every token this service mints, and API tokens of the
  local stack (`recorder token`);
- the org's identity provider (RS*/PS*/ES*/EdDSA), keys from its JWKS URL by `kid`:
  API tokens whose org, role(s) and groups come from configurable claims.
`alg: none` never verifies, and neither does an HS256 signature under an asymmetric
`alg` header. `TokenVerifier` does both, then asks the deny-list (core.revocation).
"""
from __future__ import annotations

import math
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import jwt

from core.errors import DependencyDown, Forbidden, Unauthorized
from core.revocation import DenyList, token_id

if TYPE_CHECKING:
    from core.settings import Settings

ROLES = frozenset({"admin", "compliance", "interviewer", "assessor", "candidate", "service", "recorder"})
ALGORITHM = "HS256"
PROVIDER_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                                 "ES256", "ES384", "ES512", "EdDSA"})
MAX_GROUPS = 64
MAX_GROUP_CHARS = 256


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
    groups: tuple[str, ...] = ()
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
    """Check an HS256 token's signature, expiry and issuer; return the caller (no deny-list)."""
    claims = _decode(token, secret, algorithms=[ALGORITHM], issuer=issuer,
                     options={"require": ["exp", "sub", "org", "role"]})
    if claims["role"] not in ROLES:
        raise Unauthorized("invalid token: unknown role", code="invalid_token")
    return Principal(sub=claims["sub"], org=claims["org"], role=claims["role"],
                     scope=claims.get("scope", "api"), recording_id=claims.get("recording_id"),
                     room_id=claims.get("room_id"), participant_id=claims.get("participant_id"),
                     groups=groups_of(claims.get("groups")), claims=claims)


def ensure_upload_open(principal: Principal, recording_status: str) -> None:
    """Upload tokens stop working once their recording is no longer `recording` (final)."""
    if principal.scope == "upload" and recording_status != "recording":
        raise Forbidden(f"the recording is closed ({recording_status}); upload tokens no longer work",
                        code="recording_closed")


def _decode(token: str, key: Any, **options: Any) -> dict[str, Any]:
    """`jwt.decode` with PyJWT's errors translated to `Unauthorized`."""
    try:
        return jwt.decode(token, key, **options)
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized("token expired", code="token_expired") from exc
    except jwt.PyJWTError as exc:
        raise Unauthorized("invalid token", code="invalid_token") from exc


def _header(token: str) -> dict[str, Any]:
    try:
        return jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise Unauthorized("invalid token", code="invalid_token") from exc


# ---------------------------------------------------------------- claims

@dataclass(frozen=True)
class ClaimNames:
    """Where a provider's tokens keep org, role(s) and groups: a claim name, or a dotted
    path into nested claims (`realm_access.roles`)."""

    org: str = "org"
    role: str = "role"
    groups: str = "groups"


def claim(claims: dict[str, Any], name: str) -> Any:
    """A claim by name (which may itself contain dots, e.g. namespaced URLs) or dotted path."""
    if name in claims:
        return claims[name]
    value: Any = claims
    for part in name.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def role_of(value: Any) -> str | None:
    """A role claim: a known role, or the first known role of a list."""
    candidates = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    return next((r for r in candidates if isinstance(r, str) and r in ROLES), None)


def groups_of(value: Any) -> tuple[str, ...]:
    """The caller's groups from a claim: strings only, de-duplicated, at most MAX_GROUPS."""
    items = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    names = (g for g in items if isinstance(g, str) and 0 < len(g) <= MAX_GROUP_CHARS)
    return tuple(dict.fromkeys(names))[:MAX_GROUPS]


def provider_principal(claims: dict[str, Any], names: ClaimNames) -> Principal:
    """The caller of a verified identity-provider token (always an `api` scope token)."""
    org, role = claim(claims, names.org), role_of(claim(claims, names.role))
    if not isinstance(org, str) or not org:
        raise Unauthorized(f"invalid token: no org in claim {names.org!r}", code="invalid_token")
    if role is None:
        raise Unauthorized(f"invalid token: no known role in claim {names.role!r}", code="invalid_token")
    return Principal(sub=str(claims["sub"]), org=org, role=role, scope="api",
                     groups=groups_of(claim(claims, names.groups)), claims=claims)


# ---------------------------------------------------------------- identity provider

@dataclass(frozen=True)
class IdentityProvider:
    """The org's identity provider: where its keys are and what its tokens must say."""

    jwks_url: str
    audience: str
    algorithms: tuple[str, ...] = ("RS256", "ES256")
    issuer: str = ""  # checked when set
    claims: ClaimNames = field(default_factory=ClaimNames)
    cache_s: float = 300.0
    refresh_cooldown_s: float = 30.0
    timeout_s: float = 5.0


class ProviderKeys:
    """The provider's signing keys by `kid`, cached for `cache_s`. A `kid` missing from the
    cached set refetches it (key rotation) at most once per `refresh_cooldown_s`, so tokens
    with made-up kids cannot turn into a stream of requests to the provider."""

    def __init__(self, provider: IdentityProvider) -> None:
        self.client = jwt.PyJWKClient(provider.jwks_url, cache_jwk_set=True, lifespan=provider.cache_s,
                                      timeout=provider.timeout_s)
        self.cooldown_s = provider.refresh_cooldown_s
        self._lock = threading.Lock()
        self._refreshed_at = -math.inf

    def key(self, kid: str) -> jwt.PyJWK:
        found = self._find(kid, refresh=False)
        if found is None and self._may_refresh():
            found = self._find(kid, refresh=True)
        if found is None:
            raise Unauthorized(f"invalid token: unknown signing key {kid[:64]!r}", code="invalid_token")
        return found

    def _may_refresh(self) -> bool:
        with self._lock:
            now = time.monotonic()
            if now - self._refreshed_at < self.cooldown_s:
                return False
            self._refreshed_at = now
            return True

    def _find(self, kid: str, refresh: bool) -> jwt.PyJWK | None:
        try:
            keys = self.client.get_signing_keys(refresh=refresh)
        except (jwt.PyJWKClientError, jwt.PyJWKError) as exc:
            raise DependencyDown(f"identity provider keys unavailable: {exc}", code="jwks_unavailable") from exc
        return next((k for k in keys if k.key_id == kid), None)


# ---------------------------------------------------------------- the verifier

class TokenVerifier:
    """Verifies every bearer token the API sees; built once at start-up (`app.state.token_verifier`)."""

    def __init__(self, secret: str, issuer: str, *, provider: IdentityProvider | None = None,
                 denylist: DenyList | None = None) -> None:
        self.secret, self.issuer, self.provider, self.denylist = secret, issuer, provider, denylist
        self.keys = ProviderKeys(provider) if provider is not None else None

    @classmethod
    def from_settings(cls, s: Settings, denylist: DenyList | None = None) -> TokenVerifier:
        provider = None
        if s.jwks_url:
            provider = IdentityProvider(
                jwks_url=s.jwks_url, audience=s.jwt_audience, algorithms=tuple(s.jwt_algorithms),
                issuer=s.jwt_provider_issuer, claims=ClaimNames(s.jwt_claim_org, s.jwt_claim_role, s.jwt_claim_groups),
                cache_s=s.jwks_cache_s, refresh_cooldown_s=s.jwks_refresh_cooldown_s)
        return cls(s.jwt_secret, s.jwt_issuer, provider=provider, denylist=denylist)

    def verify(self, token: str) -> Principal:
        """The caller of `token`: signature, expiry, issuer/audience, and not revoked."""
        principal = self.decode(token)
        self.ensure_not_revoked(principal, token)
        return principal

    def decode(self, token: str) -> Principal:
        """Signature and claims only; the header's `alg` picks the signer."""
        header = _header(token)
        alg = header.get("alg")
        if alg == ALGORITHM:
            return verify_token(self.secret, token, issuer=self.issuer)
        if self.provider is not None and alg in self.provider.algorithms:
            return self._provider_token(token, header)
        raise Unauthorized(f"invalid token: algorithm {str(alg)[:16]!r} is not accepted", code="invalid_token")

    def ensure_not_revoked(self, principal: Principal, token: str) -> None:
        """401 `token_revoked` for a token on the deny-list (503 when Redis cannot say)."""
        if self.denylist is not None and self.denylist.is_revoked(principal.org, token_id(principal.claims, token)):
            raise Unauthorized("this token has been revoked", code="token_revoked")

    def _provider_token(self, token: str, header: dict[str, Any]) -> Principal:
        assert self.provider is not None and self.keys is not None
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise Unauthorized("invalid token: no key id (kid)", code="invalid_token")
        p = self.provider
        claims = _decode(token, self.keys.key(kid), algorithms=[header["alg"]], audience=p.audience,
                         issuer=p.issuer or None,
                         options={"require": ["exp", "sub", "aud", *(["iss"] if p.issuer else [])]})
        return provider_principal(claims, p.claims)
