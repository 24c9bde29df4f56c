"""The retention API on the real app (SQLite and Postgres, real S3 + Redis): policy and its
lock, per-recording dates, holds, preview → approval → run (the worker's part run here,
in-process), erasure with holds, receipts that verify."""
from __future__ import annotations

from typing import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from core import keys
from core.auth import mint_token
from core.db import session_scope
from core.models import AuditEvent
from core.retention import DAY_MS, check_receipt
from core.settings import Settings
from core.signing import Signer
from recorder.app import create_app
from tests.workers.test_retention import END, WORD, add_interview, finds

ISO = "2023-12-15T00:00:00Z"  # just over 30 days after END (2023-11-14T22:13:20Z)


@pytest.fixture
def app(any_db_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(any_db_settings)) as c:
        yield c


def who(settings: Settings, role: str = "compliance", sub: str = "comp-1", org: str = "acme") -> dict[str, str]:
    token = mint_token(settings.jwt_secret, sub=sub, org=org, role=role, ttl_s=600, issuer=settings.jwt_issuer)
    return {"Authorization": f"Bearer {token}"}


def worker_run(app: TestClient, settings: Settings, manifest_id: str, now: int):
    """What `apply_retention` does in a worker, here in-process with the app's resources."""
    from workers.retention import Tools, run_manifest

    state = app.app.state  # type: ignore[attr-defined]
    return run_manifest(Tools(state.engine, state.store, state.redis, Signer.from_settings(settings)),
                        manifest_id, now=now)


def actions(app: TestClient) -> list[str]:
    with session_scope(app.app.state.engine) as s:  # type: ignore[attr-defined]
        return [e.action for e in s.exec(select(AuditEvent).order_by(AuditEvent.seq)).all()]


def test_policy_is_replaced_and_a_locked_one_only_keeps_longer(app: TestClient, any_db_settings: Settings) -> None:
    comp = who(any_db_settings)
    got = app.get("/v1/retention/policy", headers=comp).json()
    assert (got["rules"], got["locked"], got["run_mode"]) == ({}, False, "automatic")
    assert "quality" in got["kinds"]
    body = {"rules": {"raw_chunks": [{"days": 30}], "transcripts": [{"days": 365}, {"days": 180, "after": "rejected"}]},
            "locked": True}
    r = app.put("/v1/retention/policy", json=body, headers=comp)
    assert r.status_code == 200 and r.json()["locked"] and r.json()["locked_by"] == "comp-1"
    shorter = {**body, "rules": {**body["rules"], "raw_chunks": [{"days": 7}]}}
    r = app.put("/v1/retention/policy", json=shorter, headers=comp)
    assert r.status_code == 409 and r.json()["code"] == "policy_locked"
    assert r.json()["details"]["problems"] == ["raw_chunks: 7 days after end is shorter than the locked 30"]
    r = app.put("/v1/retention/policy", json={**body, "locked": False}, headers=comp)
    assert r.status_code == 409 and "cannot be unlocked" in r.json()["details"]["problems"][0]
    new_rule = {**body, "rules": {**body["rules"], "quarantine": [{"days": 3650}]}}
    assert app.put("/v1/retention/policy", json=new_rule, headers=comp).status_code == 409
    longer = {**body, "rules": {"raw_chunks": [{"days": 60}], "transcripts": [{"days": 400}]}, "run_mode": "approval"}
    r = app.put("/v1/retention/policy", json=longer, headers=comp)
    assert r.status_code == 200 and r.json()["rules"]["raw_chunks"] == [{"days": 60, "after": "end"}]
    assert r.json()["run_mode"] == "approval"
    bad = app.put("/v1/retention/policy", json={"rules": {"videos": [{"days": 1}]}}, headers=comp)
    assert bad.status_code == 400 and bad.json()["code"] == "bad_policy"
    assert app.put("/v1/retention/policy", json=body, headers=who(any_db_settings, "interviewer")).status_code == 403
    assert actions(app).count("policy.change") == 2


def test_each_recording_shows_its_dates_and_holds(app: TestClient, any_db_settings: Settings) -> None:
    state = app.app.state  # type: ignore[attr-defined]
    add_interview(state.engine, state.store, None, "rec_a", candidate="cand-1")
    comp = who(any_db_settings)
    app.put("/v1/retention/policy", json={"rules": {"raw_chunks": [{"days": 30}],
                                                    "transcripts": [{"days": 180, "after": "rejected"}]}}, headers=comp)
    got = app.get("/v1/recordings/rec_a/retention", headers=comp).json()
    assert got["kinds"]["raw_chunks"] == {"due_at": END + 30 * DAY_MS, "held_by": []}
    assert got["kinds"]["transcripts"]["due_at"] is None and got["kinds"]["record"]["due_at"] is None
    r = app.post("/v1/candidates/cand-1/events", json={"type": "rejected", "at": str(END + 10 * DAY_MS)}, headers=comp)
    assert r.status_code == 201
    assert app.get("/v1/recordings/rec_a/retention", headers=comp).json()["kinds"]["transcripts"]["due_at"] == \
        END + 190 * DAY_MS
    r = app.put("/v1/recordings/rec_a/matters", json={"matters": ["M-1", "Acme-v-Doe"]}, headers=comp)
    assert r.json()["matters"] == ["Acme-v-Doe", "M-1"]
    hold = app.post("/v1/legal-holds", json={"scope": "matter", "target": "Acme-v-Doe", "reason": "lawsuit"},
                    headers=comp)
    assert hold.status_code == 201 and hold.json()["recordings"] == ["rec_a"] and hold.json()["in_deletion"] == []
    got = app.get("/v1/recordings/rec_a/retention", headers=comp).json()
    assert got["held_by"] == [hold.json()["id"]] and got["kinds"]["quality"]["held_by"] == [hold.json()["id"]]
    listed = app.get("/v1/legal-holds", headers=comp).json()
    assert listed["storage_enforced"] is False  # SeaweedFS bucket made without object lock
    assert [h["id"] for h in listed["holds"]] == [hold.json()["id"]]
    r = app.post(f"/v1/legal-holds/{hold.json()['id']}/release", json={"reason": "settled"}, headers=comp)
    assert r.status_code == 200 and r.json()["released_by"] == "comp-1"
    assert app.get("/v1/legal-holds?active=true", headers=comp).json()["holds"] == []
    assert app.post("/v1/legal-holds/hold_nope/release", json={}, headers=comp).status_code == 404
    assert app.get("/v1/recordings/rec_a/retention", headers=who(any_db_settings, "assessor")).status_code == 403
    assert app.get("/v1/recordings/rec_a/retention", headers=who(any_db_settings, org="globex")).status_code == 404
    assert {"hold.create", "hold.release"} <= set(actions(app))


def test_preview_then_approval_by_another_user_then_run(app: TestClient, any_db_settings: Settings) -> None:
    state = app.app.state  # type: ignore[attr-defined]
    for rec in ("rec_a", "rec_b"):
        add_interview(state.engine, state.store, None, rec, candidate=f"cand-{rec}")
    comp1, comp2 = who(any_db_settings), who(any_db_settings, sub="comp-2")
    rules = {k: [{"days": 30}] for k in ("raw_chunks", "quarantine", "media_outputs", "transcripts", "quality")}
    app.put("/v1/retention/policy", json={"rules": rules, "run_mode": "approval"}, headers=comp1)
    hold = app.post("/v1/legal-holds", json={"scope": "recording", "target": "rec_b", "reason": "audit"},
                    headers=comp1).json()
    m = app.get(f"/v1/retention/preview?at={ISO}", headers=comp1).json()
    assert m["needs_approval"] and m["status"] == "pending" and m["created_by"] == "comp-1"
    assert m["summary"]["due"]["raw_chunks"] == {"items": 1, "objects": 6, "bytes": 6 * 1280, "rows": 6}
    held = [i for i in m["items"] if i["status"] == "held"]
    assert {i["recording_id"] for i in held} == {"rec_b"} and all(i["held_by"] == [hold["id"]] for i in held)
    r = app.post(f"/v1/retention/manifests/{m['id']}/run", headers=comp1)
    assert r.status_code == 409 and r.json()["code"] == "not_approved"
    r = app.post(f"/v1/retention/manifests/{m['id']}/approve", headers=comp1)
    assert r.status_code == 403 and r.json()["code"] == "own_manifest"
    assert app.post(f"/v1/retention/manifests/{m['id']}/approve", headers=comp2).json()["approved_by"] == "comp-2"
    r = app.post(f"/v1/retention/manifests/{m['id']}/run", headers=comp2)
    assert r.status_code == 202 and r.json()["queued"]
    done = worker_run(app, any_db_settings, m["id"], END + 31 * DAY_MS)
    assert state.store.list_versions(keys.recording_prefix("acme", "rec_a")) == []
    assert finds(state.engine, WORD["rec_a"]) == [] and finds(state.engine, WORD["rec_b"]) == ["rec_b"]
    got = app.get(f"/v1/retention/manifests/{m['id']}", headers=comp1).json()
    assert got["status"] == "done" and got["receipt_id"] == done.receipt_id
    for kind, counts in m["summary"]["due"].items():  # preview count = executed count
        run = got["summary"]["run"]["deleted"][kind]
        assert (run["objects"], run["bytes"]) == (counts["objects"], counts["bytes"]), kind
    assert app.post(f"/v1/retention/manifests/{m['id']}/run", headers=comp2).status_code == 200  # done: as it is
    receipt = app.get(f"/v1/receipts/{done.receipt_id}", headers=comp1)
    assert receipt.status_code == 200 and "attachment" in receipt.headers["content-disposition"]
    pem = Signer.from_settings(any_db_settings).public_key_pem()
    assert check_receipt(receipt.json(), pem) == (True, f"valid, signed by key {receipt.json()['receipt']['key_id']}")
    assert receipt.json()["receipt"]["tombstones"] == ["rec_a"]
    assert app.get(f"/v1/receipts/{done.receipt_id}", headers=who(any_db_settings, org="globex")).status_code == 404
    listed = app.get("/v1/retention/manifests?status=done", headers=comp1).json()["items"]
    assert [x["id"] for x in listed] == [m["id"]]
    assert {"retention.preview", "retention.run", "recording.delete"} <= set(actions(app))


def test_an_erasure_under_hold_is_deferred_then_done_with_a_receipt(app: TestClient,
                                                                    any_db_settings: Settings) -> None:
    state = app.app.state  # type: ignore[attr-defined]
    add_interview(state.engine, state.store, None, "rec_a", candidate="cand-9")
    add_interview(state.engine, state.store, None, "rec_b", candidate="cand-8")
    comp = who(any_db_settings)
    hold = app.post("/v1/legal-holds", json={"scope": "candidate", "target": "cand-9", "reason": "claim"},
                    headers=comp).json()
    r = app.post("/v1/erasure-requests", json={"candidate_id": "cand-9"}, headers=comp)
    assert r.status_code == 409 and r.json()["code"] == "erasure_held"
    assert r.json()["details"]["holds"] == [hold["id"]]
    deferred = app.get(f"/v1/erasure-requests/{r.json()['details']['erasure_request_id']}", headers=comp).json()
    assert deferred["status"] == "deferred" and "candidate_id" not in deferred
    app.post(f"/v1/legal-holds/{hold['id']}/release", json={"reason": "claim withdrawn"}, headers=comp)
    r = app.post("/v1/erasure-requests", json={"candidate_id": "cand-9"}, headers=comp)
    assert r.status_code == 202 and r.json()["status"] == "running" and r.json()["recordings"] == ["rec_a"]
    worker_run(app, any_db_settings, r.json()["manifest_id"], END)
    e = app.get(f"/v1/erasure-requests/{r.json()['id']}", headers=comp).json()
    assert e["status"] == "complete" and e["receipt_id"]
    doc = app.get(f"/v1/receipts/{e['receipt_id']}", headers=comp).json()
    assert doc["receipt"]["subject"] == {"candidate_hash": e["candidate_hash"]} and "cand-9" not in str(doc)
    assert check_receipt(doc, Signer.from_settings(any_db_settings).public_key_pem())[0]
    assert finds(state.engine, WORD["rec_a"]) == [] and finds(state.engine, WORD["rec_b"]) == ["rec_b"]
    with session_scope(state.engine) as s:
        details = [ev.detail for ev in s.exec(select(AuditEvent)).all() if ev.action.startswith("erasure")]
    assert details and all("cand-9" not in str(d) for d in details)
    assert app.post("/v1/erasure-requests", json={"candidate_id": "../x"}, headers=comp).status_code == 400
    assert app.post("/v1/erasure-requests", json={"candidate_id": "cand-8"},
                    headers=who(any_db_settings, "interviewer")).status_code == 403
