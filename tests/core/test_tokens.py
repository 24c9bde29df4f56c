"""Tokens: groups, identity-provider tokens over a real local JWKS endpoint, algorithm
confusion, the Redis deny-list, upload-token closing, production settings, log redaction."""
from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pydantic
import pytest
import redis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from core.auth import (ClaimNames, IdentityProvider, Principal, TokenVerifier, ensure_upload_open, mint_token,
                       verify_token)
from core.errors import DependencyDown, Forbidden, QueueError, Unauthorized
from core.logging import configure_logging, get_logger, redact
from core.revocation import DenyList, token_id
from core.settings import DEV_JWT_SECRET, Settings
from recorder.services import free_port

SECRET = "s" * 32
ISSUER = "interview-recorder"
AUD = "interview-recorder-api"
ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- a local identity provider

@dataclass
class SigningKey:
    """A key pair of the test identity provider."""

    kid: str
    alg: str
    private: Any

    def jwk(self) -> dict[str, Any]:
        algo = jwt.algorithms.RSAAlgorithm if self.alg.startswith("RS") else jwt.algorithms.ECAlgorithm
        data = json.loads(algo.to_jwk(self.private.public_key()))
        data.update(kid=self.kid, alg=self.alg, use="sig")
        return data

    def sign(self, **claims: Any) -> str:
        return jwt.encode(claims, self.private, algorithm=self.alg, headers={"kid": self.kid})

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo)


def rsa_key(kid: str) -> SigningKey:
    return SigningKey(kid, "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))


def ec_key(kid: str) -> SigningKey:
    return SigningKey(kid, "ES256", ec.generate_private_key(ec.SECP256R1()))


class JwksServer:
    """A JWKS endpoint on 127.0.0.1 (http.server in a thread) serving the keys in `keys`."""

    def __init__(self, *keys: SigningKey) -> None:
        self.keys, self.fetches = list(keys), 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.fetches += 1
                body = json.dumps({"keys": [k.jwk() for k in outer.keys]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/.well-known/jwks.json"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> JwksServer:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def idp_claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"sub": "alice", "org": "acme", "role": "admin", "aud": AUD, "iat": now, "exp": now + 300}
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not None}


def forge_hs256(header: dict[str, Any], claims: dict[str, Any], key: bytes) -> str:
    """An HMAC-SHA256 signature under any header (PyJWT refuses to make these)."""
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    return signing_input + "." + b64(hmac.new(key, signing_input.encode(), hashlib.sha256).digest())


@pytest.fixture(scope="module")
def keys() -> dict[str, SigningKey]:
    return {"rsa1": rsa_key("rsa-1"), "rsa2": rsa_key("rsa-2"), "ec": ec_key("ec-1")}


@pytest.fixture
def jwks(keys) -> Iterator[JwksServer]:
    with JwksServer(keys["rsa1"], keys["ec"]) as server:
        yield server


def provider_verifier(url: str, cooldown_s: float = 60, **over: Any) -> TokenVerifier:
    provider = IdentityProvider(jwks_url=url, audience=AUD, refresh_cooldown_s=cooldown_s,
                                claims=ClaimNames(role="roles", groups="groups"), **over)
    return TokenVerifier(SECRET, ISSUER, provider=provider)


# ---------------------------------------------------------------- groups

def test_groups_come_from_the_claim_capped() -> None:
    assert Principal(sub="u", org="o", role="admin").groups == ()
    groups = [f"g{i}" for i in range(100)]
    p = verify_token(SECRET, mint_token(SECRET, sub="u", org="o", role="assessor", ttl_s=60,
                                        groups=[7, "", "x" * 300, *groups, "g1"]))
    assert p.groups == tuple(groups[:64])
    assert verify_token(SECRET, mint_token(SECRET, sub="u", org="o", role="assessor", ttl_s=60)).groups == ()


# ---------------------------------------------------------------- identity provider (JWKS)

def test_rs256_and_es256_provider_tokens_map_org_role_and_groups(jwks, keys) -> None:
    v = provider_verifier(jwks.url)
    p = v.verify(keys["rsa1"].sign(**idp_claims(role=None, roles=["viewer", "assessor", "admin"],
                                                groups=["team-a", "team-b"])))
    assert (p.sub, p.org, p.role, p.scope, p.groups) == ("alice", "acme", "assessor", "api", ("team-a", "team-b"))
    p = v.verify(keys["ec"].sign(**idp_claims(roles="interviewer")))
    assert (p.role, p.groups) == ("interviewer", ())
    assert jwks.fetches == 1  # the key set is cached
    # The shared secret keeps working next to the provider (local stack, tokens we mint).
    assert v.verify(mint_token(SECRET, sub="bot", org="acme", role="service", ttl_s=60)).role == "service"


def test_nested_and_namespaced_claims(jwks, keys) -> None:
    names = ClaimNames(org="https://example.com/org", role="realm_access.roles", groups="realm_access.groups")
    v = TokenVerifier(SECRET, ISSUER, provider=IdentityProvider(jwks.url, AUD, claims=names))
    token = keys["rsa1"].sign(**idp_claims(org=None, role=None, **{"https://example.com/org": "globex"},
                                           realm_access={"roles": ["offline", "compliance"], "groups": ["legal"]}))
    p = v.verify(token)
    assert (p.org, p.role, p.groups) == ("globex", "compliance", ("legal",))


@pytest.mark.parametrize("claims, code", [
    ({"aud": "another-app"}, "invalid_token"),
    ({"aud": None}, "invalid_token"),
    ({"exp": int(time.time()) - 60}, "token_expired"),
    ({"org": None}, "invalid_token"),
    ({"roles": ["viewer"]}, "invalid_token"),
    ({"sub": None}, "invalid_token"),
])
def test_provider_claims_are_checked(jwks, keys, claims, code) -> None:
    v = provider_verifier(jwks.url)
    base = idp_claims(role=None, roles=["admin"])
    base.update(claims)
    with pytest.raises(Unauthorized) as info:
        v.verify(keys["rsa1"].sign(**{k: val for k, val in base.items() if val is not None}))
    assert info.value.code == code


def test_provider_issuer_is_checked_when_set(jwks, keys) -> None:
    v = provider_verifier(jwks.url, issuer="https://idp.example.com/")
    good = keys["rsa1"].sign(**idp_claims(roles="admin", iss="https://idp.example.com/"))
    assert v.verify(good).role == "admin"
    with pytest.raises(Unauthorized):
        v.verify(keys["rsa1"].sign(**idp_claims(roles="admin", iss="https://evil.example.com/")))
    with pytest.raises(Unauthorized):
        v.verify(keys["rsa1"].sign(**idp_claims(roles="admin")))


def test_unknown_kid_refreshes_once_per_cooldown_then_401(jwks, keys) -> None:
    v = provider_verifier(jwks.url, cooldown_s=60)
    v.verify(keys["rsa1"].sign(**idp_claims(roles="admin")))
    assert jwks.fetches == 1
    stranger = rsa_key("who-knows")
    with pytest.raises(Unauthorized) as info:
        v.verify(stranger.sign(**idp_claims(roles="admin")))
    assert info.value.code == "invalid_token" and "unknown signing key" in info.value.message
    assert jwks.fetches == 2  # one refresh for the unknown kid…
    for _ in range(5):
        with pytest.raises(Unauthorized):
            v.verify(rsa_key("made-up").sign(**idp_claims(roles="admin")))
    assert jwks.fetches == 2  # …and no more within the cooldown


def test_rotated_key_works_after_refresh(jwks, keys) -> None:
    v = provider_verifier(jwks.url, cooldown_s=0)
    assert v.verify(keys["rsa1"].sign(**idp_claims(roles="admin"))).role == "admin"
    jwks.keys = [keys["rsa2"]]  # the provider rotates: new kid, old key withdrawn
    assert v.verify(keys["rsa2"].sign(**idp_claims(roles="admin"))).role == "admin"
    assert jwks.fetches == 2
    with pytest.raises(Unauthorized):  # the withdrawn key is gone from the refreshed set
        v.verify(keys["rsa1"].sign(**idp_claims(roles="admin")))


def test_algorithm_confusion_is_refused(jwks, keys) -> None:
    v = provider_verifier(jwks.url)
    claims = idp_claims(roles="admin", iss=ISSUER)
    # HS256 signature with the shared secret, header claiming RS256 with a known kid.
    with pytest.raises(Unauthorized):
        v.verify(forge_hs256({"alg": "RS256", "typ": "JWT", "kid": "rsa-1"}, claims, SECRET.encode()))
    # HS256 "signed" with the provider's public key as the HMAC secret.
    with pytest.raises(Unauthorized):
        v.verify(forge_hs256({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}, claims, keys["rsa1"].public_pem()))
    # alg: none, and a token whose header alg is not one the provider may use.
    with pytest.raises(Unauthorized):
        v.verify(jwt.encode(claims, None, algorithm="none"))
    with pytest.raises(Unauthorized):
        v.verify(jwt.encode(claims, keys["rsa1"].private, algorithm="PS256", headers={"kid": "rsa-1"}))
    # Without a provider, asymmetric tokens are not accepted at all.
    with pytest.raises(Unauthorized) as info:
        TokenVerifier(SECRET, ISSUER).verify(keys["rsa1"].sign(**claims))
    assert "not accepted" in info.value.message


def test_unreachable_jwks_is_503() -> None:
    v = provider_verifier(f"http://127.0.0.1:{free_port()}/jwks.json")
    with pytest.raises(DependencyDown) as info:
        v.verify(rsa_key("k").sign(**idp_claims(roles="admin")))
    assert info.value.code == "jwks_unavailable"


# ---------------------------------------------------------------- revocation

def test_deny_list_keeps_ids_as_long_as_the_token_lives(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    deny = DenyList(client)
    now = time.time()
    assert deny.revoke("acme", "jti-1", int(now) + 120, now=now)
    assert deny.is_revoked("acme", "jti-1") and not deny.is_revoked("globex", "jti-1")
    assert 100 < client.ttl(deny.key("acme", "jti-1")) <= 121
    assert not deny.revoke("acme", "jti-old", int(now) - 5, now=now)  # dead anyway: nothing kept
    assert not deny.is_revoked("acme", "jti-old")
    assert deny.key("a:b", "c") != deny.key("a", "b:c")
    client.close()


def test_verifier_refuses_revoked_tokens_and_fails_closed(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    v = TokenVerifier(SECRET, ISSUER, denylist=DenyList(client))
    token = mint_token(SECRET, sub="u", org="acme", role="admin", ttl_s=60)
    p = v.verify(token)
    v.denylist.revoke(p.org, token_id(p.claims, token), p.claims["exp"])
    with pytest.raises(Unauthorized) as info:
        v.verify(token)
    assert info.value.code == "token_revoked"
    down = redis.Redis(port=free_port(), socket_connect_timeout=1)
    with pytest.raises(QueueError) as down_info:
        TokenVerifier(SECRET, ISSUER, denylist=DenyList(down)).verify(mint_token(SECRET, sub="u", org="acme",
                                                                                 role="admin", ttl_s=60))
    assert down_info.value.code == "revocation_unavailable" and down_info.value.retryable
    client.close()
    down.close()


def test_token_id_is_the_jti_or_a_digest() -> None:
    assert token_id({"jti": "abc"}, "x.y.z") == "abc"
    assert token_id({}, "x.y.z") == "sha256:" + hashlib.sha256(b"x.y.z").hexdigest()


# ---------------------------------------------------------------- upload tokens

def test_upload_tokens_stop_when_the_recording_is_closed() -> None:
    upload = Principal(sub="p1", org="acme", role="candidate", scope="upload", recording_id="rec_1")
    ensure_upload_open(upload, "recording")
    for status in ("processing", "ready", "failed", "deleted"):
        with pytest.raises(Forbidden) as info:
            ensure_upload_open(upload, status)
        assert info.value.code == "recording_closed"
    ensure_upload_open(Principal(sub="bot", org="acme", role="service"), "ready")  # API tokens: not this rule


# ---------------------------------------------------------------- settings and the image

def test_production_refuses_the_development_secret() -> None:
    with pytest.raises(pydantic.ValidationError, match="JWT_SECRET"):
        Settings(env="production")
    with pytest.raises(pydantic.ValidationError, match="JWT_SECRET"):
        Settings(env="production", jwt_secret=DEV_JWT_SECRET)
    assert Settings(env="production", jwt_secret="p" * 40).env == "production"


def test_token_settings_fail_at_start_up() -> None:
    with pytest.raises(pydantic.ValidationError, match="JWT_AUDIENCE"):
        Settings(jwks_url="https://idp.example.com/jwks.json")
    with pytest.raises(pydantic.ValidationError, match="jwt_algorithms"):
        Settings(jwt_algorithms=["RS256", "HS256"])
    with pytest.raises(pydantic.ValidationError, match="jwt_algorithms"):
        Settings(jwt_algorithms=["none"])
    with pytest.raises(pydantic.ValidationError, match="UPLOAD_TOKEN_MAX_TTL_S"):
        Settings(upload_token_ttl_s=7200, upload_token_max_ttl_s=3600)


def test_the_image_runs_as_production() -> None:
    env_lines = [ln for ln in (ROOT / "Dockerfile").read_text().splitlines() if ln.startswith("ENV ")]
    assert any("RECORDER_ENV=production" in ln.split() for ln in env_lines)
    assert not any("RECORDER_JWT_SECRET" in ln for ln in env_lines)  # never baked into the image


# ---------------------------------------------------------------- logs

def test_redact_hides_query_tokens() -> None:
    line = '127.0.0.1:5 - "POST /v1/r/x/beacon?sha256=ab&token=eyJ.a-b_c.d%3D&start=1 HTTP/1.1" 201'
    assert redact(line) == '127.0.0.1:5 - "POST /v1/r/x/beacon?sha256=ab&token=[redacted]&start=1 HTTP/1.1" 201'
    assert redact("/v1/signal?access_token=abc") == "/v1/signal?access_token=[redacted]"
    assert redact("/media/a.ts?v=2&TOKEN=abc#t=3") == "/media/a.ts?v=2&TOKEN=[redacted]#t=3"


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    out = io.StringIO()
    configure_logging("INFO", json=True, stream=out)
    yield out
    root.handlers[:] = handlers
    root.setLevel(level)


def test_log_lines_carry_no_token(log_stream: io.StringIO) -> None:
    get_logger("t").info("fetched", url="https://x/media/a.mp4?token=SECRET1", token="SECRET2")
    logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:1", "GET",
                                             "/v1/signal?token=SECRET3", "1.1", 101)
    logging.getLogger("uvicorn.error").info('%s - "WebSocket %s" [accepted]', "127.0.0.1:1",
                                            "/v1/signal?access_token=SECRET4")
    text = log_stream.getvalue()
    lines = [json.loads(x) for x in text.splitlines()]
    assert len(lines) == 3 and not any(f"SECRET{i}" in text for i in range(1, 5))
    assert lines[0]["url"].endswith("?token=[redacted]") and lines[0]["token"] == "[redacted]"
    assert "token=[redacted]" in lines[1]["event"] and "access_token=[redacted]" in lines[2]["event"]
