"""The `/recordings` landing page in real headless Chromium against the real API (uvicorn).

What each signed-in role sees (interviewer, admin, another org's admin), filters, "more"
pagination, a processing interview turning ready without a reload, and axe-core finding
no accessibility violations. Screenshots go to var/test-artifacts/.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from axe_playwright_python.sync_playwright import Axe

from core import db
from core.db import session_scope
from core.models import ProcessingStep, Recording, Track
from tests.review_api.test_pages_browser import WAIT_MS, browser, page  # noqa: F401  (fixtures)

ARTIFACTS = Path(os.environ.get("RECORDER_TEST_ARTIFACTS", "var/test-artifacts"))
T0 = 1_767_225_600_000  # 2026-01-01


def add(engine, rec_id: str, *, org: str = "acme", status: str = "ready", creator: str = "someone",
        participant: str | None = None, title: str = "", at: int = T0) -> None:
    with session_scope(engine) as s:
        s.add(Recording(id=rec_id, org=org, client_key=rec_id, status=status, title=title or rec_id, created_by=creator,
                        created_at=at, started_at_ms=at, outputs={"duration_ms": 754_000} if status == "ready" else None,
                        error="media.final: the composite could not be made" if status == "failed" else None))
        s.flush()
        if participant:
            s.add(Track(recording_id=rec_id, track_id=f"{participant}-av", participant_id=participant,
                        display_name=participant.title(), role="interviewer"))


@pytest.fixture
def site(live_api, settings):
    engine = db.make_engine(settings.database_url)
    add(engine, "rec_mine", creator="iv-1", participant="iv-1", title="Backend engineer — round 1", at=T0 + 3000)
    add(engine, "rec_other", title="Designer — final", at=T0 + 2000)
    add(engine, "rec_failed", status="failed", creator="iv-1", title="Broken upload", at=T0 + 1000)
    add(engine, "rec_wip", status="processing", creator="iv-1", title="Still processing", at=T0 + 4000)
    with session_scope(engine) as s:
        s.add(ProcessingStep(recording_id="rec_wip", step="media.final", status="running"))
        s.add(ProcessingStep(recording_id="rec_wip", step="transcript.final", status="done"))
    add(engine, "rec_globex", org="globex", creator="g-1", title="Globex interview")
    yield live_api, engine
    engine.dispose()


def titles(pg, list_id: str) -> list[str]:
    return pg.locator(f"#{list_id} .hit-title").all_inner_texts()


@pytest.mark.browser
def test_each_role_sees_only_its_interviews_and_status_updates_live(site, page, token_for) -> None:  # noqa: F811
    server, engine = site
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.goto(f"{server.url}/recordings?token={token_for(role='interviewer', org='acme', sub='iv-1')}")
    page.locator("#mine li").first.wait_for()
    assert titles(page, "mine") == ["Still processing", "Backend engineer — round 1", "Broken upload"]
    assert titles(page, "shared") == []
    assert "Nothing has been shared with you yet" in page.inner_text("#shared-note")
    assert "processing 50%" in page.inner_text("li[data-id=rec_wip]").lower()
    assert "Failed: media.final" in page.inner_text("li[data-id=rec_failed]")
    violations = Axe().run(page).response["violations"]
    assert violations == [], [(v["id"], v["help"], [n["target"] for n in v["nodes"]][:5]) for v in violations]
    page.screenshot(path=str(ARTIFACTS / "recordings-interviewer.png"), full_page=True)
    # the worker finishes: the page shows it without a reload
    with session_scope(engine) as s:
        rec = s.get(Recording, "rec_wip")
        rec.status, rec.outputs = "ready", {"duration_ms": 61_000}
        s.add(rec)
    page.wait_for_selector("li[data-id=rec_wip][data-status=ready]", timeout=WAIT_MS)
    # filters (keyboard only)
    page.focus("#status")
    page.select_option("#status", "failed")
    page.locator("#filters button").press("Enter")
    page.wait_for_function("() => document.querySelectorAll('#mine li').length === 1")
    assert titles(page, "mine") == ["Broken upload"] and "status=failed" in page.url
    page.evaluate("localStorage.clear()")

    page.goto(f"{server.url}/recordings?token={token_for(role='admin', org='acme', sub='boss')}")
    page.locator("#shared li").first.wait_for()
    assert sorted(titles(page, "shared")) == sorted(["Still processing", "Backend engineer — round 1",
                                                     "Designer — final", "Broken upload"])
    assert titles(page, "mine") == [] and "You have no interviews yet" in page.inner_text("#mine-note")
    page.screenshot(path=str(ARTIFACTS / "recordings-admin.png"), full_page=True)
    page.evaluate("localStorage.clear()")

    page.goto(f"{server.url}/recordings?token={token_for(role='admin', org='globex', sub='g-admin')}")
    page.locator("#shared li").first.wait_for()
    assert titles(page, "shared") == ["Globex interview"]
    assert page.problems == []


@pytest.mark.browser
def test_more_pages_and_search_box(site, page, token_for) -> None:  # noqa: F811
    server, engine = site
    for i in range(30):
        add(engine, f"rec_bulk{i:02d}", title=f"Bulk {i:02d}", at=T0 - 10_000 - i * 1000)
    page.goto(f"{server.url}/recordings?token={token_for(role='admin', org='acme', sub='boss')}")
    page.locator("#shared li").first.wait_for()
    assert page.locator("#shared li").count() == 25 and page.is_visible("#more")
    page.click("#more")
    page.wait_for_function("() => document.querySelectorAll('#shared li').length === 34")
    assert page.is_hidden("#more")
    assert len(set(titles(page, "shared"))) == 34  # no duplicates across pages
    page.fill("#q", "kubernetes")
    page.press("#q", "Enter")
    page.wait_for_url("**/search?q=kubernetes")
