"""Quality samples and gap causes: the pure per-second timeline and gap labelling, then the
routes on the real app (SQLite and Postgres): POST (idempotent, who may post for whom),
GET (per-second rows, the ledger's gaps with their cause, the summary)."""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from ingest.ledger import CauseSpan, Gap, label_gaps
from ingest.quality import Window, per_second, seconds_of, summarize
from recorder.app import create_app
from tests.conftest import auth
from tests.ingest.conftest import T0, create_recording, put

# ---------------------------------------------------------------- pure: per-second timeline

def _w(track: str, start_ms: int, **kw) -> Window:
    base = {"track_id": track, "source": "bot", "start_ms": start_ms, "window_ms": 5000, "packets": 250, "lost": 0}
    return Window(**{**base, **kw})


def test_seconds_of_takes_the_seconds_whose_middle_is_covered() -> None:
    assert list(seconds_of(0, 5000)) == [0, 1, 2, 3, 4]
    assert list(seconds_of(4600, 7400)) == [5, 6]      # 4.5 and 7.5 are not inside
    assert list(seconds_of(1000, 1000)) == []


def test_per_second_combines_a_participants_tracks() -> None:
    audio = _w("a", 0, packets=250, jitter_ms=3.0, rtt_ms=20.0, bitrate_kbps=32.0)
    video = _w("v", 0, packets=150, lost=10, jitter_ms=8.0, rtt_ms=21.0, bitrate_kbps=500.0, fps=30.0,
               width=640, height=360)
    rows = per_second([audio, video], [])
    assert [r["t"] for r in rows] == [0, 1, 2, 3, 4]
    r = rows[0]
    assert (r["packets"], r["lost"]) == (80.0, 2.0)                 # per second: 50 + 30 received, 2 lost
    assert r["loss_pct"] == pytest.approx(2.4) and r["state"] == "ok"
    assert (r["jitter_ms"], r["rtt_ms"], r["bitrate_kbps"], r["fps"]) == (8.0, 21.0, 532.0, 30.0)
    assert (r["width"], r["height"], r["frozen"], r["missing"]) == (640, 360, False, None)


def test_states_red_for_frozen_or_missing_amber_for_loss_or_rtt() -> None:
    rows = {r["t"]: r for r in per_second([
        _w("v", 0, packets=80, lost=20),                        # 20 % loss
        _w("v", 5000, packets=250, rtt_ms=450.0),               # slow round trip
        _w("v", 10_000, packets=0, frozen=True),                # nothing moved
        _w("v", 15_000, packets=250, lost=12, rtt_ms=390.0),    # 4.6 %, 390 ms: fine
    ], [(20_000, 23_000, "network")])}
    assert [rows[t]["state"] for t in (0, 5, 10, 15, 20)] == ["amber", "amber", "red", "ok", "red"]
    assert rows[20]["missing"] == "network" and rows[20]["packets"] == 0 and rows[20]["loss_pct"] is None
    assert max(rows) == 22


def test_one_window_per_track_and_second_the_bots_first() -> None:
    bot = _w("v", 0, rtt_ms=30.0)
    client = _w("v", 1000, source="client", rtt_ms=900.0)
    rows = {r["t"]: r for r in per_second([client, bot], [])}
    assert rows[1]["rtt_ms"] == 30.0 and rows[1]["packets"] == 50.0   # not 100: the same track once
    assert rows[5]["rtt_ms"] == 900.0                                  # only the client saw second 5


def test_summary_counts_seconds_and_finds_the_worst() -> None:
    a = per_second([_w("v", 0, packets=90, lost=10), _w("v", 5000, frozen=True, packets=0)], [])
    b = per_second([_w("w", 0, packets=50, lost=50)], [(2000, 4000, "participant_left")])
    s = summarize({"a": a, "b": b})
    assert s["frozen_seconds"] == 5 and s["missing_seconds"] == 2
    assert s["participants"] == {"a": {"frozen_seconds": 5, "missing_seconds": 0},
                                 "b": {"frozen_seconds": 0, "missing_seconds": 2}}
    worst = s["worst_second"]
    assert worst["participant_id"] == "b" and worst["state"] == "red" and worst["loss_pct"] == 50.0
    assert summarize({"a": per_second([_w("v", 0)], [])})["worst_second"] is None


# ---------------------------------------------------------------- pure: ledger gap causes

def test_label_gaps_takes_the_cause_that_overlaps_most() -> None:
    gaps = [Gap(1000, 4000, "timeline_hole"), Gap(9000, 9000, "missing_seq", (3,)),
            Gap(20_000, 21_000, "rejected_chunk", (5,)), Gap(30_000, 31_000, "timeline_hole")]
    causes = [CauseSpan(500, 1500, "participant_left"), CauseSpan(1500, 4200, "network"),
              CauseSpan(8000, 10_000, "bot_restart"), CauseSpan(19_000, 22_000, "network")]
    out = label_gaps(gaps, causes)
    assert [(g.cause, g.detected) for g in out] == [("network", "timeline_hole"), ("bot_restart", "missing_seq"),
                                                    ("rejected_chunk", ""), ("timeline_hole", "")]
    assert out[0].to_dict()["detected"] == "timeline_hole" and out[3].to_dict()["detected"] == "timeline_hole"
    assert out[1].seqs == (3,) and (out[0].start_ms, out[0].end_ms) == (1000, 4000)


# ---------------------------------------------------------------- the routes

@pytest.fixture
def any_client(any_db_settings):
    with TestClient(create_app(any_db_settings)) as c:
        yield c


def _sample(t_ms: int, **kw) -> dict:
    return {"participant_id": "p-cam-a", "track_id": "cam-a", "at_ms": T0 + t_ms, "window_ms": 1000,
            "packets": 50, "lost": 0, "jitter_ms": 4.5, "rtt_ms": 12.0, "bitrate_kbps": 300.0, "fps": 30.0,
            "width": 160, "height": 90, **kw}


def test_quality_route_stores_samples_and_gaps_and_answers_per_second(any_client, token_for, webm_chunks):
    c, tok = any_client, token_for(role="service")
    rec = create_recording(c, tok, key="q1")
    for seq, start in ((0, 0), (1, 1000), (2, 5000)):       # a 3-s hole after 2 s
        assert put(c, tok, rec, "cam-a", seq, webm_chunks[seq][0], T0 + start).status_code == 201
    samples = [_sample(t * 1000, **({"packets": 0, "bitrate_kbps": 0.0, "fps": 0.0, "rtt_ms": None,
                                     "frozen": True} if 2 <= t < 5 else {})) for t in range(6)]
    gap = {"participant_id": "p-cam-a", "cause": "network", "start_ms": T0 + 1900, "end_ms": T0 + 4800}
    r = c.post(f"/v1/recordings/{rec}/quality", json={"samples": samples, "gaps": [gap]}, headers=auth(tok))
    assert r.status_code == 200 and r.json() == {"samples": 6, "duplicates": 0, "gaps": 1}, r.text
    longer = {**gap, "end_ms": T0 + 5000}                     # a retry, and the gap seen to last longer
    r = c.post(f"/v1/recordings/{rec}/quality", json={"samples": samples[:2], "gaps": [longer]}, headers=auth(tok))
    assert r.json() == {"samples": 0, "duplicates": 2, "gaps": 1}

    track = c.get(f"/v1/recordings/{rec}/ledger", headers=auth(tok)).json()["tracks"][0]
    assert [(g["cause"], g["detected"]) for g in track["gaps"]] == [("network", "timeline_hole")]
    assert track["gaps"][0]["seconds"] == pytest.approx(3.0, abs=0.1)

    q = c.get(f"/v1/recordings/{rec}/quality", headers=auth(token_for(role="interviewer", sub="p-cam-a"))).json()
    (who,) = q["participants"]
    assert who["participant_id"] == "p-cam-a" and who["display_name"] == "cam-a" and who["role"] == "candidate"
    rows = {r["t"]: r for r in who["seconds"]}
    assert sorted(rows) == [0, 1, 2, 3, 4, 5]
    assert [rows[t]["state"] for t in range(6)] == ["ok", "ok", "red", "red", "red", "ok"]
    assert all(rows[t]["frozen"] and rows[t]["missing"] == "network" for t in (2, 3, 4))
    assert rows[0]["rtt_ms"] == 12.0 and rows[0]["fps"] == 30.0 and (rows[0]["width"], rows[0]["height"]) == (160, 90)
    assert [(g["track_id"], g["cause"]) for g in q["gaps"]] == [("cam-a", "network")]
    assert q["summary"]["frozen_seconds"] == 3 and q["summary"]["missing_seconds"] == 3
    assert q["summary"]["worst_second"]["t"] in (2, 3, 4) and q["duration_ms"] >= 6000
    assert q["thresholds"] == {"loss_pct": 5.0, "rtt_ms": 400.0}
    only_client = c.get(f"/v1/recordings/{rec}/quality?source=client", headers=auth(tok)).json()
    assert [r["t"] for r in only_client["participants"][0]["seconds"]] == [2, 3, 4]  # the gap, no samples


def test_upload_tokens_post_for_their_own_participant_while_recording(any_client, token_for):
    c, tok = any_client, token_for(role="service")
    rec = create_recording(c, tok, key="q2")
    mine = c.post(f"/v1/recordings/{rec}/upload-token", json={"participant_id": "p-cam-a"},
                  headers=auth(tok)).json()["token"]
    r = c.post(f"/v1/recordings/{rec}/quality", json={"source": "bot", "samples": [_sample(0)]}, headers=auth(mine))
    assert r.status_code == 200 and r.json()["samples"] == 1
    other = {"samples": [{**_sample(1000), "participant_id": "p-other"}]}
    r = c.post(f"/v1/recordings/{rec}/quality", json=other, headers=auth(mine))
    assert r.status_code == 403 and r.json()["code"] == "wrong_participant"
    q = c.get(f"/v1/recordings/{rec}/quality?source=client", headers=auth(tok)).json()
    assert len(q["participants"][0]["seconds"]) == 1  # stored as the client's own view, whatever it claimed
    assert c.post(f"/v1/recordings/{rec}/finalize", headers=auth(tok)).status_code == 202
    r = c.post(f"/v1/recordings/{rec}/quality", json={"samples": [_sample(2000)]}, headers=auth(mine))
    assert r.status_code == 403 and r.json()["code"] == "recording_closed"


@pytest.mark.parametrize("body", [
    {"gaps": [{"participant_id": "p", "cause": "network", "start_ms": T0 + 5000, "end_ms": T0}]},
    {"gaps": [{"participant_id": "p", "cause": "lunch", "start_ms": T0, "end_ms": T0 + 1}]},
    {"samples": [_sample(0, packets=-1)]},
    {"samples": [_sample(0, at_ms=2**62)]},
    {"samples": [_sample(0, extra=1)]},
    {"samples": [_sample(i * 1000) for i in range(501)]},
], ids=["end-before-start", "unknown-cause", "negative", "far-future", "unknown-field", "too-many"])
def test_bad_quality_bodies_are_400(client, token_for, body):
    tok = token_for(role="service")
    rec = create_recording(client, tok, key="q3")
    r = client.post(f"/v1/recordings/{rec}/quality", json=body, headers=auth(tok))
    assert r.status_code == 400 and r.json()["code"] == "bad_request", r.text


def test_nan_is_refused(client, token_for):
    tok = token_for(role="service")
    rec = create_recording(client, tok, key="q4")
    raw = f'{{"samples": [{{"participant_id": "p", "track_id": "t", "at_ms": {T0}, "jitter_ms": NaN}}]}}'
    r = client.post(f"/v1/recordings/{rec}/quality", content=raw,
                    headers={**auth(tok), "Content-Type": "application/json"})
    assert r.status_code == 400, r.text


def test_before_the_first_chunk_the_first_sample_is_time_zero(client, token_for):
    tok = token_for(role="service")
    rec = create_recording(client, tok, key="q5")
    body = {"samples": [_sample(10_000 + t * 1000, participant_id="cand:1") for t in range(3)]}
    assert client.post(f"/v1/recordings/{rec}/quality", json=body, headers=auth(tok)).status_code == 200
    q = client.get(f"/v1/recordings/{rec}/quality", headers=auth(tok)).json()
    assert q["started_at_ms"] is None and q["duration_ms"] == 3000
    assert [r["t"] for r in q["participants"][0]["seconds"]] == [0, 1, 2]
