"""The review page's quality strip in real headless Chromium against the real API (uvicorn).

One interview with two participants: Bob's tracks have a 2-s hole the bot explained as
`network`, bot samples say he was frozen there and lossy just before; Alice is fine. The
strip must draw Bob's hole red and the loss amber (numbers in the tooltip), nothing on
Alice's lane, and seek the video on click and on Enter. Screenshot in var/test-artifacts/.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from core import db
from core.db import session_scope
from core.models import Chunk, MediaGap, QualitySample, Track
from tests.media import CHROMIUM
from tests.review_api.test_playback import make_media, publish

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "var" / "test-artifacts"
START = 1_735_689_600_000  # what `publish` gives the recording
PEOPLE = (("p-alice", "Alice Moreau", "interviewer"), ("p-bob", "Bob Tanaka", "candidate"))


def add_quality(engine, rec_id: str) -> None:
    """Chunks (Bob's leave a hole at 2-4 s), the bot's reason for it, and 1-s samples."""
    with session_scope(engine) as s:
        for pid, name, role in PEOPLE:
            s.add(Track(recording_id=rec_id, track_id=f"{pid}-video", participant_id=pid, display_name=name,
                        role=role, kind="video"))
            spans = [(0, 2000), (4000, 2000)] if pid == "p-bob" else [(0, 3000), (3000, 3000)]
            for seq, (at, dur) in enumerate(spans):
                s.add(Chunk(recording_id=rec_id, track_id=f"{pid}-video", seq=seq, status="stored",
                            start_ms=START + at, duration_ms=dur, sha256="0" * 64))
            for t in range(6):
                bad = pid == "p-bob" and t in (2, 3)
                lossy = pid == "p-bob" and t == 1
                s.add(QualitySample(recording_id=rec_id, participant_id=pid, track_id=f"{pid}-video",
                                    at_ms=START + t * 1000, window_ms=1000, packets=0 if bad else 90,
                                    lost=10 if lossy else 0, jitter_ms=6.0, rtt_ms=None if bad else 35.0,
                                    bitrate_kbps=0.0 if bad else 480.0, fps=0.0 if bad else 30.0,
                                    width=640, height=360, frozen=bad))
        s.add(MediaGap(recording_id=rec_id, participant_id="p-bob", cause="network", start_ms=START + 1900,
                       end_ms=START + 4100))


@pytest.fixture
def site(live_api, store, settings, tmp_path):
    engine = db.make_engine(settings.database_url)
    rec = publish(store, engine, "rec_quality", make_media(tmp_path, size=(320, 180)), title="Quality strip")
    add_quality(engine, rec.id)
    yield live_api
    engine.dispose()


@pytest.fixture
def page() -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, timeout=60_000)
        pg = browser.new_context(viewport={"width": 1360, "height": 900}).new_page()
        pg.set_default_timeout(20_000)
        problems: list[str] = []
        pg.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        pg.on("pageerror", lambda e: problems.append(str(e)))
        pg.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)
        pg.problems = problems
        yield pg
        browser.close()


def _left_width(page, selector: str) -> tuple[float, float]:
    return page.eval_on_selector(selector, "e => [parseFloat(e.style.left), parseFloat(e.style.width)]")


@pytest.mark.browser
def test_quality_strip_shows_the_gap_red_with_numbers_and_seeks(site, page, token_for) -> None:
    token = token_for(role="interviewer", org="acme", sub="ines", groups=["panel"])
    page.goto(f"{site.url}/review/rec_quality?token={token}")
    page.wait_for_selector("#quality-strip:not([hidden]) .qs-lane")
    page.wait_for_function("() => document.querySelector('video').readyState >= 1")
    lanes = page.locator(".qs-lane")
    assert lanes.count() == 2
    assert lanes.nth(0).locator(".qs-name").inner_text() == "Alice Moreau"
    assert lanes.nth(0).locator("button.qs-run").count() == 0          # nothing wrong with Alice

    bob = lanes.nth(1)
    red, amber = bob.locator("button.qs-run.red"), bob.locator("button.qs-run.amber")
    assert red.count() == 1 and amber.count() == 1
    left, width = _left_width(page, ".qs-lane:nth-child(2) button.qs-run.red")
    assert left == pytest.approx(100 * 2 / 6, abs=0.5) and width == pytest.approx(100 * 2 / 6, abs=0.5)
    tip = red.get_attribute("title")
    assert "Bob Tanaka: 0:02–0:04" in tip and "media missing (network)" in tip and "frozen 2 s" in tip, tip
    assert red.get_attribute("aria-label") == tip
    assert "loss up to 10.0 %" in amber.get_attribute("title") and "RTT up to 35 ms" in amber.get_attribute("title")
    colour = red.evaluate("e => getComputedStyle(e).backgroundColor")
    assert colour == "rgb(200, 55, 45)", colour
    summary = page.inner_text("#qs-summary")
    assert "frozen 2 s" in summary and "missing 2 s" in summary and "Bob Tanaka" in summary, summary

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.locator("#quality-strip").screenshot(path=str(ARTIFACTS / "quality-strip.png"))
    page.screenshot(path=str(ARTIFACTS / "quality-strip-page.png"), full_page=True)

    red.focus()                                                          # keyboard: Enter seeks
    page.keyboard.press("Enter")
    page.wait_for_function("() => Math.abs(document.querySelector('video').currentTime - 2) < 0.1")
    assert page.url.endswith("#t=2.0")
    amber.click()                                                        # mouse: click seeks
    page.wait_for_function("() => Math.abs(document.querySelector('video').currentTime - 1) < 0.1")
    page.focus("body")
    page.keyboard.press("Tab")                                           # the runs are in the tab order
    tabbable = page.evaluate("() => [...document.querySelectorAll('button.qs-run')].every(b => b.tabIndex === 0)")
    assert tabbable
    # this interview has no transcript: its 422 (and the console line about it) is not the strip's
    others = [x for x in page.problems if "/transcript" not in x and "status of 422" not in x]
    assert others == [], page.problems
