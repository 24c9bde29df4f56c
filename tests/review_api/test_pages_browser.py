"""The review and search pages in real headless Chromium against the real API (uvicorn).

Media: a real H.264/AAC MP4 + poster + thumbnail strip in the real S3 server. Transcript:
segment rows of a final, current version, its exports rendered by `transcribe.export`
(as the worker does) and indexed with `core.search`, so the pages read what they will
read in production. Screenshots go to /tmp/review-page.png and /tmp/search-page.png.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

import pytest
from sqlmodel import select

from core import db, keys, search
from core.db import session_scope
from core.models import ProcessingStep, Recording, Track, TranscriptSegment, TranscriptVersion
from tests.media import CHROMIUM
from tests.review_api.test_playback import make_media, publish
from transcribe.export import FORMATS, render
from transcribe.types import Segment, Speaker, Transcript, Word

ORG = "acme"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--autoplay-policy=no-user-gesture-required"]
ALICE = Speaker("p-alice", "Alice Moreau", "interviewer", "t-alice")
BOB = Speaker("p-bob", "Bob Tanaka", "candidate", "t-bob")
LINES = [  # (speaker, start_ms, end_ms, text, flags)
    (ALICE, 200, 1800, "Welcome, and thanks for joining us today.", ()),
    (BOB, 1900, 3800, "Thank you, I'm glad to be here.", ()),
    (ALICE, 4000, 4900, "Tell me about your Kubernetes experience.", ()),
    (BOB, 4400, 4600, "Thank you.", ("text_in_silence",)),  # suppressed: hidden from the page
    (BOB, 5000, 5900, "I ran Kubernetes clusters for three years.", ("low_logprob",)),
]
WORDS = {4: [(" I", 5000, 5080), (" ran", 5080, 5250), (" Kubernetes", 5250, 5600), (" clusters", 5600, 5750),
             (" for", 5750, 5800), (" three", 5800, 5850), (" years.", 5850, 5900)]}  # line index → words
WAIT_MS = 20_000


# ---------------------------------------------------------------- data

def add_transcript(engine, store, rec: Recording) -> None:
    """Version 1 (final, current) with its segment rows, exports and search index."""
    segments = tuple(Segment(sp, a, b, text, words=tuple(Word(w, ws, we, 0.9) for w, ws, we in WORDS.get(i, ())),
                             flags=flags, seq=0, idx=i) for i, (sp, a, b, text, flags) in enumerate(LINES))
    transcript = Transcript(rec.id, segments, 1, "tiny.en", {"beam_size": 5}, 1_735_689_700_000, 900)
    exports = {}
    for fmt in FORMATS:
        exports[fmt] = keys.output_key(rec.org, rec.id, f"transcripts/v001/transcript.{fmt}")
        store.put_bytes(exports[fmt], render(transcript, fmt).encode(), FORMATS[fmt])
    version = TranscriptVersion(recording_id=rec.id, version=1, model="tiny.en", status="final", is_current=True,
                                exports=exports, segment_count=len(segments))
    with session_scope(engine) as s:
        s.add(version)
        s.flush()
        for seg in segments:
            s.add(TranscriptSegment(version_id=version.id, recording_id=rec.id, track_id=seg.speaker.track_id,
                                    seq=seg.seq, idx=seg.idx, participant_id=seg.speaker.participant_id,
                                    display_name=seg.speaker.display_name, role=seg.speaker.role,
                                    start_ms=seg.start_ms, end_ms=seg.end_ms, text=seg.text, flags=list(seg.flags),
                                    words=[[w.text, w.start_ms, w.end_ms, w.probability] for w in seg.words] or None,
                                    suppressed=seg.suppressed))
        row = s.get(Recording, rec.id)
        row.outputs = {**(row.outputs or {}), "transcript": {"key": exports["json"], "version": 1,
                                                            "formats": exports}}
        s.add(row)
    with session_scope(engine) as s:
        rows = s.exec(select(TranscriptSegment).where(TranscriptSegment.version_id == version.id)).all()
        docs = [search.SearchDoc(f"{version.id}:{r.id}", rec.id, version.id, r.participant_id, r.display_name,
                                 r.role, r.start_ms, r.end_ms, r.text) for r in rows if not r.suppressed]
    search.index_recording(engine, rec.org, rec.id, rec.started_at_ms or 0, docs)


def add_tracks(engine, rec_id: str) -> None:
    with session_scope(engine) as s:
        for sp in (ALICE, BOB):
            s.add(Track(recording_id=rec_id, track_id=sp.track_id, participant_id=sp.participant_id,
                        display_name=sp.display_name, role=sp.role, kind="av"))


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_media(tmp_path_factory.mktemp("pages"), size=(640, 360))


@pytest.fixture
def site(live_api, store, settings, media):
    """The live API with one ready interview (video, transcript, a gap) of org acme."""
    engine = db.make_engine(settings.database_url)
    rec = publish(store, engine, "rec_review", media, title="Platform engineer — final round",
                  gaps={"t-bob": [[1000, 1500]]})
    add_tracks(engine, rec.id)
    add_transcript(engine, store, rec)
    yield live_api, engine
    engine.dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, timeout=60_000)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1360, "height": 860})
    pg = context.new_page()
    pg.set_default_timeout(WAIT_MS)
    problems: list[str] = []
    pg.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: problems.append(str(e)))
    pg.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    pg.problems = problems
    yield pg
    context.close()


def video_at(page, seconds: float, tolerance: float) -> None:
    page.wait_for_function("([t, tol]) => { const v = document.querySelector('video');"
                           " return v.readyState >= 1 && Math.abs(v.currentTime - t) <= tol; }",
                           arg=[seconds, tolerance])


# ---------------------------------------------------------------- tests

def test_pages_and_assets_over_http(client) -> None:
    r = client.get("/review/rec_anything")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert 'id="transcript"' in r.text and "/static/review/review.js" in r.text
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "media-src 'self' blob:" in csp and "frame-ancestors 'none'" in csp
    assert r.headers["referrer-policy"] == "no-referrer"
    assert client.get("/review/bad..id").status_code == 400
    r = client.get("/search")
    assert r.status_code == 200 and 'id="search-form"' in r.text
    r = client.get("/review", params={"q": "x"}, follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"] == "/recordings?q=x"
    for name, ctype in (("review.js", "text/javascript"), ("common.js", "text/javascript"),
                        ("search.js", "text/javascript"), ("review.css", "text/css")):
        r = client.get(f"/static/review/{name}")
        assert r.status_code == 200 and r.headers["content-type"].startswith(ctype) and r.content
    for name in ("review.html", "missing.js", "..%2Fpages.py"):
        assert client.get(f"/static/review/{name}").status_code == 404, name


@pytest.mark.browser
def test_page_helpers_in_the_browser(live_api, page) -> None:
    """The review page's pure helpers: #t= parsing, the line being spoken, progress."""
    page.goto(f"{live_api.url}/review/rec_x")
    page.wait_for_selector("#token-panel:not([hidden])")
    page.screenshot(path="/tmp/review-token.png")
    got = page.evaluate("""() => [
        ['#t=123.4', '#t=2:03.5', '#t=1:00:00', '#t=90s', '#a=1&t=7', '#t=', '#t=abc', '#x=1', ''].map(
            ReviewPage.parseHashTime),
        [0, 1000, 1999, 2500, 3400, 5000, 9000].map(ms => ReviewPage.activeAt(
            [{start_ms: 1000, end_ms: 2000}, {start_ms: 1500, end_ms: 3000}, {start_ms: 4000, end_ms: 6000}], ms)),
        ReviewPage.progressSummary([{step: 'window.000000', status: 'done'}, {step: 'window.000001', status: 'failed',
            error: 'bad chunk'}, {step: 'media.final', status: 'running', progress: 0.5}]),
    ]""")
    assert got[0] == [123.4, 123.5, 3600, 90, 7, None, None, None, None]
    assert got[1] == [[], [0], [0, 1], [1], [1], [2], []]
    assert got[2]["fraction"] == pytest.approx(0.5)
    assert [ln["status"] for ln in got[2]["lines"]] == ["info", "running", "pending", "failed"]
    assert got[2]["lines"][-1]["error"] == "bad chunk"

@pytest.mark.browser
def test_deep_link_seeks_and_transcript_follows(site, page, token_for) -> None:
    server, _ = site
    token = token_for(role="interviewer", org=ORG, sub="ines", groups=["panel"])  # granted through a group
    page.goto(f"{server.url}/review/rec_review?token={token}#t=2.0")
    video_at(page, 2.0, 0.05)
    assert page.url.endswith("/review/rec_review#t=2.0")  # the token left the address bar
    lines = page.locator("#transcript li")
    lines.first.wait_for()
    assert lines.count() == 4  # the suppressed echo is hidden
    heads = lines.locator(".line-head").all_inner_texts()
    assert [h.split("\n")[1] for h in heads] == ["Alice Moreau", "Bob Tanaka", "Alice Moreau", "Bob Tanaka"]
    assert "candidate" in heads[1].lower() and "interviewer" in heads[0].lower()
    assert "1 segment hidden" in page.inner_text("#transcript-note")
    page.wait_for_selector("#transcript li.active")
    assert page.locator("#transcript li.active").inner_text().endswith("Thank you, I'm glad to be here.")
    assert page.get_attribute("#video", "poster").split("?")[0].endswith("/media/poster.jpg")
    assert "Bob Tanaka (candidate, av): missing 0:01.0–0:01.5 (0.5 s)" in page.inner_text("#gaps")
    assert page.locator("#gap-marks .gap").count() == 1
    page.wait_for_function("() => document.querySelector('video').readyState >= 2")
    page.screenshot(path="/tmp/review-page.png", full_page=True)

    lines.nth(2).click()  # "Tell me about your Kubernetes experience." at 4.0 s
    page.wait_for_function("() => { const v = document.querySelector('video');"
                           " return v.currentTime >= 4.0 && v.currentTime < 5.5; }")
    page.wait_for_selector("#transcript li:nth-child(3).active")
    assert page.url.endswith("#t=4.0")
    # Captions: the WebVTT export, fetched with the Bearer token, on a <track>.
    cues = page.evaluate("""async () => { const t = document.querySelector('video').textTracks[0];
        t.mode = 'hidden'; for (let i = 0; i < 100 && !(t.cues && t.cues.length); i++)
          await new Promise(r => setTimeout(r, 50));
        return Array.from(t.cues || []).map(c => [c.startTime, c.text]); }""")
    assert cues[0] == [0.2, "<v Alice Moreau>Welcome, and thanks for joining us today."] and len(cues) == 4
    page.evaluate("location.hash = '#t=5.5'")  # a new fragment seeks too
    video_at(page, 5.5, 0.6)
    page.set_viewport_size({"width": 420, "height": 900})  # a phone: transcript under the video
    player, transcript = page.locator("#player").bounding_box(), page.locator(".transcript-col").bounding_box()
    assert transcript["y"] >= player["y"] + player["height"] and transcript["width"] <= 420
    page.screenshot(path="/tmp/review-narrow.png", full_page=True)
    assert page.problems == []


@pytest.mark.browser
def test_search_page_links_to_the_moment(site, page, token_for) -> None:
    server, _ = site
    token = token_for(role="assessor", org=ORG, sub="ana", groups=["panel"])  # the group it is granted to
    page.goto(f"{server.url}/search?token={token}")
    page.fill("#q", "kubernetes")
    page.select_option("#role", "candidate")
    page.click("#search-form button[type=submit]")
    hit = page.locator("a.hit")
    hit.first.wait_for()
    # the hit points at the matched word (5.25 s, floored to the 0.1 s of the link), not at its segment (5.0 s)
    assert hit.count() == 1 and hit.get_attribute("href") == "/review/rec_review#t=5.2&hl=5250-5600"
    assert hit.locator("mark").first.inner_text().lower() == "kubernetes"
    assert "Bob Tanaka · candidate" in hit.inner_text() and "0:05" in hit.inner_text()
    assert "role=candidate" in page.url and "q=kubernetes" in page.url
    page.screenshot(path="/tmp/search-page.png", full_page=True)
    hit.click()
    page.wait_for_url("**/review/rec_review#t=5.2&hl=5250-5600")
    video_at(page, 5.2, 0.05)  # the token came along in localStorage
    # the review page marks the matched word, and only it, in the line being spoken
    marked = page.locator("#transcript li.active mark.hit")
    marked.first.wait_for()
    assert marked.all_inner_texts() == ["Kubernetes"]
    assert page.locator("#transcript mark.hit").count() == 1
    page.screenshot(path="/tmp/review-hl.png")
    page.go_back()
    page.wait_for_url("**/search?q=kubernetes&role=candidate")
    page.locator("a.hit").first.wait_for()
    page.fill("#q", "\"three years\"")  # a phrase: the link is at its first word, both words marked
    page.click("#search-form button[type=submit]")
    phrase = page.locator("a.hit[href*='hl=']")
    phrase.first.wait_for()
    assert phrase.first.get_attribute("href") == "/review/rec_review#t=5.8&hl=5800-5900"
    phrase.first.click()
    page.wait_for_url("**/review/rec_review#t=5.8&hl=5800-5900")
    video_at(page, 5.8, 0.05)
    page.locator("#transcript mark.hit").first.wait_for()
    assert page.locator("#transcript mark.hit").all_inner_texts() == ["three", "years."]
    page.go_back()
    page.wait_for_url("**/search?q=%22three+years%22&role=candidate")
    page.locator("a.hit").first.wait_for()
    page.fill("#q", "\"no such phrase anywhere\"")
    page.click("#search-form button[type=submit]")
    page.wait_for_function("() => document.querySelector('#results-note').textContent.startsWith('Nothing found')")
    assert page.problems == []


@pytest.mark.browser
def test_token_form_then_progress_until_ready(site, page, token_for, store) -> None:
    server, engine = site
    with session_scope(engine) as s:
        s.add(Recording(id="rec_wip", org=ORG, client_key="rec_wip", status="processing", title="Still processing",
                        created_by="tester"))
        s.flush()
        for step, status in (("window.000000", "done"), ("media.final", "running"), ("transcript.final", "pending")):
            s.add(ProcessingStep(recording_id="rec_wip", step=step, status=status, progress=0.5))
    page.goto(f"{server.url}/review/rec_wip")
    page.wait_for_selector("#token-panel:not([hidden])")
    page.fill("#token-panel input", token_for(role="interviewer", org="globex"))
    page.click("#token-panel button[type=submit]")
    page.wait_for_selector("#message:not([hidden])")
    assert "that you may open" in page.inner_text("#message")  # another org's token: 404, said plainly

    page.evaluate("localStorage.clear()")
    page.goto(f"{server.url}/review/rec_wip")
    page.fill("#token-panel input", token_for(role="interviewer", org=ORG))
    page.click("#token-panel button[type=submit]")
    page.wait_for_selector("#progress:not([hidden])")
    assert "Processing the interview" in page.inner_text("#progress")
    assert "Video windows composited: 1 of 1" in page.inner_text("#progress-steps")
    assert page.get_attribute("#video", "src") is None
    page.screenshot(path="/tmp/review-progress.png")

    with session_scope(engine) as s:  # the workers finish: outputs appear, the page picks them up
        done = s.get(Recording, "rec_review")
        row = s.get(Recording, "rec_wip")
        row.status, row.outputs = "ready", {k: v for k, v in (done.outputs or {}).items() if k != "transcript"}
        s.add(row)
        for st in s.exec(select(ProcessingStep).where(ProcessingStep.recording_id == "rec_wip")).all():
            st.status = "done"
            s.add(st)
    page.wait_for_function("() => document.querySelector('video').readyState >= 1")
    page.wait_for_selector("#progress", state="hidden")
    page.wait_for_function("() => document.querySelector('#transcript-note').textContent.includes('no transcript')")
    expected = ("404 " + f"{server.url}/v1/recordings/rec_wip",  # the other org's token
                "422 " + f"{server.url}/v1/recordings/rec_wip/transcript?format=json")  # no transcript yet
    unexpected = [p for p in page.problems if not p.startswith(expected)
                  and not re.search(r"Failed to load resource: .* status of (404|422)", p)]
    assert unexpected == [] and len(page.problems) > len(unexpected)


@pytest.mark.browser
def test_a_refused_media_url_is_renewed(site, page, token_for) -> None:
    """The signed URL expiring (401 from the media route) → the page gets a new one and resumes."""
    server, _ = site
    refused: list[str] = []

    def expire_once(route) -> None:
        if refused:
            return route.continue_()
        refused.append(route.request.url)
        route.fulfill(status=401, content_type="application/json",
                      body='{"code": "token_expired", "message": "playback token expired"}')

    page.route("**/media/composite.mp4?*", expire_once)
    playbacks: list[str] = []
    page.on("request", lambda r: playbacks.append(r.url) if r.url.endswith("/playback") else None)
    page.goto(f"{server.url}/review/rec_review?token={token_for(role='interviewer', org=ORG)}#t=3.0")
    video_at(page, 3.0, 0.05)
    assert len(refused) == 1 and len(playbacks) == 2
    assert page.evaluate("document.querySelector('video').src") != refused[0]  # a fresh token
