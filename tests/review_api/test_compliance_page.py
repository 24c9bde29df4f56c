"""The `/compliance` page in real headless Chromium against the real API (uvicorn).

A compliance user sees the org's policy, places and releases a legal hold, previews what is
due (counts per kind, held items) and sees the audit chain intact; axe-core finds no
accessibility violations; an interviewer is told they are not permitted. Screenshots go to
var/test-artifacts/.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from axe_playwright_python.sync_playwright import Axe

from core import db
from tests.review_api.test_pages_browser import browser, page  # noqa: F401  (fixtures)
from tests.workers.test_retention import add_interview, set_policy

ARTIFACTS = Path(os.environ.get("RECORDER_TEST_ARTIFACTS", "var/test-artifacts"))


@pytest.fixture
def site(live_api, settings, store):
    engine = db.make_engine(settings.database_url)
    add_interview(engine, store, None, "rec_a", candidate="cand-1")  # ended in 2023: all due under 30 days
    add_interview(engine, store, None, "rec_b", candidate="cand-2")
    set_policy(engine)
    yield live_api, engine
    engine.dispose()


def cells(pg, table: str, kind: str) -> list[str]:
    return pg.locator(f"#{table} tr[data-kind={kind}] > *").all_inner_texts()


@pytest.mark.browser
def test_a_compliance_user_holds_previews_and_releases(site, page, token_for) -> None:  # noqa: F811
    server, _ = site
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.goto(f"{server.url}/compliance?token={token_for(role='compliance', org='acme', sub='comp-1')}")
    page.wait_for_selector("#policy-table tr[data-kind=transcripts]")
    assert cells(page, "policy-table", "transcripts") == ["transcripts", "30 days after the interview ends"]
    assert "Not locked" in page.inner_text("#policy-state") and page.is_visible("#policy-form")
    page.wait_for_function("() => document.getElementById('verify').textContent === 'intact'")

    page.select_option("#hold-scope", "candidate")
    page.fill("#hold-target", "cand-1")
    page.fill("#hold-reason", "litigation 2026-17")
    page.locator("#hold-form button").press("Enter")
    page.wait_for_selector("#holds tr[data-state=active]")
    assert "1 recording(s) covered" in page.inner_text("#holds-msg")
    assert page.locator("#holds tr[data-state=active] td").nth(1).inner_text() == "cand-1"

    page.click("#preview-form button")
    page.wait_for_selector("#preview-kinds tr[data-kind=raw_chunks]")
    row = cells(page, "preview-kinds", "raw_chunks")
    assert row[0] == "raw_chunks" and row[1] == "1" and row[2] == "6" and row[5] == "1", row  # rec_b due, rec_a held
    assert "rec_a · raw_chunks · held by hold_" in page.inner_text("#preview-held")
    page.wait_for_selector("#runs tbody tr")
    assert "pending" in page.inner_text("#runs tbody tr")
    violations = Axe().run(page).response["violations"]
    assert violations == [], [(v["id"], v["help"], [n["target"] for n in v["nodes"]][:5]) for v in violations]
    page.screenshot(path=str(ARTIFACTS / "compliance.png"), full_page=True)

    page.click("#holds tr[data-state=active] button")
    page.wait_for_selector("#holds tr[data-state=released]")
    assert page.locator("#holds tr[data-state=active]").count() == 0
    assert "released" in page.inner_text("#holds-msg")
    page.wait_for_function("() => document.getElementById('verify').textContent === 'intact'")
    assert page.problems == []


@pytest.mark.browser
def test_an_interviewer_is_told_they_are_not_permitted(site, page, token_for) -> None:  # noqa: F811
    server, _ = site
    page.goto(f"{server.url}/compliance?token={token_for(role='interviewer', org='acme', sub='iv-1')}")
    page.wait_for_selector("#denied:not([hidden])")
    assert "Not permitted" in page.inner_text("#denied") and page.is_hidden("#page")
    violations = Axe().run(page).response["violations"]
    assert violations == [], [(v["id"], v["help"], [n["target"] for n in v["nodes"]][:5]) for v in violations]
    page.screenshot(path=str(ARTIFACTS / "compliance-denied.png"), full_page=True)
    assert [p for p in page.problems if "403" not in p] == []  # the policy read answers 403: expected


@pytest.mark.browser
def test_another_compliance_user_approves_and_the_receipt_downloads(live_api, settings, store, page,  # noqa: F811
                                                                     token_for, tmp_path) -> None:
    import json

    import redis as redis_lib

    from core.signing import Signer
    from workers.retention import Tools, run_manifest

    engine = db.make_engine(settings.database_url)
    add_interview(engine, store, None, "rec_a", candidate="cand-1")
    set_policy(engine, approval=True)
    page.goto(f"{live_api.url}/compliance?token={token_for(role='compliance', org='acme', sub='comp-1')}")
    page.click("#preview-form button")
    page.wait_for_selector("#runs tbody tr")
    assert "waits for another compliance user" in page.inner_text("#runs tbody tr")
    assert page.locator("#runs tbody tr button").count() == 0  # not its creator's to approve
    page.evaluate("localStorage.clear()")

    page.goto(f"{live_api.url}/compliance?token={token_for(role='compliance', org='acme', sub='comp-2')}")
    page.locator("#runs tbody tr button", has_text="Approve").click()
    page.wait_for_function("() => document.querySelector('#runs tbody tr').textContent.includes('approved by comp-2')")
    manifest = page.locator("#runs tbody tr").first.get_attribute("data-id")
    tools = Tools(engine, store, redis_lib.Redis.from_url(settings.redis_url), Signer.generate())
    assert run_manifest(tools, manifest).status == "done"
    tools.redis.close()
    page.reload()
    with page.expect_download() as info:
        page.locator("#runs tbody tr button", has_text="Download").click()
    saved = tmp_path / "receipt.json"
    info.value.save_as(saved)
    doc = json.loads(saved.read_text())
    assert doc["receipt"]["manifest_id"] == manifest and doc["signature"]
    assert "recorder receipt verify" in page.inner_text("#runs-msg")
    assert page.problems == []
    engine.dispose()
