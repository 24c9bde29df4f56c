"""GET /v1/recordings/{id}/transcript (+ versions, re-transcription, vocabulary) over HTTP."""
from __future__ import annotations

import json

import pytest
import redis

from core import keys
from core.db import session_scope
from core.models import Chunk, Recording, TranscriptVersion
from tests.review_api.conftest import add_recording

VTT = "WEBVTT\n\n1\n00:00:01.000 --> 00:00:02.000\n<v Bob>Hello.\n"


def add_version(app, rec: Recording, number: int, current: bool, status: str = "final",
                text: str = "Hello.", published: bool | None = None) -> None:
    """A version row; its exports are stored when final (or a live one that was published)."""
    store = app.state.store
    exports = {}
    if status == "final" if published is None else published:
        bodies = {"json": json.dumps({"version": number, "segments": [{"text": text}]}), "vtt": VTT,
                  "srt": "1\n00:00:01,000 --> 00:00:02,000\nBob: Hello.\n", "txt": "[00:00:01] Bob: Hello.\n"}
        for fmt, body in bodies.items():
            key = keys.output_key(rec.org, rec.id, f"transcripts/v{number:03d}/transcript.{fmt}")
            store.put_bytes(key, body.encode())
            exports[fmt] = key
    with session_scope(app.state.engine) as s:
        s.add(TranscriptVersion(recording_id=rec.id, version=number, model="tiny.en", status=status,
                                is_current=current, exports=exports or None, params={"beam_size": 5},
                                time_taken_ms=1234, audio_ms=5000, segment_count=1))


@pytest.fixture
def with_transcript(api):
    rec = add_recording(api.app.state.engine, "rec_t")
    add_version(api.app, rec, 1, current=False, text="old words")
    add_version(api.app, rec, 2, current=True, text="new words")
    add_recording(api.app.state.engine, "rec_x", org="globex")
    add_recording(api.app.state.engine, "rec_gone", status="deleted")
    return api


def test_every_format_of_the_current_version(with_transcript, bearer) -> None:
    api = with_transcript
    r = api.get("/v1/recordings/rec_t/transcript", headers=bearer())
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.json()["segments"][0]["text"] == "new words" and r.headers["x-transcript-version"] == "2"
    r = api.get("/v1/recordings/rec_t/transcript", params={"format": "vtt"}, headers=bearer())
    assert r.headers["content-type"].startswith("text/vtt") and r.text == VTT
    r = api.get("/v1/recordings/rec_t/transcript", params={"format": "srt"}, headers=bearer(role="interviewer"))
    assert r.headers["content-type"].startswith("application/x-subrip") and "00:00:01,000" in r.text
    r = api.get("/v1/recordings/rec_t/transcript", params={"format": "txt"}, headers=bearer(role="admin"))
    assert r.text == "[00:00:01] Bob: Hello.\n"


def test_an_older_version_stays_readable(with_transcript, bearer) -> None:
    r = with_transcript.get("/v1/recordings/rec_t/transcript", params={"version": 1}, headers=bearer())
    assert r.json()["segments"][0]["text"] == "old words"
    r = with_transcript.get("/v1/recordings/rec_t/transcript/versions", headers=bearer())
    assert [(v["version"], v["is_current"], v["model"]) for v in r.json()] == [(1, False, "tiny.en"),
                                                                               (2, True, "tiny.en")]
    assert r.json()[1]["time_taken_ms"] == 1234 and r.json()[1]["params"] == {"beam_size": 5}


def test_access_rules(with_transcript, bearer) -> None:
    api = with_transcript
    assert api.get("/v1/recordings/rec_t/transcript").status_code == 401
    r = api.get("/v1/recordings/rec_x/transcript", headers=bearer())
    assert r.status_code == 404 and r.json()["code"] == "unknown_recording"  # another org's: not even its existence
    assert api.get("/v1/recordings/rec_nope/transcript", headers=bearer()).status_code == 404
    assert api.get("/v1/recordings/rec_gone/transcript", headers=bearer()).status_code == 404
    assert api.get("/v1/recordings/rec_t/transcript", headers=bearer(role="candidate")).status_code == 403
    upload = bearer(role="recorder", scope="upload", recording_id="rec_t")
    assert api.get("/v1/recordings/rec_t/transcript", headers=upload).status_code == 403
    assert api.get("/v1/recordings/rec_t/transcript", params={"format": "docx"}, headers=bearer()).status_code == 400
    assert api.get("/v1/recordings/rec_t/transcript", params={"version": 7}, headers=bearer()).status_code == 404


def test_not_ready_until_the_first_words_are_published(api, bearer) -> None:
    rec = add_recording(api.app.state.engine, "rec_live", status="recording")
    add_version(api.app, rec, 1, current=False, status="live")
    r = api.get("/v1/recordings/rec_live/transcript", headers=bearer())
    assert r.status_code == 422 and r.json()["code"] == "transcript_not_ready"
    r = api.get("/v1/recordings/rec_live/transcript", params={"version": 1}, headers=bearer())
    assert r.status_code == 422


def test_a_running_interview_serves_its_live_transcript(api, bearer) -> None:
    rec = add_recording(api.app.state.engine, "rec_running", status="recording")
    add_version(api.app, rec, 1, current=False, status="live", text="so far", published=True)
    r = api.get("/v1/recordings/rec_running/transcript", headers=bearer())
    assert r.status_code == 200 and r.json()["segments"][0]["text"] == "so far"
    assert r.headers["x-transcript-status"] == "live" and r.headers["cache-control"] == "no-store"
    r = api.get("/v1/recordings/rec_running/transcript", params={"format": "vtt"}, headers=bearer())
    assert r.status_code == 200 and r.text == VTT
    add_version(api.app, rec, 2, current=False, status="running")  # a re-transcription is never served early
    r = api.get("/v1/recordings/rec_running/transcript", params={"version": 2}, headers=bearer())
    assert r.status_code == 422 and r.json()["code"] == "transcript_not_ready"


def test_retranscribe_queues_a_message(with_transcript, bearer, any_db_settings) -> None:
    api = with_transcript
    body = {"model": "base.en", "beam_size": 3, "start_ms": 1000, "end_ms": 5000}
    # no raw media kept (e.g. deleted by the retention policy): nothing to re-transcribe
    gone = api.post("/v1/recordings/rec_t/transcript/versions", json=body, headers=bearer(role="interviewer"))
    assert gone.status_code == 422 and gone.json()["code"] == "raw_media_deleted"
    with session_scope(api.app.state.engine) as s:
        s.add(Chunk(recording_id="rec_t", track_id="cam-a", seq=0, status="stored", sha256="0" * 64,
                    object_key="acme/recordings/rec_t/chunks/cam-a/000000.webm"))
    assert api.post("/v1/recordings/rec_t/transcript/versions", json=body,
                    headers=bearer(role="assessor")).status_code == 403
    r = api.post("/v1/recordings/rec_t/transcript/versions", json=body, headers=bearer(role="interviewer"))
    assert r.status_code == 202 and r.json()["status"] == "queued"
    client = redis.Redis.from_url(any_db_settings.redis_url)
    queued = client.hvals("dramatiq:transcribe.msgs")
    client.close()
    (message,) = [json.loads(m) for m in queued]
    assert message["actor_name"] == "retranscribe_recording" and message["args"] == ["rec_t"]
    assert message["kwargs"] == body
    bad = api.post("/v1/recordings/rec_t/transcript/versions", json={"start_ms": 5, "end_ms": 1},
                   headers=bearer(role="admin"))
    assert bad.status_code == 400


def test_org_vocabulary(api, bearer) -> None:
    assert api.get("/v1/vocabulary", headers=bearer()).json() == {"terms": []}
    r = api.put("/v1/vocabulary", json={"terms": ["Kubernetes", " PostgreSQL ", "Kubernetes", ""]},
                headers=bearer(role="admin"))
    assert r.status_code == 200 and r.json() == {"terms": ["Kubernetes", "PostgreSQL"]}
    assert api.get("/v1/vocabulary", headers=bearer()).json()["terms"] == ["Kubernetes", "PostgreSQL"]
    assert api.get("/v1/vocabulary", headers=bearer(org="globex")).json()["terms"] == []
    assert api.put("/v1/vocabulary", json={"terms": ["x"]}, headers=bearer(role="assessor")).status_code == 403
    assert api.put("/v1/vocabulary", json={"terms": ["y" * 65]}, headers=bearer(role="admin")).status_code == 400
