// Reference browser uploader for the chunk ingest API. ES module, no build step, no deps.
//
//   const up = new ChunkUploader({base, recordingId, trackId, token, chunkMs: 30000});
//   up.addEventListener("status", e => console.log(e.detail));  // {seq, state, ...}
//   await up.open();            // opens IndexedDB, resumes uploads left by an earlier page
//   await up.start(stream);     // MediaRecorder rotated every chunkMs; blobs uploaded
//   await up.stop(); await up.drain();
//
// Each blob: PUT {base}/v1/recordings/{rec}/tracks/{track}/chunks/{seq} with headers
//   Content-Type (the blob's full mime), X-Content-SHA256 (hex), X-Chunk-Start (epoch ms
//   when this blob's media began), X-Chunk-Duration (ms), X-Chunk-Continuation: 1 (timeslice
//   blobs after the first of a recorder: no header, byte-join to the previous seq),
//   Authorization: Bearer {token}.
// Responses: 200/201 done · 409 conflict (reported, kept, not retried) · 400/401/403/404/413/
//   415/422 permanent (reported, kept, not retried) · 429/5xx/network: retried with exponential
//   backoff + full jitter, never sooner than Retry-After, at most maxAttempts per page life
//   (then "failed" with retryable: true; the blob stays queued and resumes on the next open()).
// Queue: every blob is stored in IndexedDB (with its SHA-256) before its first attempt and
//   deleted once accepted, so a reload or crash loses nothing that was queued.
// pagehide: queued blobs (and, with sliceMs > 0, the unfinished current segment) are sent with
//   navigator.sendBeacon when small enough. A beacon cannot set headers, so it is
//   POST {chunk url}/beacon?sha256=…&start=…&duration=…&continuation=0|1&type=…&token=…
//   with the blob as body (Content-Type = its mime when same-origin; untyped cross-origin, so
//   the server takes ?type=). The token travels in the URL: upload tokens must be short-lived
//   and scoped to one recording. A blob later re-sent by PUT with the same bytes gets a 200.
// Modes: "stopstart" (default) stops and restarts the recorder every chunkMs: each blob is a
//   complete file (WebM with Duration and Cues). "timeslice" runs one recorder with
//   start(chunkMs). sliceMs > 0 (stopstart only) gathers each segment in slices so the
//   unfinished tail can be beaconed on pagehide, but then blobs carry no Duration element.
// Cross-origin use needs CORS on the API for PUT and the X-* headers.

const DB_VERSION = 1;
const PERMANENT = new Set([400, 401, 403, 404, 413, 415, 422]);
const STATES = ["queued", "uploading", "retrying", "uploaded", "conflict", "failed", "beaconed"];

export const DEFAULTS = Object.freeze({
  chunkMs: 30000, mode: "stopstart", sliceMs: 0, mimeType: "",
  maxAttempts: 8, baseDelayMs: 1000, maxDelayMs: 60000, requestTimeoutMs: 120000,
  beacon: true, beaconMaxBytes: 60000, dbName: "recorder-uploads",
});

// ---------------------------------------------------------------- pure helpers

/** "retry" | "done" | "conflict" | "permanent" for an HTTP status (0 = network error). */
export function classify(status) {
  if (status === 200 || status === 201) return "done";
  if (status === 409) return "conflict";
  if (PERMANENT.has(status)) return "permanent";
  if (status === 0 || status === 408 || status === 429 || status >= 500) return "retry";
  return "permanent";
}

/** Retry-After (delta-seconds or HTTP-date) in ms, or null when absent/invalid. */
export function parseRetryAfter(value, nowMs = Date.now()) {
  if (value == null || value === "") return null;
  if (/^\s*\d+\s*$/.test(value)) return Number(value) * 1000;
  const when = Date.parse(value);
  return Number.isNaN(when) ? null : Math.max(0, when - nowMs);
}

/** Full-jitter exponential backoff: uniform in [0, min(max, base * 2^attempt)). */
export function backoffDelay(attempt, {baseDelayMs, maxDelayMs}, random = Math.random) {
  return Math.floor(random() * Math.min(maxDelayMs, baseDelayMs * 2 ** attempt));
}

/** Delay before the next attempt: never sooner than Retry-After, jittered otherwise. */
export function retryDelay(attempt, retryAfterMs, opts, random = Math.random) {
  const jitter = backoffDelay(attempt, opts, random);
  return retryAfterMs == null ? jitter : retryAfterMs + Math.floor(random() * opts.baseDelayMs);
}

export function chunkUrl(base, rec, track, seq) {
  const enc = encodeURIComponent;
  return `${base.replace(/\/+$/, "")}/v1/recordings/${enc(rec)}/tracks/${enc(track)}/chunks/${seq}`;
}

export function beaconUrl(base, rec, track, item, token) {
  const q = new URLSearchParams({sha256: item.sha256, start: String(item.start),
    duration: String(item.duration ?? ""), continuation: item.continuation ? "1" : "0",
    type: item.type || "", token: token || ""});
  return `${chunkUrl(base, rec, track, item.seq)}/beacon?${q}`;
}

export async function sha256Hex(blob) {
  const digest = await crypto.subtle.digest("SHA-256", await blob.arrayBuffer());
  return Array.from(new Uint8Array(digest), b => b.toString(16).padStart(2, "0")).join("");
}

/** Same origin: the typed blob (Content-Type = its mime). Cross-origin: an untyped copy, since
 * a non-CORS-safelisted Content-Type makes Chromium refuse the beacon; the mime is in ?type=. */
function beaconBody(blob, url) {
  return new URL(url, location.href).origin === location.origin ? blob : new Blob([blob]);
}

const sleep = ms => new Promise(r => setTimeout(r, ms));
const nowMs = () => Math.round(performance.timeOrigin + performance.now());

// ---------------------------------------------------------------- IndexedDB queue

function done(request) {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

function openDb(name) {
  const request = indexedDB.open(name, DB_VERSION);
  request.onupgradeneeded = () => {
    const db = request.result;
    db.createObjectStore("chunks", {keyPath: "id"}).createIndex("track", "track");
    db.createObjectStore("counters", {keyPath: "track"});
  };
  return done(request);
}

class Store {
  constructor(db, track) { this.db = db; this.track = track; }
  _os(name, mode) { return this.db.transaction(name, mode).objectStore(name); }
  put(item) { return done(this._os("chunks", "readwrite").put({...item, track: this.track})); }
  remove(id) { return done(this._os("chunks", "readwrite").delete(id)); }
  all() { return done(this._os("chunks", "readonly").index("track").getAll(this.track)); }
  async nextSeq() { return (await done(this._os("counters", "readonly").get(this.track)))?.next ?? 0; }
  saveNextSeq(next) { return done(this._os("counters", "readwrite").put({track: this.track, next})); }
}

// ---------------------------------------------------------------- uploader

export class ChunkUploader extends EventTarget {
  /** opts: base, recordingId, trackId, token, onStatus, plus any key of DEFAULTS. */
  constructor(opts) {
    super();
    this.opts = {...DEFAULTS, ...opts};
    if (!this.opts.recordingId || !this.opts.trackId) {
      throw new Error("ChunkUploader: recordingId and trackId are required");
    }
    this.opts.base = this.opts.base || location.origin;
    this.token = this.opts.token || "";
    this.queue = new Map();      // seq -> item {id, seq, blob, type, sha256, start, duration, continuation}
    this.gaveUp = new Set();     // seqs that exhausted maxAttempts in this page life
    this.nextSeq = 0;
    this._pumping = null;
    this._idle = [];
    this._onPageHide = () => this.flushWithBeacon();
  }

  setToken(token) { this.token = token; }

  /** Open the queue and resume uploads left by an earlier page (same recording + track). */
  async open() {
    if (this.store) return this.queue.size;
    const key = `${this.opts.base}|${this.opts.recordingId}|${this.opts.trackId}`;
    this.store = new Store(await openDb(this.opts.dbName), key);
    const items = await this.store.all();
    this.nextSeq = Math.max(await this.store.nextSeq(), ...items.map(i => i.seq + 1));
    for (const item of items.filter(i => i.state === "pending").sort((a, b) => a.seq - b.seq)) {
      this.queue.set(item.seq, item);
      this._emit(item, "queued", {resumed: true});
    }
    addEventListener("pagehide", this._onPageHide);
    this._pump();
    return items.filter(i => i.state === "pending").length;
  }

  /** Reserve the next seq (persisted, so a reload never reuses it). */
  allocateSeq() {
    const seq = this.nextSeq++;
    this.store.saveNextSeq(this.nextSeq).catch(err => this._emit({seq}, "failed", {error: String(err)}));
    return seq;
  }

  /** Queue a blob: hash, persist, upload. meta: {start, duration, continuation, seq}. */
  async enqueue(blob, meta) {
    const seq = meta.seq ?? this.allocateSeq();
    const item = {id: `${this.store.track}|${seq}`, seq, blob, type: blob.type, sha256: await sha256Hex(blob),
      start: meta.start, duration: meta.duration ?? null, continuation: !!meta.continuation, state: "pending"};
    await this.store.put(item);
    this.queue.set(seq, item);
    this._emit(item, "queued");
    this._pump();
    return item;
  }

  /** Resolve when nothing is left to try in this page life. */
  drain() {
    if (!this._pumping && this._pickNext() == null) return Promise.resolve();
    return new Promise(resolve => this._idle.push(resolve));
  }

  get pending() { return [...this.queue.keys()].sort((a, b) => a - b); }

  /** Try the blobs that exhausted their attempts again. */
  retryFailed() { this.gaveUp.clear(); this._pump(); }

  close() {
    removeEventListener("pagehide", this._onPageHide);
    this.store?.db.close();
  }

  _emit(item, state, extra = {}) {
    const detail = {seq: item.seq, state, size: item.blob?.size, start: item.start, ...extra};
    this.opts.onStatus?.(detail);
    this.dispatchEvent(new CustomEvent("status", {detail}));
  }

  _pickNext() {
    const ready = this.pending.filter(seq => !this.gaveUp.has(seq));
    return ready.length ? ready[0] : null;
  }

  _pump() {
    if (this._pumping) return;
    this._pumping = (async () => {
      for (let seq = this._pickNext(); seq != null; seq = this._pickNext()) {
        await this._upload(this.queue.get(seq));
      }
    })().finally(() => {
      this._pumping = null;
      if (this._pickNext() != null) return this._pump();
      this._idle.splice(0).forEach(resolve => resolve());
    });
  }

  async _upload(item) {
    const {maxAttempts} = this.opts;
    for (let attempt = 0; attempt < maxAttempts; attempt++) {
      this._emit(item, "uploading", {attempt: attempt + 1});
      const {status, retryAfterMs, error} = await this._send(item);
      const outcome = classify(status);
      if (outcome === "done") return this._settle(item, "uploaded", {status}, true);
      if (outcome !== "retry") {
        return this._settle(item, outcome === "conflict" ? "conflict" : "failed", {status, error});
      }
      if (attempt + 1 < maxAttempts) {
        const delayMs = retryDelay(attempt, retryAfterMs, this.opts);
        this._emit(item, "retrying", {attempt: attempt + 1, status, error, delayMs, retryAfterMs});
        await sleep(delayMs);
      }
    }
    this.gaveUp.add(item.seq);
    this._emit(item, "failed", {retryable: true, error: "retries exhausted"});
  }

  async _settle(item, state, extra, accepted = false) {
    this.queue.delete(item.seq);
    if (accepted) await this.store.remove(item.id);
    else await this.store.put({...item, state, status: extra.status});
    this._emit(item, state, extra);
  }

  async _send(item) {
    const headers = {"Content-Type": item.type || "application/octet-stream",
      "X-Content-SHA256": item.sha256, "X-Chunk-Start": String(item.start),
      "Authorization": `Bearer ${this.token}`};
    if (item.duration != null) headers["X-Chunk-Duration"] = String(item.duration);
    if (item.continuation) headers["X-Chunk-Continuation"] = "1";
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), this.opts.requestTimeoutMs);
    try {
      const url = chunkUrl(this.opts.base, this.opts.recordingId, this.opts.trackId, item.seq);
      const res = await fetch(url, {method: "PUT", headers, body: item.blob, signal: abort.signal});
      const retryAfterMs = parseRetryAfter(res.headers.get("Retry-After"));
      let error;
      if (!res.ok) error = await res.text().catch(() => "");
      return {status: res.status, retryAfterMs, error};
    } catch (err) {
      return {status: 0, retryAfterMs: null, error: String(err)};
    } finally {
      clearTimeout(timer);
    }
  }

  /** pagehide: hand small queued blobs and the unfinished segment to sendBeacon. */
  flushWithBeacon() {
    if (!this.opts.beacon || !navigator.sendBeacon) return 0;
    const items = this.pending.map(seq => this.queue.get(seq));
    if (this.segment?.tail && !this.segment.enqueued) items.push(this.segment.tail);
    let sent = 0;
    for (const item of items) {
      if (item.blob.size > this.opts.beaconMaxBytes) continue;
      const url = beaconUrl(this.opts.base, this.opts.recordingId, this.opts.trackId, item, this.token);
      if (!navigator.sendBeacon(url, beaconBody(item.blob, url))) break;
      sent++;
      this._emit(item, "beaconed");
    }
    return sent;
  }

  // -------------------------------------------------------------- recording

  /** Record `stream`, rotating every chunkMs. Call open() first. */
  async start(stream) {
    if (!this.store) await this.open();
    this.stream = stream;
    if (this.opts.mode === "timeslice" && /mp4/i.test(this.opts.mimeType || "")) {
      // Chromium's MP4 muxer does not stream: with start(timeslice) its first blob is ftyp+moov
      // declaring the whole recording and every frame arrives at stop(); stop/start blobs are
      // complete files and upload as they are made.
      console.warn("uploader: timeslice is not streamed for MP4; recording stop/start chunks instead");
      this.opts.mode = "stopstart";
    }
    if (this.opts.mode === "timeslice") return this._startTimeslice();
    this._startSegment();
    this._rotation = setInterval(() => this.rotate(), this.opts.chunkMs);
  }

  /** Stop recording; resolves once the last blob is queued. */
  async stop() {
    clearInterval(this._rotation);
    const seg = this.segment;
    this.segment = null;
    if (seg) await seg.finish();
  }

  /** Close the current segment and open the next (the new recorder starts first: no gap). */
  rotate() {
    const old = this.segment;
    this._startSegment();
    return old?.finish();
  }

  _recorder() {
    const mimeType = this.opts.mimeType;
    return new MediaRecorder(this.stream, mimeType ? {mimeType} : {});
  }

  /** stopstart: one recorder per seq; its blob is a complete file. */
  _startSegment() {
    const rec = this._recorder();
    const seg = {seq: this.allocateSeq(), rec, parts: [], start: nowMs(), tail: null, enqueued: false};
    rec.onstart = e => { seg.start = Math.round(performance.timeOrigin + e.timeStamp); };
    rec.ondataavailable = e => {
      if (!e.data.size) return;
      seg.parts.push(e.data);
      if (this.opts.sliceMs > 0) this._snapshotTail(seg);
    };
    const stopped = new Promise(resolve => { rec.onstop = () => resolve(nowMs()); });
    seg.finish = async () => {
      if (rec.state !== "inactive") rec.stop();
      const end = await stopped;
      seg.enqueued = true;
      const blob = new Blob(seg.parts, {type: rec.mimeType});
      if (blob.size) await this.enqueue(blob, {seq: seg.seq, start: seg.start, duration: end - seg.start});
    };
    this.opts.sliceMs > 0 ? rec.start(this.opts.sliceMs) : rec.start();
    this.segment = seg;
  }

  async _snapshotTail(seg) {
    const blob = new Blob(seg.parts, {type: seg.rec.mimeType});
    const tail = {seq: seg.seq, blob, type: blob.type, sha256: await sha256Hex(blob),
      start: seg.start, duration: nowMs() - seg.start, continuation: false};
    if (!seg.tail || seg.tail.blob.size < blob.size) seg.tail = tail;
  }

  /** timeslice: one recorder, start(chunkMs); blobs after the first are continuations. */
  _startTimeslice() {
    const rec = this._recorder();
    const queued = [];
    let last = nowMs(), first = true;
    rec.onstart = e => { last = Math.round(performance.timeOrigin + e.timeStamp); };
    rec.ondataavailable = e => {
      if (!e.data.size) return;
      const end = nowMs();
      queued.push(this.enqueue(e.data, {start: last, duration: end - last, continuation: !first}));
      first = false;
      last = end;
    };
    const stopped = new Promise(resolve => { rec.onstop = resolve; });
    const finish = async () => {
      if (rec.state !== "inactive") rec.stop();
      await stopped;
      await Promise.all(queued);
    };
    this.segment = {rec, enqueued: true, finish};
    rec.start(this.opts.chunkMs);
  }
}

export {STATES};
