"""Per-recording access: lists and search filter in SQL, grants open and close, org switches.

Three recordings of org acme: A (interviewer iv-1 took part), B (granted to group
"panel"), C (nobody's but the admin's), plus one of org globex that says the same words.
"""
from __future__ import annotations

from typing import Any, Callable

import pytest
from fastapi.testclient import TestClient

from core.auth import mint_token
from core.db import session_scope
from core.models import RecordingGrant, Track
from core.settings import Settings
from tests.review_api.conftest import add_recording, index_lines

WORDS = "we migrated the billing service to kubernetes"


@pytest.fixture
def world(api: TestClient) -> dict[str, str]:
    engine = api.app.state.engine  # type: ignore[attr-defined]
    recs = {"A": "rec_acc_a", "B": "rec_acc_b", "C": "rec_acc_c", "X": "rec_acc_x"}
    for i, (name, rid) in enumerate(recs.items()):
        rec = add_recording(engine, rid, org="globex" if name == "X" else "acme",
                            started_at=1_700_000_000_000 + i * 1000, title=f"Interview {name}", grant_to=None)
        index_lines(engine, rec, [("Sam", "candidate", 1000, WORDS)])
    with session_scope(engine) as s:
        s.add(Track(recording_id=recs["A"], track_id="cam-iv", participant_id="iv-1", role="interviewer",
                    display_name="Ivy"))
        s.add(RecordingGrant(recording_id=recs["B"], org="acme", kind="group", subject="panel"))
    return recs


def caller(settings: Settings) -> Callable[..., dict[str, str]]:
    def _h(role: str, sub: str, org: str = "acme", **extra: Any) -> dict[str, str]:
        tok = mint_token(settings.jwt_secret, sub=sub, org=org, role=role, ttl_s=600, issuer=settings.jwt_issuer,
                         **extra)
        return {"Authorization": f"Bearer {tok}"}
    return _h


def seen(api: TestClient, headers: dict[str, str]) -> tuple[set[str], set[str]]:
    listed = api.get("/v1/recordings", headers=headers)
    assert listed.status_code == 200, listed.text
    hits = api.get("/v1/search", params={"q": "kubernetes"}, headers=headers)
    assert hits.status_code == 200, hits.text
    return {r["id"] for r in listed.json()["items"]}, {h["recording_id"] for h in hits.json()["hits"]}


def test_lists_and_search_show_exactly_what_each_caller_may_open(api: TestClient, any_db_settings: Settings,
                                                                 world: dict[str, str]) -> None:
    h = caller(any_db_settings)
    a, b, c = world["A"], world["B"], world["C"]
    expect = {
        "admin": (h("admin", "boss"), {a, b, c}),
        "participant interviewer": (h("interviewer", "iv-1"), {a}),
        "other interviewer": (h("interviewer", "iv-2"), set()),
        "assessor in the panel group": (h("assessor", "as-1", groups=["panel"]), {b}),
        "assessor outside it": (h("assessor", "as-2", groups=["hr"]), set()),
        "globex admin": (h("admin", "boss", org="globex"), {world["X"]}),
    }
    for name, (headers, want) in expect.items():
        listed, found = seen(api, headers)
        assert listed == want, name
        assert found == want, name
        for rid in (a, b, c):  # the detail route agrees with the list
            status = api.get(f"/v1/recordings/{rid}/transcript/versions", headers=headers).status_code
            assert (status == 200) == (rid in want), (name, rid, status)


def test_org_switches_open_the_org_to_assessors_and_compliance(api: TestClient, any_db_settings: Settings,
                                                               world: dict[str, str]) -> None:
    h = caller(any_db_settings)
    compliance = h("compliance", "co-1")
    assert api.get("/v1/search", params={"q": "kubernetes"}, headers=compliance).status_code == 403
    meta = api.get("/v1/recordings", headers=compliance)
    assert {r["id"] for r in meta.json()["items"]} == {world["A"], world["B"], world["C"]}  # metadata: whole org
    assert api.get(f"/v1/recordings/{world['A']}/transcript/versions", headers=compliance).status_code == 403
    put = api.put("/v1/org/settings", json={"assessors_see_all": True, "compliance_reads_content": True},
                  headers=h("admin", "boss"))
    assert put.status_code == 200, put.text
    everyone = {world["A"], world["B"], world["C"]}
    assert seen(api, h("assessor", "as-2")) == (everyone, everyone)
    assert seen(api, compliance)[1] == everyone
    assert api.get(f"/v1/recordings/{world['A']}/transcript/versions", headers=compliance).status_code == 200
    # another org's switches change nothing for acme's data
    assert seen(api, h("assessor", "as-2", org="globex")) == (set(), set())


def test_a_grant_opens_a_recording_and_its_withdrawal_closes_it_again(api: TestClient, any_db_settings: Settings,
                                                                      world: dict[str, str]) -> None:
    h = caller(any_db_settings)
    owner, assessor, other_iv = h("interviewer", "iv-1"), h("assessor", "as-9"), h("interviewer", "iv-2")
    a = world["A"]
    assert api.get(f"/v1/recordings/{a}", headers=assessor).status_code == 404
    # only someone who took part (or an admin) shares; a stranger cannot even see it
    assert api.post(f"/v1/recordings/{a}/access", json={"kind": "user", "subject": "as-9"},
                    headers=other_iv).status_code == 404
    made = api.post(f"/v1/recordings/{a}/access", json={"kind": "user", "subject": "as-9"}, headers=owner)
    assert made.status_code == 201, made.text
    again = api.post(f"/v1/recordings/{a}/access", json={"kind": "user", "subject": "as-9"}, headers=owner)
    assert again.status_code == 200
    assert [g["subject"] for g in api.get(f"/v1/recordings/{a}/access", headers=owner).json()] == ["as-9"]
    assert seen(api, assessor) == ({a}, {a})
    # the granted assessor may read but not pass it on
    assert api.post(f"/v1/recordings/{a}/access", json={"kind": "user", "subject": "as-10"},
                    headers=assessor).status_code == 403
    gone = api.delete(f"/v1/recordings/{a}/access", params={"kind": "user", "subject": "as-9"}, headers=owner)
    assert gone.status_code == 204
    assert seen(api, assessor) == (set(), set())
    assert api.get(f"/v1/recordings/{a}", headers=assessor).status_code == 404
    assert api.delete(f"/v1/recordings/{a}/access", params={"kind": "user", "subject": "as-9"},
                      headers=owner).status_code == 404


def test_list_filters_and_cursor_pages(api: TestClient, any_db_settings: Settings, world: dict[str, str]) -> None:
    admin = caller(any_db_settings)("admin", "boss")
    pages, cursor = [], None
    for _ in range(5):
        resp = api.get("/v1/recordings", params={"limit": 1, **({"cursor": cursor} if cursor else {})},
                       headers=admin)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        pages += [r["id"] for r in body["items"]]
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert len(pages) == 3 and set(pages) == {world["A"], world["B"], world["C"]}
    by_role = api.get("/v1/recordings", params={"role": "interviewer"}, headers=admin).json()["items"]
    assert [r["id"] for r in by_role] == [world["A"]]
    assert by_role[0]["participants"] == [{"participant_id": "iv-1", "display_name": "Ivy", "role": "interviewer"}]
    by_text = api.get("/v1/recordings", params={"q": "ivy"}, headers=admin).json()["items"]
    assert [r["id"] for r in by_text] == [world["A"]]
    mine = api.get("/v1/recordings", params={"mine": "true"},
                   headers=caller(any_db_settings)("interviewer", "iv-1")).json()["items"]
    assert [(r["id"], r["mine"]) for r in mine] == [(world["A"], True)]
    for bad in ({"cursor": "not-a-cursor"}, {"cursor": "_-8"}, {"status": "nope"}, {"from": "yesterday"},
                {"limit": "١٠"}):
        resp = api.get("/v1/recordings", params=bad, headers=admin)
        assert resp.status_code == 400, (bad, resp.text)
        assert resp.json()["code"]
