"""Chunk upload: out of order, duplicates, retries, both containers, both databases."""
from __future__ import annotations

import random

import pytest
from fastapi.testclient import TestClient

from core.storage import ObjectStore
from recorder.app import create_app
from tests.conftest import auth
from tests.ingest.conftest import T0, create_recording, put, sha, snapshot


@pytest.fixture
def any_client(any_db_settings):
    with TestClient(create_app(any_db_settings)) as c:
        yield c


def test_out_of_order_with_duplicates_gives_complete_ledger(any_client, any_db_settings, token_for,
                                                             webm_chunks, mp4_chunks) -> None:
    tok = token_for(role="service")
    rec = create_recording(any_client, tok, tracks=["cam-a", "mic-b"])
    uploads = [("cam-a", i, data, T0 + off, "video/webm") for i, (data, off, _) in enumerate(webm_chunks)]
    uploads += [("mic-b", i, data, T0 + off, "video/mp4") for i, (data, off, _) in enumerate(mp4_chunks)]
    order = uploads + random.Random(7).sample(uploads, len(uploads))  # every chunk twice, shuffled
    random.Random(3).shuffle(order)
    codes = [put(any_client, tok, rec, t, seq, d, start, ct).status_code for t, seq, d, start, ct in order]
    assert codes.count(201) == len(uploads) and codes.count(200) == len(uploads)

    ledger = any_client.get(f"/v1/recordings/{rec}/ledger", headers=auth(tok)).json()
    assert ledger["complete"] is True
    by_track = {t["track_id"]: t for t in ledger["tracks"]}
    assert [c["seq"] for c in by_track["cam-a"]["chunks"]] == [0, 1, 2, 3]
    assert [c["seq"] for c in by_track["mic-b"]["chunks"]] == [0, 1, 2]
    assert by_track["cam-a"]["covered_seconds"] == pytest.approx(4.0, abs=0.2)
    assert by_track["cam-a"]["chunks"][2]["start_ms"] == 2000  # real start, on the timeline
    store = ObjectStore.from_settings(any_db_settings)
    objects = snapshot(store, f"acme/recordings/{rec}/chunks/")
    assert len(objects) == len(uploads)
    expected = {f"acme/recordings/{rec}/chunks/{t}/{seq:06d}.{'mp4' if 'mp4' in ct else 'webm'}": sha(d)
                for t, seq, d, _, ct in uploads}
    assert {k: v[1] for k, v in objects.items()} == expected


def test_ledger_reports_missing_seq_and_timeline_hole(client, token_for, webm_chunks) -> None:
    tok = token_for(role="service")
    rec = create_recording(client, tok)
    chunks = webm_chunks
    assert put(client, tok, rec, "cam-a", 0, chunks[0][0], T0).status_code == 201
    assert put(client, tok, rec, "cam-a", 2, chunks[2][0], T0 + 2000).status_code == 201
    # seq 3 starts 5 s after seq 2 ended: a paused recorder leaves a hole in time.
    assert put(client, tok, rec, "cam-a", 3, chunks[3][0], T0 + 8000).status_code == 201
    track = client.get(f"/v1/recordings/{rec}/ledger", headers=auth(tok)).json()["tracks"][0]
    causes = [(g["cause"], g["seqs"]) for g in track["gaps"]]
    assert causes == [("missing_seq", [1]), ("timeline_hole", [])]
    assert track["gaps"][0]["start_ms"] == pytest.approx(1000, abs=100)
    assert track["gaps"][1]["seconds"] == pytest.approx(5.0, abs=0.2)
    assert track["missing_seqs"] == [1] and track["complete"] is False


def test_create_recording_is_idempotent(client, token_for) -> None:
    tok = token_for(role="interviewer")
    body = {"room_id": "room-1", "tracks": [{"track_id": "cam", "role": "candidate"}]}
    first = client.post("/v1/recordings", json=body, headers=auth(tok))
    again = client.post("/v1/recordings", json=body, headers=auth(tok))
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    other_org = client.post("/v1/recordings", json=body, headers=auth(token_for(role="interviewer", org="globex")))
    assert other_org.status_code == 201 and other_org.json()["id"] != first.json()["id"]
    keyed = [client.post("/v1/recordings", json={"tracks": []}, headers={**auth(tok), "Idempotency-Key": "abc"})
             for _ in range(2)]
    assert [r.status_code for r in keyed] == [201, 200] and keyed[0].json()["id"] == keyed[1].json()["id"]
    assert client.post("/v1/recordings", json={}, headers=auth(tok)).status_code == 400


def test_upload_token_and_track_declared_on_first_chunk(client, token_for, webm_chunks) -> None:
    admin = token_for(role="interviewer")
    rec = create_recording(client, admin, tracks=[])
    tok = client.post(f"/v1/recordings/{rec}/upload-token", json={"participant_id": "cand-1"},
                      headers=auth(admin)).json()["token"]
    data = webm_chunks[0][0]
    assert put(client, tok, rec, "cand-1-av", 0, data, T0).status_code == 404  # undeclared
    resp = put(client, tok, rec, "cand-1-av", 0, data, T0, **{"X-Track-Kind": "av", "X-Track-Role": "candidate"})
    assert resp.status_code == 201, resp.text
    tracks = client.get(f"/v1/recordings/{rec}", headers=auth(admin)).json()["tracks"]
    assert tracks == [{"track_id": "cand-1-av", "participant_id": "cand-1", "display_name": "",
                       "role": "candidate", "kind": "av"}]


def test_finalize_is_idempotent_and_closes_uploads(client, token_for, webm_chunks, settings) -> None:
    import json

    import redis

    tok = token_for(role="service")
    rec = create_recording(client, tok)
    data = webm_chunks[0][0]
    assert put(client, tok, rec, "cam-a", 0, data, T0).status_code == 201
    r1 = client.post(f"/v1/recordings/{rec}/finalize", headers=auth(tok))
    r2 = client.post(f"/v1/recordings/{rec}/finalize", headers=auth(tok))
    assert (r1.status_code, r2.status_code) == (202, 202) and r1.json()["status"] == "processing"
    assert put(client, tok, rec, "cam-a", 0, data, T0).status_code == 200  # a late retry still succeeds
    late = put(client, tok, rec, "cam-a", 1, webm_chunks[1][0], T0 + 1000)
    assert late.status_code == 409 and late.json()["code"] == "recording_finalized"
    r = redis.Redis.from_url(settings.redis_url)
    media = [json.loads(v) for v in r.hgetall("dramatiq:media.msgs").values()]
    names = sorted(m["actor_name"] for m in media)
    # the second finalize re-sends the final messages while no worker has picked them up
    assert names == ["finalize_recording", "finalize_recording", "process_chunk"]
    assert [m["args"] for m in media if m["actor_name"] == "process_chunk"] == [[rec, "cam-a", 0]]


def test_upload_token_identity_comes_from_the_token_not_the_headers(client, token_for, webm_chunks, store) -> None:
    """A candidate's upload token cannot make a track that claims to be the interviewer."""
    iv = token_for(role="interviewer", sub="iv-1")
    rec = create_recording(client, iv, tracks=[])
    tok = client.post(f"/v1/recordings/{rec}/upload-token",
                      json={"participant_id": "cand-1", "display_name": "Sam Candidate"}, headers=auth(iv)).json()["token"]
    data = webm_chunks[0][0]
    forged = {"X-Track-Kind": "av", "X-Track-Role": "interviewer", "X-Display-Name": "Jane (Interviewer)",
              "X-Participant-Id": "iv-1"}
    assert put(client, tok, rec, "jane-av", 0, data, T0, **forged).status_code == 201
    tracks = client.get(f"/v1/recordings/{rec}", headers=auth(iv)).json()["tracks"]
    assert tracks == [{"track_id": "jane-av", "participant_id": "cand-1", "display_name": "Sam Candidate",
                       "role": "candidate", "kind": "av"}]
    # nor can it write into the interviewer's declared track
    client.post("/v1/recordings", json={"client_key": "k1", "tracks": [
        {"track_id": "iv-av", "participant_id": "iv-1", "role": "interviewer"}]}, headers=auth(iv))
    denied = put(client, tok, rec, "iv-av", 0, data, T0)
    assert denied.status_code == 403 and denied.json()["code"] == "wrong_participant"


def test_upload_token_uploads_only(client, token_for, webm_chunks, store) -> None:
    """It cannot finalize, read the recording or its ledger, and stops once the recording is final."""
    iv = token_for(role="interviewer", sub="iv-1")
    rec = create_recording(client, iv, tracks=[])
    tok = client.post(f"/v1/recordings/{rec}/upload-token", json={"participant_id": "cand-1"},
                      headers=auth(iv)).json()["token"]
    data = webm_chunks[0][0]
    assert put(client, tok, rec, "cand-av", 0, data, T0, **{"X-Track-Kind": "av"}).status_code == 201
    for method, path in (("POST", "finalize"), ("GET", ""), ("GET", "ledger"), ("GET", "transcript"),
                         ("POST", "upload-token")):
        resp = client.request(method, f"/v1/recordings/{rec}/{path}".rstrip("/"), headers=auth(tok),
                              json={"participant_id": "x"} if path == "upload-token" else None)
        assert resp.status_code == 403, (path, resp.text)
        assert resp.json()["code"] == "wrong_scope"
    status = client.get(f"/v1/recordings/{rec}", headers=auth(iv)).json()["status"]
    assert status == "recording"  # the failed finalize changed nothing
    assert client.post(f"/v1/recordings/{rec}/finalize", headers=auth(iv)).status_code == 202
    late = put(client, tok, rec, "cand-av", 1, webm_chunks[1][0], T0 + 1000)
    assert late.status_code == 403 and late.json()["code"] == "recording_closed"
    ledger = client.get(f"/v1/recordings/{rec}/ledger", headers=auth(iv)).json()
    assert [c["seq"] for t in ledger["tracks"] for c in t["chunks"]] == [0]
