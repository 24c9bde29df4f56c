"""Tokens through the real app: identity-provider tokens (local JWKS endpoint), revocation
end to end across two app instances, query-string tokens only for narrow scopes, the
upload-token TTL cap, and access-log lines without tokens."""
from __future__ import annotations

import hashlib
import io
import json
import logging
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
import pytest
import redis
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from core import keys
from core.db import session_scope
from core.logging import configure_logging
from core.models import Recording
from core.revocation import DenyList
from recorder.app import create_app
from recorder.services import free_port
from signaling import protocol as p
from tests.conftest import LiveServer, auth, make_settings
from tests.core.test_tokens import AUD, JwksServer, ec_key, forge_hs256, idp_claims, rsa_key
from tests.media import av_clip, split_chunks

T0 = 1_795_000_000_000


@pytest.fixture(scope="module")
def idp_keys() -> dict[str, Any]:
    return {"rsa1": rsa_key("rsa-1"), "rsa2": rsa_key("rsa-2"), "ec": ec_key("ec-1")}


@pytest.fixture
def jwks(idp_keys) -> Iterator[JwksServer]:
    with JwksServer(idp_keys["rsa1"], idp_keys["ec"]) as server:
        yield server


@pytest.fixture
def idp_client(jwks, sqlite_url, redis_url, s3_server, bucket, tmp_path) -> Iterator[TestClient]:
    settings = make_settings(sqlite_url, redis_url, s3_server, bucket, tmp_path, jwks_url=jwks.url, jwt_audience=AUD,
                             jwt_claim_role="roles", jwks_refresh_cooldown_s=0)
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture(scope="module")
def webm_chunk(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    d = tmp_path_factory.mktemp("webm")
    src = av_clip(d / "src.webm", 2, "webm", size=(160, 90))
    return split_chunks(src, d / "chunks", chunk_s=1)[0][0].read_bytes()


def new_recording(client: TestClient, token: str, tracks: tuple[str, ...] = ("cam-a",)) -> str:
    body = {"client_key": f"k-{time.time_ns()}",
            "tracks": [{"track_id": t, "participant_id": f"p-{t}", "role": "candidate", "kind": "av"} for t in tracks]}
    resp = client.post("/v1/recordings", json=body, headers=auth(token))
    assert resp.status_code == 201, resp.text
    return resp.json()["id"]


# ---------------------------------------------------------------- identity provider

def test_identity_provider_tokens_open_the_api(idp_client, idp_keys, token_for) -> None:
    rs = idp_keys["rsa1"].sign(**idp_claims(role=None, roles=["offline_access", "admin"], org="acme"))
    rec = new_recording(idp_client, rs)
    assert idp_client.get(f"/v1/recordings/{rec}", headers=auth(rs)).json()["org"] == "acme"
    es = idp_keys["ec"].sign(**idp_claims(role=None, roles="admin"))
    assert idp_client.get(f"/v1/recordings/{rec}", headers=auth(es)).status_code == 200
    # The local HS256 tokens keep working next to the provider's.
    assert idp_client.get(f"/v1/recordings/{rec}", headers=auth(token_for(role="admin"))).status_code == 200

    stranger = rsa_key("rsa-unknown").sign(**idp_claims(roles="admin"))
    r = idp_client.get(f"/v1/recordings/{rec}", headers=auth(stranger))
    assert r.status_code == 401 and r.json()["code"] == "invalid_token"
    secret = idp_client.app.state.settings.jwt_secret
    confused = forge_hs256({"alg": "RS256", "typ": "JWT", "kid": "rsa-1"}, idp_claims(roles="admin"), secret.encode())
    r = idp_client.get(f"/v1/recordings/{rec}", headers=auth(confused))
    assert r.status_code == 401 and r.json()["code"] == "invalid_token"
    wrong_aud = idp_keys["rsa1"].sign(**idp_claims(roles="admin", aud="another-app"))
    assert idp_client.get(f"/v1/recordings/{rec}", headers=auth(wrong_aud)).status_code == 401


def test_rotated_provider_key_works_after_one_refresh(idp_client, idp_keys, jwks) -> None:
    first = idp_keys["rsa1"].sign(**idp_claims(roles="admin"))
    rec = new_recording(idp_client, first)
    assert jwks.fetches == 1
    jwks.keys = [idp_keys["rsa2"], idp_keys["ec"]]
    rotated = idp_keys["rsa2"].sign(**idp_claims(roles="admin"))
    assert idp_client.get(f"/v1/recordings/{rec}", headers=auth(rotated)).status_code == 200
    assert jwks.fetches == 2


# ---------------------------------------------------------------- revocation

def revoke(client: TestClient, caller: str, **body: Any):
    return client.post("/v1/tokens/revoke", json=body, headers=auth(caller))


def test_revoked_token_is_refused_everywhere(client, token_for, settings) -> None:
    admin, other = token_for(role="admin", sub="ann"), token_for(role="admin", sub="bob")
    rec = new_recording(client, admin)
    assert client.get(f"/v1/recordings/{rec}", headers=auth(admin)).status_code == 200
    assert revoke(client, admin, token=admin).status_code == 204  # log out
    r = client.get(f"/v1/recordings/{rec}", headers=auth(admin))
    assert r.status_code == 401 and r.json()["code"] == "token_revoked"
    assert client.get(f"/v1/recordings/{rec}", headers=auth(other)).status_code == 200
    with TestClient(create_app(settings)) as replica:  # another API instance: the list is in Redis
        r = replica.get(f"/v1/recordings/{rec}", headers=auth(admin))
        assert r.status_code == 401 and r.json()["code"] == "token_revoked"
        assert replica.get(f"/v1/recordings/{rec}", headers=auth(other)).status_code == 200


def test_who_may_revoke_what(client, token_for) -> None:
    ann, ann2 = token_for(role="interviewer", sub="ann"), token_for(role="interviewer", sub="ann")
    bob = token_for(role="interviewer", sub="bob")
    r = revoke(client, ann, token=bob)
    assert r.status_code == 403 and r.json()["code"] == "wrong_role"
    claims = jwt.decode(bob, options={"verify_signature": False})
    assert revoke(client, ann, jti=claims["jti"], exp=claims["exp"]).status_code == 403
    assert revoke(client, ann, token=ann2).status_code == 204  # one's own other token
    assert client.get("/v1/recordings/x", headers=auth(ann2)).json()["code"] == "token_revoked"

    r = revoke(client, token_for(role="admin", org="globex"), token=bob)
    assert r.status_code == 403 and r.json()["code"] == "other_org"
    assert revoke(client, token_for(role="admin"), jti=claims["jti"], exp=claims["exp"]).status_code == 204
    assert client.get("/v1/recordings/x", headers=auth(bob)).json()["code"] == "token_revoked"

    upload = token_for(role="candidate", scope="upload", recording_id="rec_1", participant_id="p1")
    r = revoke(client, upload, token=ann)
    assert r.status_code == 403 and r.json()["code"] == "wrong_scope"
    assert revoke(client, upload, token=upload).status_code == 204

    expired = token_for(role="interviewer", sub="bob", ttl_s=-10)
    assert revoke(client, token_for(role="admin"), token=expired).status_code == 204  # nothing left to do
    assert revoke(client, ann, token="x" * 40).status_code == 400
    assert revoke(client, ann, token=ann, jti="j", exp=1).status_code == 400
    assert revoke(client, ann, jti="j").status_code == 400
    big = client.post("/v1/tokens/revoke", content=b'{"token": "' + b"x" * 20000 + b'"}',
                      headers={**auth(ann), "Content-Type": "application/json"})
    assert big.status_code == 413


def test_revocation_check_fails_closed_when_redis_is_down(client, token_for) -> None:
    verifier = client.app.state.token_verifier
    down = redis.Redis(port=free_port(), socket_connect_timeout=1)
    verifier.denylist = DenyList(down)
    try:
        r = client.get("/v1/recordings/x", headers=auth(token_for(role="admin")))
    finally:
        down.close()
    assert r.status_code == 503 and r.headers["retry-after"] and r.json()["code"] == "revocation_unavailable"


# ---------------------------------------------------------------- query-string tokens

def test_api_tokens_only_in_the_header(client, token_for) -> None:
    admin = token_for(role="admin")
    rec = new_recording(client, admin)
    for name in ("token", "access_token"):
        r = client.get(f"/v1/recordings/{rec}", params={name: admin})
        assert r.status_code == 401 and r.json()["code"] == "token_in_query"
    r = client.get(f"/v1/recordings/{rec}/media/composite.mp4", params={"token": admin})
    assert r.status_code == 401 and r.json()["code"] == "token_in_query"


def test_playback_token_in_the_query_opens_the_media(client, token_for, store) -> None:
    admin = token_for(role="admin")
    rec = new_recording(client, admin)
    key = keys.output_key("acme", rec, "composite.mp4")
    store.put_bytes(key, b"\x00" * 1000, "video/mp4")
    with session_scope(client.app.state.engine) as s:
        row = s.get(Recording, rec)
        row.status, row.outputs = "ready", {"composite": key, "duration_ms": 1000}
        s.add(row)
    parts = urlsplit(client.get(f"/v1/recordings/{rec}/playback", headers=auth(admin)).json()["mp4_url"])
    assert parts.query.startswith("token=")
    media = client.get(f"{parts.path}?{parts.query}")
    assert media.status_code == 200 and len(media.content) == 1000
    claims = jwt.decode(parts.query.split("=", 1)[1], options={"verify_signature": False})
    assert revoke(client, admin, jti=claims["jti"], exp=claims["exp"]).status_code == 204
    r = client.get(f"{parts.path}?{parts.query}")
    assert r.status_code == 401 and r.json()["code"] == "token_revoked"


def test_beacon_takes_an_upload_token_in_the_query(client, token_for, webm_chunk) -> None:
    admin = token_for(role="admin")
    rec = new_recording(client, admin)
    upload = client.post(f"/v1/recordings/{rec}/upload-token", json={"participant_id": "p-cam-a"},
                         headers=auth(admin)).json()["token"]
    query = {"type": "video/webm", "sha256": hashlib.sha256(webm_chunk).hexdigest(), "start": str(T0)}
    url = f"/v1/recordings/{rec}/tracks/cam-a/chunks/0/beacon"
    r = client.post(url, params={**query, "token": admin}, content=webm_chunk)
    assert r.status_code == 401 and r.json()["code"] == "token_in_query"
    r = client.post(url, params={**query, "token": upload}, content=webm_chunk)
    assert r.status_code == 201, r.text
    # The PUT route takes the same upload token only in the header.
    r = client.put(f"/v1/recordings/{rec}/tracks/cam-a/chunks/1", params={"token": upload}, content=webm_chunk)
    assert r.status_code == 401 and r.json()["code"] == "token_in_query"


def test_websocket_join_token_in_the_query_and_revoked(client, token_for) -> None:
    join = token_for(role="candidate", sub="cand-1", scope="join", room_id="room_missing", participant_id="cand-1")

    with client.websocket_connect(f"/v1/signal?token={join}") as ws:  # verified: now the room is looked up
        ws.send_text(p.Join(instance_id="tab").dumps())
        assert ws.receive_json()["code"] == "room_not_found"
    claims = jwt.decode(join, options={"verify_signature": False})
    assert revoke(client, token_for(role="admin"), jti=claims["jti"], exp=claims["exp"]).status_code == 204
    with client.websocket_connect(f"/v1/signal?token={join}") as ws:
        assert ws.receive_json()["code"] == "token_revoked"
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
    assert closed.value.code == p.CLOSE_UNAUTHORIZED


# ---------------------------------------------------------------- upload-token lifetime

def test_upload_token_ttl_is_capped(sqlite_url, redis_url, s3_server, bucket, tmp_path, token_for) -> None:
    settings = make_settings(sqlite_url, redis_url, s3_server, bucket, tmp_path, upload_token_ttl_s=300,
                             upload_token_max_ttl_s=600)
    with TestClient(create_app(settings)) as c:
        admin = token_for(role="admin")
        rec = new_recording(c, admin)

        def mint(**body: Any) -> tuple[int, int]:
            out = c.post(f"/v1/recordings/{rec}/upload-token", json={"participant_id": "p-cam-a", **body},
                         headers=auth(admin)).json()
            claims = jwt.decode(out["token"], options={"verify_signature": False})
            return out["expires_in"], claims["exp"] - claims["iat"]

        assert mint() == (300, 300)
        assert mint(ttl_s=120) == (120, 120)
        assert mint(ttl_s=24 * 3600) == (600, 600)
        r = c.post(f"/v1/recordings/{rec}/upload-token", json={"participant_id": "p-cam-a", "ttl_s": 0},
                   headers=auth(admin))
        assert r.status_code == 400


# ---------------------------------------------------------------- logs

@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    out = io.StringIO()
    configure_logging("INFO", json=True, stream=out)
    yield out
    root.handlers[:] = handlers
    root.setLevel(level)


def test_access_logs_carry_no_token(settings, token_for, log_stream) -> None:
    admin = token_for(role="admin")
    with LiveServer(settings) as server, httpx.Client(base_url=server.url, timeout=10) as http:
        http.get("/v1/recordings/rec_x", params={"token": admin})
        http.get("/v1/recordings/rec_x", params={"access_token": admin, "v": "1"})
        http.post("/v1/recordings/rec_x/tracks/cam-a/chunks/0/beacon", params={"token": admin, "start": "1"})
    text = log_stream.getvalue()
    lines = [json.loads(x) for x in text.splitlines()]
    access = [x for x in lines if x["event"].startswith("127.0.0.1:") and "/v1/recordings/rec_x" in x["event"]]
    assert len(access) == 3, text[-2000:]  # uvicorn's access lines (the httpx client logs the URLs too)
    assert admin not in text and admin.split(".")[2] not in text
    assert all("token=[redacted]" in line["event"] for line in access)

