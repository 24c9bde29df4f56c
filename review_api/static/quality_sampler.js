// Quality samples of the call page's own media, for `POST /v1/recordings/{id}/quality` of the
// room's client recording, sent with the page's upload token (the bot posts its own view).
//
//   every 5 s: getStats() of each open RTCPeerConnection → one reading per RTP stream
//   (outbound-rtp + its remote-inbound-rtp, inbound-rtp) → one sample per stream between two
//   readings → a bounded queue → every 15 s (or at 100 samples) batches that fit the route →
//   POST, one at a time. Leaving reads once more and sends the rest with fetch keepalive
//   (the route takes the token only in the Authorization header, so no sendBeacon).
//
// The route stores an upload token's samples for its own participant only: streams this page
// receives are posted under our id too; the track id names the direction, the kind and the
// other end (`int-1.send.video.cand-1`, `int-1.recv.audio.cand-1`).
// Posting never disturbs the call: failures go to console.debug, transient ones are retried
// with the next batch, the queue drops its oldest samples past `queueMax`.

export const QUALITY = Object.freeze({
  sampleMs: 5000, flushMs: 15000, flushSamples: 100, queueMax: 1000,
  warmUpMs: 8000,      // a stream that never moved counts as frozen only after this long connected
  minWindowMs: 1000,   // the last (partial) window on leave, if at least this long
  maxWindowMs: 60000,  // the route's window_ms cap (a throttled tab: start a new baseline)
  maxSamples: 500,     // ingest/quality.py MAX_SAMPLES
  maxBytes: 60 * 1024, // under core/limits.py MAX_BODY_BYTES (256 KiB) and fetch keepalive's 64 KiB
});
const CAPS = {jitter_ms: 60000, rtt_ms: 60000, bitrate_kbps: 1e6, fps: 1000, width: 16384, height: 16384};
const round = (x, digits) => Math.round(x * 10 ** digits) / 10 ** digits;
const sleep = ms => new Promise(r => setTimeout(r, ms));

// ---------------------------------------------------------------- sampling math (pure)

/** kbit/s between two byte counters `windowMs` apart; null for an empty window or a reset counter. */
export function bitrateKbps(prevBytes, curBytes, windowMs) {
  if (!(windowMs > 0) || !(curBytes >= prevBytes)) return null;
  return round((curBytes - prevBytes) * 8 / windowMs, 1);
}

/** Connected, yet not one byte or packet of the stream moved between the readings (a stream
 * that never moved at all only once the link has been connected for the warm-up). */
export function isFrozen(prev, cur, {connected, warm}) {
  const moved = cur.bytes > prev.bytes || cur.packets > prev.packets;
  return Boolean(connected && !moved && (warm || prev.bytes > 0));
}

/** Round trip in ms: the remote-inbound-rtp report of an outbound stream (RTCP receiver
 * reports), else the selected ICE candidate pair of the transport; null if neither knows. */
export function pickRtt(stats, {remoteId, transportId} = {}) {
  const remote = remoteId ? stats.get(remoteId) : null;
  if (remote && Number.isFinite(remote.roundTripTime)) return round(remote.roundTripTime * 1000, 2);
  const transport = transportId ? stats.get(transportId) : null;
  let pair = transport?.selectedCandidatePairId ? stats.get(transport.selectedCandidatePairId) : null;
  if (!pair) {
    for (const r of stats.values()) {
      if (r.type === "candidate-pair" && r.nominated && r.state === "succeeded") { pair = r; break; }
    }
  }
  return pair && Number.isFinite(pair.currentRoundTripTime) ? round(pair.currentRoundTripTime * 1000, 2) : null;
}

/** One reading per RTP stream of a getStats() report (any Map of stats objects). */
export function readStreams(stats) {
  const out = [];
  for (const r of stats.values()) {
    const send = r.type === "outbound-rtp", recv = r.type === "inbound-rtp";
    if ((!send && !recv) || (r.kind !== "audio" && r.kind !== "video")) continue;
    const remote = send && r.remoteId ? stats.get(r.remoteId) : null;
    const jitter = send ? remote?.jitter : r.jitter;
    out.push({
      id: r.id, dir: send ? "send" : "recv", kind: r.kind,
      bytes: (send ? r.bytesSent : r.bytesReceived) || 0,
      packets: (send ? r.packetsSent : r.packetsReceived) || 0,
      lost: Math.max(0, (send ? remote?.packetsLost : r.packetsLost) || 0),
      frames: (send ? r.framesSent ?? r.framesEncoded : r.framesDecoded ?? r.framesReceived) ?? null,
      fps: r.framesPerSecond ?? null, width: r.frameWidth ?? null, height: r.frameHeight ?? null,
      jitterMs: Number.isFinite(jitter) ? round(jitter * 1000, 2) : null,
      rttMs: pickRtt(stats, {remoteId: send ? r.remoteId : null, transportId: r.transportId}),
    });
  }
  return out;
}

/** A track id the route takes: `{me}.{send|recv}.{kind}.{peer}`, ids cut to fit 128 characters. */
export function trackIdOf(me, dir, kind, peer) {
  const safe = s => String(s || "").replace(/[^A-Za-z0-9_-]/g, "_").replace(/^[_-]+/, "").slice(0, 56) || "p";
  return `${safe(me)}.${dir}.${kind}.${safe(peer)}`;
}

function capped(value, cap) {
  return Number.isFinite(value) && value >= 0 ? Math.min(value, cap) : null;
}

/** The window between two readings of one stream, shaped as the route takes it (null when the
 * window is too short or too long). ctx: {participant, trackId, connected, warm}. */
export function sampleOf(prev, cur, ctx, {minWindowMs = 100, maxWindowMs = QUALITY.maxWindowMs} = {}) {
  const windowMs = Math.round(cur.at - prev.at);
  if (windowMs < minWindowMs || windowMs > maxWindowMs) return null;
  const video = cur.kind === "video";
  const frames = video && cur.frames !== null && prev.frames !== null && cur.frames >= prev.frames
    ? round((cur.frames - prev.frames) * 1000 / windowMs, 1) : (video ? cur.fps : null);
  const s = {
    participant_id: ctx.participant, track_id: ctx.trackId, at_ms: Math.round(prev.at), window_ms: windowMs,
    packets: Math.max(0, cur.packets - prev.packets), lost: Math.max(0, cur.lost - prev.lost),
    jitter_ms: capped(cur.jitterMs, CAPS.jitter_ms), rtt_ms: capped(cur.rttMs, CAPS.rtt_ms),
    bitrate_kbps: capped(bitrateKbps(prev.bytes, cur.bytes, windowMs), CAPS.bitrate_kbps),
    fps: video ? capped(frames, CAPS.fps) : null,
    width: video && cur.width ? capped(cur.width, CAPS.width) : null,
    height: video && cur.height ? capped(cur.height, CAPS.height) : null,
    frozen: isFrozen(prev, cur, ctx),
  };
  for (const k of Object.keys(s)) if (s[k] === null) delete s[k];
  return s;
}

/** Split samples into bodies of at most `maxSamples` and `maxBytes` (as JSON), in order. */
export function batches(samples, {maxSamples = QUALITY.maxSamples, maxBytes = QUALITY.maxBytes} = {}) {
  const out = [];
  let cur = [], size = 0;
  const overhead = JSON.stringify({samples: []}).length;
  for (const s of samples) {
    const n = JSON.stringify(s).length + 1;
    if (cur.length && (cur.length >= maxSamples || overhead + size + n > maxBytes)) {
      out.push(cur);
      cur = [];
      size = 0;
    }
    cur.push(s);
    size += n;
  }
  if (cur.length) out.push(cur);
  return out;
}

/** A refused batch is dropped; these are worth sending again (0: the network failed). */
export function retryable(status) {
  return status === 0 || status === 401 || status === 408 || status === 409 || status === 429 || status >= 500;
}

// ---------------------------------------------------------------- the reporter

/** Samples every open link of the call and posts them. links() → [{id, pc}] (the other end's
 * participant id and the connection); token() → the current upload token (renewed under us). */
export class QualityReporter {
  constructor({me, recordingId, token, links, options = {}}) {
    Object.assign(this, {me, recordingId, token, links, o: {...QUALITY, ...options}});
    this.url = `/v1/recordings/${encodeURIComponent(recordingId)}/quality`;
    this.last = new WeakMap();      // pc → Map(stats id → reading)
    this.connected = new WeakMap(); // pc → epoch ms it was first seen connected
    this.queue = [];
    this.closing = new Set();       // last readings of links being closed
    this.counts = {readings: 0, sampled: 0, posted: 0, dropped: 0, failures: 0};
    this.flushedAt = Date.now();
  }

  start() {
    this.sample();
    this.timer = setInterval(() => this.tick(), this.o.sampleMs);
  }

  /** Sample; post in the background when due (a slow post never delays the next reading). */
  async tick() {
    if (this.sampling || this.stopped) return;
    this.sampling = true;
    try {
      await this.sample();
    } catch (err) {
      console.debug("quality sampling failed", err);
    } finally {
      this.sampling = false;
    }
    const due = Date.now() - this.flushedAt >= this.o.flushMs - 100 || this.queue.length >= this.o.flushSamples;
    if (due && !this.posting && !this.stopped) {
      this.posting = this.flush().finally(() => { this.posting = null; });
    }
  }

  /** Read every open link once (getStats is called at once, so a caller may close the links
   * right after), queue a sample per stream against its previous reading. */
  async sample({minWindowMs = 100, links = this.links()} = {}) {
    links = links.filter(l => l.pc.connectionState !== "closed");
    const reports = links.map(l => l.pc.getStats().catch(() => null));
    const at = Date.now();
    const got = await Promise.all(reports);
    links.forEach((link, i) => { if (got[i]) this._read(link, got[i], at, minWindowMs); });
  }

  /** A link is about to close (the other end left, a rebuild): its last window, read now. */
  close(link) {
    if (this.stopped) return;
    const last = this.sample({minWindowMs: this.o.minWindowMs, links: [link]});
    this.closing.add(last);
    last.finally(() => this.closing.delete(last));
  }

  _read({id: peer, pc}, stats, at, minWindowMs) {
    const connected = pc.connectionState === "connected";
    if (connected && !this.connected.has(pc)) this.connected.set(pc, at);
    const warm = connected && at - this.connected.get(pc) >= this.o.warmUpMs;
    const before = this.last.get(pc) || new Map(), now = new Map();
    for (const cur of readStreams(stats)) {
      cur.at = at;
      now.set(cur.id, cur);
      const prev = before.get(cur.id);
      if (!prev) continue;
      const ctx = {participant: this.me, trackId: trackIdOf(this.me, cur.dir, cur.kind, peer), connected, warm};
      const s = sampleOf(prev, cur, ctx, {minWindowMs, maxWindowMs: this.o.maxWindowMs});
      if (s) this._queue([s]);
    }
    this.last.set(pc, now);
    this.counts.readings++;
  }

  _queue(samples, front = false) {
    this.queue = front ? [...samples, ...this.queue] : [...this.queue, ...samples];
    if (!front) this.counts.sampled += samples.length;
    const over = this.queue.length - this.o.queueMax;
    if (over > 0) { // the oldest go first
      this.queue.splice(0, over);
      this.counts.dropped += over;
    }
  }

  /** Post the queue, one batch at a time; a transient failure puts the rest back for next time. */
  async flush({keepalive = false} = {}) {
    this.flushedAt = Date.now();
    const todo = batches(this.queue.splice(0), this.o);
    let budget = keepalive ? QUALITY.maxBytes : 0; // in-flight keepalive bodies share 64 KiB
    while (todo.length) {
      const batch = todo.shift(), body = JSON.stringify({source: "client", samples: batch});
      const status = await this._post(body, budget >= body.length);
      budget -= body.length;
      if (status >= 200 && status < 300) {
        this.counts.posted += batch.length;
      } else if (retryable(status)) {
        this.counts.failures++;
        this._queue([...batch, ...todo.flat()], true);
        return false;
      } else {
        this.counts.failures++;
        this.counts.dropped += batch.length;
      }
    }
    return true;
  }

  async _post(body, keepalive) {
    const init = {method: "POST", body, cache: "no-store", signal: AbortSignal.timeout(10000),
      headers: {"Content-Type": "application/json", Authorization: `Bearer ${this.token()}`}};
    try {
      const res = await fetch(this.url, keepalive ? {...init, keepalive} : init).catch(err => {
        if (!keepalive) throw err;
        return fetch(this.url, init); // keepalive quota taken (the chunk beacons): send it plainly
      });
      if (!res.ok) console.debug("quality post refused", res.status, await res.text().catch(() => ""));
      return res.status;
    } catch (err) {
      console.debug("quality post failed", String(err));
      return 0;
    }
  }

  /** Leaving: what is queued goes now, then one last (partial) window of every link; both with
   * keepalive so a closing page still sends them. Resolves once posted (or after `waitMs`). */
  async finish(waitMs = 3000) {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.timer);
    const reading = this.sample({minWindowMs: this.o.minWindowMs}); // getStats before the links close
    const queued = this.flush({keepalive: true});
    const last = Promise.all([reading, queued, this.posting, ...this.closing]).then(() => this.flush({keepalive: true}));
    await Promise.race([last.catch(err => console.debug("quality flush failed", err)), sleep(waitMs)]);
  }
}
