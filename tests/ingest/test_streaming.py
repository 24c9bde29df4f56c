"""Bodies streamed to a staging object while received, then copied to the chunk key once checked."""
from __future__ import annotations

import httpx
import pytest
from sqlmodel import select

from core import db
from core.errors import StorageError
from core.models import Chunk
from core.storage import ObjectStore, begin_put
from ingest import service
from ingest.service import STAGING_PREFIX
from tests.conftest import auth
from tests.ingest.conftest import T0, chunk_headers, create_recording, put, sha, snapshot


@pytest.fixture
def settings(settings):
    """The conftest settings with streaming to S3 on (it is off by default)."""
    return settings.model_copy(update={"ingest_stream_to_s3": True})


@pytest.fixture
def copies(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every server-side copy the store step makes (the real copy still runs)."""
    seen: list[tuple[str, str]] = []
    real = service.copy_object

    def spy(store: ObjectStore, src: str, dst: str) -> None:
        seen.append((src, dst))
        real(store, src, dst)

    monkeypatch.setattr(service, "copy_object", spy)
    return seen


def test_streamed_chunk_is_copied_from_staging_and_staging_is_emptied(client, store, token_for, webm_chunks,
                                                                      copies) -> None:
    tok = token_for(role="service")
    rec = create_recording(client, tok)
    data = webm_chunks[0][0]
    resp = put(client, tok, rec, "cam-a", 0, data, T0)
    assert resp.status_code == 201, resp.text
    [(src, dst)] = copies
    assert src.startswith(STAGING_PREFIX) and dst.startswith(f"acme/recordings/{rec}/chunks/")
    assert snapshot(store, f"acme/recordings/{rec}/chunks/") == {dst: (len(data), sha(data))}
    assert store.list(STAGING_PREFIX) == []
    assert put(client, tok, rec, "cam-a", 0, data, T0).status_code == 200  # retry: answered, not re-stored
    assert len(copies) == 1


def test_streamed_body_with_wrong_digest_or_bad_media_leaves_no_chunk_object(client, store, token_for,
                                                                           webm_chunks, copies) -> None:
    tok = token_for(role="service")
    rec = create_recording(client, tok)
    data = webm_chunks[0][0]
    wrong = client.put(f"/v1/recordings/{rec}/tracks/cam-a/chunks/0", content=data,
                       headers={**chunk_headers(data, T0), "X-Content-SHA256": sha(b"other"), **auth(tok)})
    assert wrong.status_code == 400 and wrong.json()["code"] == "digest_mismatch"
    garbage = b"\x1a\x45\xdf\xa3" + bytes(range(256)) * 64  # EBML magic, then no valid structure
    bad = put(client, tok, rec, "cam-a", 1, garbage, T0 + 1000)
    assert bad.status_code == 422, bad.text
    assert copies == [] and store.list(f"acme/recordings/{rec}/chunks/") == []
    assert store.list(STAGING_PREFIX) == []
    assert [o.size for o in store.list(f"acme/recordings/{rec}/quarantine/")] == [len(garbage)]


def test_s3_dying_mid_stream_leaves_no_chunk_object_nor_stored_row_then_retry_succeeds(
        live_api, settings, s3_server, token_for, webm_chunks) -> None:
    tok = token_for(role="service")
    data = webm_chunks[1][0]
    store = ObjectStore.from_settings(settings)
    with httpx.Client(base_url=live_api.url, timeout=60) as c:
        rec = create_recording(c, tok)

        def body_that_outlives_s3():
            yield data[:4096]
            s3_server.stop()  # dies while the staging PUT is being fed
            yield data[4096:]

        url = f"/v1/recordings/{rec}/tracks/cam-a/chunks/0"
        headers = {**chunk_headers(data, T0), "Content-Length": str(len(data)), **auth(tok)}
        try:
            down = c.put(url, content=body_that_outlives_s3(), headers=headers)
            assert down.status_code == 503, down.text
            assert down.json()["code"] == "storage_unavailable"
        finally:
            s3_server.start()
        with db.session_scope(db.make_engine(settings.database_url)) as s:
            rows = s.exec(select(Chunk).where(Chunk.recording_id == rec)).all()
        assert all(r.status != "stored" for r in rows)
        assert store.list(f"acme/recordings/{rec}/chunks/") == []
        retry = c.put(url, content=data, headers={**chunk_headers(data, T0), **auth(tok)})
        assert retry.status_code == 201, retry.text
        ledger = c.get(f"/v1/recordings/{rec}/ledger", headers=auth(tok)).json()
    assert [ch["seq"] for ch in ledger["tracks"][0]["chunks"]] == [0]
    assert [v[1] for v in snapshot(store, f"acme/recordings/{rec}/chunks/").values()] == [sha(data)]


def test_streaming_put_keeps_nothing_when_aborted_or_short(store) -> None:
    aborted = begin_put(store, f"{STAGING_PREFIX}aborted", 1000, "video/webm")
    aborted.feed([b"x" * 400])
    aborted.abort()
    short = begin_put(store, f"{STAGING_PREFIX}short", 1000, "video/webm")
    short.feed([b"x" * 999])
    with pytest.raises(StorageError):
        short.finish()
    whole = begin_put(store, f"{STAGING_PREFIX}whole", 1000, "video/webm")
    whole.feed([b"x" * 600, b"y" * 400])
    whole.finish()
    assert snapshot(store, STAGING_PREFIX) == {f"{STAGING_PREFIX}whole": (1000, sha(b"x" * 600 + b"y" * 400))}
