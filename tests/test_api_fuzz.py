"""Schemathesis against the app's own OpenAPI schema, on a real uvicorn server and real services.

Before fuzzing, a room, a recording with a stored chunk, a transcript (versions, exports, search
index) and a composite MP4 are made; generated cases use their ids most of the time (and a
random id otherwise), with an admin token, on SQLite and on Postgres. Checks: no 5xx, every
status code is documented, and every body matches its documented schema (error bodies too:
`core.http.document_errors` declares 400/4XX/5XX as `ErrorBody`).

Not fuzzed: the `/v1/signal` WebSocket (not in OpenAPI) and the bytes of chunk uploads — the
chunk routes read a raw stream the schema does not describe, so schemathesis only sends them
headers/params (tests/recorder/test_hardening.py covers their bodies and headers).
"""
from __future__ import annotations

import json
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dramatiq.broker
import httpx
import pytest
import redis as redis_lib
import schemathesis
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

from core import keys
from core.auth import mint_token
from core.db import session_scope
from core.models import Recording, TranscriptVersion
from core.settings import Settings
from recorder.app import create_app
from tests.conftest import (
    JWT_SECRET,
    LiveServer,
    S3Server,
    _postgres_url,
    auth,
    drop_bucket,
    make_settings,
)
from tests.ingest.conftest import T0, create_recording, put
from tests.media import av_clip, split_chunks
from tests.review_api.conftest import index_lines

MAX_EXAMPLES = 15  # per operation (fuzzing phase); the coverage phase adds its boundary cases
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance]


@pytest.fixture(scope="module")
def webm_chunks(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[bytes, int, int]]:
    """Two self-contained 1-s WebM chunks (VP8+Opus), as a browser's recorder makes them."""
    d = tmp_path_factory.mktemp("webm")
    src = av_clip(d / "src.webm", 2, "webm", size=(160, 90))
    return [(p.read_bytes(), off, dur) for p, off, dur in split_chunks(src, d / "chunks", chunk_s=1)]


def _openapi() -> dict[str, Any]:
    """The schema the app serves at /openapi.json (built at collection, touching no service)."""
    global_broker = dramatiq.broker.global_broker  # create_app sets one: leave the process as it was
    try:
        with tempfile.TemporaryDirectory(prefix="fuzz-schema-") as tmp:
            settings = Settings(jwt_secret=JWT_SECRET, data_dir=Path(tmp), database_url=f"sqlite:///{tmp}/x.db")
            return create_app(settings, init_schema=False).openapi()
    finally:
        dramatiq.broker.global_broker = global_broker


schema = schemathesis.openapi.from_dict(_openapi(), config=schemathesis.Config.from_dict({
    "generation": {"max-examples": MAX_EXAMPLES, "database": "none"},
    "request-timeout": 10,  # seconds: the deadline of one request (no Hypothesis deadline: 2 shared cores)
}))
SEEDED: dict[str, str] = {}  # path parameter → id of a seeded object (filled by the `fuzz_api` fixture)


@schema.hook
def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any]) -> st.SearchStrategy:
    """Mostly the seeded objects (to reach real code), sometimes whatever was generated."""
    if not path_parameters:
        return st.just(path_parameters)
    real = {k: SEEDED[k] for k in path_parameters if k in SEEDED}
    return st.sampled_from([{**path_parameters, **real}] * 3 + [path_parameters])


@schema.hook
def flatmap_query(context: Any, query: dict[str, Any]) -> st.SearchStrategy:
    """Sometimes search for a word that is in the seeded transcript (hits have their own schema)."""
    if not query or "q" not in query:
        return st.just(query)
    return st.sampled_from([query, {**query, "q": "kubernetes"}])


@dataclass
class FuzzAPI:
    url: str
    token: str


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def fuzz_api(request: pytest.FixtureRequest, redis_server: str, s3_server: S3Server,
             tmp_path_factory: pytest.TempPathFactory, webm_chunks: list) -> Iterator[FuzzAPI]:
    """One server for every operation: real Redis, S3 and SQLite or Postgres, with seeded objects."""
    client = redis_lib.Redis.from_url(redis_server)
    client.flushdb()
    client.close()
    tmp, bucket = tmp_path_factory.mktemp("fuzz"), f"t-{uuid.uuid4().hex[:16]}"
    db = f"sqlite:///{tmp / 'recorder.db'}" if request.param == "sqlite" else \
        _postgres_url(request.getfixturevalue("pg_server"))
    settings = make_settings(db, redis_server, s3_server, bucket, tmp,
                             # rate limits out of the way: 429s would hide the code behind them
                             room_create_rate_per_minute=10**6, join_token_rate_per_minute=10**6,
                             chunk_rate_per_minute=10**6, org_rate_per_minute=10**6)
    token = mint_token(settings.jwt_secret, sub="fuzzer", org="acme", role="admin", ttl_s=3600,
                       issuer=settings.jwt_issuer)
    try:
        with LiveServer(settings) as server:
            SEEDED.update(_seed(server, token, webm_chunks[0][0]))
            yield FuzzAPI(server.url, token)
    finally:
        SEEDED.clear()
        drop_bucket(s3_server, bucket)


def _seed(server: LiveServer, token: str, chunk: bytes) -> dict[str, str]:
    """A room, a recording with one chunk, a final transcript (indexed) and a composite MP4."""
    app = server.server.config.app
    with httpx.Client(base_url=server.url, timeout=30) as c:
        room = c.post("/v1/rooms", json={"slot_id": "slot-1", "candidate_id": "cand-1"}, headers=auth(token))
        assert room.status_code == 201, room.text
        rec_id = create_recording(c, token, key="fuzz", tracks=["cam-a"], title="Fuzzed interview")
        assert put(c, token, rec_id, "cam-a", 0, chunk, T0).status_code == 201
    store, engine = app.state.store, app.state.engine
    media = keys.output_key("acme", rec_id, "composite.mp4")
    store.put_bytes(media, bytes(range(256)) * 40)
    exports = {}
    for fmt, body in {"json": json.dumps({"version": 1, "segments": [{"text": "hello kubernetes"}]}),
                      "vtt": "WEBVTT\n\n1\n00:00:01.000 --> 00:00:02.000\n<v Ann>hello kubernetes\n",
                      "srt": "1\n00:00:01,000 --> 00:00:02,000\nAnn: hello kubernetes\n",
                      "txt": "[00:00:01] Ann: hello kubernetes\n"}.items():
        exports[fmt] = keys.output_key("acme", rec_id, f"transcripts/v001/transcript.{fmt}")
        store.put_bytes(exports[fmt], body.encode())
    with session_scope(engine) as s:
        rec = s.get(Recording, rec_id)
        rec.status, rec.outputs, rec.started_at_ms = "ready", {"composite": media, "duration_ms": 1000}, T0
        s.add(rec)
        s.add(TranscriptVersion(recording_id=rec_id, version=1, model="tiny.en", status="final", is_current=True,
                                exports=exports, params={"beam_size": 3}, audio_ms=1000, segment_count=1))
    with session_scope(engine) as s:
        index_lines(engine, s.get(Recording, rec_id), [("Ann", "candidate", 1000, "hello kubernetes")])
    return {"recording_id": rec_id, "room_id": room.json()["id"], "track": "cam-a", "seq": "0",
            "name": "composite.mp4"}


@schema.parametrize()
@pytest.mark.timeout(120)  # per operation; the whole module takes ~2 min (both databases, 2 cores)
def test_api_answers_within_its_schema(case: schemathesis.Case, fuzz_api: FuzzAPI) -> None:
    case.call_and_validate(base_url=fuzz_api.url, headers=auth(fuzz_api.token), checks=CHECKS)
