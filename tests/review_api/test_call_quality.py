"""The call page's own quality samples (review_api/static/quality_sampler.js) in real headless
Chromium against the real API.

What is proved: the sampling math (byte deltas → bitrate, frozen detection, the RTT pick,
stats → streams → samples, batches that fit the route's limits) and the reporter's posting
policy (a transient failure is retried with the next batch, a refused batch is dropped, the
queue is bounded) run in the page with plain values and a stubbed `fetch`; and in a real
two-page call each page posts getStats() samples of what it sends and receives to the
room's client recording with its upload token — periodically, and the rest when it leaves —
with plausible values (bitrate, frame rate, picture size, packets).
"""
from __future__ import annotations

import re
import time

import pytest
from sqlmodel import select

from core.db import make_engine, session_scope
from core.limits import ID_PATTERN, MAX_BODY_BYTES
from core.models import QualitySample
from ingest.quality import MAX_SAMPLES
from tests.review_api.test_call_page import (  # noqa: F401
    browser,
    open_page,
    rooms,
    snapshot,
    start_call,
)

PURE = """() => {
  const Q = CallPage.quality;
  const stats = entries => new Map(entries.map(e => [e.id, e]));
  const outVideo = {id: "OT1", type: "outbound-rtp", kind: "video", transportId: "T1", remoteId: "RI1",
    packetsSent: 1200, bytesSent: 900000, framesSent: 240, framesPerSecond: 24, frameWidth: 640, frameHeight: 360};
  const remoteIn = {id: "RI1", type: "remote-inbound-rtp", kind: "video", packetsLost: 7, jitter: 0.0042,
    roundTripTime: 0.0421};
  const inAudio = {id: "IT1", type: "inbound-rtp", kind: "audio", transportId: "T1", packetsReceived: 500,
    packetsLost: -2, bytesReceived: 40000, jitter: 0.003};
  const transport = {id: "T1", type: "transport", selectedCandidatePairId: "CP2"};
  const pairs = [{id: "CP1", type: "candidate-pair", nominated: false, state: "failed", currentRoundTripTime: 9},
                 {id: "CP2", type: "candidate-pair", nominated: true, state: "succeeded", currentRoundTripTime: 0.003}];
  const all = stats([outVideo, remoteIn, inAudio, transport, ...pairs, {id: "C1", type: "codec"}]);
  const streams = Q.readStreams(all);
  const prev = {...streams[0], at: 1700000000000};
  const cur = {...prev, at: 1700000005000, bytes: prev.bytes + 62500, packets: prev.packets + 100, lost: prev.lost + 3,
               frames: prev.frames + 120};
  const ctx = {participant: "int-1", trackId: Q.trackIdOf("int-1", "send", "video", "cand-1"), connected: true,
               warm: true};
  const still = {...prev, at: prev.at + 5000};
  const samples = Array.from({length: 1201}, (_, i) => ({participant_id: "p", track_id: "t", at_ms: i,
    window_ms: 5000, packets: i, lost: 0, bitrate_kbps: 123.4}));
  const cut = maxBytes => Q.batches(samples, {maxSamples: 500, maxBytes});
  const body = b => JSON.stringify({source: "client", samples: b}).length;
  return {
    limits: {maxSamples: Q.QUALITY.maxSamples, maxBytes: Q.QUALITY.maxBytes},
    bitrate: [Q.bitrateKbps(1000, 63500, 5000), Q.bitrateKbps(5000, 4000, 5000), Q.bitrateKbps(0, 100, 0),
              Q.bitrateKbps(0, 0, 5000)],
    frozen: [Q.isFrozen({bytes: 10, packets: 1}, {bytes: 10, packets: 1}, {connected: true, warm: false}),
             Q.isFrozen({bytes: 10, packets: 1}, {bytes: 11, packets: 1}, {connected: true, warm: true}),
             Q.isFrozen({bytes: 10, packets: 1}, {bytes: 10, packets: 1}, {connected: false, warm: true}),
             Q.isFrozen({bytes: 0, packets: 0}, {bytes: 0, packets: 0}, {connected: true, warm: false}),
             Q.isFrozen({bytes: 0, packets: 0}, {bytes: 0, packets: 0}, {connected: true, warm: true})],
    rtt: [Q.pickRtt(all, {remoteId: "RI1", transportId: "T1"}), Q.pickRtt(all, {transportId: "T1"}),
          Q.pickRtt(stats(pairs), {}), Q.pickRtt(stats([pairs[0]]), {}),
          Q.pickRtt(stats([{...remoteIn, roundTripTime: undefined}, transport, ...pairs]),
                    {remoteId: "RI1", transportId: "T1"})],
    streams,
    sample: Q.sampleOf(prev, cur, ctx),
    stillSample: Q.sampleOf(prev, still, ctx),
    tooLong: Q.sampleOf(prev, {...cur, at: prev.at + 61000}, ctx),
    tooShort: Q.sampleOf(prev, {...cur, at: prev.at + 500}, ctx, {minWindowMs: 1000}),
    audio: Q.sampleOf({...streams[1], at: 0, jitterMs: null}, {...streams[1], at: 5000, bytes: 60000, packets: 750,
                                                               fps: 50, width: 9}, {...ctx, connected: false}),
    ids: [ctx.trackId, Q.trackIdOf("../weird id:é", "recv", "audio", "x".repeat(300)), Q.trackIdOf("", "send", "video", "")],
    bigBatches: cut(10 ** 9).map(b => b.length),
    smallBatches: cut(8000).map(b => [b.length, body(b), b[0].at_ms]),
    order: cut(8000).flat().every((s, i) => s.at_ms === i),
    retry: [0, 401, 408, 409, 429, 500, 503, 400, 403, 404, 413, 422].map(Q.retryable),
  };
}"""

# A reporter over a fake link (getStats answers a growing Map) and a stubbed fetch.
REPORTER = """async () => {
  const Q = CallPage.quality;
  let bytes = 0;
  const pc = {connectionState: "connected", getStats: async () => { bytes += 50000;
    return new Map([["IT1", {id: "IT1", type: "inbound-rtp", kind: "video", bytesReceived: bytes,
      packetsReceived: bytes / 1000, packetsLost: 0, framesDecoded: bytes / 2000, frameWidth: 320, frameHeight: 180}]]); }};
  const answers = [503, 200, 400, 200], bodies = [], realFetch = window.fetch;
  window.fetch = async (url, init) => { bodies.push({url, auth: init.headers.Authorization,
    n: JSON.parse(init.body).samples.length, keepalive: !!init.keepalive});
    return new Response("{}", {status: answers.shift() ?? 200}); };
  const r = new Q.QualityReporter({me: "cand-1", recordingId: "rec_1", token: () => "tok", links: () => [{id: "int-1", pc}],
                                   options: {queueMax: 3, minWindowMs: 100}});
  const step = () => new Promise(res => setTimeout(res, 120));
  const log = [];
  try {
    for (let i = 0; i < 6; i++) { await step(); await r.sample(); }   // 5 windows, the queue keeps the last 3
    log.push({queued: r.queue.length, ...r.counts});
    log.push({ok: await r.flush(), queued: r.queue.length, ...r.counts});       // 503: kept for the next batch
    log.push({ok: await r.flush(), queued: r.queue.length, ...r.counts});       // 200: posted
    await step(); await r.sample();
    log.push({ok: await r.flush(), queued: r.queue.length, ...r.counts});       // 400: dropped, not retried
    await step(); await r.finish();                                             // leave: one last window
    log.push({queued: r.queue.length, ...r.counts});
  } finally {
    window.fetch = realFetch;
  }
  return {log, bodies};
}"""


@pytest.mark.browser
def test_quality_sampling_math_in_the_browser(live_api, open_page) -> None:  # noqa: F811
    page = open_page()
    page.goto(f"{live_api.url}/call/room_x")
    page.wait_for_selector("#message:not([hidden])")
    got = page.evaluate(PURE)
    # the page's batch limits are the route's
    assert got["limits"]["maxSamples"] == MAX_SAMPLES
    assert got["limits"]["maxBytes"] <= min(MAX_BODY_BYTES, 64 * 1024)
    # 62,500 bytes in 5 s = 100 kbit/s; a counter that went back (new stream) or an empty window: none
    assert got["bitrate"] == [100.0, None, None, 0.0]
    # frozen: connected and nothing moved — once media had moved, or after the warm-up
    assert got["frozen"] == [True, False, False, False, True]
    # RTT: remote-inbound-rtp first, then the transport's selected pair, then a nominated pair
    assert got["rtt"] == [42.1, 3.0, 3.0, None, 3.0]
    out, inn = got["streams"]
    assert out == {"id": "OT1", "dir": "send", "kind": "video", "bytes": 900000, "packets": 1200, "lost": 7,
                   "frames": 240, "fps": 24, "width": 640, "height": 360, "jitterMs": 4.2, "rttMs": 42.1}
    assert (inn["dir"], inn["kind"], inn["lost"], inn["jitterMs"], inn["rttMs"], inn["frames"]) == (
        "recv", "audio", 0, 3.0, 3.0, None)  # a negative loss count (duplicates) reads as 0
    assert got["sample"] == {"participant_id": "int-1", "track_id": "int-1.send.video.cand-1",
                             "at_ms": 1700000000000, "window_ms": 5000, "packets": 100, "lost": 3, "jitter_ms": 4.2,
                             "rtt_ms": 42.1, "bitrate_kbps": 100.0, "fps": 24.0, "width": 640, "height": 360,
                             "frozen": False}
    still = got["stillSample"]
    assert still["frozen"] is True and still["bitrate_kbps"] == 0.0 and still["packets"] == 0 and still["fps"] == 0.0
    assert got["tooLong"] is None and got["tooShort"] is None  # the route takes windows of 0.1–60 s
    audio = got["audio"]  # audio: no frame rate or size; unknown jitter left out; not connected: not frozen
    assert audio["bitrate_kbps"] == pytest.approx((60000 - 40000) * 8 / 5000, abs=0.1)
    assert not {"fps", "width", "height"} & set(audio) and audio["frozen"] is False and audio["jitter_ms"] == 3.0
    for track_id in got["ids"]:
        assert re.match(ID_PATTERN, track_id), track_id
    # batches: at most 500 samples, and at most maxBytes each (smaller bodies: more batches), in order
    assert got["bigBatches"] == [500, 500, 201]
    assert all(size <= 8000 for _, size, _ in got["smallBatches"]) and len(got["smallBatches"]) > 10
    assert sum(n for n, _, _ in got["smallBatches"]) == 1201 and got["order"]
    assert got["retry"] == [True] * 7 + [False] * 5
    assert not page.problems, page.problems


@pytest.mark.browser
def test_quality_reporter_retries_drops_and_bounds_in_the_browser(live_api, open_page) -> None:  # noqa: F811
    page = open_page()
    page.goto(f"{live_api.url}/call/room_x")
    page.wait_for_selector("#message:not([hidden])")
    got = page.evaluate(REPORTER)
    full, failed, posted, refused, left = got["log"]
    assert full["queued"] == 3 and full["sampled"] == 5 and full["dropped"] == 2   # bounded: the oldest went
    assert failed["ok"] is False and failed["queued"] == 3 and failed["posted"] == 0  # 503: kept
    assert posted["ok"] is True and posted["queued"] == 0 and posted["posted"] == 3   # retried with the next batch
    assert refused["ok"] is True and refused["queued"] == 0 and refused["dropped"] == 2 + 1  # 400: dropped
    assert left["posted"] == 4 and left["queued"] == 0                                # leave: the last window
    assert [b["n"] for b in got["bodies"]] == [3, 3, 1, 1]
    assert all(b["url"] == "/v1/recordings/rec_1/quality" and b["auth"] == "Bearer tok" for b in got["bodies"])
    assert got["bodies"][-1]["keepalive"] is True and got["bodies"][0]["keepalive"] is False
    assert not page.problems, page.problems


@pytest.mark.browser
def test_both_pages_post_their_quality_to_the_client_recording(rooms, open_page, settings) -> None:  # noqa: F811
    """A real call: every 5 s each page samples what it sends and receives; a batch goes out
    every 15 s and the rest on leave — to the client recording, as `client`, with plausible values."""
    iv, cand, connected_s, _ = start_call(rooms, open_page, "slot-quality")
    pages = {"int-1": iv, "cand-1": cand}
    for page in pages.values():
        page.wait_for_function("() => window.callTest.snapshot().recording.state === 'on'")
    rec_id = snapshot(iv)["recording"]["id"]
    assert snapshot(cand)["recording"]["id"] == rec_id

    # a periodic batch (15 s after the recording opened) reaches the timeline while the call runs
    t0, q = time.monotonic(), {}
    while time.monotonic() - t0 < 30:
        q = rooms.get(f"/v1/recordings/{rec_id}/quality?source=client")
        if {p["participant_id"] for p in q["participants"] if p["seconds"]} == set(pages):
            break
        time.sleep(1)
    periodic_s = time.monotonic() - t0
    assert {p["participant_id"] for p in q["participants"] if p["seconds"]} == set(pages), q
    for who in q["participants"]:
        rows = [r for r in who["seconds"] if not r["frozen"]]
        assert rows and all(r["state"] in ("ok", "amber") for r in rows), who
        assert max(r["bitrate_kbps"] or 0 for r in rows) > 50 and max(r["fps"] or 0 for r in rows) > 5, who
        assert max(r["width"] or 0 for r in rows) >= 160 and max(r["height"] or 0 for r in rows) >= 90, who
    before = {pid: snapshot(page)["quality"] for pid, page in pages.items()}
    time.sleep(2)  # the last window (on leave) is at least a second long

    for page in (cand, iv):
        page.click("#leave")
        page.wait_for_selector("#message:not([hidden])")
    after = {pid: snapshot(page)["quality"] for pid, page in pages.items()}  # leaving waited for its posts
    engine = make_engine(settings.database_url)
    with session_scope(engine) as s:
        rows = [r.model_dump() for r in s.exec(select(QualitySample).where(QualitySample.recording_id == rec_id))]
    engine.dispose()
    assert rows and {r["source"] for r in rows} == {"client"}
    for pid, page in pages.items():
        mine = [r for r in rows if r["participant_id"] == pid]
        other = next(p for p in pages if p != pid)
        tracks = {r["track_id"] for r in mine}
        assert tracks == {f"{pid}.{d}.{k}.{other}" for d in ("send", "recv") for k in ("audio", "video")}, tracks
        last = {r["track_id"]: r["at_ms"] for r in sorted(mine, key=lambda r: r["at_ms"])}
        for r in mine:
            assert 100 <= r["window_ms"] <= 12_000 and r["packets"] > 0 and not r["frozen"], r
            assert r["bitrate_kbps"] > 0 and r["lost"] <= r["packets"] // 10, r
            if r["at_ms"] != last[r["track_id"]]:  # (the window in which the other end hung up may have none)
                assert r["rtt_ms"] is not None and r["rtt_ms"] < 1000 and r["jitter_ms"] is not None, r
            if ".video." in r["track_id"]:
                assert r["fps"] > 0 and r["width"] >= 160 and r["height"] >= 90, r
            else:
                assert r["fps"] is None and r["width"] is None, r
        counts = after[pid]
        assert counts["posted"] == counts["sampled"] == len(mine), (pid, counts, len(mine))
        assert counts["failures"] == counts["dropped"] == counts["queued"] == 0, counts
        assert len(mine) > before[pid]["posted"]  # the leave sent the rest and a last window
    assert iv.problems == [] and cand.problems == [], (iv.problems, cand.problems)
    print(f"call connected in {connected_s:.1f} s; first batches stored {periodic_s:.1f} s later; "
          f"{len(rows)} samples")
