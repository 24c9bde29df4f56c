"""Hardening of the HTTP boundary: body limits while streaming, malformed input → 4xx JSON
(never 500), no exception text to clients, security headers on every response."""
from __future__ import annotations

import collections
import gc
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import httpx
import psutil
import pytest
import redis as redis_lib
from fastapi.testclient import TestClient

from core import keys
from core.auth import mint_token
from core.db import session_scope
from core.models import Recording
from recorder.app import create_app
from recorder.services import free_port, start_redis
from tests.conftest import (
    JWT_SECRET,
    LiveServer,
    S3Server,
    auth,
    drop_bucket,
    make_settings,
)
from tests.ingest.conftest import T0, chunk_headers, create_recording, put, snapshot
from tests.media import av_clip, split_chunks

MB = 1024 * 1024


@pytest.fixture(scope="module")
def webm_chunks(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[bytes, int, int]]:
    """Two self-contained 1-s WebM chunks (VP8+Opus), as a browser's recorder makes them."""
    d = tmp_path_factory.mktemp("webm")
    src = av_clip(d / "src.webm", 2, "webm", size=(160, 90))
    return [(p.read_bytes(), off, dur) for p, off, dur in split_chunks(src, d / "chunks", chunk_s=1)]


def _json_error(resp: httpx.Response, status: int | tuple[int, ...], code: str | None = None) -> dict:
    statuses = status if isinstance(status, tuple) else (status,)
    assert resp.status_code in statuses, (resp.status_code, resp.text[:500])
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert body["code"] and body["message"], body
    if code:
        assert body["code"] == code, body
    return body


# ---------------------------------------------------------------- body limits

class PeakRSS:
    """Samples this process's RSS in a thread (LiveServer runs uvicorn in this process)."""

    def __init__(self) -> None:
        self.proc, self.peak, self._stop = psutil.Process(), 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.005)

    def __enter__(self) -> Self:
        gc.collect()
        self.before = self.proc.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        gc.collect()
        self.after = self.proc.memory_info().rss


def _body(total: int, block: bytes = b"{" * MB) -> Iterator[bytes]:
    for _ in range(total // len(block)):
        yield block  # the same block every time: the client side holds one MB


def test_huge_streamed_body_is_413_and_never_held_in_memory(live_api) -> None:
    with httpx.Client(base_url=live_api.url, timeout=120) as c:
        c.get("/healthz")  # warm up the server's first-request allocations
        with PeakRSS() as rss:
            resp = c.post("/v1/rooms", content=_body(300 * MB), headers={"Content-Type": "application/json"})
        grew = max(rss.peak, rss.after) - rss.before
        assert grew < 24 * MB, f"the API grew by {grew / MB:.0f} MB for a 300 MB body"
        _json_error(resp, 413, "body_too_large")
        assert resp.headers["x-content-type-options"] == "nosniff"
        assert c.get("/healthz").status_code == 200  # the connection and server are fine afterwards


def test_declared_oversize_is_answered_before_the_body(live_api) -> None:
    """Content-Length over the limit: 413 at once, without waiting for (or reading) a byte."""
    with socket.create_connection(("127.0.0.1", live_api.port), timeout=5) as sock:
        sock.sendall(b"POST /v1/rooms HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 314572800\r\n\r\n{")
        head = sock.recv(65536).decode("latin-1")
    assert head.startswith("HTTP/1.1 413"), head[:200]
    assert '"code":"body_too_large"' in head.replace(" ", "")


def test_content_length_lies_and_garbage(client) -> None:
    """In-process the body is not cut at Content-Length: the streamed count still catches it."""
    big = b"[" + b"1," * (200 * 1024) + b"1]"
    resp = client.post("/v1/rooms", content=big, headers={"Content-Length": "10", "Content-Type": "application/json"})
    _json_error(resp, 413, "body_too_large")
    for bad in ("abc", "-1", "1e3", "9" * 40, "١٢٣".encode(), b"\xb2"):
        resp = client.post("/v1/rooms", content=b"{}", headers={"Content-Length": bad})
        _json_error(resp, 400, "invalid_content_length")


def test_chunk_routes_keep_their_own_larger_limit(settings, token_for, store, webm_chunks) -> None:
    small = settings.model_copy(update={"max_body_bytes": 1024})
    data = webm_chunks[0][0]
    assert len(data) > 1024
    with TestClient(create_app(small)) as c:
        tok = token_for(role="service")
        rec = create_recording(c, tok)
        resp = c.post("/v1/recordings", json={"client_key": "k2", "title": "x" * 2000}, headers=auth(tok))
        _json_error(resp, 413, "body_too_large")
        assert put(c, tok, rec, "cam-a", 0, data, T0).status_code == 201
        beacon = c.post(f"/v1/recordings/{rec}/tracks/cam-a/chunks/1/beacon", content=webm_chunks[1][0],
                        params={"type": "video/webm", "start": T0 + 1000, "token": _upload_token(c, tok, rec),
                                "sha256": chunk_headers(webm_chunks[1][0], 0)["X-Content-SHA256"]})
        assert beacon.status_code == 201, beacon.text


def _upload_token(client: TestClient | httpx.Client, tok: str, rec: str) -> str:
    """What a browser's beacon carries in its URL: an upload token for the track's participant."""
    resp = client.post(f"/v1/recordings/{rec}/upload-token", json={"participant_id": "p-cam-a"}, headers=auth(tok))
    assert resp.status_code == 200, resp.text
    return resp.json()["token"]


# ---------------------------------------------------------------- malformed input: 4xx JSON, nothing stored
# Over real HTTP: the in-process TestClient re-encodes non-ASCII header bytes as UTF-8, which
# hides exactly the latin-1 values ('²' is b"\xb2") that used to crash the parsers.

@dataclass
class Stack:
    url: str
    app: Any
    http: httpx.Client
    rec: str
    before: dict

    def token(self, role: str = "admin", **extra: Any) -> str:
        return mint_token(JWT_SECRET, sub="tester", org="acme", role=role, ttl_s=3600, **extra)

    def unchanged(self) -> None:
        """The stored recording still has exactly its one chunk, and no object changed."""
        ledger = self.http.get(f"/v1/recordings/{self.rec}/ledger", headers=auth(self.token()))
        assert [len(t["chunks"]) for t in ledger.json()["tracks"]] == [1], ledger.text
        assert snapshot(self.app.state.store) == self.before


@pytest.fixture(scope="module")
def stack(redis_server: str, s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory,
          webm_chunks: list) -> Iterator[Stack]:
    """One live API for the module (Redis db 1: other tests flush db 0), with a recording whose
    one stored chunk must survive every bad request, and a ready recording with a 1000-byte MP4."""
    redis_url = redis_server.rsplit("/", 1)[0] + "/1"
    with redis_lib.Redis.from_url(redis_url) as r:
        r.flushdb()
    tmp, bucket = tmp_path_factory.mktemp("hardening"), f"t-{uuid.uuid4().hex[:16]}"
    settings = make_settings(f"sqlite:///{tmp / 'recorder.db'}", redis_url, s3_server, bucket, tmp)
    try:
        with LiveServer(settings) as server, httpx.Client(base_url=server.url, timeout=30) as http:
            app = server.server.config.app
            stack = Stack(server.url, app, http, "", {})
            stack.rec = create_recording(http, stack.token("service"))
            assert put(http, stack.token("service"), stack.rec, "cam-a", 0, webm_chunks[0][0], T0).status_code == 201
            _add_media(app)
            stack.before = snapshot(app.state.store)
            yield stack
    finally:
        drop_bucket(s3_server, bucket)


MEDIA = "/v1/recordings/rec_media/media/composite.mp4"


def _add_media(app: Any) -> None:
    key = keys.output_key("acme", "rec_media", "composite.mp4")
    app.state.store.put_bytes(key, bytes(range(250)) * 4)
    with session_scope(app.state.engine) as s:
        s.add(Recording(id="rec_media", org="acme", client_key="rec_media", status="ready", created_by="tester",
                        outputs={"composite": key}, started_at_ms=T0))


ARABIC_123 = "١٢٣".encode()  # Arabic-Indic digits (UTF-8 bytes on the wire)
SUPERSCRIPT_2 = b"\xb2"       # '²' in latin-1: str.isdigit() is True, int() fails


@pytest.mark.parametrize("header,value,code", [
    ("X-Chunk-Start", ARABIC_123, "invalid_x_chunk_start"),
    ("X-Chunk-Start", SUPERSCRIPT_2, "invalid_x_chunk_start"),
    ("X-Chunk-Start", b"9" * 5000, "invalid_x_chunk_start"),
    ("X-Chunk-Start", b"-1795000000000", "invalid_x_chunk_start"),
    ("X-Chunk-Duration", SUPERSCRIPT_2, "invalid_x_chunk_duration"),
    ("X-Chunk-Duration", b"-5", "invalid_x_chunk_duration"),
    ("X-Content-SHA256", "é".encode() * 32, "invalid_sha256"),
    ("Digest", b"sha-256=\xc3\xa9\xc3\xa9==", "invalid_sha256"),
    ("Digest", b"sha-256=\xe9\xe9==", "invalid_sha256"),
    ("Digest", b"sha-256=" + b"A" * 7000, "invalid_sha256"),
    ("X-Track-Kind", b"hologram", "invalid_track_headers"),
    ("X-Track-Role", b"Bad Role", "invalid_track_headers"),
])
def test_malformed_chunk_headers_are_400(stack, webm_chunks, header, value, code) -> None:
    data = webm_chunks[1][0]
    headers = {**chunk_headers(data, T0 + 1000), **auth(stack.token("service")), "X-Track-Kind": "audio"}
    if header == "Digest":
        headers.pop("X-Content-SHA256")
    headers[header] = value
    resp = stack.http.put(f"/v1/recordings/{stack.rec}/tracks/new-track/chunks/1", content=data, headers=headers)
    _json_error(resp, 400, code)
    stack.unchanged()


@pytest.mark.parametrize("seq", ["%D9%A1%D9%A2%D9%A3", "%C2%B2", "9" * 5000, "-1", "1e3", "0x10"])
def test_malformed_seq_is_400(stack, webm_chunks, seq) -> None:
    data = webm_chunks[1][0]
    resp = stack.http.put(f"/v1/recordings/{stack.rec}/tracks/cam-a/chunks/{seq}", content=data,
                          headers={**chunk_headers(data, T0 + 1000), **auth(stack.token("service"))})
    _json_error(resp, 400)
    stack.unchanged()


@pytest.mark.parametrize("start", ["²", "١٢٣", "9" * 5000, "-1"])
def test_malformed_beacon_query_is_400(stack, webm_chunks, start) -> None:
    data = webm_chunks[1][0]
    resp = stack.http.post(f"/v1/recordings/{stack.rec}/tracks/cam-a/chunks/1/beacon", content=data,
                           params={"type": "video/webm", "start": start,
                                   "token": _upload_token(stack.http, stack.token("service"), stack.rec),
                                   "sha256": chunk_headers(data, 0)["X-Content-SHA256"]})
    _json_error(resp, 400, "invalid_x_chunk_start")
    stack.unchanged()


PYJWT_TEXT = ("segments", "Invalid header", "Invalid payload", "padding", "codec", "Signature verification",
              "decode", "Expecting value", "Invalid crypto")


@pytest.mark.parametrize("authorization", [
    b"Bearer \xff\xfegarbage", b"Bearer " + b"a" * 7000, b"Bearer a.b.c", b"Bearer e30.e30.e30",
    b"Basic dXNlcjpwYXNz", b"Bearer", "Bearer ١٢٣".encode(), b"Bearer \xb2.\xb2.\xb2",
])
def test_garbage_authorization_is_401_without_library_text(stack, webm_chunks, authorization) -> None:
    data = webm_chunks[1][0]
    resp = stack.http.put(f"/v1/recordings/{stack.rec}/tracks/cam-a/chunks/1", content=data,
                          headers={**chunk_headers(data, T0 + 1000), "Authorization": authorization})
    body = _json_error(resp, 401)
    assert not any(text in body["message"] for text in PYJWT_TEXT), body
    _json_error(stack.http.get("/v1/search", params={"q": "x"}, headers={"Authorization": authorization}), 401)
    _json_error(stack.http.get(MEDIA, params={"token": authorization.decode("latin-1")}), 401)
    stack.unchanged()


def test_malformed_bodies_and_keys_are_400(stack) -> None:
    tok = auth(stack.token())
    cases = [
        ("/v1/recordings", {"client_key": "k", "vocabulary": ["x" * 65]}),
        ("/v1/recordings", {"client_key": "k", "vocabulary": ["x"] * 201}),
        ("/v1/recordings", {"client_key": "k", "tracks": [{"track_id": f"t{i}"} for i in range(33)]}),
        ("/v1/recordings", {"client_key": "k", "layout": "mosaic"}),
        ("/v1/recordings", {"client_key": "k", "tracks": [{"track_id": "t", "kind": "smell"}]}),
        ("/v1/rooms", {"slot_id": "s", "candidate_id": "c", "vocabulary": ["y"] * 201}),
        ("/v1/rooms", {"slot_id": "s", "candidate_id": "c", "title": "t" * 257}),
        ("/v1/rooms", {"slot_id": "s" * 129, "candidate_id": "c"}),
        ("/v1/rooms", {"slot_id": "s", "candidate_id": "c", "layout": "mosaic"}),
    ]
    for path, body in cases:
        _json_error(stack.http.post(path, json=body, headers=tok), 400)
    _json_error(stack.http.post("/v1/recordings", json={"title": "x"}, headers={**tok, "Idempotency-Key": "k" * 201}),
                400)
    for junk in (b"\xff\xfe{", b"[" * 100_000, b'{"slot_id": "s", "candidate_id": "c", "title": "\\ud800"}'):
        resp = stack.http.post("/v1/rooms", content=junk, headers={**tok, "Content-Type": "application/json"})
        _json_error(resp, 400)


@pytest.mark.parametrize("params,status", [
    ({"from": "²"}, 400), ({"from": "١٢٣"}, 400), ({"to": "9" * 5000}, 400), ({"to": "9" * 30}, 400),
    ({"from": "-5"}, 400), ({"from": "2025-02-30"}, 400), ({"to": "yesterday"}, 400),
    ({"from": "0001-01-01T00:00:00+14:00"}, 200), ({"to": "9999-12-31"}, 200), ({"to": "9" * 16}, 200),
    ({"limit": "-1"}, 400), ({"limit": "١٠"}, 400), ({"offset": "9" * 5000}, 400), ({"q": "\x00"}, 400),
])
def test_search_params(stack, params, status) -> None:
    resp = stack.http.get("/v1/search", params={"q": "hello", **params}, headers=auth(stack.token("assessor")))
    if status == 200:
        assert resp.status_code == 200 and resp.json()["hits"] == [], resp.text
    else:
        _json_error(resp, status)


@pytest.mark.parametrize("headers,status,length", [
    ({"Range": "bytes=" + "9" * 5000 + "-"}, 416, None),
    ({"Range": "bytes=" + "0" * 5000 + "5-9"}, 206, 5),
    ({"Range": "bytes=0-" + "9" * 5000}, 206, 1000),
    ({"Range": "bytes=-" + "9" * 5000}, 206, 1000),
    ({"Range": "bytes=-0"}, 416, None),
    ({"Range": "bytes=" + "1-2," * 1500}, 200, 1000),
    ({"Range": " ".join(["bytes=0-1"] * 700)}, 200, 1000),
    ({"Range": "bytes=١-٢".encode()}, 200, 1000),
    ({"Range": b"bytes=\xb2-\xb3"}, 200, 1000),
    ({"If-None-Match": "\"" * 7000}, 200, 1000),
    ({"If-Range": "W/" * 3000, "Range": "bytes=0-1"}, 200, 1000),
])
def test_range_and_conditional_headers(stack, headers, status, length) -> None:
    resp = stack.http.get(MEDIA, headers={**auth(stack.token()), **headers})
    if status == 416:
        _json_error(resp, 416, "range_not_satisfiable")
        assert resp.headers["content-range"] == "bytes */1000"
    else:
        assert resp.status_code == status, resp.text[:200]
        assert len(resp.content) == length


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_nul_characters_are_400_on_postgres(any_db_settings, token_for) -> None:
    """PostgreSQL text cannot hold NUL: such values are the request's fault, not a 500."""
    tok = auth(token_for())
    with TestClient(create_app(any_db_settings)) as c:
        for path, body in [("/v1/rooms", {"slot_id": "s", "candidate_id": "c", "title": "a\u0000b"}),
                           ("/v1/recordings", {"client_key": "k", "title": "a\u0000b"}),
                           ("/v1/recordings", {"client_key": "k\u0000"})]:
            _json_error(c.post(path, json=body, headers=tok), 400, "unstorable_value")
        _json_error(c.post("/v1/recordings", json={}, headers={**tok, "Idempotency-Key": "a\x00"}), 400)
        assert c.post("/v1/rooms", json={"slot_id": "s", "candidate_id": "c"}, headers=tok).status_code == 201


# ---------------------------------------------------------------- errors carry no internals

def test_unexpected_errors_are_500_json_without_traceback(settings) -> None:
    from structlog.testing import capture_logs

    app = create_app(settings)

    def boom() -> None:
        raise RuntimeError("secret-internal-detail at /srv/db.py")

    app.add_api_route("/boom", boom)
    with TestClient(app, raise_server_exceptions=False) as c, capture_logs() as logs:
        resp = c.get("/boom", headers={"X-Request-ID": "req-123"})
        weird = c.get("/boom", headers={"X-Request-ID": "bad id\u00e9".encode()})
    assert resp.status_code == 500
    assert resp.json() == {"code": "internal_error", "message": "internal error", "request_id": "req-123"}
    assert "secret" not in resp.text and resp.headers["x-content-type-options"] == "nosniff"
    assert weird.json()["request_id"] != "bad id" and len(weird.json()["request_id"]) == 32
    # the traceback goes to the log (whatever stream an earlier test left structlog writing to)
    errors = [e for e in logs if e["event"] == "unhandled_error"]
    assert errors and "secret-internal-detail" in repr(errors[0])


def test_redis_down_readyz_names_it_and_no_driver_text_reaches_clients(sqlite_url, s3_server, bucket,
                                                                      tmp_path: Path, token_for) -> None:
    port = free_port()
    redis_proc = start_redis(tmp_path / "redis", port)
    settings = make_settings(sqlite_url, f"redis://127.0.0.1:{port}/0", s3_server, bucket, tmp_path)
    try:
        with TestClient(create_app(settings)) as c:
            assert c.get("/readyz").status_code == 200
            redis_proc.stop()
            ready = c.get("/readyz")
            room = c.post("/v1/rooms", json={"slot_id": "s1", "candidate_id": "c1"}, headers=auth(token_for()))
    finally:
        redis_proc.stop()
    body = _json_error(ready, 503, "dependency_down")
    assert body["failed"] == ["redis"] and ready.headers["retry-after"]
    rbody = _json_error(room, 503)
    for resp in (ready, room):
        for leak in ("Error", "refused", "111", str(port), "Traceback", "redis://"):
            assert leak not in resp.text, (leak, resp.text)
    assert rbody["message"].lower().endswith("unavailable.")


# ---------------------------------------------------------------- security headers

def _hardened(resp: httpx.Response) -> None:
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert resp.headers["referrer-policy"] == "no-referrer"
    assert resp.headers["x-frame-options"] == "DENY"


def test_security_headers_on_every_response(client, token_for) -> None:
    ok = client.get("/healthz")
    _hardened(ok)
    assert "strict-transport-security" not in ok.headers  # plain http, http public URL
    _hardened(client.get("/v1/recordings/rec_nope", headers=auth(token_for())))
    _hardened(client.get("/v1/recordings/rec_nope"))
    _hardened(client.get("/v1/nothing-here"))
    page = client.get("/search")
    _hardened(page)
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    _hardened(client.get("/static/review/search.js"))


def test_hsts_on_https(settings) -> None:
    with TestClient(create_app(settings), base_url="https://testserver") as c:
        assert c.get("/healthz").headers["strict-transport-security"].startswith("max-age=")
    public = settings.model_copy(update={"public_url": "https://rec.example.com"})
    with TestClient(create_app(public)) as c:
        resp = c.get("/v1/recordings/rec_nope")
        assert resp.status_code == 401 and "max-age=" in resp.headers["strict-transport-security"]


# ---------------------------------------------------------------- every route × garbage headers

GARBAGE_HEADERS = [
    {"Authorization": b"Bearer \xff\xfe"}, {"Authorization": "Bearer " + "x" * 8000}, {"Authorization": "Negotiate ="},
    {"Range": "bytes=" + "9" * 5000 + "-"}, {"Range": b"bytes=\xb2-"}, {"If-None-Match": "*" * 5000},
    {"If-Range": "\""}, {"X-Chunk-Start": b"\xb2"}, {"X-Chunk-Duration": "9" * 5000}, {"X-Content-SHA256": "zz"},
    {"Digest": b"sha-256=\xff=="}, {"Idempotency-Key": "k" * 5000}, {"X-Track-Kind": "x", "X-Track-Role": "?"},
    {"Content-Type": b"application/json; charset=\xff"}, {"Content-Type": "multipart/form-data; boundary="},
    {"X-Request-ID": "\u00e9".encode() * 100},
]


def _routes(app: Any) -> list[tuple[str, str]]:
    """Every operation of the OpenAPI schema, and the pages (not in it)."""
    pages = [("GET", "/review/{recording_id}"), ("GET", "/search"), ("GET", "/review"), ("GET", "/static/review/x.js")]
    ops = [(m.upper(), path) for path, item in app.openapi()["paths"].items() for m in item]
    assert len(ops) > 20
    return sorted(ops) + pages


def test_no_route_answers_garbage_headers_with_5xx(stack) -> None:
    problems = []
    for method, path in _routes(stack.app):
        ids = {"recording_id": "rec_media" if "/media/" in path else stack.rec, "room_id": "room_nope",
               "track": "cam-a", "seq": "1", "name": "composite.mp4"}
        url = path.format_map(collections.defaultdict(lambda: "nope", ids))
        base = chunk_headers(b"{}", T0 + 1000) if "/chunks/" in path else {"Content-Type": "application/json"}
        for garbage in GARBAGE_HEADERS:
            headers = {**base, **auth(stack.token()), **garbage}
            resp = stack.http.request(method, url, headers=headers, params={"token": "\xff" * 10}, content=b"{}")
            json_error = (resp.status_code < 400 or not path.startswith("/v1/")  # pages: Starlette's FileResponse
                          or resp.headers.get("content-type", "").startswith("application/json"))
            if resp.status_code >= 500 or not json_error:
                problems.append((method, url, sorted(garbage), resp.status_code, resp.text[:120]))
    assert problems == []
