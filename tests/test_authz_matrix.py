"""The authorization matrix: every route × every caller → the status it must answer.

The route list comes from the app itself, so a new endpoint without a row in `MATRIX`
fails `test_every_route_has_a_row`: nothing ships unclassified.

Callers. For each API role, five relations to the recording (or room) under test:
    p  took part (a track's participant)      g  granted by a user grant
    G  in a group the recording is granted to  n  none of these (same org)
    o  the same user in another org
and five narrow tokens: upload token of this recording's own participant, upload token
of another recording, playback token of this recording (sent as a bearer header), join
token of the room, and no token at all.

Expected statuses, one character each:
    y  2xx (or 3xx)    1  401    3  403    4  404    -  not applicable (not sent)
Rows are written by hand from the product's rules (ARCHITECTURE "Trust"); they do not
read `core.access`, so a wrong policy table fails here.
"""
from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import Any, Iterator

import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from sqlmodel import select

from core.auth import mint_token
from core.db import session_scope
from core.models import Chunk, Recording, RecordingGrant, Room, Track, TranscriptVersion
from core.settings import Settings
from tests.conftest import drop_bucket, make_settings
from tests.media import av_clip, split_chunks

ROLES = ("admin", "interviewer", "assessor", "compliance", "service", "recorder", "candidate")
RELATIONS = ("p", "g", "G", "n", "o")
SCOPED = ("upload_own", "upload_other", "playback", "join", "anon")
ALL_IN_ORG = "yyyyy"


@dataclass(frozen=True)
class Row:
    """Expected answers of one route: `roles[role]` over RELATIONS, `scoped` over SCOPED."""

    roles: dict[str, str]
    scoped: str
    target: str = "ready"  # which recording the path names: "ready" or "live"
    body: Any = None
    query: str = ""


def row(scoped: str, *, target: str = "ready", body: Any = None, query: str = "", **roles: str) -> Row:
    missing = set(ROLES) - set(roles)
    assert not missing, f"row without {missing}"
    return Row(roles=roles, scoped=scoped, target=target, body=body, query=query)


PUBLIC = "public"  # served to anyone (health, docs, static pages and assets)
WS = "websocket"  # checked by test_signal_socket_takes_only_join_tokens

# ---------------------------------------------------------------------------- the table
#                                                         relations: p g G n o
META = dict(admin="yyyy4", interviewer="yyy44", assessor="4yy44", compliance="yyyy4", service="yyyy4",
            recorder="yyyy4", candidate="33333")
CONTENT = dict(admin="yyyy4", interviewer="yyy44", assessor="4yy44", compliance="33334", service="33333",
               recorder="33333", candidate="33333")
SHARE = dict(admin="yyyy4", interviewer="y3344", assessor="33333", compliance="33333", service="33333",
             recorder="33333", candidate="33333")
ORG_ADMIN_ONLY = dict(admin="yyyyy", interviewer="33333", assessor="33333", compliance="33333",
                      service="33333", recorder="33333", candidate="33333")
ADMIN_404 = dict(admin="44444", interviewer="33333", assessor="33333", compliance="33333", service="33333",
                 recorder="33333", candidate="33333")
# retention (compliance + admin); the {…_id} rows name ids that do not exist → 404 for them too
RETENTION = dict(admin="yyyyy", interviewer="33333", assessor="33333", compliance="yyyyy", service="33333",
                 recorder="33333", candidate="33333")
RETENTION_REC = dict(admin="yyyy4", interviewer="33333", assessor="33333", compliance="yyyy4", service="33333",
                     recorder="33333", candidate="33333")
RETENTION_404 = dict(admin="44444", interviewer="33333", assessor="33333", compliance="44444", service="33333",
                     recorder="33333", candidate="33333")
NOBODY = dict(admin="33333", interviewer="33333", assessor="33333", compliance="33333", service="33333",
              recorder="33333", candidate="33333")
CHUNK = "a valid 1-s WebM chunk"  # placeholder: the bytes are made once per module (World.chunk)

MATRIX: dict[tuple[str, str], Row | str] = {
    ("GET", "/openapi.json"): PUBLIC, ("GET", "/docs"): PUBLIC, ("GET", "/docs/oauth2-redirect"): PUBLIC,
    ("GET", "/redoc"): PUBLIC, ("GET", "/healthz"): PUBLIC, ("GET", "/readyz"): PUBLIC,
    ("GET", "/metrics"): PUBLIC, ("GET", "/review/{recording_id}"): PUBLIC, ("GET", "/search"): PUBLIC,
    ("GET", "/review"): PUBLIC, ("GET", "/recordings"): PUBLIC, ("GET", "/compliance"): PUBLIC, ("GET", "/"): PUBLIC, ("GET", "/static/review/{name}"): PUBLIC, ("MOUNT", "/static/ingest"): PUBLIC,
    ("WS", "/v1/signal"): WS,
    # rooms
    ("POST", "/v1/rooms"): row("33131", body={"slot_id": "s1", "candidate_id": "c1"},
                               admin=ALL_IN_ORG, interviewer=ALL_IN_ORG, assessor="33333", compliance="33333",
                               service=ALL_IN_ORG, recorder="33333", candidate="33333"),
    ("GET", "/v1/rooms/{room_id}"): row("331y1", admin="yyyy4", interviewer="yyyy4", assessor="33333",
                                        compliance="yyyy4", service="yyyy4", recorder="33333", candidate="33333"),
    ("POST", "/v1/rooms/{room_id}/tokens"): row("33131", body={"participant_id": "cand-2"}, admin="yyyy4",
                                                interviewer="yyyy4", assessor="33333", compliance="33333",
                                                service="yyyy4", recorder="33333", candidate="33333"),
    ("POST", "/v1/rooms/{room_id}/client-upload"): row("331y1", admin="33333", interviewer="33333",  # join tokens only
                                                        assessor="33333", compliance="33333", service="33333",
                                                        recorder="33333", candidate="33333"),
    ("GET", "/call/{room_id}"): row("yyyyy", **dict.fromkeys(ROLES, "yyyyy")),  # the call page shell: anyone
    ("POST", "/v1/rooms/{room_id}/end"): row("33131", admin="yyyy4", interviewer="yyyy4", assessor="33333",
                                             compliance="33333", service="yyyy4", recorder="33333",
                                             candidate="33333"),
    # recordings: create, read, upload, close
    ("POST", "/v1/recordings"): row("33131", body={"client_key": "k1"}, admin=ALL_IN_ORG,
                                    interviewer=ALL_IN_ORG, assessor="33333", compliance="33333",
                                    service=ALL_IN_ORG, recorder=ALL_IN_ORG, candidate="33333"),
    ("GET", "/v1/recordings"): row("33131", admin=ALL_IN_ORG, interviewer=ALL_IN_ORG, assessor=ALL_IN_ORG,
                                   compliance=ALL_IN_ORG, service=ALL_IN_ORG, recorder=ALL_IN_ORG,
                                   candidate="33333"),
    ("GET", "/v1/recordings/{recording_id}"): row("33131", **META),
    ("GET", "/v1/recordings/{recording_id}/ledger"): row("33131", **META),
    ("GET", "/v1/recordings/{recording_id}/quality"): row("33131", **META),
    ("POST", "/v1/recordings/{recording_id}/quality"): row(
        "y3131", target="live", body={"samples": [{"participant_id": "cand-1", "track_id": "cam-a",
                                                   "at_ms": 1_700_000_000_000, "packets": 250}],
                                      "gaps": [{"participant_id": "cand-1", "cause": "network",
                                                "start_ms": 1_700_000_001_000, "end_ms": 1_700_000_003_000}]},
        admin="yyyy4", interviewer="33333", assessor="33333", compliance="33333", service="yyyy4",
        recorder="yyyy4", candidate="33333"),
    ("POST", "/v1/recordings/{recording_id}/upload-token"): row(
        "33131", target="live", body={"participant_id": "cand-1"}, admin="yyyy4", interviewer="y3344",
        assessor="33333", compliance="33333", service="yyyy4", recorder="33333", candidate="33333"),
    ("PUT", "/v1/recordings/{recording_id}/tracks/{track}/chunks/{seq}"): row(
        "y3131", target="live", body=CHUNK, admin="yyyy4", interviewer="33333", assessor="33333",
        compliance="33333", service="yyyy4", recorder="yyyy4", candidate="33333"),
    ("POST", "/v1/recordings/{recording_id}/tracks/{track}/chunks/{seq}/beacon"): row(
        "y3131", target="live", body=CHUNK, admin="yyyy4", interviewer="33333", assessor="33333",
        compliance="33333", service="yyyy4", recorder="yyyy4", candidate="33333"),
    ("POST", "/v1/recordings/{recording_id}/finalize"): row(
        "33131", target="live", admin="yyyy4", interviewer="y3344", assessor="33333", compliance="33333",
        service="yyyy4", recorder="yyyy4", candidate="33333"),
    # transcripts, media, search
    ("GET", "/v1/recordings/{recording_id}/transcript"): row("33131", **CONTENT),
    ("GET", "/v1/recordings/{recording_id}/transcript/versions"): row("33131", **CONTENT),
    ("POST", "/v1/recordings/{recording_id}/transcript/versions"): row(
        "33131", body={}, admin="yyyy4", interviewer="yyy44", assessor="33333", compliance="33333",
        service="33333", recorder="33333", candidate="33333"),
    ("GET", "/v1/recordings/{recording_id}/playback"): row("33131", **CONTENT),
    ("GET", "/v1/recordings/{recording_id}/media/{name:path}"): row("33y31", **CONTENT),
    ("GET", "/v1/search"): row("33131", query="q=hello", admin=ALL_IN_ORG, interviewer=ALL_IN_ORG,
                               assessor=ALL_IN_ORG, compliance="33333", service="33333", recorder="33333",
                               candidate="33333"),
    ("GET", "/v1/vocabulary"): row("33131", admin=ALL_IN_ORG, interviewer=ALL_IN_ORG, assessor=ALL_IN_ORG,
                                   compliance=ALL_IN_ORG, service="33333", recorder="33333", candidate="33333"),
    ("PUT", "/v1/vocabulary"): row("33131", body={"terms": ["Kubernetes"]}, **ORG_ADMIN_ONLY),
    # access
    ("GET", "/v1/recordings/{recording_id}/access"): row(
        "33131", admin="yyyy4", interviewer="y3344", assessor="33333", compliance="yyyy4", service="33333",
        recorder="33333", candidate="33333"),
    ("POST", "/v1/recordings/{recording_id}/access"): row("33131", body={"kind": "user", "subject": "new-1"},
                                                          **SHARE),
    ("DELETE", "/v1/recordings/{recording_id}/access"): row("33131", query="kind=user&subject=temp-1", **SHARE),
    ("GET", "/v1/org/settings"): row("33131", admin=ALL_IN_ORG, interviewer="33333", assessor="33333",
                                     compliance=ALL_IN_ORG, service="33333", recorder="33333",
                                     candidate="33333"),
    ("PUT", "/v1/org/settings"): row("33131", body={"assessors_see_all": False}, **ORG_ADMIN_ONLY),
    # audit log: compliance and admin read their org's events; verify spans the global chain (seqs only)
    ("GET", "/v1/audit"): row("33131", admin=ALL_IN_ORG, interviewer="33333", assessor="33333",
                              compliance=ALL_IN_ORG, service="33333", recorder="33333", candidate="33333"),
    ("GET", "/v1/audit/verify"): row("33131", admin=ALL_IN_ORG, interviewer="33333", assessor="33333",
                                     compliance=ALL_IN_ORG, service="33333", recorder="33333", candidate="33333"),
    ("GET", "/v1/audit/public-key"): PUBLIC,  # verifiers of checkpoints and receipts need no token
    # webhooks (admin); the {endpoint_id}/{delivery_id} rows point at ids of another org → 404 for admins too
    ("POST", "/v1/webhooks"): row("33131", body={"url": "http://127.0.0.1:9/hook"}, **ORG_ADMIN_ONLY),
    ("GET", "/v1/webhooks"): row("33131", **ORG_ADMIN_ONLY),
    ("DELETE", "/v1/webhooks/{endpoint_id}"): row("33131", **ADMIN_404),
    ("GET", "/v1/webhooks/{endpoint_id}/deliveries"): row("33131", **ADMIN_404),
    ("POST", "/v1/webhooks/{endpoint_id}/deliveries/{delivery_id}/redeliver"): row("33131", **ADMIN_404),
    # retention: policy, outcome events, per-recording dates and matters, holds, manifests, erasure, receipts
    ("GET", "/v1/retention/policy"): row("33131", **RETENTION),
    ("PUT", "/v1/retention/policy"): row("33131", body={"rules": {"raw_chunks": [{"days": 3650}]}}, **RETENTION),
    ("POST", "/v1/candidates/{candidate_id}/events"): row("33131", body={"type": "hired"}, **RETENTION_404),
    ("GET", "/v1/recordings/{recording_id}/retention"): row("33131", **RETENTION_REC),
    ("PUT", "/v1/recordings/{recording_id}/matters"): row("33131", body={"matters": ["M-1"]}, **RETENTION_REC),
    ("GET", "/v1/legal-holds"): row("33131", **RETENTION),
    ("POST", "/v1/legal-holds"): row("33131", body={"scope": "matter", "target": "M-9", "reason": "litigation"},
                                     **RETENTION),
    ("POST", "/v1/legal-holds/{hold_id}/release"): row("33131", body={}, **RETENTION_404),
    ("GET", "/v1/retention/preview"): row("33131", **RETENTION),
    ("GET", "/v1/retention/manifests"): row("33131", **RETENTION),
    ("GET", "/v1/retention/manifests/{manifest_id}"): row("33131", **RETENTION_404),
    ("POST", "/v1/retention/manifests/{manifest_id}/approve"): row("33131", **RETENTION_404),
    ("POST", "/v1/retention/manifests/{manifest_id}/run"): row("33131", **RETENTION_404),
    ("POST", "/v1/erasure-requests"): row("33131", body={"candidate_id": "nobody-1"}, **RETENTION),
    ("GET", "/v1/erasure-requests/{erasure_id}"): row("33131", **RETENTION_404),
    ("GET", "/v1/receipts/{receipt_id}"): row("33131", **RETENTION_404),
    # tokens: anyone may revoke their own token (the body names the caller's own token)
    ("POST", "/v1/tokens/revoke"): row("yy1y1", body="own", admin=ALL_IN_ORG, interviewer=ALL_IN_ORG,
                                       assessor=ALL_IN_ORG, compliance=ALL_IN_ORG, service=ALL_IN_ORG,
                                       recorder=ALL_IN_ORG, candidate=ALL_IN_ORG),
}


# ---------------------------------------------------------------------------- the world

@dataclass
class World:
    """One org "acme" with a ready and a live recording, both of one room."""

    settings: Settings
    client: TestClient
    ready: str = ""
    live: str = ""
    room: str = ""
    chunk: bytes = b""

    def mint(self, role: str, sub: str, org: str = "acme", **extra: Any) -> str:
        return mint_token(self.settings.jwt_secret, sub=sub, org=org, role=role, ttl_s=600,
                          issuer=self.settings.jwt_issuer, **extra)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, redis_server: str, s3_server) -> Iterator[World]:
    from recorder.app import create_app

    tmp = tmp_path_factory.mktemp("authz")
    bucket = f"t-{uuid.uuid4().hex[:16]}"
    settings = make_settings(f"sqlite:///{tmp / 'recorder.db'}", redis_server, s3_server, bucket, tmp,
                             webhook_allow_private=True)
    src = av_clip(tmp / "src.webm", 2, "webm", size=(160, 90))
    chunk = split_chunks(src, tmp / "chunks", chunk_s=1)[0][0].read_bytes()
    with TestClient(create_app(settings)) as client:
        yield World(settings=settings, client=client, chunk=chunk)
    drop_bucket(s3_server, bucket)


def populate(w: World) -> None:
    """Fresh recordings for one route: acme's room, a ready and a live recording, grants."""
    app = w.client.app
    engine, store = app.state.engine, app.state.store  # type: ignore[attr-defined]
    tag = uuid.uuid4().hex[:10]
    w.room, w.ready, w.live = f"room_{tag}", f"rec_r{tag}", f"rec_l{tag}"
    composite = f"acme/recordings/{w.ready}/outputs/composite.mp4"
    export = f"acme/recordings/{w.ready}/outputs/transcript.json"
    store.put_bytes(composite, b"\x00" * 64, "video/mp4")
    store.put_bytes(export, b'{"segments": []}', "application/json")
    with session_scope(engine) as s:
        s.add(Room(id=w.room, org="acme", slot_id=f"slot-{tag}", candidate_id="cand-1", created_by="iv-own"))
        s.flush()
        for rid, status in ((w.ready, "ready"), (w.live, "recording")):
            s.add(Recording(id=rid, org="acme", client_key=rid, room_id=w.room, status=status,
                            created_by="iv-own", started_at_ms=1_700_000_000_000,
                            outputs={"composite": composite} if status == "ready" else None))
            s.flush()
            s.add(Track(recording_id=rid, track_id="cam-a", participant_id="cand-1", role="candidate"))
            s.add(Track(recording_id=rid, track_id="cam-b", participant_id="iv-part", role="interviewer"))
            s.add(RecordingGrant(recording_id=rid, org="acme", kind="user", subject="granted-1"))
            s.add(RecordingGrant(recording_id=rid, org="acme", kind="group", subject="panel"))
            s.add(Chunk(recording_id=rid, track_id="cam-b", seq=0, status="stored", sha256="0" * 64,
                        object_key=f"acme/recordings/{rid}/chunks/cam-b/000000.webm"))
        s.add(TranscriptVersion(recording_id=w.ready, status="final", is_current=True,
                                exports={"json": export}))


def callers(w: World, rec: str) -> Iterator[tuple[str, str, str | None]]:
    """(role, relation or scoped name, bearer token or None)."""
    for role in ROLES:
        yield role, "p", w.mint(role, "iv-part")
        yield role, "g", w.mint(role, "granted-1")
        yield role, "G", w.mint(role, "someone", groups=["panel", "other"])
        yield role, "n", w.mint(role, "stranger")
        yield role, "o", w.mint(role, "iv-part", org="globex")
    secret, iss = w.settings.jwt_secret, w.settings.jwt_issuer
    yield "-", "upload_own", mint_token(secret, sub="cand-1", org="acme", role="candidate", ttl_s=600,
                                        scope="upload", issuer=iss, recording_id=rec, participant_id="cand-1")
    yield "-", "upload_other", mint_token(secret, sub="cand-1", org="acme", role="candidate", ttl_s=600,
                                          scope="upload", issuer=iss, recording_id="rec_elsewhere",
                                          participant_id="cand-1")
    yield "-", "playback", mint_token(secret, sub="iv-part", org="acme", role="interviewer", ttl_s=600,
                                      scope="playback", issuer=iss, recording_id=rec, aud=f"playback:{rec}")
    yield "-", "join", mint_token(secret, sub="cand-1", org="acme", role="candidate", ttl_s=600, scope="join",
                                  issuer=iss, room_id=w.room, participant_id="cand-1")
    yield "-", "anon", None


def expected(r: Row, role: str, who: str) -> str:
    if role == "-":
        return r.scoped[SCOPED.index(who)]
    return r.roles[role][RELATIONS.index(who)]


def ok(status: int, want: str) -> bool:
    if want == "y":
        return 200 <= status < 400
    return status == {"1": 401, "3": 403, "4": 404}[want]


def app_routes(app: Any) -> Iterator[tuple[str, str]]:
    for ctx in iter_route_contexts(app.routes):
        route = ctx.route
        if type(route).__name__ == "Mount":
            yield "MOUNT", ctx.path
        elif type(route).__name__ == "APIWebSocketRoute":
            yield "WS", ctx.path
        else:
            for method in sorted(set(ctx.methods or ()) - {"HEAD"}):
                yield method, ctx.path


# ---------------------------------------------------------------------------- the tests

def test_every_route_has_a_row(world: World) -> None:
    routes = set(app_routes(world.client.app))
    assert routes - set(MATRIX) == set(), "routes without a row in the authz MATRIX"
    assert set(MATRIX) - routes == set(), "rows for routes that do not exist"


def _request(w: World, method: str, path: str, r: Row, token: str | None) -> Any:
    rec = w.live if r.target == "live" else w.ready
    url = (path.replace("{recording_id}", rec).replace("{room_id}", w.room).replace("{track}", "cam-a")
           .replace("{seq}", "0").replace("{name:path}", "composite.mp4")
           .replace("{endpoint_id}", "whe_unknown").replace("{delivery_id}", "msg_unknown"))
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if r.query:
        url += "?" + r.query
    if r.body is CHUNK:
        sha = hashlib.sha256(w.chunk).hexdigest()
        headers.update({"Content-Type": "video/webm", "X-Content-SHA256": sha, "X-Chunk-Start": "1700000000000"})
        if url.endswith("/beacon"):
            url += f"?sha256={sha}&start=1700000000000&type=video/webm"
        return w.client.request(method, url, content=w.chunk, headers=headers)
    body = r.body
    if body == "own":
        body = {"token": token or "x"}
    return w.client.request(method, url, json=body, headers=headers) if body is not None else \
        w.client.request(method, url, headers=headers)


def _prepare(w: World, method: str, path: str) -> None:
    if method == "DELETE" and path.endswith("/access"):
        with session_scope(w.client.app.state.engine) as s:  # type: ignore[attr-defined]
            if s.exec(select(RecordingGrant).where(RecordingGrant.recording_id == w.ready,
                                                   RecordingGrant.subject == "temp-1")).first() is None:
                s.add(RecordingGrant(recording_id=w.ready, org="acme", kind="user", subject="temp-1"))


@pytest.mark.parametrize("key", [k for k, v in MATRIX.items() if isinstance(v, Row)], ids=lambda k: f"{k[0]} {k[1]}")
def test_route_answers_each_caller_as_the_table_says(world: World, key: tuple[str, str]) -> None:
    method, path = key
    r = MATRIX[key]
    assert isinstance(r, Row)
    populate(world)
    wrong = []
    rec = world.live if r.target == "live" else world.ready
    for role, who, token in callers(world, rec):
        want = expected(r, role, who)
        if want == "-":
            continue
        _prepare(world, method, path)
        resp = _request(world, method, path, r, token)
        if not ok(resp.status_code, want):
            wrong.append(f"{role}/{who}: want {want}, got {resp.status_code} {resp.text[:120]}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("key", [k for k, v in MATRIX.items() if v == PUBLIC and k[0] == "GET"],
                         ids=lambda k: k[1])
def test_public_routes_need_no_token(world: World, key: tuple[str, str]) -> None:
    path = key[1].replace("{recording_id}", "rec_x").replace("{name}", "review.js")
    resp = world.client.get(path, follow_redirects=False)
    assert resp.status_code < 400 or (key[1] == "/readyz" and resp.status_code == 503), resp.text


def test_signal_socket_takes_only_join_tokens(world: World) -> None:
    populate(world)
    for role, who, token in callers(world, world.ready):
        if who == "join":
            continue
        with world.client.websocket_connect(f"/v1/signal?token={token or ''}") as ws:
            first = ws.receive_json()
            assert first.get("type") == "error", (role, who, first)
