/* /review/{id}: video + synced transcript + captions + media gaps + processing progress.
 *
 * Data: GET /v1/recordings/{id} (status, steps, outputs, tracks), GET …/playback (signed
 * media URLs: <video> cannot send headers), GET …/transcript?format=json|vtt.
 * `#t=123.4` (or #t=2:03.4) seeks there on load and whenever the fragment changes;
 * `&hl=81400-81900,82000-82600` (a search hit's matched words, ms) marks those words.
 */
"use strict";

/* ---------------------------------------------------------------- pure helpers */

const ReviewPage = (() => {
  /** "#t=123.4" | "#t=2:03.4" | "#t=90s" → seconds, else null. */
  function parseHashTime(hash) {
    const m = /(?:^#|&)t=([0-9][0-9:.]*)s?(?:&|$)/.exec(hash || "");
    if (!m) return null;
    const parts = m[1].split(":").map(Number);
    if (parts.length > 3 || parts.some((p) => !Number.isFinite(p))) return null;
    return parts.reduce((acc, p) => acc * 60 + p, 0);
  }

  /** "#t=81.4&hl=81400-81900,82000-82600" → [[81400, 81900], [82000, 82600]] (matched words). */
  function parseHashMarks(hash) {
    const m = /(?:^#|&)hl=([0-9,-]+)(?:&|$)/.exec(hash || "");
    if (!m) return [];
    return m[1].split(",").map((r) => r.split("-").map(Number))
      .filter((r) => r.length === 2 && r.every(Number.isFinite) && r[0] <= r[1]).slice(0, 50);
  }

  /** Which of a segment's words fall in the marked ranges (word index → true). */
  function markedWords(words, marks) {
    const out = new Set();
    (words || []).forEach((w, i) => {
      if (marks.some(([a, b]) => w.start_ms < b && w.end_ms > a || w.start_ms === a)) out.add(i);
    });
    return out;
  }

  /** Indexes of the segments being spoken at `ms` (sorted by start); else the one just said. */
  function activeAt(segments, ms) {
    const out = [];
    let last = -1;
    for (let i = 0; i < segments.length && segments[i].start_ms <= ms; i++) {
      last = i;
      if (ms < Math.max(segments[i].end_ms, segments[i].start_ms + 300)) out.push(i);
    }
    if (!out.length && last >= 0 && ms - segments[last].end_ms < 1500) out.push(last);
    return out;
  }

  /** Processing steps → {fraction, lines[{label, status, error}]} for the progress card. */
  function progressSummary(steps) {
    const count = (prefix) => {
      const mine = steps.filter((s) => s.step.startsWith(prefix));
      return {total: mine.length, done: mine.filter((s) => s.status === "done").length};
    };
    const windows = count("window."), chunks = count("chunk."), final = (name) => steps.find((s) => s.step === name);
    const lines = [];
    if (chunks.total) lines.push({label: `Chunks checked: ${chunks.done} of ${chunks.total}`, status: "info"});
    if (windows.total) lines.push({label: `Video windows composited: ${windows.done} of ${windows.total}`, status: "info"});
    for (const [name, label] of [["media.final", "Video (MP4, HLS, thumbnails)"], ["transcript.final", "Transcript"]]) {
      const s = final(name);
      lines.push({label, status: s ? s.status : "pending", error: s && s.error});
    }
    for (const s of steps) {
      if (s.status === "failed" && !["media.final", "transcript.final"].includes(s.step)) {
        lines.push({label: `Step ${s.step}`, status: "failed", error: s.error});
      }
    }
    const weight = (s) => (s.status === "done" ? 1 : s.status === "running" ? Math.min(0.9, s.progress || 0.3) : 0);
    const fraction = steps.length ? steps.reduce((a, s) => a + weight(s), 0) / steps.length : 0;
    return {fraction, lines};
  }

  /** Per-second quality rows (GET …/quality) → runs of one state: [{state, start, end, rows}]
   *  (seconds, end exclusive); seconds without a row break a run. */
  function qualityRuns(rows) {
    const runs = [];
    for (const r of rows || []) {
      const last = runs[runs.length - 1];
      if (last && last.state === r.state && last.end === r.t) {
        last.end = r.t + 1;
        last.rows.push(r);
      } else {
        runs.push({state: r.state, start: r.t, end: r.t + 1, rows: [r]});
      }
    }
    return runs;
  }

  /** The words a run's tooltip shows: what went wrong and the worst numbers in it. */
  function qualityLabel(run, who, clock) {
    const most = (key) => Math.max(...run.rows.map((r) => (r[key] === null || r[key] === undefined ? -1 : r[key])));
    const bits = [`${who}: ${clock(run.start)}–${clock(run.end)}`];
    const missing = run.rows.find((r) => r.missing);
    if (missing) bits.push(`media missing (${missing.missing.replace(/_/g, " ")})`);
    const frozen = run.rows.filter((r) => r.frozen).length;
    if (frozen) bits.push(`frozen ${frozen} s`);
    const loss = most("loss_pct"), rtt = most("rtt_ms"), jitter = most("jitter_ms");
    if (loss >= 0) bits.push(`loss up to ${loss.toFixed(1)} %`);
    if (rtt >= 0) bits.push(`RTT up to ${Math.round(rtt)} ms`);
    if (jitter >= 0) bits.push(`jitter up to ${Math.round(jitter)} ms`);
    const last = run.rows[run.rows.length - 1];
    if (typeof last.bitrate_kbps === "number") bits.push(`${Math.round(last.bitrate_kbps)} kbps`);
    if (last.fps) bits.push(`${Math.round(last.fps)} fps`);
    if (last.width && last.height) bits.push(`${last.width}×${last.height}`);
    return bits.join(" · ");
  }

  return {parseHashTime, parseHashMarks, markedWords, activeAt, progressSummary, qualityRuns, qualityLabel};
})();

/* ---------------------------------------------------------------- the page */

(() => {
  const R = Recorder, el = R.el, $ = (id) => document.getElementById(id);
  const recordingId = decodeURIComponent(location.pathname.replace(/\/+$/, "").split("/").pop());
  const base = `/v1/recordings/${encodeURIComponent(recordingId)}`;
  const video = $("video"), list = $("transcript");
  const state = {
    rec: null, segments: [], lines: [], active: [], playback: null, playerLoaded: false,
    transcriptLoaded: false, captions: false, pendingSeek: null, resumePlay: false, data: null,
    marks: ReviewPage.parseHashMarks(location.hash),
    userScrolledAt: 0, polls: 0, pollTimer: null, recoveries: 0, quality: null,
  };

  function showMessage(text) {
    const box = $("message");
    box.textContent = text;
    box.hidden = false;
  }

  function requireToken(message) {
    clearTimeout(state.pollTimer);
    $("review").hidden = true;
    R.tokenForm($("token-panel"), message, start);
  }

  function onApiError(err, what) {
    clearTimeout(state.pollTimer);
    if (err.status === 401) return requireToken(`The token was refused: ${err.message}. Paste another one.`);
    $("review").hidden = true;
    if (err.status === 403) return showMessage(`You may not open this ${what}: ${err.message}`);
    if (err.status === 404) return showMessage(`There is no ${what} ${recordingId} that you may open (it may have been deleted, or not shared with you).`);
    return showMessage(`Could not load the ${what}: ${err.message}`);
  }

  async function json(path) {
    return (await R.api(path)).json();
  }

  /* ------------------------------------------------ header, progress, quality */

  function trackName(trackId) {
    const t = (state.rec.tracks || []).find((x) => x.track_id === trackId);
    if (!t) return trackId;
    const who = t.display_name || t.participant_id || t.track_id;
    return `${who} (${t.role}, ${t.kind})`;
  }

  function renderHeader(rec) {
    document.title = `${rec.title || rec.id} · Interview review`;
    $("title").textContent = rec.title || rec.id;
    const badge = $("status");
    badge.textContent = rec.status;
    badge.className = `badge status-${rec.status}`;
    const people = new Map();
    for (const t of rec.tracks || []) {
      const id = t.participant_id || t.track_id;
      if (!people.has(id)) people.set(id, `${t.display_name || id} (${t.role})`);
    }
    const bits = [R.date(rec.started_at_ms || rec.created_at)];
    const duration = (rec.outputs || {}).duration_ms;
    if (duration) bits.push(R.clock(duration / 1000));
    if (people.size) bits.push([...people.values()].join(", "));
    $("meta").textContent = bits.filter(Boolean).join(" · ");
  }

  function renderProgress(rec) {
    const box = $("progress");
    const outputs = rec.outputs || {};
    if (rec.status === "ready" && outputs.composite) { box.hidden = true; return; }
    box.hidden = false;
    const summary = ReviewPage.progressSummary(rec.steps || []);
    const titles = {recording: "Interview still being recorded", processing: "Processing the interview",
      failed: "Processing failed", ready: "Ready"};
    $("progress-title").textContent = titles[rec.status] || rec.status;
    $("progress-text").textContent = rec.status === "failed" ? (rec.error || "") :
      `${Math.round(summary.fraction * 100)}% · this page updates by itself`;
    $("progress-bar").value = rec.status === "ready" ? 1 : summary.fraction;
    box.classList.toggle("failed", rec.status === "failed");
    $("progress-steps").replaceChildren(...summary.lines.map((l) =>
      el("li", {class: `step-${l.status}`}, el("span", {class: "dot"}), l.label,
        l.status !== "info" ? el("span", {class: "step-status", text: l.status}) : null,
        l.error ? el("span", {class: "step-error", text: l.error}) : null)));
  }

  function renderQuality(rec) {
    const gaps = (rec.outputs || {}).media_gaps;
    if (!gaps) { $("quality").hidden = true; return; }
    $("quality").hidden = false;
    const duration = (rec.outputs || {}).duration_ms || 0;
    const items = [], marks = [];
    for (const [track, spans] of Object.entries(gaps)) {
      for (const [a, b] of spans) {
        const label = `${trackName(track)}: missing ${R.clock(a / 1000, 1)}–${R.clock(b / 1000, 1)} (${((b - a) / 1000).toFixed(1)} s)`;
        items.push(el("li", {}, el("button", {class: "link", type: "button", text: label,
          onclick: () => seek(a / 1000, false)})));
        if (duration) {
          marks.push(el("div", {class: "gap", title: label,
            style: {left: `${(100 * a) / duration}%`, width: `${Math.max(0.3, (100 * (b - a)) / duration)}%`}}));
        }
      }
    }
    const tracks = Object.keys(gaps).length;
    $("quality-summary").textContent = items.length
      ? `${items.length} gap${items.length > 1 ? "s" : ""} in the media (shown in red on the timeline; black/silence was filled in).`
      : `No gaps: all ${tracks} track${tracks === 1 ? " is" : "s are"} complete.`;
    $("gaps").replaceChildren(...items);
    $("gap-marks").replaceChildren(...marks);
  }

  /* ------------------------------------------------ quality strip (GET …/quality) */

  async function loadQuality() {
    try {
      state.quality = await json(`${base}/quality`);
    } catch (_) {
      return; // the strip is extra: the page works without it
    }
    renderStrip();
  }

  function stripDuration() {
    const q = state.quality;
    return (state.playback && state.playback.duration_ms) || (q && q.duration_ms) || 0;
  }

  function renderStrip() {
    const q = state.quality, duration = stripDuration() / 1000;
    const lanes = (q && q.participants || []).filter((p) => p.seconds.length);
    $("quality-strip").hidden = !lanes.length || !duration;
    if ($("quality-strip").hidden) return;
    const pct = (s) => `${Math.min(100, (100 * s) / duration)}%`;
    $("qs-lanes").replaceChildren(...lanes.map((p) => {
      const who = p.display_name || p.participant_id;
      const runs = ReviewPage.qualityRuns(p.seconds);
      const bar = el("div", {class: "qs-bar", title: `${who}: click to seek`,
        onclick: (ev) => { if (ev.target === bar) seekFromBar(ev, bar, duration); },
        onmousemove: (ev) => { if (ev.target === bar) bar.title = secondTitle(p, who, ev, bar, duration); }},
      runs.map((run) => {
        const style = {left: pct(run.start), width: pct(Math.max(run.end - run.start, duration / 300))};
        if (run.state === "ok") return el("div", {class: "qs-run ok", style});
        const label = ReviewPage.qualityLabel(run, who, (t) => R.clock(t));
        return el("button", {type: "button", class: `qs-run ${run.state}`, style, title: label, "aria-label": label,
          "data-start": run.start, onclick: () => { seek(run.start, false); setHash(run.start); }});
      }));
      return el("div", {class: "qs-lane"}, el("span", {class: "qs-name", text: who, title: who}), bar);
    }));
    const s = q.summary || {}, worst = s.worst_second;
    const bits = [`frozen ${s.frozen_seconds || 0} s`, `missing ${s.missing_seconds || 0} s`];
    if (worst) {
      const who = (lanes.find((p) => p.participant_id === worst.participant_id) || {}).display_name;
      bits.push(`worst at ${R.clock(worst.t)} (${who || worst.participant_id})`);
    }
    $("qs-summary").textContent = bits.join(" · ");
  }

  function seekFromBar(ev, bar, duration) {
    const box = bar.getBoundingClientRect();
    const t = Math.max(0, Math.min(duration, ((ev.clientX - box.left) / box.width) * duration));
    seek(t, false);
    setHash(t);
  }

  function secondTitle(p, who, ev, bar, duration) {
    const box = bar.getBoundingClientRect();
    const t = Math.floor(((ev.clientX - box.left) / box.width) * duration);
    const row = p.seconds.find((r) => r.t === t);
    return row ? ReviewPage.qualityLabel({start: t, end: t + 1, rows: [row]}, who, (x) => R.clock(x))
      : `${who}: ${R.clock(t)} · no quality data`;
  }

  /* ------------------------------------------------ player */

  async function loadPlayer(resume) {
    let pb;
    try {
      pb = await json(`${base}/playback`);
    } catch (err) {
      if (err.status === 404 && err.code === "output_not_ready") return;
      return onApiError(err, "recording");
    }
    state.playback = pb;
    if (state.quality) renderStrip(); // the strip takes the video's length once it is known
    state.playerLoaded = true;
    $("player-empty").hidden = true;
    state.pendingSeek = resume ? resume.time : ReviewPage.parseHashTime(location.hash);
    state.resumePlay = Boolean(resume && resume.playing);
    if (pb.poster_url) video.poster = pb.poster_url;
    video.src = pb.mp4_url;
    if (pb.thumbs_url) $("strip").src = pb.thumbs_url;
    video.controls = true;
    $("timeline").hidden = false;
    $("toolbar").hidden = false;
    await loadCaptions();
  }

  async function loadCaptions() {
    if (state.captions || !state.playerLoaded || !state.transcriptLoaded || !state.segments.length) return;
    state.captions = true;
    try {
      const vtt = await (await R.api(`${base}/transcript?format=vtt`, {headers: {Accept: "text/vtt"}})).blob();
      const url = URL.createObjectURL(new Blob([vtt], {type: "text/vtt"}));
      video.append(el("track", {kind: "captions", srclang: "en", label: "Transcript", src: url}));
    } catch (_) {
      state.captions = false; // captions are optional: the transcript panel still works
    }
  }

  function seek(seconds, play) {
    if (video.readyState >= 1) {
      const end = Number.isFinite(video.duration) ? video.duration : seconds;
      video.currentTime = Math.max(0, Math.min(seconds, end));
    } else {
      state.pendingSeek = seconds;
    }
    highlight(seconds, true);
    if (play && video.src) video.play().catch(() => {});
  }

  function setHash(seconds) {
    history.replaceState(history.state, "", `${location.pathname}${location.search}#t=${seconds.toFixed(1)}`);
  }

  video.addEventListener("loadedmetadata", () => {
    if (state.pendingSeek !== null) {
      const t = state.pendingSeek;
      state.pendingSeek = null;
      seek(t, state.resumePlay);
    }
  });
  video.addEventListener("loadeddata", () => { state.recoveries = 0; });
  video.addEventListener("timeupdate", () => onTime(video.currentTime));
  video.addEventListener("seeked", () => onTime(video.currentTime));
  video.addEventListener("error", async () => {
    // Typically the signed URL expired mid-playback: fetch a new one and carry on.
    if (!state.playback || state.recoveries >= 3) {
      $("player-empty").hidden = false;
      $("player-empty").textContent = "The video could not be played. Reload the page to try again.";
      return;
    }
    state.recoveries += 1;
    const resume = {time: video.currentTime || state.pendingSeek || 0, playing: !video.paused};
    state.playerLoaded = false;
    await loadPlayer(resume);
  });
  window.addEventListener("hashchange", () => {
    const marks = ReviewPage.parseHashMarks(location.hash);
    if (JSON.stringify(marks) !== JSON.stringify(state.marks)) {
      state.marks = marks;
      if (state.data) renderTranscript(state.data);
    }
    const t = ReviewPage.parseHashTime(location.hash);
    if (t !== null) seek(t, false);
  });

  function onTime(t) {
    const duration = (state.playback && state.playback.duration_ms / 1000) || video.duration || 0;
    $("clock").textContent = duration ? `${R.clock(t)} / ${R.clock(duration)}` : R.clock(t);
    if (duration) $("playhead").style.left = `${Math.min(100, (100 * t) / duration)}%`;
    highlight(t, false);
  }

  $("timeline").addEventListener("click", (ev) => {
    const box = ev.currentTarget.getBoundingClientRect();
    const duration = (state.playback && state.playback.duration_ms / 1000) || video.duration;
    if (!duration) return;
    const t = ((ev.clientX - box.left) / box.width) * duration;
    seek(t, false);
    setHash(t);
  });

  $("copy-link").addEventListener("click", async () => {
    const t = video.currentTime || 0;
    setHash(t);
    const link = `${location.origin}${location.pathname}#t=${t.toFixed(1)}`;
    const note = $("copied");
    try {
      await navigator.clipboard.writeText(link);
      note.textContent = "Link copied";
    } catch (_) {
      note.textContent = link;
    }
    note.hidden = false;
    setTimeout(() => { note.hidden = true; }, 4000);
  });

  /* ------------------------------------------------ transcript */

  async function loadTranscript() {
    let data;
    try {
      data = await json(`${base}/transcript?format=json`);
    } catch (err) {
      if (err.status === 422 || err.status === 404 && err.code !== "unknown_recording") {
        const ready = state.rec.status === "ready" || state.rec.status === "failed";
        $("transcript-note").textContent = ready ? "There is no transcript for this recording."
          : "The transcript appears here when it is ready.";
        state.transcriptLoaded = ready;
        return;
      }
      return onApiError(err, "recording");
    }
    state.transcriptLoaded = true;
    renderTranscript(data);
    await loadCaptions();
  }

  function speakerOf(seg) {
    const sp = seg.speaker || {};
    return {id: sp.participant_id || sp.track_id || "?", name: sp.display_name || sp.participant_id || "Speaker",
      role: sp.role || ""};
  }

  function renderTranscript(data) {
    state.data = data;
    const all = (data.segments || []).slice().sort((a, b) => a.start_ms - b.start_ms);
    state.segments = all.filter((s) => !s.suppressed && (s.text || "").trim());
    const speakers = new Map();
    for (const sp of data.speakers || []) speakers.set(sp.participant_id, speakerOf({speaker: sp}));
    for (const s of state.segments) if (!speakers.has(speakerOf(s).id)) speakers.set(speakerOf(s).id, speakerOf(s));
    $("speakers").replaceChildren(...[...speakers.values()].map((sp) =>
      el("span", {class: "chip", style: {"--hue": R.hue(sp.id)}}, el("span", {class: "dot"}), sp.name,
        sp.role ? el("span", {class: "role", text: sp.role}) : null)));
    state.lines = state.segments.map((seg, i) => line(seg, i));
    list.replaceChildren(...state.lines);
    const hidden = all.length - state.segments.length;
    const version = data.version ? `Version ${data.version}${data.model ? ` (${data.model})` : ""}. ` : "";
    $("transcript-note").textContent = !state.segments.length ? "Nobody said anything the model could hear."
      : `${version}${hidden ? `${hidden} segment${hidden > 1 ? "s" : ""} hidden (silence, cross-talk echoes).` : ""}`;
    const t = state.pendingSeek !== null ? state.pendingSeek : video.currentTime;
    highlight(t || 0, state.pendingSeek !== null);
  }

  function line(seg, i) {
    const sp = speakerOf(seg);
    const flags = (seg.flags || []).filter((f) => f !== "ok");
    const go = () => { seek(seg.start_ms / 1000, true); setHash(seg.start_ms / 1000); };
    return el("li", {class: `line${flags.length ? " uncertain" : ""}`, tabindex: "0", "data-index": i,
      "data-start": (seg.start_ms / 1000).toFixed(3), style: {"--hue": R.hue(sp.id)},
      title: flags.length ? `Check this line: ${flags.join(", ")}` : null,
      onclick: go, onkeydown: (ev) => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); go(); } }},
    el("div", {class: "line-head"},
      el("span", {class: "time", text: R.clock(seg.start_ms / 1000)}),
      el("span", {class: "speaker", text: sp.name}),
      sp.role ? el("span", {class: "role", text: sp.role}) : null),
    lineText(seg));
  }

  /** The line's text; with search marks (`&hl=`) on its words, those words in <mark>. */
  function lineText(seg) {
    const marked = ReviewPage.markedWords(seg.words, state.marks);
    if (!marked.size) return el("p", {class: "text", text: seg.text.trim()});
    const parts = [];
    seg.words.forEach((w, i) => {
      if (i) parts.push(document.createTextNode(" "));
      parts.push(marked.has(i) ? el("mark", {class: "hit", text: w.word}) : document.createTextNode(w.word));
    });
    return el("p", {class: "text"}, parts);
  }

  function highlight(seconds, force) {
    const now = ReviewPage.activeAt(state.segments, seconds * 1000);
    const changed = now.length !== state.active.length || now.some((v, k) => v !== state.active[k]);
    if (!changed && !force) return;
    for (const i of state.active) state.lines[i] && state.lines[i].classList.remove("active");
    for (const i of now) state.lines[i] && state.lines[i].classList.add("active");
    state.active = now;
    const first = state.lines[now[0]];
    const idle = Date.now() - state.userScrolledAt > 4000;
    if (first && $("follow").checked && (force || idle)) {
      list.scrollTo({top: first.offsetTop - list.clientHeight / 3, behavior: force ? "auto" : "smooth"});
    }
  }

  for (const ev of ["wheel", "touchstart", "keydown"]) {
    list.addEventListener(ev, () => { state.userScrolledAt = Date.now(); }, {passive: true});
  }

  /* ------------------------------------------------ loading + polling */

  async function refresh() {
    const rec = state.rec;
    renderHeader(rec);
    renderProgress(rec);
    renderQuality(rec);
    if (!state.quality || ["recording", "processing"].includes(rec.status)) await loadQuality();
    const outputs = rec.outputs || {};
    if (!state.playerLoaded && outputs.composite) await loadPlayer();
    if (!state.transcriptLoaded && (outputs.transcript || ["ready", "failed"].includes(rec.status))) {
      await loadTranscript();
    }
    const settled = ["ready", "failed"].includes(rec.status) && (state.playerLoaded || !outputs.composite);
    if (!(settled && state.transcriptLoaded) && !["failed", "deleted"].includes(rec.status)) schedulePoll();
  }

  function schedulePoll() {
    clearTimeout(state.pollTimer);
    if (state.polls >= 2000) return; // a few hours at most
    const delay = Math.min(10000, 2000 + 500 * state.polls);
    state.polls += 1;
    state.pollTimer = setTimeout(async () => {
      try {
        state.rec = await json(base);
      } catch (err) {
        if ([401, 403, 404].includes(err.status)) return onApiError(err, "recording");
        return schedulePoll(); // a blip (503, network): try again later
      }
      await refresh();
    }, delay);
  }

  async function start() {
    R.takeTokenFromUrl();
    R.whoami($("whoami"), () => requireToken(""));
    if (!R.token()) return requireToken("");
    $("token-panel").hidden = true;
    $("message").hidden = true;
    try {
      state.rec = await json(base);
    } catch (err) {
      return onApiError(err, "recording");
    }
    $("review").hidden = false;
    await refresh();
  }

  start();
})();
