"""Every route that hands out interview data (or changes who may read it) writes an audit event.

The route table comes from the app. A route whose response *looks like* data — a streamed or
file response, a non-JSON response class or return type, or media / subtitle / playlist
content types in its OpenAPI responses — must be classified here: in `AUDITED` (with the
calls that exercise it) or in `NOT_DATA` (with the reason). JSON routes that carry
transcript text or search hits cannot be told apart by shape: they are declared in
`AUDITED` by hand. Each call runs once, successfully, as an admin against a populated
recording (`tests.test_authz_matrix.populate`), and must leave a new event of its action
for that recording whose detail holds no token.
"""
from __future__ import annotations

import inspect
import json
import re
import typing
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterator

import pytest
from fastapi.datastructures import DefaultPlaceholder
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from sqlmodel import select
from starlette.responses import FileResponse, Response, StreamingResponse

from core import audit, search
from core.db import session_scope
from core.models import AuditEvent, Recording, TranscriptVersion
from tests.conftest import drop_bucket, make_settings
from tests.test_authz_matrix import World, populate

DATA_TYPES = re.compile(r"^(video|audio|image)/|text/vtt|x-subrip|mpegurl|mp2t|text/plain|octet-stream")


@dataclass(frozen=True)
class Call:
    """One successful request and the audit action it must leave."""

    action: str
    method: str = "GET"
    name: str = "composite.mp4"  # {name:path} of the media route
    query: str = ""
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 200
    target: str = "ready"  # the recording the path names: "ready" or "live"
    detail: dict[str, Any] = field(default_factory=dict)  # must be a subset of the event's detail


REC = "/v1/recordings/{recording_id}"
AUDITED: dict[tuple[str, str], list[Call]] = {
    ("GET", f"{REC}/media/{{name:path}}"): [
        Call(audit.MEDIA_READ, detail={"name": "composite.mp4", "status": 200, "bytes": 64, "range": None}),
        Call(audit.MEDIA_READ, headers={"Range": "bytes=8-15"},
             status=206, detail={"status": 206, "bytes": 8, "range": "bytes 8-15/64"}),
        Call(audit.MEDIA_READ, name="hls/index.m3u8", detail={"name": "hls/index.m3u8"}),
        Call(audit.MEDIA_READ, name="hls/seg00000.ts", detail={"name": "hls/seg00000.ts", "bytes": 188}),
        Call(audit.MEDIA_READ, name="poster.jpg", detail={"name": "poster.jpg"}),
    ],
    ("GET", f"{REC}/playback"): [Call(audit.PLAYBACK_URL, detail={"direct": False}),
                                 Call(audit.PLAYBACK_URL, query="direct=1", detail={"direct": True})],
    ("GET", f"{REC}/transcript"): [Call(audit.TRANSCRIPT_READ, detail={"format": "json", "version": 1}),
                                   Call(audit.TRANSCRIPT_READ, query="format=vtt", detail={"format": "vtt"})],
    ("GET", f"{REC}/transcript/versions"): [Call(audit.TRANSCRIPT_VERSIONS, detail={"count": 1})],
    ("POST", f"{REC}/transcript/versions"): [Call(audit.RETRANSCRIBE, "POST", body={"beam_size": 2}, status=202,
                                                  detail={"beam_size": 2})],
    ("GET", "/v1/search"): [Call(audit.SEARCH, query="q=hello&recording={recording_id}",
                                 detail={"query": "hello", "hits": 1})],
    ("GET", "/v1/recordings"): [Call(audit.RECORDINGS_LOOKUP, query="participant=cand-1",
                                     detail={"participant": "cand-1"})],
    ("POST", f"{REC}/upload-token"): [Call(audit.TOKEN_MINT, "POST", body={"participant_id": "cand-1"},
                                           target="live", detail={"scope": "upload", "participant_id": "cand-1"})],
    ("POST", "/v1/rooms/{room_id}/tokens"): [Call(audit.TOKEN_MINT, "POST", body={"participant_id": "cand-2"},
                                                  detail={"scope": "join", "participant_id": "cand-2"})],
    ("POST", f"{REC}/access"): [Call(audit.GRANT_ADD, "POST", body={"kind": "user", "subject": "new-1"}, status=201,
                                     detail={"kind": "user", "subject": "new-1"})],
    ("DELETE", f"{REC}/access"): [Call(audit.GRANT_REMOVE, "DELETE", query="kind=user&subject=granted-1",
                                       status=204, detail={"subject": "granted-1"})],
    ("PUT", "/v1/org/settings"): [Call(audit.ORG_SETTINGS, "PUT", body={"assessors_see_all": True},
                                       detail={"after": {"assessors_see_all": True,
                                                         "compliance_reads_content": False}})],
    ("PUT", "/v1/vocabulary"): [Call(audit.VOCABULARY_CHANGE, "PUT", body={"terms": ["Kubernetes"]},
                                     detail={"added": ["Kubernetes"]})],
    ("GET", "/v1/audit"): [Call(audit.AUDIT_READ)],
}
# Data-shaped routes that serve no interview data.
NOT_DATA: dict[tuple[str, str], str] = {
    ("GET", "/metrics"): "Prometheus counters",
    ("GET", "/review/{recording_id}"): "static HTML shell: its data comes from the audited API",
    ("GET", "/search"): "static HTML shell",
    ("GET", "/recordings"): "static HTML shell",
    ("GET", "/compliance"): "static HTML shell: policy, holds, runs and receipts come from the audited API",
    ("GET", "/call/{room_id}"): "static HTML shell of the call (media flows peer to peer, not through here)",
    ("GET", "/"): "static HTML shell",
    ("GET", "/review"): "redirect to /recordings",
    ("GET", "/static/review/{name}"): "page scripts and styles",
    ("GET", "/v1/receipts/{receipt_id}"): "a signed deletion receipt (what was deleted: ids, kinds, counts)",
}


def _returns_response_type(route: Any) -> bool:
    try:
        hint = typing.get_type_hints(route.endpoint).get("return")
    except (NameError, TypeError):
        hint = None
    return isinstance(hint, type) and issubclass(hint, Response) and not issubclass(hint, JSONResponse)


def data_shaped(route: Any, openapi: dict[str, Any], method: str) -> bool:
    """Could this route's answer be media, subtitles or another non-JSON body? (204: no body.)"""
    if route.status_code == 204:
        return False
    explicit = not isinstance(route.response_class, DefaultPlaceholder)
    if explicit and not issubclass(route.response_class, JSONResponse):  # type: ignore[arg-type]
        return True
    if _returns_response_type(route):
        return True
    source = inspect.getsource(route.endpoint)
    if any(name in source for name in (StreamingResponse.__name__, FileResponse.__name__)):
        return True
    op = openapi.get("paths", {}).get(route.path_format, {}).get(method.lower(), {})
    types = [t for r in op.get("responses", {}).values() for t in (r.get("content") or {})]
    return any(DATA_TYPES.search(t) for t in types)


def routes(app: Any) -> Iterator[tuple[str, str, Any]]:
    """(method, path, route context) of every HTTP route, included routers resolved."""
    for ctx in iter_route_contexts(app.routes):
        if isinstance(ctx.original_route, APIRoute):
            for method in sorted(set(ctx.methods or ()) - {"HEAD"}):
                yield method, ctx.path, ctx


# ---------------------------------------------------------------------------- the world

@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, redis_server: str, s3_server) -> Iterator[World]:
    from recorder.app import create_app

    tmp = tmp_path_factory.mktemp("audit-routes")
    bucket = f"t-{uuid.uuid4().hex[:16]}"
    settings = make_settings(f"sqlite:///{tmp / 'recorder.db'}", redis_server, s3_server, bucket, tmp)
    with TestClient(create_app(settings)) as client:
        yield World(settings=settings, client=client)
    drop_bucket(s3_server, bucket)


def populate_content(w: World) -> None:
    """`populate`, plus HLS, a poster, a WebVTT export and one indexed transcript line."""
    populate(w)
    engine, store = w.client.app.state.engine, w.client.app.state.store  # type: ignore[attr-defined]
    out = f"acme/recordings/{w.ready}/outputs"
    store.put_bytes(f"{out}/hls/index.m3u8", b"#EXTM3U\n#EXTINF:6.0,\nseg00000.ts\n#EXT-X-ENDLIST\n",
                    "application/vnd.apple.mpegurl")
    store.put_bytes(f"{out}/hls/seg00000.ts", b"\x47" * 188, "video/mp2t")
    store.put_bytes(f"{out}/poster.jpg", b"\xff\xd8\xff" + b"\x00" * 29, "image/jpeg")
    store.put_bytes(f"{out}/transcript.vtt", b"WEBVTT\n\n00:00.000 --> 00:02.000\nhello\n", "text/vtt")
    with session_scope(engine) as s:
        rec = s.get(Recording, w.ready)
        rec.outputs = {**(rec.outputs or {}), "hls": f"{out}/hls/index.m3u8", "poster": f"{out}/poster.jpg"}
        version = s.exec(select(TranscriptVersion).where(TranscriptVersion.recording_id == w.ready)).one()
        version.exports = {**version.exports, "vtt": f"{out}/transcript.vtt"}
        version.version = 1
    search.index_recording(engine, "acme", w.ready, 1_700_000_000_000, [search.SearchDoc(
        f"v1:{w.ready}:0", w.ready, "v1", "cand-1", "Candidate", "candidate", 0, 2000, "hello there")])


def events_after(w: World, seq: int) -> list[AuditEvent]:
    with session_scope(w.client.app.state.engine) as s:  # type: ignore[attr-defined]
        return list(s.exec(select(AuditEvent).where(AuditEvent.seq > seq).order_by(AuditEvent.seq)).all())


def head(w: World) -> int:
    return audit.head(w.client.app.state.engine)[0]  # type: ignore[attr-defined]


def send(w: World, path: str, call: Call, token: str) -> Any:
    rec = w.live if call.target == "live" else w.ready
    url = path + (f"?{call.query}" if call.query else "")
    url = url.replace("{recording_id}", rec).replace("{room_id}", w.room).replace("{name:path}", call.name)
    headers = {"Authorization": f"Bearer {token}", **call.headers}
    return w.client.request(call.method, url, json=call.body, headers=headers) if call.body is not None else \
        w.client.request(call.method, url, headers=headers)


# ---------------------------------------------------------------------------- the tests

def test_data_shaped_routes_are_classified(world: World) -> None:
    app = world.client.app
    openapi = app.openapi()  # type: ignore[attr-defined]
    table = {(m, p): r for m, p, r in routes(app)}
    unclassified = sorted(k for k, r in table.items()
                          if data_shaped(r, openapi, k[0]) and k not in AUDITED and k not in NOT_DATA)
    assert not unclassified, f"routes that may return media or transcripts, not in AUDITED or NOT_DATA: {unclassified}"
    stale = sorted((set(AUDITED) | set(NOT_DATA)) - set(table))
    assert not stale, f"classified routes that do not exist: {stale}"
    # the detector sees what it must: the media route and the transcript exports
    for key in (("GET", f"{REC}/media/{{name:path}}"), ("GET", f"{REC}/transcript")):
        assert data_shaped(table[key], openapi, key[0]), key


@pytest.mark.parametrize("key", list(AUDITED), ids=lambda k: f"{k[0]} {k[1]}")
def test_route_writes_an_audit_event(world: World, key: tuple[str, str]) -> None:
    method, path = key
    token = world.mint("admin", "ada")
    for call in AUDITED[key]:
        populate_content(world)
        before = head(world)
        resp = send(world, path, call, token)
        assert resp.status_code == call.status, (call, resp.text[:300])
        events = [e for e in events_after(world, before) if e.action == call.action]
        assert len(events) == 1, (call, [(e.action, e.detail) for e in events_after(world, before)])
        event = events[0]
        assert (event.org, event.actor, event.actor_role) == ("acme", "ada", "admin")
        if "{recording_id}" in path:
            assert (event.object_type, event.object_id) == ("recording", world.live if call.target == "live"
                                                            else world.ready)
        assert call.detail.items() <= (event.detail or {}).items(), (call.detail, event.detail)
        dumped = json.dumps(event.detail)
        assert "eyJ" not in dumped and token not in dumped, dumped  # never a token


def test_media_reads_by_playback_url_are_recorded_and_heads_are_not(world: World) -> None:
    populate_content(world)
    token = world.mint("interviewer", "iv-part")
    urls = world.client.get(f"/v1/recordings/{world.ready}/playback", headers={"Authorization": f"Bearer {token}"})
    mp4 = urls.json()["mp4_url"].split("://", 1)[1].split("/", 1)[1]
    before = head(world)
    got = world.client.get("/" + mp4, headers={"Range": "bytes=-4"})
    assert got.status_code == 206 and len(got.content) == 4
    [event] = events_after(world, before)
    assert (event.action, event.actor, event.detail["token"], event.detail["range"]) == (
        audit.MEDIA_READ, "iv-part", "playback", "bytes 60-63/64")
    assert "token=" not in json.dumps(event.detail)
    before = head(world)
    etag = got.headers["etag"]
    assert world.client.head("/" + mp4).status_code == 200
    assert world.client.get("/" + mp4, headers={"If-None-Match": etag}).status_code == 304
    assert world.client.get("/" + mp4, headers={"Range": "bytes=500-"}).status_code == 416
    assert events_after(world, before) == []  # no bytes served: nothing recorded


def test_a_refused_read_writes_nothing(world: World) -> None:
    populate_content(world)
    before = head(world)
    stranger = world.mint("interviewer", "stranger")
    resp = world.client.get(f"/v1/recordings/{world.ready}/media/composite.mp4",
                            headers={"Authorization": f"Bearer {stranger}"})
    assert resp.status_code == 404 and events_after(world, before) == []
