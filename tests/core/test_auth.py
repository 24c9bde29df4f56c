import time

import jwt
import pytest

from core.auth import mint_token, verify_token
from core.errors import Forbidden, Unauthorized

SECRET = "s" * 32


def test_roundtrip_keeps_scope_claims() -> None:
    tok = mint_token(SECRET, sub="u1", org="acme", role="candidate", ttl_s=60, scope="upload",
                     recording_id="rec_1", participant_id="p1")
    p = verify_token(SECRET, tok)
    assert (p.sub, p.org, p.role, p.scope, p.recording_id, p.participant_id) == \
        ("u1", "acme", "candidate", "upload", "rec_1", "p1")


def test_expired_forged_and_wrong_issuer_are_unauthorized() -> None:
    old = mint_token(SECRET, sub="u", org="o", role="admin", ttl_s=10, now=time.time() - 100)
    with pytest.raises(Unauthorized) as info:
        verify_token(SECRET, old)
    assert info.value.code == "token_expired"
    forged = mint_token("x" * 32, sub="u", org="o", role="admin", ttl_s=60)
    with pytest.raises(Unauthorized):
        verify_token(SECRET, forged)
    other_iss = mint_token(SECRET, sub="u", org="o", role="admin", ttl_s=60, issuer="evil")
    with pytest.raises(Unauthorized):
        verify_token(SECRET, other_iss)
    none_alg = jwt.encode({"sub": "u", "org": "o", "role": "admin", "exp": time.time() + 60}, None, algorithm="none")
    with pytest.raises(Unauthorized):
        verify_token(SECRET, none_alg)


def test_role_and_org_checks() -> None:
    p = verify_token(SECRET, mint_token(SECRET, sub="u", org="acme", role="assessor", ttl_s=60))
    p.require_role("assessor", "interviewer")
    with pytest.raises(Forbidden):
        p.require_role("compliance")
    with pytest.raises(Forbidden):
        p.require_org("globex")
    with pytest.raises(ValueError):
        mint_token(SECRET, sub="u", org="o", role="superuser", ttl_s=60)
