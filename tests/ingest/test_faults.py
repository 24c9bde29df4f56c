"""Fault tests against real services: S3 down mid-upload, Redis down, many concurrent retrying clients."""
from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import redis
from sqlmodel import select

from core import db
from core.models import Chunk
from core.storage import ObjectStore
from recorder.services import ManagedProcess
from tests.conftest import auth
from tests.ingest.conftest import T0, chunk_headers, create_recording, sha, snapshot


def test_s3_stopped_mid_upload_gives_503_then_retry_succeeds(live_api, settings, s3_server, token_for,
                                                             webm_chunks) -> None:
    tok = token_for(role="service")
    with httpx.Client(base_url=live_api.url, timeout=60) as c:
        rec = create_recording(c, tok)
        first, second = webm_chunks[0][0], webm_chunks[1][0]
        assert c.put(f"/v1/recordings/{rec}/tracks/cam-a/chunks/0", content=first,
                     headers={**chunk_headers(first, T0), **auth(tok)}).status_code == 201

        def body_that_outlives_s3():
            yield second[:1000]
            s3_server.stop()          # the S3 server dies while the client is still sending
            yield second[1000:]

        url = f"/v1/recordings/{rec}/tracks/cam-a/chunks/1"
        headers = {**chunk_headers(second, T0 + 1000), **auth(tok)}
        try:
            down = c.put(url, content=body_that_outlives_s3(), headers=headers)
            assert down.status_code == 503, down.text
            assert down.json()["code"] == "storage_unavailable" and int(down.headers["retry-after"]) >= 1
            assert c.get("/readyz").status_code == 503
        finally:
            s3_server.start()
        retry = c.put(url, content=second, headers=headers)
        assert retry.status_code == 201, retry.text
        ledger = c.get(f"/v1/recordings/{rec}/ledger", headers=auth(tok)).json()
    assert ledger["complete"] and [ch["seq"] for ch in ledger["tracks"][0]["chunks"]] == [0, 1]
    objects = snapshot(ObjectStore.from_settings(settings), f"acme/recordings/{rec}/chunks/")
    assert sorted(v[1] for v in objects.values()) == sorted([sha(first), sha(second)])


def test_redis_down_gives_503_and_retry_enqueues(settings, token_for, webm_chunks, tmp_path) -> None:
    """With the queue down the chunk is stored but not enqueued; the client's retry enqueues it."""
    from fastapi.testclient import TestClient

    from recorder.app import create_app
    from recorder.services import free_port, start_redis

    port = free_port()
    own_redis: ManagedProcess = start_redis(tmp_path / "redis", port)
    s = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{port}/0"})
    tok = token_for(role="service")
    data = webm_chunks[0][0]
    try:
        with TestClient(create_app(s)) as c:
            rec = create_recording(c, tok)
            own_redis.stop()
            resp = c.put(f"/v1/recordings/{rec}/tracks/cam-a/chunks/0", content=data,
                         headers={**chunk_headers(data, T0), **auth(tok)})
            assert resp.status_code == 503 and resp.headers["retry-after"]
            own_redis = start_redis(tmp_path / "redis", port)
            retry = c.put(f"/v1/recordings/{rec}/tracks/cam-a/chunks/0", content=data,
                          headers={**chunk_headers(data, T0), **auth(tok)})
            assert retry.status_code in (200, 201), retry.text
            queued = redis.Redis(port=port).hlen("dramatiq:media.msgs")
            assert queued == 1
    finally:
        own_redis.stop()


def test_thousand_concurrent_uploads_with_random_retries_store_each_chunk_once(
        live_api, settings, token_for, webm_chunks, mp4_chunks) -> None:
    tok = token_for(role="service")
    bodies = [(d, "video/webm") for d, _, _ in webm_chunks] + [(d, "video/mp4") for d, _, _ in mp4_chunks]
    n_recordings, n_tracks, n_seqs = 4, 4, 25                     # 400 distinct chunks …
    plan = []
    with httpx.Client(base_url=live_api.url, timeout=120) as c:
        recs = [create_recording(c, tok, key=f"load-{i}", tracks=[f"t{j}" for j in range(n_tracks)])
                for i in range(n_recordings)]
    rnd = random.Random(42)
    for rec in recs:
        for j in range(n_tracks):
            for seq in range(n_seqs):
                data, ctype = bodies[(seq + j) % len(bodies)]
                plan.append((rec, f"t{j}", seq, data, ctype))
    # … sent 1,000 times in all: every chunk at least once, 600 random retries on top
    sends = plan + [rnd.choice(plan) for _ in range(1000 - len(plan))]
    rnd.shuffle(sends)
    results: dict[tuple, list[int]] = {}
    lock = threading.Lock()

    def send(item) -> None:
        rec, track, seq, data, ctype = item
        with httpx.Client(base_url=live_api.url, timeout=120) as cl:
            for _attempt in range(20):
                resp = cl.put(f"/v1/recordings/{rec}/tracks/{track}/chunks/{seq}", content=data,
                              headers={**chunk_headers(data, T0 + seq * 1000, ctype), **auth(tok)})
                if resp.status_code not in (429, 503):
                    break
        with lock:
            results.setdefault((rec, track, seq), []).append(resp.status_code)

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(send, sends))
    assert len(results) == len(plan) == 400 and sum(map(len, results.values())) == 1000
    for key, codes in results.items():
        assert codes.count(201) == 1 and all(code in (200, 201) for code in codes), (key, codes)
    engine = db.make_engine(settings.database_url)
    with db.session_scope(engine) as s:
        rows = s.exec(select(Chunk)).all()
    assert len(rows) == 400 and all(r.status == "stored" and r.enqueued for r in rows)
    store = ObjectStore.from_settings(settings)
    objects = {o.key: o.size for o in store.list("acme/recordings/")}
    assert len(objects) == 400
    for r in rnd.sample(rows, 60):   # bytes in S3 match the declared SHA-256
        assert sha(store.get_bytes(r.object_key)) == r.sha256
    assert all(objects[r.object_key] == r.size for r in rows)
