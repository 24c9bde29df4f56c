"""The reference browser uploader (ingest/static/uploader.js) in real headless Chromium.

It runs against a small stand-in API written here (it records every request and fails the
attempts a test scripts), served from the same 127.0.0.1 origin as the page.
"""
from __future__ import annotations

import hashlib
import http.server
import json
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.media import CHROMIUM, CHROMIUM_ARGS, ffprobe

pytestmark = pytest.mark.browser
STATIC = Path(__file__).resolve().parents[2] / "ingest" / "static"
CHUNK = re.compile(r"^/v1/recordings/([^/]+)/tracks/([^/]+)/chunks/(\d+)(/beacon)?$")
EBML = b"\x1a\x45\xdf\xa3"


@dataclass
class Hit:
    t: float                # monotonic seconds when the request arrived
    method: str
    seq: int
    headers: dict[str, str]
    query: dict[str, str]
    body: bytes
    status: int = 0         # 0: connection dropped


@dataclass
class FakeApi:
    """Scripted responses per seq, then 201 (new), 200 (same bytes) or 409 (other bytes)."""
    plan: dict[int, list] = field(default_factory=dict)   # seq -> [status | (status, retry_after) | "drop"]
    blocked: bool = False                                 # every chunk request: 503, Retry-After 1
    hits: list[Hit] = field(default_factory=list)
    stored: dict[int, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, hit: Hit, sha_ok: bool) -> tuple[int, str | None]:
        with self.lock:
            self.hits.append(hit)
            if self.blocked:
                return 503, "1"
            script = self.plan.get(hit.seq)
            if script:
                step = script.pop(0)
                return (step, None) if isinstance(step, (int, str)) else step
            if not sha_ok:
                return 400, None
            sha = hashlib.sha256(hit.body).hexdigest()
            if hit.seq in self.stored:
                return (200 if self.stored[hit.seq] == sha else 409), None
            self.stored[hit.seq] = sha
            return 201, None

    def puts(self, seq: int | None = None) -> list[Hit]:
        return [h for h in self.hits if h.method == "PUT" and (seq is None or h.seq == seq)]


def _handler(api: FakeApi) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def _send(self, status: int, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for k, v in {"Content-Type": ctype, "Content-Length": str(len(body)), **(extra or {})}.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802
            name = urlsplit(self.path).path.removeprefix("/static/ingest/")
            path = STATIC / name
            if "/" in name or not path.is_file():
                return self._send(404, b"{}", "application/json")
            ctype = "text/javascript" if name.endswith(".js") else "text/html; charset=utf-8"
            self._send(200, path.read_bytes(), ctype, {"Cache-Control": "no-store"})

        def _chunk(self) -> None:
            url = urlsplit(self.path)
            m = CHUNK.match(url.path)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if not m or (self.command == "POST") != bool(m.group(4)):
                return self._send(404, b"{}", "application/json")
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            hit = Hit(time.monotonic(), self.command, int(m.group(3)), {k.lower(): v for k, v in self.headers.items()},
                      query, body)
            claimed = query.get("sha256") if hit.method == "POST" else hit.headers.get("x-content-sha256")
            status, retry_after = api.answer(hit, claimed == hashlib.sha256(body).hexdigest())
            if status == "drop":
                self.close_connection = True
                self.connection.shutdown(2)
                return
            hit.status = status
            extra = {"Retry-After": retry_after} if retry_after else {}
            self._send(status, json.dumps({"code": str(status), "message": "fake"}).encode(), "application/json", extra)

        do_PUT = do_POST = _chunk  # noqa: N815

    return Handler


@pytest.fixture
def api() -> Iterator[tuple[FakeApi, str]]:
    fake = FakeApi()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield fake, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60_000)
        yield b
        b.close()


@pytest.fixture
def context(browser):
    ctx = browser.new_context()  # fresh IndexedDB per test
    yield ctx
    ctx.close()


def open_page(context, base: str, **params: object):
    query = {"base": base, "rec": "rec1", "track": "cam-a", "token": "tok-123", **params}
    page = context.new_page()
    page.goto(f"{base}/static/ingest/record.html?" + "&".join(f"{k}={v}" for k, v in query.items()))
    page.wait_for_function("window.uploader !== undefined")
    page.evaluate("() => window.ready")
    return page


def run(page, body: str, timeout_s: float = 60) -> object:
    """Run async JS `body` in the page; wait (bounded) for its result."""
    page.evaluate("body => { window.__done = false; window.__err = null;"
                  " (new Function('return (async () => {' + body + '})()'))()"
                  ".then(v => { window.__value = v; window.__done = true; },"
                  " e => { window.__err = String(e && e.stack || e); }); }", body)
    page.wait_for_function("window.__done || window.__err !== null", timeout=timeout_s * 1000)
    err = page.evaluate("window.__err")
    assert err is None, err
    return page.evaluate("window.__value")


def enqueue_js(n: int, first_seq_start: int = 1_795_000_000_000) -> str:
    """JS that queues n small distinct blobs (seq 0..n-1 if the queue is fresh)."""
    return (f"for (let i = 0; i < {n}; i++) await uploader.enqueue("
            f"new Blob([`chunk-${{i}}-`.repeat(50 + i)], {{type: 'video/webm'}}),"
            f" {{start: {first_seq_start} + i * 1000, duration: 1000}});")


def accepted(api: FakeApi) -> dict[int, list[Hit]]:
    out: dict[int, list[Hit]] = {}
    for h in api.puts():
        if h.status == 201:
            out.setdefault(h.seq, []).append(h)
    return out


def test_pure_helpers(context, api) -> None:
    fake, base = api
    page = open_page(context, base)
    got = run(page, """
        const m = await import('./uploader.js');
        const opts = {baseDelayMs: 100, maxDelayMs: 1000};
        return {
          classify: [200, 201, 409, 400, 401, 403, 404, 413, 415, 422, 429, 500, 503, 0].map(m.classify),
          ra: [m.parseRetryAfter('3'), m.parseRetryAfter(null), m.parseRetryAfter('soon'),
               m.parseRetryAfter(new Date(10000).toUTCString(), 4000)],
          jitterMax: [0, 1, 2, 10].map(a => m.backoffDelay(a, opts, () => 0.999999)),
          jitterMin: m.backoffDelay(5, opts, () => 0),
          honour: m.retryDelay(0, 2000, opts, () => 0),
          url: m.chunkUrl('http://h/', 'r 1', 't', 7),
        };""")
    assert got["classify"] == ["done", "done", "conflict"] + ["permanent"] * 7 + ["retry"] * 4
    assert got["ra"] == [3000, None, None, 6000]
    assert got["jitterMax"] == [99, 199, 399, 999] and got["jitterMin"] == 0
    assert got["honour"] == 2000
    assert got["url"] == "http://h/v1/recordings/r%201/tracks/t/chunks/7"


def test_recorded_chunks_arrive_once_with_retries_honouring_retry_after(context, api, tmp_path) -> None:
    fake, base = api
    fake.plan = {0: [(503, "1")], 1: [(429, "1")]}
    page = open_page(context, base, chunkMs=1000, autostart=1)
    run(page, "await new Promise(r => setTimeout(r, 3300)); await stopRecording(); await uploader.drain();")
    got = accepted(fake)
    seqs = sorted(got)
    assert seqs == list(range(len(seqs))) and len(seqs) >= 3, seqs
    assert all(len(v) == 1 for v in got.values())                      # exactly once
    assert not [h for h in fake.puts() if h.status == 409]
    for h in fake.puts():
        assert h.headers["x-content-sha256"] == hashlib.sha256(h.body).hexdigest()
        assert h.headers["authorization"] == "Bearer tok-123"
        assert h.headers["content-type"].startswith("video/webm")
        assert "x-chunk-continuation" not in h.headers
    starts = [int(got[s][0].headers["x-chunk-start"]) for s in seqs]
    assert starts == sorted(set(starts)) and starts[0] > 1_600_000_000_000
    assert all(int(got[s][0].headers["x-chunk-duration"]) > 0 for s in seqs)
    for seq in (0, 1):  # the retry came no sooner than Retry-After: 1
        first, second = fake.puts(seq)[:2]
        assert first.status in (503, 429) and second.t - first.t >= 1.0
    for s in seqs:  # each stop/start blob is a complete WebM
        path = tmp_path / f"{s}.webm"
        path.write_bytes(got[s][0].body)
        info = ffprobe(path)
        assert info["format"]["format_name"] == "matroska,webm" and float(info["format"]["duration"]) > 0
    states = page.eval_on_selector_all("#chunks li", "els => els.map(e => e.dataset.state)")
    assert states == ["uploaded"] * len(seqs)


def test_timeslice_marks_continuations(context, api) -> None:
    fake, base = api
    page = open_page(context, base, chunkMs=1000, mode="timeslice", video=0)
    run(page, "await startRecording(); await new Promise(r => setTimeout(r, 2600));"
              " await stopRecording(); await uploader.drain();")
    got = accepted(fake)
    seqs = sorted(got)
    assert seqs == list(range(len(seqs))) and len(seqs) >= 3, seqs
    bodies = [got[s][0] for s in seqs]
    assert bodies[0].body[:4] == EBML and "x-chunk-continuation" not in bodies[0].headers
    assert all(h.headers.get("x-chunk-continuation") == "1" and h.body[:4] != EBML for h in bodies[1:])
    for a, b in zip(bodies, bodies[1:]):  # continuation starts where the previous blob ended
        end = int(a.headers["x-chunk-start"]) + int(a.headers["x-chunk-duration"])
        assert int(b.headers["x-chunk-start"]) == end


def test_timeslice_with_mp4_records_complete_files_instead(context, api) -> None:
    """Chromium's MP4 muxer does not stream (its timeslice blob 0 is ftyp+moov declaring the
    whole recording, every frame comes at stop): the uploader records stop/start MP4 files."""
    fake, base = api
    page = open_page(context, base, chunkMs=1000, mode="timeslice", video=0, mime="audio/mp4;codecs=opus")
    warnings: list[str] = []
    page.on("console", lambda m: warnings.append(m.text) if m.type == "warning" else None)
    run(page, "await startRecording(); await new Promise(r => setTimeout(r, 2600));"
              " await stopRecording(); await uploader.drain();")
    got = accepted(fake)
    seqs = sorted(got)
    assert seqs == list(range(len(seqs))) and len(seqs) >= 2, seqs
    for s in seqs:  # each blob a whole file (ftyp first), none a continuation
        put_ = got[s][0]
        assert put_.body[4:8] == b"ftyp" and "x-chunk-continuation" not in put_.headers, (s, put_.body[:16])
    assert any("not streamed for MP4" in w for w in warnings), warnings


def test_permanent_errors_and_conflicts_are_not_retried(context, api) -> None:
    fake, base = api
    fake.plan = {1: [415], 2: [409], 3: [422]}
    page = open_page(context, base, baseDelayMs=50)
    run(page, "window.events = []; uploader.addEventListener('status', e => events.push(e.detail));"
              + enqueue_js(5) + " await uploader.drain();")
    assert [len(fake.puts(s)) for s in range(5)] == [1, 1, 1, 1, 1]
    assert sorted(accepted(fake)) == [0, 4]
    final = {e["seq"]: e for e in page.evaluate("events")
             if e["state"] in ("uploaded", "failed", "conflict")}
    assert {s: (e["state"], e.get("status")) for s, e in final.items()} == {
        0: ("uploaded", 201), 1: ("failed", 415), 2: ("conflict", 409), 3: ("failed", 422), 4: ("uploaded", 201)}
    assert page.evaluate("uploader.pending") == []


def test_retries_are_bounded_and_network_errors_retried(context, api) -> None:
    fake, base = api
    fake.plan = {0: [503] * 10, 1: ["drop", 500]}
    page = open_page(context, base, baseDelayMs=50, maxAttempts=3)
    run(page, "window.events = []; uploader.addEventListener('status', e => events.push(e.detail));"
              + enqueue_js(2) + " await uploader.drain();")
    assert [h.status for h in fake.puts(0)] == [503, 503, 503]          # bounded: 3 attempts
    assert [h.status for h in fake.puts(1)] == [0, 500, 201]            # dropped connection retried
    failed = [e for e in page.evaluate("events") if e["state"] == "failed"]
    assert [(e["seq"], e.get("retryable")) for e in failed] == [(0, True)]
    assert page.evaluate("uploader.pending") == [0]                     # kept for a later try
    fake.plan = {}
    run(page, "uploader.retryFailed(); await uploader.drain();")
    assert sorted(accepted(fake)) == [0, 1]


def test_queued_blobs_survive_a_page_reload(context, api) -> None:
    fake, base = api
    fake.blocked = True                      # the API is down: blobs pile up in IndexedDB
    page = open_page(context, base, chunkMs=800, autostart=1, beacon=0)
    page.wait_for_function("uploader.pending.length >= 2", timeout=30_000)
    queued = page.evaluate("uploader.pending")
    shas = page.evaluate("uploader.pending.map(s => uploader.queue.get(s).sha256)")
    page.reload()                            # mid-recording: the current segment is lost
    page.wait_for_function("window.uploader !== undefined")
    fake.blocked = False
    page.evaluate("() => window.ready")
    run(page, "await uploader.drain();")
    got = accepted(fake)
    assert set(queued) <= set(got) and all(len(got[s]) == 1 for s in got)
    assert [got[s][0].headers["x-content-sha256"] for s in queued] == shas
    assert all(got[s][0].body[:4] == EBML for s in queued)
    # Seqs are never reused after a reload: the next blob gets a fresh one.
    next_seq = run(page, "return (await uploader.enqueue(new Blob(['x']), {start: 1795000000000})).seq;")
    assert next_seq >= max(queued) + 2       # the segment cut by the reload kept its seq


def test_pagehide_flushes_the_tail_with_a_beacon(context, api) -> None:
    fake, base = api
    page = open_page(context, base, chunkMs=60000, sliceMs=300, video=0, autostart=1)
    page.wait_for_function("uploader.segment && uploader.segment.tail && uploader.segment.tail.blob.size > 2000",
                           timeout=30_000)
    page.goto("about:blank")                 # pagehide
    for _ in range(100):
        beacons = [h for h in fake.hits if h.method == "POST"]
        if beacons:
            break
        time.sleep(0.1)
    assert len(beacons) == 1
    b = beacons[0]
    assert b.seq == 0 and b.status == 201
    assert b.query["sha256"] == hashlib.sha256(b.body).hexdigest()
    assert b.query["token"] == "tok-123" and b.query["continuation"] == "0"
    assert int(b.query["start"]) > 1_600_000_000_000 and int(b.query["duration"]) > 0
    assert b.query["type"].startswith("audio/webm") and b.headers["content-type"].startswith("audio/webm")
    assert b.body[:4] == EBML


def test_against_the_real_ingest_api(context, live_api, token_for) -> None:
    """The page served by the real app uploads real recorder blobs and flushes a beacon."""
    import httpx

    from tests.ingest.conftest import create_recording

    admin = token_for(role="service")
    with httpx.Client(base_url=live_api.url, timeout=30) as http:
        rec = create_recording(http, admin, key="browser", tracks=["cam-a", "mic-a"])
        def upload_token(participant: str) -> str:
            resp = http.post(f"/v1/recordings/{rec}/upload-token", json={"participant_id": participant},
                             headers={"Authorization": f"Bearer {admin}"})
            assert resp.status_code == 200, resp.text
            return resp.json()["token"]

        page = open_page(context, live_api.url, rec=rec, token=upload_token("p-cam-a"), chunkMs=1000)
        run(page, "await startRecording(); await new Promise(r => setTimeout(r, 2300));"
                  " await stopRecording(); await uploader.drain();")
        mic = open_page(context, live_api.url, rec=rec, track="mic-a", token=upload_token("p-mic-a"), chunkMs=60000,
                        sliceMs=300, video=0, autostart=1)
        mic.wait_for_function("uploader.segment && uploader.segment.tail", timeout=30_000)
        mic.goto("about:blank")  # pagehide → beacon
        tracks: dict = {}
        for _ in range(100):
            ledger = http.get(f"/v1/recordings/{rec}/ledger", headers={"Authorization": f"Bearer {admin}"})
            tracks = {t["track_id"]: t for t in ledger.json()["tracks"]}
            if tracks.get("mic-a", {}).get("chunks"):
                break
            time.sleep(0.1)
    states = page.eval_on_selector_all("#chunks li", "els => els.map(e => e.dataset.state)")
    assert len(states) >= 2 and set(states) == {"uploaded"}
    cam = tracks["cam-a"]["chunks"]
    assert [c["seq"] for c in cam] == list(range(len(states)))
    assert [c["start_ms"] for c in cam] == sorted(c["start_ms"] for c in cam)
    assert [c["seq"] for c in tracks["mic-a"]["chunks"]] == [0]
