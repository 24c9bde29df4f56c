"""Every class of bad upload answers its status code and leaves stored data unchanged."""
from __future__ import annotations

import base64
import hashlib

import pytest
from fastapi.testclient import TestClient

from core.storage import ObjectStore
from recorder.app import create_app
from tests.conftest import auth
from tests.ingest.conftest import T0, chunk_headers, create_recording, put, sha, snapshot


@pytest.fixture
def setup(client, token_for, store, webm_chunks):
    """A recording with one stored chunk (seq 0) to protect."""
    tok = token_for(role="service")
    rec = create_recording(client, tok)
    assert put(client, tok, rec, "cam-a", 0, webm_chunks[0][0], T0).status_code == 201
    return tok, rec, snapshot(store)


def _intact(store: ObjectStore, before: dict, allow_quarantine: bool = False) -> None:
    after = snapshot(store)
    if allow_quarantine:
        after = {k: v for k, v in after.items() if "/quarantine/" not in k}
    assert after == before


def _code(resp, status: int, code: str | None = None) -> None:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) >= {"code", "message"} and body["message"]
    if code:
        assert body["code"] == code


def test_header_problems_are_400(client, setup, store, webm_chunks) -> None:
    tok, rec, before = setup
    data = webm_chunks[1][0]
    url = f"/v1/recordings/{rec}/tracks/cam-a/chunks/1"
    base = {**chunk_headers(data, T0 + 1000), **auth(tok)}
    cases = {
        "missing_sha256": {k: v for k, v in base.items() if k != "X-Content-SHA256"},
        "invalid_sha256": {**base, "X-Content-SHA256": "zz"},
        "missing_x_chunk_start": {k: v for k, v in base.items() if k != "X-Chunk-Start"},
        "invalid_x_chunk_start": {**base, "X-Chunk-Start": "1795000000"},  # seconds, not ms
        "digest_mismatch": {**base, "X-Content-SHA256": sha(data + b"x")},
    }
    for code, headers in cases.items():
        _code(client.put(url, content=data, headers=headers), 400, code)
    digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
    ok = {k: v for k, v in base.items() if k != "X-Content-SHA256"} | {"Digest": f"sha-256={digest}"}
    assert client.put(url, content=data, headers=ok).status_code == 201  # RFC 3230 Digest works too
    assert len(snapshot(store)) == len(before) + 1


def test_wrong_type_and_magic_are_415(client, setup, store, webm_chunks, mp4_chunks) -> None:
    tok, rec, before = setup
    png = b"\x89PNG\r\n\x1a\n" + bytes(2000)
    _code(put(client, tok, rec, "cam-a", 1, webm_chunks[1][0], T0, ctype="image/png"), 415, "unsupported_content_type")
    _code(put(client, tok, rec, "cam-a", 1, png, T0, ctype="video/webm"), 415, "media_type_mismatch")
    _code(put(client, tok, rec, "cam-a", 1, mp4_chunks[1][0], T0, ctype="video/webm"), 415, "media_type_mismatch")
    _intact(store, before)


def test_corrupt_and_truncated_media_are_422_and_quarantined(client, setup, store, webm_chunks) -> None:
    tok, rec, before = setup
    good = webm_chunks[1][0]
    corrupt = good[:40] + bytes(b ^ 0xFF for b in good[40:4000]) + good[4000:]
    truncated = good[: len(good) // 2]
    r1 = put(client, tok, rec, "cam-a", 1, corrupt, T0 + 1000)
    r2 = put(client, tok, rec, "cam-a", 2, truncated, T0 + 2000)
    _code(r1, 422)
    _code(r2, 422, "truncated_media")
    _intact(store, before, allow_quarantine=True)
    quarantined = {k: v for k, v in snapshot(store).items() if "/quarantine/" in k}
    assert sorted(v[1] for v in quarantined.values()) == sorted([sha(corrupt), sha(truncated)])
    track = client.get(f"/v1/recordings/{rec}/ledger", headers=auth(tok)).json()["tracks"][0]
    assert [r["seq"] for r in track["rejected"]] == [1, 2]
    assert [g["cause"] for g in track["gaps"]] == ["rejected_chunk"] and track["missing_seqs"] == [1, 2]
    # the client fixes it: the good bytes for seq 1 are accepted afterwards
    assert put(client, tok, rec, "cam-a", 1, good, T0 + 1000).status_code == 201


def test_replay_with_other_bytes_is_409_and_keeps_stored(client, setup, store, webm_chunks) -> None:
    tok, rec, before = setup
    resp = put(client, tok, rec, "cam-a", 0, webm_chunks[2][0], T0)
    _code(resp, 409, "chunk_conflict")
    assert resp.json()["details"]["stored_sha256"] == sha(webm_chunks[0][0])
    _intact(store, before)
    assert put(client, tok, rec, "cam-a", 0, webm_chunks[0][0], T0).status_code == 200


def test_unknown_ids_are_404(client, setup, store, webm_chunks) -> None:
    tok, rec, before = setup
    data = webm_chunks[1][0]
    _code(put(client, tok, "rec_doesnotexist", "cam-a", 1, data, T0), 404, "unknown_recording")
    _code(put(client, tok, rec, "no-such-track", 1, data, T0), 404, "unknown_track")
    _code(client.get("/v1/recordings/rec_nope/ledger", headers=auth(tok)), 404)
    _intact(store, before)


def test_auth_failures_are_401_and_403(client, setup, store, webm_chunks, token_for) -> None:
    tok, rec, before = setup
    data = webm_chunks[1][0]
    url = f"/v1/recordings/{rec}/tracks/cam-a/chunks/1"
    _code(client.put(url, content=data, headers=chunk_headers(data, T0)), 401, "missing_token")
    _code(put(client, token_for(role="service", ttl_s=-10), rec, "cam-a", 1, data, T0), 401, "token_expired")
    _code(put(client, "not.a.jwt", rec, "cam-a", 1, data, T0), 401, "invalid_token")
    # another org's recording: the caller may not learn it exists
    _code(put(client, token_for(role="service", org="globex"), rec, "cam-a", 1, data, T0), 404, "unknown_recording")
    _code(put(client, token_for(role="assessor"), rec, "cam-a", 1, data, T0), 403, "wrong_role")
    other = token_for(role="candidate", scope="upload", recording_id="rec_other", participant_id="p-cam-a")
    _code(put(client, other, rec, "cam-a", 1, data, T0), 403, "wrong_recording")
    wrong_p = token_for(role="candidate", scope="upload", recording_id=rec, participant_id="p-intruder")
    _code(put(client, wrong_p, rec, "cam-a", 1, data, T0), 403, "wrong_participant")
    _code(client.get(f"/v1/recordings/{rec}/ledger", headers=auth(token_for(org="globex"))), 404)
    join = token_for(role="interviewer", scope="join", room_id="room_x", participant_id="p-cam-a")
    _code(client.get(f"/v1/recordings/{rec}/ledger", headers=auth(join)), 403, "wrong_scope")
    _code(put(client, token_for(role="recorder", scope="join"), rec, "cam-a", 1, data, T0), 403, "wrong_scope")
    _intact(store, before)


@pytest.mark.parametrize("track,seq,status", [
    ("..", "1", 404), ("%2e%2e", "1", 400), ("cam-a", "-1", 400), ("cam-a", "99999999999999999999999", 400),
    ("cam-a", "1000000", 400), ("cam-a", "1e3", 400), ("a" * 200, "1", 400), ("cam%00a", "1", 400),
])
def test_traversal_and_overflow_are_rejected(client, setup, store, webm_chunks, track, seq, status) -> None:
    tok, rec, before = setup
    data = webm_chunks[1][0]
    resp = client.put(f"/v1/recordings/{rec}/tracks/{track}/chunks/{seq}", content=data,
                      headers={**chunk_headers(data, T0), **auth(tok)})
    assert resp.status_code == status, resp.text
    assert resp.json()["code"]
    _intact(store, before)


def test_oversize_is_413_and_rate_limit_is_429(settings, token_for, store, webm_chunks) -> None:
    small = settings.model_copy(update={"max_chunk_bytes": 2000, "chunk_rate_per_minute": 3})
    with TestClient(create_app(small)) as c:
        tok = token_for(role="service")
        rec = create_recording(c, tok)
        before = snapshot(store)
        _code(put(c, tok, rec, "cam-a", 0, webm_chunks[0][0], T0), 413, "chunk_too_large")
        # chunked transfer without Content-Length is cut off while streaming
        big = webm_chunks[0][0]
        resp = c.put(f"/v1/recordings/{rec}/tracks/cam-a/chunks/0", content=iter([big[:1500], big[1500:]]),
                     headers={**chunk_headers(big, T0), **auth(tok)})
        _code(resp, 413, "chunk_too_large")
        _intact(store, before)
        junk = b"\x1a\x45\xdf\xa3" + bytes(100)
        codes = [put(c, tok, rec, "cam-a", 0, junk, T0).status_code for _ in range(3)]
        assert codes[:2] == [422, 422] and codes[2] == 429  # 3 per minute, the chunked one counted
        limited = put(c, tok, rec, "cam-a", 0, junk, T0)
        _code(limited, 429, "rate_limited")
        assert 1 <= int(limited.headers["retry-after"]) <= 60


def test_quarantine_keeps_bytes_only_within_the_recording_budget(client, setup, store, webm_chunks) -> None:
    """Garbage cannot fill the bucket: past the per-recording budget only the ledger row is kept."""
    tok, rec, before = setup
    good = webm_chunks[1][0]
    bad = [good[: len(good) // 2], good[: len(good) // 3]]
    client.app.state.ingest.limits.quarantine_budget_bytes = len(bad[0]) + 10  # room for the first one only
    for i, data in enumerate(bad, start=1):
        _code(put(client, tok, rec, "cam-a", i, data, T0 + 1000 * i), 422, "truncated_media")
    kept = {k: v for k, v in snapshot(store).items() if "/quarantine/" in k}
    assert [v[1] for v in kept.values()] == [sha(bad[0])]
    track = client.get(f"/v1/recordings/{rec}/ledger", headers=auth(tok)).json()["tracks"][0]
    assert [r["seq"] for r in track["rejected"]] == [1, 2]  # both rejections are still on record
    assert track["rejected"][1]["quarantine_key"] == "" and "budget" in track["rejected"][1]["reason"]
    _intact(store, before, allow_quarantine=True)
