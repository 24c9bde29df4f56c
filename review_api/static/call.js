// The call page, /call/{room}?token=<join token>: what a candidate and an interviewer open.
// ES module (it imports the reference chunk uploader when the room is recorded); no build step.
//
//   consent ─accept─▶ getUserMedia ─▶ WebSocket /v1/signal (join) ─▶ one RTCPeerConnection per
//   other participant (perfect negotiation + buffered ICE), and an answer with our tracks to
//   the hidden recorder's receive-only offer ─▶ 30-s chunks of our camera + microphone
//   uploaded by /static/ingest/uploader.js (POST /v1/rooms/{room}/client-upload gives the
//   recording id and an upload token for our own track).
//
// Recovery ladder, per visible peer, one tick per heartbeat (2.5 s): two bad ticks = trouble;
// after 9 s of trouble the caller restarts ICE; after 18 s the caller rebuilds the connection
// (`restart` over signaling, a new RTCPeerConnection on both sides); while the socket or the
// network is down nothing is restarted, only waited for (60 s, then "connection lost"). The
// caller is the participant with the smaller id (the impolite side of perfect negotiation);
// the other side follows, and gives up on its own only after 60 + 18 s.
// The socket has its own heartbeat (a ping every 2.5 s; nothing heard for two = dead) and
// reconnects with backoff, resuming its seat (same instance id, last seq, the resume token)
// so the media links stay up while it is away.
//
// Signals carry a generation (`gen`, inside the relayed description/candidate) so that a
// message of a connection torn down by a restart never reaches its replacement: a fresh page
// starts at 0, every rebuild of a link goes one up, the higher generation wins on both sides
// (a signal above ours rebuilds our end at that generation, one below is dropped).
// While our own recording is on, quality_sampler.js posts what getStats() says of every link.

import * as quality from "./quality_sampler.js";

export const TIMING = Object.freeze({
  heartbeatMs: 2500, iceRestartMs: 9000, fullRestartMs: 18000, waitNetworkMs: 60000, warmUpMs: 8000,
  busyRetryMs: 12000, // a seat still held by this participant's previous page: retry this long
});
const FATAL = {4000: "superseded", 4400: "bad_request", 4401: "unauthorized", 4403: "forbidden",
  4404: "room_not_found", 4410: "room_ended"};
const ALREADY_IN_ROOM = 4409;
const OUTBOX_MAX = 256;
const VIDEO = {width: {ideal: 640}, height: {ideal: 360}, frameRate: {ideal: 24}};

// ---------------------------------------------------------------- pure helpers

/** Perfect negotiation: the participant with the smaller id is impolite (and the caller). */
export function isPolite(me, other) { return me > other; }

/** Reconnect delay: exponential from 0.5 s, capped at 8 s, jittered into [50%, 100%]. */
export function reconnectDelay(attempt, random = Math.random) {
  const ceiling = Math.min(8000, 500 * 2 ** Math.min(attempt, 10));
  return Math.round(ceiling * (0.5 + random() / 2));
}

/** An SDP's DTLS fingerprint: another one means a new connection, not a renegotiation. */
export function sdpFingerprint(sdp) {
  const m = /^a=fingerprint:(\S+ \S+)/m.exec(sdp || "");
  return m ? m[1].toUpperCase() : "";
}

/** Of several join tokens (link, resume), the one valid longest; null when all expired. */
export function freshest(tokens, nowS = Date.now() / 1000) {
  const live = tokens.filter(Boolean).map(t => [t, (Recorder.claims(t) || {}).exp || 0]).filter(([, e]) => e > nowS);
  live.sort((a, b) => b[1] - a[1]);
  return live.length ? live[0][0] : null;
}

const sleep = ms => new Promise(r => setTimeout(r, ms));
const randomId = () => (crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2)).replace(/-/g, "");
const withoutGen = ({gen, ...rest}) => rest; // eslint-disable-line no-unused-vars

// ---------------------------------------------------------------- recovery ladder (pure)

/** One peer's ladder. The caller gives the clock, so it can be tested with any time. */
export class Ladder {
  constructor(timing = TIMING) { this.t = timing; this.calmAt = 0; this.reset(); }

  reset() { this.firstBad = null; this.troubleAt = null; this.iceRestarted = false; }

  /** The link moved (socket back, ICE state changed): trouble is timed from now on. */
  calm(now) { this.calmAt = now; }

  /** One tick → ok | watch | trouble | ice_restart | full_restart | wait | give_up. */
  tick({bad, linkUp, caller}, now) {
    if (!bad) { this.reset(); return "ok"; }
    if (this.firstBad === null) { this.firstBad = now; return "watch"; }
    if (this.troubleAt === null) this.troubleAt = now;
    const t = this.t, elapsed = now - Math.max(this.troubleAt, this.calmAt);
    if (!linkUp) return elapsed >= t.waitNetworkMs ? "give_up" : "wait"; // nothing to restart over
    if (elapsed >= t.fullRestartMs) {
      if (!caller) return elapsed >= t.waitNetworkMs + t.fullRestartMs ? "give_up" : "wait";
      this.reset();
      this.calmAt = now;
      return "full_restart";
    }
    if (elapsed >= t.iceRestartMs && caller && !this.iceRestarted) {
      this.iceRestarted = true;
      return "ice_restart";
    }
    return "trouble";
  }
}

// ---------------------------------------------------------------- perfect negotiation

/** Perfect negotiation on one RTCPeerConnection, ICE candidates buffered until the remote
 * description is set. send({description} | {candidate}) relays; messages are applied in order. */
export class Negotiator {
  constructor(pc, {polite, send, offers = true, beforeAnswer = null}) {
    Object.assign(this, {pc, polite, send, offers, beforeAnswer});
    this.makingOffer = false;
    this.ignoreOffer = false;
    this.pending = [];
    this.chain = Promise.resolve();
    this.counts = {offers: 0, answers: 0, collisions: 0, rollbacks: 0, ignored: 0, buffered: 0};
    pc.onnegotiationneeded = () => { if (this.offers) this._serial(() => this._offer()); };
    pc.onicecandidate = ({candidate}) => { if (candidate) send({candidate: candidate.toJSON()}); };
  }

  /** Offers and incoming messages run one at a time: an offer never lands inside a glare. */
  _serial(step) {
    this.chain = this.chain.then(step).catch(err => console.warn("negotiation step failed", err));
    return this.chain;
  }

  async _offer() {
    if (this.pc.signalingState !== "stable") return; // mid-negotiation: it fires again once stable
    try {
      this.makingOffer = true;
      await this.pc.setLocalDescription();
      this.counts.offers++;
      this.send({description: this.pc.localDescription.toJSON()});
    } catch (err) {
      console.warn("offer failed", err);
    } finally {
      this.makingOffer = false;
    }
  }

  handle(msg) { return this._serial(() => this._handle(msg)); }

  async _handle({description, candidate}) {
    const pc = this.pc;
    if (pc.signalingState === "closed") return;
    if (!description) {
      if (!pc.remoteDescription) {
        this.pending.push(candidate);
        this.counts.buffered++;
      } else {
        await this._add(candidate);
      }
      return;
    }
    const offer = description.type === "offer";
    const collision = offer && (this.makingOffer || pc.signalingState !== "stable");
    this.ignoreOffer = !this.polite && collision;
    if (collision) this.counts.collisions++;
    if (this.ignoreOffer) { this.counts.ignored++; return; }
    if (collision) { // rollback and the remote offer queued together: no stable moment in between
      this.counts.rollbacks++;
      await Promise.all([pc.setLocalDescription({type: "rollback"}), pc.setRemoteDescription(description)]);
    } else {
      await pc.setRemoteDescription(description);
    }
    for (const c of this.pending.splice(0)) await this._add(c);
    if (offer) {
      if (this.beforeAnswer) await this.beforeAnswer(pc);
      await pc.setLocalDescription();
      this.counts.answers++;
      this.send({description: pc.localDescription.toJSON()});
    }
  }

  async _add(candidate) {
    try {
      await this.pc.addIceCandidate(candidate);
    } catch (err) {
      if (!this.ignoreOffer) console.warn("candidate refused", err.message);
    }
  }
}

// ---------------------------------------------------------------- signaling socket

/** The signaling WebSocket: join/resume, heartbeat, reconnect with backoff, an outbox while away. */
export class SignalSocket {
  constructor({url, token, onMessage, onState, timing = TIMING, onResumeToken = null}) {
    Object.assign(this, {url, token, onMessage, onState, timing, onResumeToken});
    this.instanceId = randomId();
    this.lastSeq = null;
    this.ws = null;
    this.up = false;
    this.leaving = false;
    this.attempt = 0;
    this.downSince = null;
    this.firstTry = Date.now();
    this.outbox = [];
    this.heartbeatMs = timing.heartbeatMs;
    this.stats = {joins: 0, resumed: 0, drops: 0};
    addEventListener("online", () => { if (!this.up && !this.leaving) this.connect(); });
  }

  connect() {
    clearTimeout(this.retry);
    if (this.ws) { // a socket still connecting ("online" fired): replace it
      this._detach(this.ws);
      this.ws.close();
    }
    const ws = new WebSocket(this.url(this.token));
    this.ws = ws;
    ws.onopen = () => ws.send(JSON.stringify({v: 1, type: "join", instance_id: this.instanceId,
      ...(this.lastSeq !== null ? {last_seq: this.lastSeq} : {})}));
    ws.onmessage = ev => { if (ws === this.ws) this._receive(ev.data); };
    ws.onclose = ev => this._closed(ws, ev.code);
  }

  send(msg) {
    if (this.up && this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify({v: 1, ...msg}));
      return true;
    }
    if ((msg.type === "signal" || msg.type === "restart") && this.outbox.length < OUTBOX_MAX) this.outbox.push(msg);
    return false;
  }

  /** Leave for good: the seat is freed at once (no resume). */
  leave() {
    this.leaving = true;
    clearTimeout(this.retry);
    clearInterval(this.beat);
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify({v: 1, type: "leave"}));
      this.ws.close(1000);
    }
  }

  /** Test hook: the socket drops as if the network had (the page reconnects and resumes). */
  drop() { if (this.ws) this.ws.close(); }

  _receive(raw) {
    this.heard = Date.now();
    let msg;
    try { msg = JSON.parse(raw); } catch (_) { return; }
    if (typeof msg.seq === "number") this.lastSeq = Math.max(this.lastSeq ?? 0, msg.seq);
    if (msg.type === "ping") {
      this.ws.send(JSON.stringify({v: 1, type: "pong", ts: msg.ts}));
      if (msg.resume_token) { this.token = msg.resume_token; this.onResumeToken?.(msg.resume_token); } // renewed in long calls
      return;
    }
    if (msg.type === "pong") return;
    if (msg.type === "joined") this._joined(msg);
    if (msg.type === "error") this.lastError = msg;
    this.onMessage(msg);
  }

  _joined(msg) {
    this.up = true;
    this.attempt = 0;
    this.downSince = null;
    this.stats.joins++;
    if (msg.resumed) this.stats.resumed++;
    this.lastSeq = msg.resumed ? Math.max(this.lastSeq ?? 0, msg.last_seq) : msg.last_seq;
    if (msg.resume_token) this.token = msg.resume_token;
    this.heartbeatMs = Math.max(500, (msg.heartbeat_s || this.timing.heartbeatMs / 1000) * 1000);
    clearInterval(this.beat);
    this.beat = setInterval(() => this._heartbeat(), this.heartbeatMs);
    const queued = this.outbox.splice(0);
    if (msg.resumed) queued.forEach(m => this.send(m)); // a fresh seat rebuilds every link instead
    this.onState("up", msg);
  }

  _heartbeat() {
    if (Date.now() - this.heard > 2 * this.heartbeatMs + 500) { // two beats missed: the path is dead
      const ws = this.ws;
      this._detach(ws);
      ws.close();
      this._closed(ws, 4408);
      return;
    }
    this.send({type: "ping", ts: Date.now() / 1000});
  }

  _detach(ws) { ws.onopen = ws.onmessage = ws.onclose = null; }

  _closed(ws, code) {
    if (ws !== this.ws) return;
    this.ws = null;
    const wasUp = this.up;
    this.up = false;
    clearInterval(this.beat);
    if (this.leaving) return;
    if (wasUp) this.stats.drops++;
    if (FATAL[code]) { this.onState("fatal", {reason: FATAL[code], error: this.lastError}); return; }
    const now = Date.now();
    if (code === ALREADY_IN_ROOM && (this.stats.joins > 0 || now - this.firstTry > this.timing.busyRetryMs)) {
      this.onState("fatal", {reason: "already_in_room", error: this.lastError});
      return;
    }
    this.downSince ??= now;
    const lost = now - this.downSince >= this.timing.waitNetworkMs;
    this.onState(lost ? "lost" : "down", {since: this.downSince});
    this.retry = setTimeout(() => this.connect(), reconnectDelay(this.attempt++));
  }
}

// ---------------------------------------------------------------- local media

class Media {
  async start() {
    this.stream = await navigator.mediaDevices.getUserMedia({audio: true, video: VIDEO});
  }

  tracks() { return this.stream ? this.stream.getTracks() : []; }

  track(kind) { return this.tracks().find(t => t.kind === kind) || null; }

  toggle(kind) {
    const t = this.track(kind);
    if (t) t.enabled = !t.enabled;
    return t ? t.enabled : false;
  }

  /** The hidden recorder offered receive-only transceivers: send it our tracks on them. */
  async attach(pc) {
    for (const kind of ["audio", "video"]) {
      const t = pc.getTransceivers().find(x => !x.stopped && !x.sender.track && x.receiver.track?.kind === kind);
      const track = this.track(kind);
      if (!t || !track) continue;
      t.direction = "sendonly";
      await t.sender.replaceTrack(track);
    }
  }

  /** Switch one device under every connection (replaceTrack: no renegotiation). */
  async use(kind, deviceId, pcs) {
    const constraint = kind === "video" ? {...VIDEO, deviceId: {exact: deviceId}} : {deviceId: {exact: deviceId}};
    const track = (await navigator.mediaDevices.getUserMedia({[kind]: constraint})).getTracks()[0];
    const old = this.track(kind);
    if (old) track.enabled = old.enabled;
    const senders = pcs.flatMap(pc => pc.getSenders().filter(s => s.track && s.track.kind === kind));
    await Promise.all(senders.map(s => s.replaceTrack(track)));
    this.stream = new MediaStream([track, ...this.tracks().filter(t => t.kind !== kind)]);
    return {track, old};
  }

  stop() { this.tracks().forEach(t => t.stop()); }
}

// ---------------------------------------------------------------- one remote participant

class Peer {
  constructor(call, info, {hidden, gen}) {
    this.call = call;
    this.id = info.participant_id;
    this.hidden = hidden;
    this.gen = gen;
    this.polite = hidden || isPolite(call.me, this.id);
    this.created = Date.now();
    this.ladder = new Ladder(call.timing);
    this.pc = new RTCPeerConnection({iceServers: call.iceServers});
    const send = payload => call.relay(this.id, payload, hidden ? null : gen);
    this.neg = new Negotiator(this.pc, {polite: this.polite, send, offers: !hidden,
      beforeAnswer: hidden ? pc => call.media.attach(pc) : null});
    this.pc.onconnectionstatechange = () => this._state();
    this.pc.oniceconnectionstatechange = () => { // a brief recovery restarts the trouble clock
      if (["connected", "completed"].includes(this.pc.iceConnectionState)) this.ladder.calm(Date.now());
    };
    if (hidden) return;
    this.tile = call.ui.tile(info);
    this.pc.ontrack = ev => this.tile.show(ev.streams[0] || new MediaStream([ev.track]));
    for (const track of call.media.tracks()) this.pc.addTrack(track, call.media.stream);
  }

  /** The recorder re-offers on a new connection after its own restart: answer on a new one too. */
  replacedBy(description) {
    const current = this.pc.remoteDescription;
    return this.pc.connectionState === "failed" || this.pc.connectionState === "closed" ||
      (current !== null && sdpFingerprint(current.sdp) !== sdpFingerprint(description.sdp));
  }

  _state() {
    const s = this.pc.connectionState;
    const phase = {connected: "ice_connected", disconnected: "ice_disconnected", failed: "ice_failed"}[s];
    if (phase) this.call.report(phase, this.id);
    if (!this.hidden) this.tile.state(s === "connected" ? "" : s);
  }

  /** Looks wrong this tick: failed/disconnected, never connected, or no RTP byte moved. */
  async isBad(now) {
    const s = this.pc.connectionState;
    if (s === "failed" || s === "disconnected" || s === "closed") return true;
    if (s !== "connected") return now - this.created > this.call.timing.warmUpMs;
    this.connectedAt ??= now;
    let sent = 0, received = 0;
    (await this.pc.getStats()).forEach(r => {
      if (r.type === "outbound-rtp") sent += r.bytesSent || 0;
      if (r.type === "inbound-rtp") received += r.bytesReceived || 0;
    });
    const prev = this.bytes;
    this.bytes = {sent, received};
    if (!prev || now - this.connectedAt < this.call.timing.warmUpMs) return false;
    return sent === prev.sent && received === prev.received; // either direction moving = alive
  }

  close() {
    this.closed = true;
    this.call.quality?.close(this); // getStats before the connection goes
    this.pc.close();
  }
}

// ---------------------------------------------------------------- the call

class Call {
  constructor(ui, launch, room) {
    this.ui = ui;
    this.room = room;
    this.token = launch.token;
    this.iceServers = launch.ice || [];
    const c = Recorder.claims(launch.token) || {};
    this.me = c.participant_id || c.sub;
    this.role = c.role;
    this.timing = TIMING;
    this.media = new Media();
    this.peers = new Map();  // participant id → Peer (visible ones and the hidden recorder)
    this.roster = new Map(); // visible participants: id → info
    this.closed = false;
    this.recording = {state: "off", uploaded: 0, pending: 0, failed: 0};
    this.steps = []; // the ladder's moves: [participant, gen, step, epoch ms]
  }

  async start() {
    await this.media.start(); // only ever after consent
    this.ui.showCall(this);
    const base = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}`;
    this.socket = new SignalSocket({url: t => `${base}/v1/signal?token=${encodeURIComponent(t)}`, token: this.token,
      onMessage: m => this.onMessage(m), onState: (s, d) => this.onSocket(s, d), timing: this.timing,
      onResumeToken: t => this.ui.saveResume(t)});
    this.socket.connect();
    this.ticker = setInterval(() => this.tick(), this.timing.heartbeatMs);
    this.onPageHide = () => this.hangUp();
    addEventListener("pagehide", this.onPageHide);
  }

  // -- signaling in
  onMessage(msg) {
    if (this.closed) return;
    if (msg.type === "joined") this.onJoined(msg);
    else if (msg.type === "participant_joined") this.arrived(msg.participant, msg.resumed);
    else if (msg.type === "participant_left") this.left(msg.participant_id, msg.reason);
    else if (msg.type === "signal") this.onSignal(msg);
    else if (msg.type === "restart" && this.roster.has(msg.from)) this.rebuild(msg.from, (this.peers.get(msg.from)?.gen ?? 0) + 1);
    else if (msg.type === "end") this.finish("ended");
    else if (msg.type === "error") console.warn("signaling error", msg.code, msg.message);
  }

  onJoined(msg) {
    this.ui.saveResume(msg.resume_token);
    if (msg.resumed) {
      this.report("reconnecting", "socket_resumed");
      for (const [pid, peer] of this.peers) {
        if (!peer.closed) peer.ladder.calm(Date.now());
        else if (!peer.hidden && this.roster.has(pid)) this.rebuild(pid, peer.gen + 1); // given up while away
      }
    } else { // a fresh seat: the others build new links to us, so do we
      for (const peer of this.peers.values()) peer.close();
      this.peers.clear();
      this.roster.clear();
      this.ui.clearTiles();
      msg.participants.forEach(info => this.arrived(info, false));
    }
    this.ui.refresh(this);
    if (this.recording.state === "off") this.startRecording();
  }

  arrived(info, resumed) {
    if (info.role === "recorder") return;
    this.roster.set(info.participant_id, info);
    const peer = this.peers.get(info.participant_id);
    if (peer && resumed && !peer.closed) {
      peer.away = false;
      peer.ladder.calm(Date.now());
      peer.tile.state(peer.pc.connectionState === "connected" ? "" : peer.pc.connectionState);
    } else { // a fresh page starts at generation 0; a link we gave up on is rebuilt one above
      this.rebuild(info.participant_id, peer && resumed ? peer.gen + 1 : 0);
    }
    this.ui.refresh(this);
  }

  left(pid, reason) {
    const peer = this.peers.get(pid);
    if (reason !== "left") { // their socket dropped: they may resume, the media link may hold
      if (peer && !peer.hidden) {
        peer.away = true; // nothing to restart over until they are back: the ladder waits
        peer.tile.state("reconnecting…");
      }
      return;
    }
    peer?.close();
    this.peers.delete(pid);
    this.roster.delete(pid);
    this.ui.dropTile(pid);
    this.ui.refresh(this);
  }

  rebuild(pid, gen) {
    this.peers.get(pid)?.close();
    this.peers.set(pid, new Peer(this, this.roster.get(pid), {hidden: false, gen}));
  }

  onSignal(msg) {
    const from = msg.from, body = msg.description || msg.candidate;
    if (!from || !body) return;
    const payload = msg.description ? {description: withoutGen(body)} : {candidate: withoutGen(body)};
    let peer = this.peers.get(from);
    if (!this.roster.has(from)) { // never announced: the hidden recorder, which always offers first
      if (msg.description && msg.description.type === "offer" && (!peer || peer.replacedBy(body))) {
        peer?.close();
        peer = new Peer(this, {participant_id: from, role: "recorder"}, {hidden: true, gen: 0});
        this.peers.set(from, peer);
      }
      peer?.neg.handle(payload);
      return;
    }
    if (peer && typeof body.gen === "number" && body.gen < peer.gen) return; // of a torn-down link
    if (!peer || peer.closed || (typeof body.gen === "number" && body.gen > peer.gen)) {
      this.rebuild(from, typeof body.gen === "number" ? body.gen : 0);
      peer = this.peers.get(from);
    }
    peer.neg.handle(payload);
  }

  // -- signaling out
  relay(to, payload, gen) {
    const body = payload.description || payload.candidate;
    const tagged = gen === null ? body : {...body, gen};
    this.socket.send({type: "signal", to, ...(payload.description ? {description: tagged} : {candidate: tagged})});
  }

  report(phase, detail) { this.socket?.send({type: "report", phase, detail: String(detail).slice(0, 256)}); }

  onSocket(state, detail) {
    if (state === "fatal") return this.finish(detail.reason, detail.error);
    this.socketState = state;
    this.ui.refresh(this);
  }

  // -- the ladder
  async tick() {
    if (this.ticking || this.closed) return;
    this.ticking = true;
    try {
      const now = Date.now(), linkUp = this.socket.up && navigator.onLine;
      for (const peer of [...this.peers.values()]) {
        if (peer.hidden || peer.closed) continue; // the recorder runs its own ladder
        const step = peer.ladder.tick({bad: await peer.isBad(now), linkUp: linkUp && !peer.away,
          caller: !peer.polite}, now);
        this.climb(peer, step);
      }
    } finally {
      this.ticking = false;
    }
  }

  climb(peer, step) {
    if (step === "ice_restart") {
      this.report("ice_restart", peer.id);
      peer.pc.restartIce(); // negotiationneeded → an offer with new ICE credentials
    } else if (step === "full_restart") {
      this.report("reconnecting", peer.id);
      this.socket.send({type: "restart", to: peer.id});
      this.rebuild(peer.id, peer.gen + 1);
    } else if (step === "give_up") {
      peer.close();
      peer.tile.state("connection lost");
    } else if (step === "trouble" || step === "wait") {
      peer.tile.state("reconnecting…");
    }
    if (step !== peer.step) {
      if (peer.step && (step === "trouble" || step === "ok")) this.report(step === "ok" ? "media_flowing" : "media_frozen", peer.id);
      this.steps.push([peer.id, peer.gen, step, Date.now()]);
      if (this.steps.length > 200) this.steps.shift();
    }
    peer.step = step;
  }

  // -- controls
  toggle(kind) { return this.media.toggle(kind); }

  pcs() { return [...this.peers.values()].filter(p => !p.closed).map(p => p.pc); }

  async useDevice(kind, deviceId) {
    const {old} = await this.media.use(kind, deviceId, this.pcs());
    if (this.uploader) { // a recorder keeps its tracks: the next chunk starts on the new device
      this.uploader.stream = this.media.stream;
      await this.uploader.rotate();
    }
    old?.stop();
    this.ui.local(this.media.stream);
  }

  endForEveryone() { this.socket.send({type: "end", reason: "ended_by_host"}); }

  // -- the participant's own recording (30-s chunks through the reference uploader)
  async startRecording() {
    if (!this.ui.roomInfo.record) return;
    this.recording.state = "opening";
    try {
      const resp = await fetch(`/v1/rooms/${encodeURIComponent(this.room)}/client-upload`,
        {method: "POST", headers: {Authorization: `Bearer ${this.socket.token}`}, cache: "no-store"});
      if (!resp.ok) throw new Error((await resp.json().catch(() => ({}))).message || `HTTP ${resp.status}`);
      const cfg = await resp.json();
      const {ChunkUploader} = await import("/static/ingest/uploader.js");
      if (this.closed) return;
      this.uploader = new ChunkUploader({base: location.origin, recordingId: cfg.recording_id,
        trackId: cfg.track_id, token: cfg.token, chunkMs: cfg.chunk_ms, onStatus: d => this.onChunk(d)});
      await this.uploader.open();
      await this.uploader.start(this.media.stream);
      this.recording = {...this.recording, state: "on", id: cfg.recording_id, track: cfg.track_id};
      this.quality = new quality.QualityReporter({me: this.me, recordingId: cfg.recording_id,
        token: () => this.uploader.token, links: () => [...this.peers.values()].filter(p => !p.closed)});
      this.quality.start();
      this.renew = setTimeout(() => this.renewUpload(), cfg.expires_in * 800);
    } catch (err) {
      this.recording.state = "failed";
      this.recording.error = String(err.message || err);
    }
    this.ui.refresh(this);
  }

  async renewUpload() {
    const resp = await fetch(`/v1/rooms/${encodeURIComponent(this.room)}/client-upload`,
      {method: "POST", headers: {Authorization: `Bearer ${this.socket.token}`}}).catch(() => null);
    if (resp && resp.ok) {
      const cfg = await resp.json();
      this.uploader.setToken(cfg.token);
      this.renew = setTimeout(() => this.renewUpload(), cfg.expires_in * 800);
    } else {
      this.renew = setTimeout(() => this.renewUpload(), 30000);
    }
  }

  onChunk(d) {
    const r = this.recording;
    r.chunks = r.chunks || new Map();
    r.chunks.set(d.seq, d.state);
    const states = [...r.chunks.values()];
    r.uploaded = states.filter(s => s === "uploaded").length;
    r.failed = states.filter(s => s === "failed" || s === "conflict").length;
    r.pending = states.length - r.uploaded - r.failed;
    this.ui.refresh(this);
  }

  async stopRecording() {
    clearTimeout(this.renew);
    if (!this.uploader) return;
    await this.uploader.stop();
    await Promise.race([this.uploader.drain(), sleep(15000)]);
  }

  // -- the end
  async leave() {
    await this.hangUp();
    this.ui.message("You left the interview.", "Rejoin", () => location.reload());
  }

  async finish(reason, error) {
    await this.hangUp();
    const text = {
      ended: "The interview has ended. Thank you.", room_ended: "The interview has ended. Thank you.",
      already_in_room: "You are already in this interview in another tab or on another device.",
      unauthorized: "This link has expired. Ask the interviewer for a new one.",
      superseded: "This interview was opened again elsewhere with the same link.",
    }[reason] || `You were disconnected (${(error && error.message) || reason}).`;
    this.ui.message(text);
  }

  async hangUp() {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.ticker);
    removeEventListener("pagehide", this.onPageHide);
    const saving = this.stopRecording(); // the last blob is queued before the tracks stop
    const reporting = this.quality?.finish(); // reads the links before they close
    this.socket?.leave();
    for (const peer of this.peers.values()) peer.close();
    await Promise.all([saving.catch(() => {}), reporting]);
    this.media.stop();
  }
}

// ---------------------------------------------------------------- the page

const $ = id => document.getElementById(id);

class Page {
  constructor(room) {
    this.room = room;
    this.tiles = new Map();
    this.key = `recorder.call.${room}`;
  }

  /** `?token=` (and `?ice=`, base64url JSON of the token answer's ice_servers) leave the address bar. */
  takeLaunch() {
    const url = new URL(location.href);
    let saved = {};
    try { saved = JSON.parse(sessionStorage.getItem(this.key) || "{}"); } catch (_) { saved = {}; }
    const token = url.searchParams.get("token"), ice = url.searchParams.get("ice");
    if (token) saved = {token: token.trim(), ice: saved.ice};
    if (ice) {
      try { saved.ice = JSON.parse(atob(ice.replace(/-/g, "+").replace(/_/g, "/"))); } catch (_) { saved.ice = []; }
    }
    if (token || ice) {
      url.searchParams.delete("token");
      url.searchParams.delete("ice");
      history.replaceState(history.state, "", url.pathname + url.search + url.hash);
    }
    this.saved = saved;
    this.store();
    return {token: freshest([saved.token, saved.resume]), ice: saved.ice || []};
  }

  store() { try { sessionStorage.setItem(this.key, JSON.stringify(this.saved)); } catch (_) { /* memory only */ } }

  saveResume(token) { if (token) { this.saved.resume = token; this.store(); } }

  async open() {
    const launch = this.takeLaunch();
    if (!launch.token) {
      return this.message("This page needs your personal interview link (it ends in ?token=…). "
        + "Open the link you were sent, or ask the interviewer for a new one.");
    }
    const claims = Recorder.claims(launch.token) || {};
    if (claims.room_id !== this.room) return this.message("This link is for another interview.");
    let resp;
    try {
      resp = await fetch(`/v1/rooms/${encodeURIComponent(this.room)}`,
        {headers: {Authorization: `Bearer ${launch.token}`, Accept: "application/json"}, cache: "no-store"});
    } catch (_) {
      return this.message("The server cannot be reached. Check your connection.", "Try again", () => location.reload());
    }
    if (resp.status === 401) return this.message("This link has expired. Ask the interviewer for a new one.");
    if (!resp.ok) return this.message(`This interview cannot be opened (HTTP ${resp.status}).`);
    this.roomInfo = await resp.json();
    if (this.roomInfo.state === "ended") return this.message("This interview has ended.");
    $("room-title").textContent = this.roomInfo.title || "Interview";
    $("whoami").textContent = `${claims.display_name || claims.participant_id} (${claims.role})`;
    this.call = new Call(this, launch, this.room);
    this.consent();
  }

  consent() {
    const recorded = this.roomInfo.record;
    $("message").hidden = true;
    $("consent-text").textContent = recorded
      ? "This interview is recorded and transcribed."
      : "This interview is not recorded.";
    const points = recorded ? [
      "Your camera and microphone are recorded for the whole call, as are the other participants'.",
      "What everyone says is transcribed into text, per speaker.",
      "The recording and the transcript are kept for the hiring team to review and are deleted on "
        + "the organisation's retention schedule.",
      "Your camera and microphone are turned on only after you agree. If you decline, you do not join.",
    ] : ["Your camera and microphone are turned on when you join."];
    $("consent-points").replaceChildren(...points.map(text => Recorder.el("li", {text})));
    $("accept").textContent = recorded ? "I agree — join the interview" : "Join the interview";
    $("consent").hidden = false;
    $("accept").onclick = () => this.accept();
    $("decline").onclick = () => this.message(
      "You declined, so you have not joined the interview. Your camera and microphone were not used.",
      "Show the consent again", () => this.consent());
    $("accept").focus();
  }

  async accept() {
    $("consent").hidden = true;
    try {
      await this.call.start();
    } catch (err) {
      const why = {NotAllowedError: "Camera or microphone access was blocked. Allow it in the browser's site "
          + "settings, then try again.", NotFoundError: "No camera or microphone was found.",
        NotReadableError: "Your camera or microphone is in use by another application."}[err.name];
      this.message(why || `The call could not start: ${err.message || err}`, "Try again", () => location.reload());
    }
  }

  showCall(call) {
    $("call").hidden = false;
    this.local(call.media.stream);
    $("mute").onclick = () => this.pressed("mute", !call.toggle("audio"), "Unmute microphone", "Mute microphone");
    $("camera").onclick = () => this.pressed("camera", !call.toggle("video"), "Turn camera on", "Turn camera off");
    $("leave").onclick = () => call.leave();
    $("end").hidden = call.role !== "interviewer";
    $("end").onclick = () => call.endForEveryone();
    for (const [id, kind] of [["camera-select", "video"], ["mic-select", "audio"]]) {
      $(id).onchange = ev => call.useDevice(kind, ev.target.value).catch(err => this.note(`Device switch failed: ${err.message}`));
    }
    this.devices(call);
    let debounce;
    navigator.mediaDevices.ondevicechange = () => { clearTimeout(debounce); debounce = setTimeout(() => this.devices(call), 1000); };
    $("mute").focus();
  }

  pressed(id, on, onLabel, offLabel) {
    $(id).setAttribute("aria-pressed", String(on));
    $(id).textContent = on ? onLabel : offLabel;
    $("local-state").textContent = [!this.call.media.track("audio")?.enabled && "muted",
      !this.call.media.track("video")?.enabled && "camera off"].filter(Boolean).join(", ");
  }

  async devices(call) {
    const all = await navigator.mediaDevices.enumerateDevices();
    for (const [id, kind] of [["camera-select", "video"], ["mic-select", "audio"]]) {
      const current = call.media.track(kind)?.getSettings().deviceId;
      const options = all.filter(d => d.kind === `${kind}input`).map((d, i) =>
        Recorder.el("option", {value: d.deviceId, selected: d.deviceId === current,
          text: d.label || `${kind === "video" ? "Camera" : "Microphone"} ${i + 1}`}));
      $(id).replaceChildren(...options);
      $(id).disabled = options.length < 2;
    }
  }

  local(stream) { $("local-video").srcObject = stream; }

  tile(info) {
    const id = info.participant_id;
    if (!this.tiles.has(id)) {
      const video = Recorder.el("video", {autoplay: true, playsinline: true, "aria-label": `${info.display_name || id}'s camera`});
      const state = Recorder.el("span", {class: "tile-state", text: "connecting…"});
      const fig = Recorder.el("figure", {class: "tile remote", "data-participant": id}, video,
        Recorder.el("figcaption", {}, Recorder.el("span", {class: "tile-name", text: info.display_name || id}), " ",
          Recorder.el("span", {class: "role", text: info.role}), " ", state));
      $("tiles").append(fig);
      this.tiles.set(id, {fig, video, stateEl: state});
    }
    const t = this.tiles.get(id);
    return {
      show: stream => { if (t.video.srcObject !== stream) t.video.srcObject = stream; },
      state: text => { t.stateEl.textContent = text; },
    };
  }

  dropTile(id) { this.tiles.get(id)?.fig.remove(); this.tiles.delete(id); }

  clearTiles() { for (const id of [...this.tiles.keys()]) this.dropTile(id); }

  refresh(call) {
    $("waiting").hidden = call.roster.size > 0;
    const s = call.socketState;
    $("call-status").textContent = s === "lost" ? "Connection lost. Please check your internet connection."
      : s === "down" ? "Reconnecting to the interview…" : s === "up" ? "Connected" : "Connecting…";
    const r = call.recording;
    $("rec-badge").hidden = !this.roomInfo.record;
    $("rec-status").textContent = r.state === "on"
      ? "Your camera and microphone are recorded in 30-second parts: "
        + `${r.uploaded} saved` + (r.pending ? `, ${r.pending} saving` : "") + (r.failed ? `, ${r.failed} not saved` : "") + "."
      : r.state === "failed" ? `Your own recording is off (${r.error}); the interview is still recorded by the server.` : "";
  }

  note(text) { $("rec-status").textContent = text; }

  message(text, label, action) {
    $("consent").hidden = true;
    $("call").hidden = true;
    $("message").hidden = false;
    $("message-text").textContent = text;
    const button = $("message-action");
    button.hidden = !label;
    if (label) {
      button.textContent = label;
      button.onclick = action;
      button.focus();
    }
  }
}

const page = new Page(decodeURIComponent(location.pathname.split("/")[2] || ""));
page.open();
addEventListener("pageshow", ev => { if (ev.persisted) location.reload(); }); // back from bfcache: a fresh page

// For tests in the page (pure logic) and a test hook that drops the signaling socket.
window.CallPage = {TIMING, Ladder, Negotiator, SignalSocket, isPolite, reconnectDelay, sdpFingerprint, freshest,
  quality};
window.callTest = {
  dropSocket: () => page.call.socket.drop(),
  /** The media path to `pid` dies silently (nobody is told): only the ladder can notice. */
  breakMedia: pid => page.call.peers.get(pid).pc.close(),
  snapshot: () => {
    const call = page.call;
    if (!call) return null;
    return {
      me: call.me, closed: call.closed, socket: call.socket ? {up: call.socket.up, ...call.socket.stats} : null,
      recording: {state: call.recording.state, id: call.recording.id, track: call.recording.track,
        uploaded: call.recording.uploaded, pending: call.recording.pending, error: call.recording.error},
      audio: call.media.track("audio")?.enabled ?? null, video: call.media.track("video")?.enabled ?? null,
      localAudio: call.media.track("audio")?.id ?? null, steps: call.steps,
      quality: call.quality ? {...call.quality.counts, queued: call.quality.queue.length} : null,
      peers: [...call.peers.values()].map(p => ({id: p.id, hidden: p.hidden, gen: p.gen, polite: p.polite,
        closed: !!p.closed, state: p.pc.connectionState, counts: {...p.neg.counts},
        senders: p.pc.getSenders().filter(s => s.track).map(s => ({kind: s.track.kind, enabled: s.track.enabled,
          id: s.track.id}))})),
    };
  },
};
