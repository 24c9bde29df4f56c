"""Bodies streamed straight to their chunk key while received, under the key's write lease."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest
import redis
from sqlmodel import select

from core import db
from core.errors import RateLimited, StorageError
from core.models import Chunk
from core.storage import ObjectStore, begin_put
from ingest import service
from ingest.lease import LeasedPut, Leases, lease_name
from tests.conftest import auth
from tests.ingest.conftest import T0, chunk_headers, create_recording, put, sha, snapshot


@pytest.fixture
def settings(settings):
    """The conftest settings with streaming to S3 on (the default; said here so the tests do not depend on it)."""
    return settings.model_copy(update={"ingest_stream_to_s3": True})


@pytest.fixture
def puts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The key of every streamed PUT the upload flow starts (the real PUT still runs)."""
    seen: list[str] = []
    real = service.begin_put

    def spy(store: ObjectStore, key: str, length: int, content_type: str):
        seen.append(key)
        return real(store, key, length, content_type)

    monkeypatch.setattr(service, "begin_put", spy)
    return seen


def rows(settings, rec: str) -> list[Chunk]:
    with db.session_scope(db.make_engine(settings.database_url)) as s:
        return list(s.exec(select(Chunk).where(Chunk.recording_id == rec)).all())


def test_streamed_chunk_goes_straight_to_its_key(client, store, token_for, webm_chunks, puts) -> None:
    tok = token_for(role="service")
    rec = create_recording(client, tok)
    data = webm_chunks[0][0]
    resp = put(client, tok, rec, "cam-a", 0, data, T0)
    assert resp.status_code == 201, resp.text
    [key] = puts
    assert key.startswith(f"acme/recordings/{rec}/chunks/cam-a/")
    assert snapshot(store, f"acme/recordings/{rec}/") == {key: (len(data), sha(data))}
    assert put(client, tok, rec, "cam-a", 0, data, T0).status_code == 200  # retry: answered, not re-stored
    assert len(puts) == 1


def test_streamed_body_with_wrong_digest_or_bad_media_leaves_no_object_nor_claim(client, store, settings, token_for,
                                                                                 webm_chunks, puts) -> None:
    tok = token_for(role="service")
    rec = create_recording(client, tok)
    data, other = webm_chunks[0][0], webm_chunks[1][0]
    wrong = client.put(f"/v1/recordings/{rec}/tracks/cam-a/chunks/0", content=data,
                       headers={**chunk_headers(data, T0), "X-Content-SHA256": sha(b"other"), **auth(tok)})
    assert wrong.status_code == 400 and wrong.json()["code"] == "digest_mismatch"
    garbage = b"\x1a\x45\xdf\xa3" + bytes(range(256)) * 64  # EBML magic, then no valid structure
    bad = put(client, tok, rec, "cam-a", 1, garbage, T0 + 1000)
    assert bad.status_code == 422, bad.text
    assert len(puts) == 2  # both were streamed to their keys while received …
    assert store.list(f"acme/recordings/{rec}/chunks/") == []  # … and removed once they failed
    assert rows(settings, rec) == []  # the claims too: the seqs are free for other bytes
    assert [o.size for o in store.list(f"acme/recordings/{rec}/quarantine/")] == [len(garbage)]
    assert put(client, tok, rec, "cam-a", 0, data, T0).status_code == 201
    assert put(client, tok, rec, "cam-a", 1, other, T0 + 1000).status_code == 201
    assert sorted(v[1] for v in snapshot(store, f"acme/recordings/{rec}/chunks/").values()) == sorted(
        [sha(data), sha(other)])


def test_s3_dying_mid_stream_leaves_no_chunk_object_nor_stored_row_then_retry_succeeds(
        live_api, settings, s3_server, token_for, webm_chunks) -> None:
    tok = token_for(role="service")
    data = webm_chunks[1][0]
    store = ObjectStore.from_settings(settings)
    with httpx.Client(base_url=live_api.url, timeout=60) as c:
        rec = create_recording(c, tok)

        def body_that_outlives_s3():
            yield data[:4096]
            s3_server.stop()  # dies while the PUT to the chunk key is being fed
            yield data[4096:]

        url = f"/v1/recordings/{rec}/tracks/cam-a/chunks/0"
        headers = {**chunk_headers(data, T0), "Content-Length": str(len(data)), **auth(tok)}
        try:
            down = c.put(url, content=body_that_outlives_s3(), headers=headers)
            assert down.status_code == 503, down.text
            assert down.json()["code"] == "storage_unavailable"
        finally:
            s3_server.start()
        assert all(r.status != "stored" for r in rows(settings, rec))
        assert store.list(f"acme/recordings/{rec}/chunks/") == []
        retry = c.put(url, content=data, headers={**chunk_headers(data, T0), **auth(tok)})
        assert retry.status_code == 201, retry.text
        ledger = c.get(f"/v1/recordings/{rec}/ledger", headers=auth(tok)).json()
    assert [ch["seq"] for ch in ledger["tracks"][0]["chunks"]] == [0]
    assert [v[1] for v in snapshot(store, f"acme/recordings/{rec}/chunks/").values()] == [sha(data)]


def test_upload_waits_while_another_holds_the_lease_then_writes_verified_bytes(
        client, store, settings, token_for, webm_chunks, puts) -> None:
    """A second upload of the same seq never writes the key while the first may: it spools and
    verifies, waits for the lease, then PUTs from its spool (no streamed PUT)."""
    tok = token_for(role="service")
    rec = create_recording(client, tok)
    data = webm_chunks[2][0]
    leases = Leases(redis.Redis.from_url(settings.redis_url))
    name = lease_name(rec, "cam-a", 0)
    held = leases.acquire(name)  # as if a first upload were still streaming its body
    assert held
    answers: list[httpx.Response] = []
    waiter = threading.Thread(target=lambda: answers.append(put(client, tok, rec, "cam-a", 0, data, T0)))
    waiter.start()
    time.sleep(0.6)
    assert waiter.is_alive() and store.list(f"acme/recordings/{rec}/chunks/") == []
    leases.release(name, held)
    waiter.join(30)
    assert answers[0].status_code == 201, answers[0].text
    assert puts == []
    assert [v[1] for v in snapshot(store, f"acme/recordings/{rec}/chunks/").values()] == [sha(data)]


def test_upload_answers_429_when_the_lease_is_not_freed(client, settings, token_for, webm_chunks,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service, "BUSY_WAIT_S", 0.5)
    tok = token_for(role="service")
    rec = create_recording(client, tok)
    data = webm_chunks[0][0]
    leases = Leases(redis.Redis.from_url(settings.redis_url))
    assert leases.acquire(lease_name(rec, "cam-a", 0))
    busy = put(client, tok, rec, "cam-a", 0, data, T0)
    assert busy.status_code == 429 and busy.json()["code"] == "chunk_busy" and busy.headers["retry-after"]
    assert all(r.status != "stored" for r in rows(settings, rec))


def test_lease_is_renewed_while_fed_and_a_lost_lease_stops_the_put(store, settings,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ingest.lease.RENEW_S", 0.0)
    client = redis.Redis.from_url(settings.redis_url)
    leases = Leases(client, ttl_ms=5_000)
    name = lease_name("rec-renew", "cam", 0)
    token = leases.acquire(name)
    assert token
    kept = LeasedPut(begin_put(store, "_probe/stream/renewed", 1000, "video/webm"), leases, name, token)
    client.pexpire(name, 1_000)
    kept.feed([b"x" * 500])
    assert client.pttl(name) > 1_000  # renewed on feed
    client.set(name, "another upload")  # lost (lapsed and taken)
    with pytest.raises(RateLimited):
        kept.feed([b"x" * 500])
    kept.abort()
    assert store.list("_probe/stream/") == []


def test_streaming_put_keeps_nothing_when_aborted_or_short(store) -> None:
    aborted = begin_put(store, "_probe/stream/aborted", 1000, "video/webm")
    aborted.feed([b"x" * 400])
    aborted.abort()
    short = begin_put(store, "_probe/stream/short", 1000, "video/webm")
    short.feed([b"x" * 999])
    with pytest.raises(StorageError):
        short.finish()
    fed = begin_put(store, "_probe/stream/fed-then-aborted", 1000, "video/webm")
    fed.feed([b"x" * 600])
    fed.feed([b"z" * 400])  # every byte handed over (a body that then fails its checks) …
    time.sleep(0.3)
    fed.abort()  # … the last batch is still held back: nothing is stored
    whole = begin_put(store, "_probe/stream/whole", 1000, "video/webm")
    whole.feed([b"x" * 600, b"y" * 400])
    whole.finish()
    assert snapshot(store, "_probe/stream/") == {"_probe/stream/whole": (1000, sha(b"x" * 600 + b"y" * 400))}


# ---------------------------------------------------------------- claims (fencing tokens)

def _stale_claim(settings, rec: str, seq: int, data: bytes, claim: str) -> None:
    """An `uploading` row whose upload is gone (its API process died; its lease expired)."""
    with db.session_scope(db.make_engine(settings.database_url)) as s:
        s.add(Chunk(recording_id=rec, track_id="cam-a", seq=seq, sha256=sha(data), start_ms=T0, size=len(data),
                    content_type="video/webm", container="webm", claim=claim))


def test_a_claim_whose_upload_is_gone_is_taken_over_even_by_other_bytes(client, store, settings, token_for,
                                                                        webm_chunks) -> None:
    tok = token_for(role="service")
    rec = create_recording(client, tok)
    put(client, tok, rec, "cam-a", 0, webm_chunks[0][0], T0)  # declares the track
    dead, data = webm_chunks[1][0], webm_chunks[2][0]
    _stale_claim(settings, rec, 1, dead, claim="0" * 32)
    resp = put(client, tok, rec, "cam-a", 1, data, T0 + 1000)
    assert resp.status_code == 201, resp.text  # was 409 for ever: the dead claim blocked the seq
    [row] = [r for r in rows(settings, rec) if r.seq == 1]
    assert (row.status, row.sha256, row.claim) == ("stored", sha(data), None)
    assert sha(data) in {v[1] for v in snapshot(store, f"acme/recordings/{rec}/chunks/").values()}


def test_a_writer_whose_lease_lapsed_cannot_store_nor_remove_the_new_claimants_chunk(
        client, store, settings, token_for, webm_chunks) -> None:
    """Upload A claims seq 0, then stalls past its lease; upload B (the client's retry) takes the
    lease and the claim. A, coming back, stands down (429) and its clean-up leaves B's claim
    alone; B stores the chunk."""
    from core.auth import verify_token
    from ingest.headers import parse_chunk_headers
    from ingest.spool import Spooled

    tok = token_for(role="service")
    rec = create_recording(client, tok)
    data = webm_chunks[0][0]
    ing = client.app.state.ingest
    principal = verify_token(settings.jwt_secret, tok)
    hdr = parse_chunk_headers({k.lower(): v for k, v in chunk_headers(data, T0).items()})

    def spooled(name: str) -> Spooled:
        path = Path(client.app.state.spool_dir) / f"{name}-{rec}.webm"
        path.write_bytes(data)
        return Spooled(path=str(path), size=len(data), sha256=sha(data), head=data[:64])

    a = ing.precheck(principal, rec, "cam-a", 0, hdr, None)
    assert a.lease and a.chunk_id
    redis.Redis.from_url(settings.redis_url).delete(lease_name(rec, "cam-a", 0))  # A's lease lapses
    b = ing.precheck(principal, rec, "cam-a", 0, hdr, None)
    assert b.lease and b.chunk_id == a.chunk_id  # B took the claim over
    with pytest.raises(RateLimited) as busy:
        ing.store_chunk(a, rec, "cam-a", 0, hdr, spooled("a"))
    assert busy.value.code == "chunk_busy"
    [row] = rows(settings, rec)  # A's failure did not remove B's claim
    assert (row.status, row.claim) == ("uploading", b.lease)
    chunk, created, _ = ing.store_chunk(b, rec, "cam-a", 0, hdr, spooled("b"))
    ing.release(b, rec, "cam-a", 0)
    assert created and chunk.status == "stored"
    assert [v[1] for v in snapshot(store, f"acme/recordings/{rec}/chunks/").values()] == [sha(data)]
    assert put(client, tok, rec, "cam-a", 0, data, T0).status_code == 200
