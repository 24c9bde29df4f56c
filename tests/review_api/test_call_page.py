"""The call page `/call/{room}` in real headless Chromium (fake camera + microphone) against the
real API (uvicorn, Redis, S3): two browser contexts hold an interview through our signaling.

What is proved: consent comes before any media (declining never calls getUserMedia nor opens
the socket); both pages see each other's (non-black, moving) video; mute flips the *sender's*
track; a signaling socket dropped from page JS resumes its seat while the media keeps
flowing; each page records its own 30-s chunks through the reference uploader into the room's
client recording. The pure logic (recovery ladder with a fake clock, backoff, perfect
negotiation under glare with ICE candidates that outrun their SDP) runs in the page too.
Screenshots go to var/test-artifacts/.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.bot.conftest import bot_process, bot_settings  # noqa: F401  (fixtures: `recorder bot`)
from tests.conftest import auth
from tests.media import CHROMIUM, CHROMIUM_ARGS

ARGS = CHROMIUM_ARGS + ["--autoplay-policy=no-user-gesture-required"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "var" / "test-artifacts"
WAIT_MS = 30_000
# The first picture of a call: a negotiation that does not connect (seen once in CI after an
# offer glare: both peers stayed ICE "new") is the recovery ladder's job — ICE restart 9 s and
# a full restart 18 s after trouble starts — so the first video may take one full restart.
FIRST_VIDEO_MS = 60_000
ORG = "acme"

FRAME = """(sel) => {
  const v = document.querySelector(sel);
  if (!v || v.readyState < 2 || !v.videoWidth) return null;
  const c = document.createElement('canvas'); c.width = 64; c.height = 36;
  const g = c.getContext('2d'); g.drawImage(v, 0, 0, 64, 36);
  const d = g.getImageData(0, 0, 64, 36).data; let s = 0, s2 = 0, n = 0;
  for (let i = 0; i < d.length; i += 4) { const y = 0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2];
    s += y; s2 += y * y; n++; }
  const mean = s / n;
  return {mean, variance: s2 / n - mean * mean, frames: v.getVideoPlaybackQuality().totalVideoFrames,
          width: v.videoWidth, paused: v.paused};
}"""
# Counts getUserMedia calls and WebSocket opens before any page script runs.
SPY = """(() => {
  window.__spy = {gum: 0, ws: 0};
  const gum = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  navigator.mediaDevices.getUserMedia = (c) => { window.__spy.gum++; return gum(c); };
  const WS = window.WebSocket;
  window.WebSocket = function (...a) { window.__spy.ws++; return new WS(...a); };
  window.WebSocket.prototype = WS.prototype;
  Object.assign(window.WebSocket, {CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3});
})();"""


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, timeout=60_000)
        yield b
        b.close()


@pytest.fixture
def open_page(browser) -> Iterator[Callable[[], Any]]:
    """New pages, each in its own browser context (its own storage, like another person)."""
    contexts = []

    def _open() -> Any:
        context = browser.new_context(viewport={"width": 1100, "height": 760})
        contexts.append(context)
        pg = context.new_page()
        pg.set_default_timeout(WAIT_MS)
        pg.add_init_script(SPY)
        problems: list[str] = []
        pg.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        pg.on("pageerror", lambda e: problems.append(str(e)))
        pg.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)
        pg.problems = problems
        return pg

    yield _open
    for context in contexts:
        context.close()


class Rooms:
    """The REST calls an interviewer's app makes: a room, then one join token per participant."""

    def __init__(self, base: str, token: str) -> None:
        self.base = base
        self.http = httpx.Client(base_url=base, headers=auth(token), timeout=20)

    def room(self, slot: str, **body: Any) -> str:
        r = self.http.post("/v1/rooms", json={"slot_id": slot, "candidate_id": "cand-1", **body})
        assert r.status_code in (200, 201), r.text
        return r.json()["id"]

    def link(self, room: str, pid: str, role: str, name: str) -> str:
        r = self.http.post(f"/v1/rooms/{room}/tokens", json={"participant_id": pid, "role": role, "display_name": name})
        assert r.status_code == 200, r.text
        return f"{self.base}/call/{room}?token={r.json()['token']}"

    def get(self, path: str) -> Any:
        r = self.http.get(path)
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture
def rooms(live_api, token_for) -> Iterator[Rooms]:
    api = Rooms(live_api.url, token_for(role="interviewer", org=ORG, sub="ines"))
    yield api
    api.http.close()


def snapshot(page) -> dict:
    return page.evaluate("() => window.callTest.snapshot()")


def visible_peer(snap: dict) -> dict:
    (peer,) = [p for p in snap["peers"] if not p["hidden"]]
    return peer


def wait_video(page, sel: str, after_frames: int = 0, wait_ms: int = WAIT_MS) -> dict:
    """The video in `sel` shows moving, non-black frames (more than `after_frames`)."""
    deadline = time.monotonic() + wait_ms / 1000
    got = None
    while time.monotonic() < deadline:
        got = page.evaluate(FRAME, sel)
        if got and got["frames"] > after_frames + 10 and got["mean"] > 20 and got["variance"] > 10:
            return got
        time.sleep(0.2)
    raise AssertionError(f"{sel}: no live picture: {got}; page: {snapshot(page)}; problems: {page.problems}")


# ---------------------------------------------------------------- tests

def test_call_page_is_a_static_shell_with_a_socket_csp(client) -> None:
    r = client.get("/call/room_abc")
    assert r.status_code == 200 and 'id="consent"' in r.text and "/static/review/call.js" in r.text
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "media-src 'self' blob:" in csp
    assert "connect-src 'self' ws://testserver" in csp and "'unsafe-inline'" not in csp
    assert r.headers["referrer-policy"] == "no-referrer"
    assert client.get("/call/bad..id").status_code == 400
    for script in ("call.js", "quality_sampler.js"):  # the second is an ES import of the first: 'self'
        r = client.get(f"/static/review/{script}")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
    # the review page keeps its policy (no socket origins)
    assert "ws://" not in client.get("/review/rec_x").headers["content-security-policy"]


def test_client_upload_opens_one_recording_per_room(client, token_for) -> None:
    """A join token gets the room's client recording and an upload token for its own track only."""
    iv = auth(token_for(role="interviewer", org=ORG, sub="ines"))
    room = client.post("/v1/rooms", json={"slot_id": "s-cu", "candidate_id": "c-1"}, headers=iv).json()["id"]
    people = (("cand-1", "candidate"), ("int-1", "interviewer"))
    joins = {pid: client.post(f"/v1/rooms/{room}/tokens", json={"participant_id": pid, "role": role},
                              headers=iv).json()["token"] for pid, role in people}
    a = client.post(f"/v1/rooms/{room}/client-upload", headers=auth(joins["cand-1"]))
    b = client.post(f"/v1/rooms/{room}/client-upload", headers=auth(joins["int-1"]))
    again = client.post(f"/v1/rooms/{room}/client-upload", headers=auth(joins["cand-1"]))
    assert a.status_code == b.status_code == again.status_code == 200, (a.text, b.text)
    assert a.json()["recording_id"] == b.json()["recording_id"] == again.json()["recording_id"]
    assert (a.json()["track_id"], b.json()["track_id"]) == ("cand-1-av", "int-1-av")
    assert a.json()["chunk_ms"] == 30_000 and a.json()["status"] == "recording"
    rec = client.get(f"/v1/recordings/{a.json()['recording_id']}", headers=iv).json()  # the room's creator sees it
    assert rec["source"] == "client" and rec["room_id"] == room
    assert {(t["participant_id"], t["role"]) for t in rec["tracks"]} == {("cand-1", "candidate"),
                                                                         ("int-1", "interviewer")}
    # the upload token writes the caller's own track, not the other participant's
    up = {"Authorization": f"Bearer {a.json()['token']}", "Content-Type": "video/webm",
          "X-Content-SHA256": "0" * 64, "X-Chunk-Start": "1700000000000"}
    r = client.put(f"/v1/recordings/{rec['id']}/tracks/int-1-av/chunks/0", content=b"x" * 64, headers=up)
    assert r.status_code == 403 and r.json()["code"] == "wrong_participant"
    other = client.post("/v1/rooms", json={"slot_id": "s-cu2", "candidate_id": "c-2"}, headers=iv).json()["id"]
    r = client.post(f"/v1/rooms/{other}/client-upload", headers=auth(joins["cand-1"]))
    assert r.status_code == 403 and r.json()["code"] == "wrong_room"
    assert client.post(f"/v1/rooms/{room}/client-upload", headers=iv).json()["code"] == "wrong_scope"
    client.post(f"/v1/rooms/{room}/end", headers=iv)
    assert client.post(f"/v1/rooms/{room}/client-upload", headers=auth(joins["int-1"])).status_code == 422


@pytest.mark.browser
def test_pure_logic_in_the_browser(live_api, open_page) -> None:
    """Ladder with a fake clock, backoff bounds, roles; perfect negotiation under glare in one page."""
    page = open_page()
    page.goto(f"{live_api.url}/call/room_x")
    page.wait_for_selector("#message:not([hidden])")
    assert "interview link" in page.inner_text("#message")
    ladder = page.evaluate("""() => {
      const run = (caller, linkUp, ticks) => { const l = new CallPage.Ladder();
        return ticks.map(([t, bad]) => l.tick({bad, linkUp: linkUp(t), caller}, t * 1000)); };
      const bad = [0, 2.5, 5, 7.5, 10, 12.5, 15, 17.5, 20, 22.5].map(t => [t, true]);
      const lastLong = [[0, true], [2.5, true], [40, true], [78, true], [81, true]];
      const calm = new CallPage.Ladder();
      const c = [calm.tick({bad: true, linkUp: true, caller: true}, 0),
                 calm.tick({bad: true, linkUp: true, caller: true}, 2500)];
      calm.calm(10000);   // the socket came back at 10 s: trouble is timed from there
      c.push(calm.tick({bad: true, linkUp: true, caller: true}, 15000),
             calm.tick({bad: true, linkUp: true, caller: true}, 19100),
             calm.tick({bad: false, linkUp: true, caller: true}, 20000));
      return {
        caller: run(true, () => true, bad),
        callee: run(false, () => true, lastLong),
        socketDown: run(true, t => t < 1, [[0, true], [2.5, true], [30, true], [62.5, true]]),
        recovers: run(true, () => true, [[0, true], [2.5, true], [5, false], [7.5, true]]),
        calm: c,
        delays: Array.from({length: 12}, (_, i) => [CallPage.reconnectDelay(i, () => 0),
                                                    CallPage.reconnectDelay(i, () => 0.999)]),
        polite: [CallPage.isPolite('cand-1', 'int-1'), CallPage.isPolite('int-1', 'cand-1')],
        fp: CallPage.sdpFingerprint('v=0\\r\\na=fingerprint:sha-256 ab:CD\\r\\n'),
      };
    }""")
    # watch → trouble … 9 s of trouble (from the 2nd bad tick): ICE restart once; 18 s: rebuild
    assert ladder["caller"] == ["watch", "trouble", "trouble", "trouble", "trouble", "ice_restart", "trouble",
                                "trouble", "trouble", "full_restart"]
    assert ladder["callee"] == ["watch", "trouble", "wait", "wait", "give_up"]  # gives up only after 60 + 18 s
    assert ladder["socketDown"] == ["watch", "wait", "wait", "give_up"]
    assert ladder["recovers"] == ["watch", "trouble", "ok", "watch"]
    assert ladder["calm"] == ["watch", "trouble", "trouble", "ice_restart", "ok"]
    low, high = zip(*ladder["delays"])
    assert low[:5] == (250, 500, 1000, 2000, 4000) and max(high) <= 8000 and min(low) >= 250
    assert ladder["polite"] == [False, True] and ladder["fp"] == "SHA-256 AB:CD"

    glare = page.evaluate("""async () => {
      await navigator.mediaDevices.getUserMedia({audio: true});  // real host addresses, not mDNS names
      const a = new RTCPeerConnection(), b = new RTCPeerConnection();
      let na, nb;
      // SDP is slow (300 ms), candidates are not: they arrive before their description
      const via = target => m => m.description ? setTimeout(() => target().handle(m), 300) : target().handle(m);
      na = new CallPage.Negotiator(a, {polite: false, send: via(() => nb)});
      nb = new CallPage.Negotiator(b, {polite: true, send: via(() => na)});
      const opened = ch => new Promise(r => { ch.onopen = () => r(ch.label); });
      const chans = [opened(a.createDataChannel('from-a')), opened(b.createDataChannel('from-b'))];  // both offer
      const labels = await Promise.race([Promise.all(chans), new Promise(r => setTimeout(() => r('timeout'), 15000))]);
      const out = {labels, a: {...na.counts, state: a.signalingState}, b: {...nb.counts, state: b.signalingState}};
      a.close(); b.close();
      return out;
    }""")
    assert glare["labels"] == ["from-a", "from-b"], glare
    assert glare["a"]["ignored"] >= 1 and glare["a"]["rollbacks"] == 0, glare  # impolite: ignores the collision
    assert glare["b"]["rollbacks"] >= 1 and glare["b"]["answers"] >= 1, glare   # polite: rolls back, answers
    assert glare["a"]["buffered"] + glare["b"]["buffered"] >= 1, glare         # candidates waited for their SDP
    assert glare["a"]["state"] == glare["b"]["state"] == "stable"
    assert not page.problems, page.problems


@pytest.mark.browser
def test_declining_consent_never_touches_media(rooms, open_page) -> None:
    room = rooms.room("slot-decline", title="Backend engineer — screening")
    page = open_page()
    page.goto(rooms.link(room, "cand-1", "candidate", "Carl Candidate"))
    page.wait_for_selector("#consent:not([hidden])")
    assert "token=" not in page.url  # the join token left the address bar
    assert "recorded and transcribed" in page.inner_text("#consent")
    assert page.evaluate("() => document.activeElement.id") == "accept"  # keyboard: Enter would accept
    page.screenshot(path=str(ARTIFACTS / "call-consent.png"))
    page.click("#decline")
    page.wait_for_selector("#message:not([hidden])")
    assert "declined" in page.inner_text("#message") and page.is_hidden("#call")
    time.sleep(0.5)
    assert page.evaluate("() => window.__spy") == {"gum": 0, "ws": 0}
    page.click("#message-action")  # "Show the consent again"
    page.wait_for_selector("#consent:not([hidden])")
    assert page.evaluate("() => window.__spy") == {"gum": 0, "ws": 0}
    assert rooms.get(f"/v1/rooms/{room}")["participants"] == []
    assert not page.problems, page.problems


def start_call(rooms: Rooms, open_page, slot: str) -> tuple[Any, Any, float, str]:
    """An interviewer and a candidate page in one room, consent given by keyboard, video both ways."""
    room = rooms.room(slot, title="Platform engineer — final round")
    iv, cand = open_page(), open_page()
    t0 = time.monotonic()
    iv.goto(rooms.link(room, "int-1", "interviewer", "Ines Moreau"))
    cand.goto(rooms.link(room, "cand-1", "candidate", "Carl Tanaka"))
    for page in (iv, cand):
        page.wait_for_selector("#consent:not([hidden])")
        page.keyboard.press("Enter")  # the focused "I agree" button
        page.wait_for_selector("#call:not([hidden])")
    try:
        wait_video(iv, "#tiles .remote video", wait_ms=FIRST_VIDEO_MS)
        wait_video(cand, "#tiles .remote video", wait_ms=FIRST_VIDEO_MS)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\ncandidate page: {snapshot(cand)}") from None
    return iv, cand, time.monotonic() - t0, room


@pytest.mark.browser
def test_two_pages_hold_a_call_and_survive_a_socket_drop(rooms, open_page) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    iv, cand, connected_s, _ = start_call(rooms, open_page, "slot-call")
    assert "token=" not in iv.url and "token=" not in cand.url
    assert iv.inner_text("#tiles .remote figcaption").startswith("Carl Tanaka")
    assert cand.inner_text("#tiles .remote figcaption").startswith("Ines Moreau")
    a, b = snapshot(iv), snapshot(cand)
    assert visible_peer(a)["state"] == visible_peer(b)["state"] == "connected"
    assert visible_peer(a)["polite"] is True and visible_peer(b)["polite"] is False  # "cand-1" < "int-1"
    iv.screenshot(path=str(ARTIFACTS / "call-interviewer.png"))
    cand.screenshot(path=str(ARTIFACTS / "call-candidate.png"))

    # mute (by keyboard) flips the track the connection sends, and back
    iv.focus("#mute")
    iv.keyboard.press("Space")
    assert iv.get_attribute("#mute", "aria-pressed") == "true"
    audio = [s for s in visible_peer(snapshot(iv))["senders"] if s["kind"] == "audio"]
    assert audio and audio[0]["enabled"] is False
    iv.keyboard.press("Space")
    assert [s["enabled"] for s in visible_peer(snapshot(iv))["senders"] if s["kind"] == "audio"] == [True]

    # another microphone: the sender's track is replaced (no renegotiation), the recorder rotates
    old_mic = snapshot(iv)["localAudio"]
    mics = iv.eval_on_selector_all("#mic-select option", "os => os.map(o => [o.value, o.selected])")
    other = next(value for value, selected in mics if not selected)
    offers = visible_peer(snapshot(iv))["counts"]["offers"]
    iv.select_option("#mic-select", value=other)
    iv.wait_for_function("""(old) => { const s = window.callTest.snapshot();
        const a = s.peers.find(p => !p.hidden).senders.find(x => x.kind === 'audio');
        return a && a.id !== old && a.id === s.localAudio; }""", arg=old_mic)
    assert visible_peer(snapshot(iv))["counts"]["offers"] == offers

    # the candidate's signaling socket drops: it resumes its seat, the media link never stops
    before = [page.evaluate(FRAME, "#tiles .remote video")["frames"] for page in (iv, cand)]
    t_drop = time.monotonic()
    cand.evaluate("() => window.callTest.dropSocket()")
    cand.wait_for_function("() => { const s = window.callTest.snapshot().socket; return s.up && s.resumed >= 1; }")
    resumed_s = time.monotonic() - t_drop
    after = snapshot(cand)
    assert after["socket"]["drops"] == 1 and after["socket"]["joins"] == 2
    assert visible_peer(after)["gen"] == 0 and visible_peer(after)["state"] == "connected"  # same connection
    wait_video(iv, "#tiles .remote video", after_frames=before[0])
    wait_video(cand, "#tiles .remote video", after_frames=before[1])
    iv.wait_for_function("() => document.querySelector('#tiles .remote .tile-state').textContent === ''")
    assert visible_peer(snapshot(iv))["gen"] == 0
    cand.screenshot(path=str(ARTIFACTS / "call-candidate-after-drop.png"))

    # each page records itself: leaving flushes the open chunk into the room's client recording
    for page in (iv, cand):
        assert snapshot(page)["recording"]["state"] == "on", snapshot(page)["recording"]
    rec_id = snapshot(iv)["recording"]["id"]
    assert snapshot(cand)["recording"]["id"] == rec_id
    cand.click("#leave")
    cand.wait_for_selector("#message:not([hidden])")
    assert "You left" in cand.inner_text("#message")
    iv.wait_for_selector("#tiles .remote", state="detached")  # a real leave removes the tile at once
    iv.click("#leave")
    iv.wait_for_selector("#message:not([hidden])")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ledger = rooms.get(f"/v1/recordings/{rec_id}/ledger")
        chunks = {t["track_id"]: t["chunks"] for t in ledger["tracks"]}
        if len(chunks.get("int-1-av", [])) >= 2 and chunks.get("cand-1-av"):
            break
        time.sleep(0.3)
    assert all(chunks.get(t) for t in ("int-1-av", "cand-1-av")), chunks
    seqs = [c["seq"] for c in chunks["int-1-av"]]  # cut at the microphone switch, then at leave
    assert len(seqs) >= 2 and seqs == list(range(len(seqs))), seqs  # (+1 if a slow run passed 30 s)
    for track in ("int-1-av", "cand-1-av"):
        for chunk in chunks[track]:
            assert chunk["container"] == "webm" and chunk["duration_ms"] > 300 and chunk["status"] == "stored"
    assert iv.problems == [] and cand.problems == [], (iv.problems, cand.problems)
    print(f"call connected in {connected_s:.1f} s; socket resumed in {resumed_s:.2f} s")


@pytest.mark.browser
def test_a_silently_dead_media_link_is_rebuilt_by_the_ladder(rooms, open_page) -> None:
    """Nobody is told the interviewer's end of the link died: the candidate (the caller, smaller id)
    sees trouble after two bad ticks, restarts ICE 9 s later, rebuilds the connection at 18 s."""
    iv, cand, _, _ = start_call(rooms, open_page, "slot-ladder")
    t_break = time.time() * 1000
    iv.evaluate("() => window.callTest.breakMedia('cand-1')")
    cand.wait_for_function("""() => { const p = window.callTest.snapshot().peers.find(p => !p.hidden);
        return p.gen === 1 && p.state === 'connected'; }""", timeout=60_000)
    rebuilt_s = time.time() - t_break / 1000
    wait_video(iv, "#tiles .remote video")
    wait_video(cand, "#tiles .remote video")
    assert visible_peer(snapshot(iv))["gen"] == 1 and visible_peer(snapshot(iv))["state"] == "connected"
    moves = [(step, at) for pid, gen, step, at in snapshot(cand)["steps"] if pid == "int-1" and gen == 0
             and at > t_break]
    names = [m[0] for m in moves]
    assert names[-4:] == ["trouble", "ice_restart", "trouble", "full_restart"], moves
    at = {name: t for name, t in moves if name != "trouble"}
    trouble = next(t for name, t in moves if name == "trouble")
    assert 9000 <= at["ice_restart"] - trouble <= 9000 + 2500 + 1500, moves
    assert 18000 <= at["full_restart"] - trouble <= 18000 + 2500 + 1500, moves
    cand.screenshot(path=str(ARTIFACTS / "call-after-full-restart.png"))
    assert iv.problems == [] and cand.problems == [], (iv.problems, cand.problems)
    print(f"dead link rebuilt {rebuilt_s:.1f} s after it died; ladder: "
          + ", ".join(f"{n}@{(t - t_break) / 1000:.1f}s" for n, t in moves))


# ---------------------------------------------------------------- with the recording bot


@pytest.mark.browser
@pytest.mark.slow
def test_the_bot_records_the_call_and_the_review_page_plays(rooms, open_page, bot_process, settings,  # noqa: F811
                                                           token_for, tmp_path) -> None:
    """`recorder bot` joins hidden and offers to each page; each page answers with its tracks (no tile
    for the bot). The interviewer ends the call for everyone; media + transcription workers process
    the bot's recording, and its review page plays the composite."""
    from tests.workers.conftest import WorkerProcess, settings_env

    worker = WorkerProcess(settings_env(settings, RECORDER_WINDOW_MS="4000", RECORDER_WORKER_MAX_RETRIES="2"),
                           ["media", "transcribe", "default"], tmp_path / "worker.log")
    bot_process("bot")
    try:
        iv, cand, _, room = start_call(rooms, open_page, "slot-bot")
        for page in (iv, cand):
            page.wait_for_function("""() => window.callTest.snapshot().peers.some(p => p.hidden
                && p.state === 'connected' && p.senders.length === 2)""", timeout=60_000)
        assert iv.locator("#tiles .tile").count() == 2  # the recorder has no tile
        rec_id, have = _bot_chunks(rooms, room, per_track=2)
        t_end = time.monotonic()
        iv.click("#end")  # "End interview for everyone"
        for page in (iv, cand):
            page.wait_for_selector("#message:not([hidden])")
            assert "has ended" in page.inner_text("#message")
        deadline, rec = time.monotonic() + 300, {}
        while time.monotonic() < deadline:
            rec = rooms.get(f"/v1/recordings/{rec_id}")
            steps = {st["step"]: st for st in rec["steps"]}
            if rec["status"] in ("ready", "failed") and steps.get("media.final", {}).get("status") == "done":
                break
            time.sleep(1)
        done_s = time.monotonic() - t_end
        assert steps.get("media.final", {}).get("status") == "done", (rec, worker.log())
        review = open_page()
        review.goto(f"{rooms.base}/review/{rec_id}?token={token_for(role='interviewer', org=ORG, sub='ines')}")
        review.wait_for_function("() => document.querySelector('#video').readyState >= 2")
        review.evaluate("() => document.querySelector('#video').play()")
        review.wait_for_function("() => document.querySelector('#video').currentTime > 1")
        review.screenshot(path=str(ARTIFACTS / "call-review-of-bot-recording.png"))
        print(f"bot: {have}; recording {rec['status']} {done_s:.1f} s after the end")
        failed = [st for st in rec["steps"] if st["status"] == "failed"]
        assert rec["status"] == "ready", [(st["step"], st["error"]) for st in failed]
    finally:
        worker.stop()


def _bot_chunks(rooms: Rooms, room: str, per_track: int) -> tuple[str, dict[str, int]]:
    """The bot recording of `room` once each participant's audio and video has `per_track` chunks."""
    tracks = {"int-1-audio", "int-1-video", "cand-1-audio", "cand-1-video"}
    deadline, have, rec_id = time.monotonic() + 60, {}, ""
    while time.monotonic() < deadline:
        items = rooms.get(f"/v1/recordings?room={room}")["items"]  # the bot's and the pages' own
        bots = [r["id"] for r in items if rooms.get(f"/v1/recordings/{r['id']}")["source"] == "bot"]
        if bots:
            rec_id = bots[0]
            ledger = rooms.get(f"/v1/recordings/{rec_id}/ledger")
            have = {t["track_id"]: len(t["chunks"]) for t in ledger["tracks"]}
            if set(have) >= tracks and all(have[t] >= per_track for t in tracks):
                return rec_id, have
        time.sleep(0.5)
    raise AssertionError(f"bot chunks: {have}")
