/* Shared by the review and search pages: API token, fetch with errors, formatting, DOM. */
"use strict";

const Recorder = (() => {
  const KEY = "recorder.apiToken";
  let memory = null; // used when localStorage is unavailable (private mode, disabled storage)

  function store(token) {
    memory = token;
    try { token ? localStorage.setItem(KEY, token) : localStorage.removeItem(KEY); } catch (_) { /* memory only */ }
  }

  function token() {
    try { return localStorage.getItem(KEY) || memory; } catch (_) { return memory; }
  }

  /** Take `?token=` from the address bar (then remove it, keeping the #fragment). */
  function takeTokenFromUrl() {
    const url = new URL(location.href);
    const t = url.searchParams.get("token");
    if (t) {
      store(t.trim());
      url.searchParams.delete("token");
      history.replaceState(history.state, "", url.pathname + url.search + url.hash);
    }
    return token();
  }

  /** The token's claims (unverified: only to show who is signed in and until when). */
  function claims(t) {
    try {
      const part = (t || "").split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      return JSON.parse(atob(part + "===".slice((part.length + 3) % 4)));
    } catch (_) { return null; }
  }

  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.message) || `HTTP ${status}`);
      this.status = status;
      this.code = (body && body.code) || `http_${status}`;
    }
  }

  async function api(path, options = {}) {
    const headers = Object.assign({Accept: "application/json"}, options.headers || {});
    const t = token();
    if (t) headers.Authorization = "Bearer " + t;
    let resp;
    try {
      resp = await fetch(path, Object.assign({}, options, {headers, cache: "no-store"}));
    } catch (err) {
      throw new ApiError(0, {code: "network", message: "the server cannot be reached"});
    }
    if (!resp.ok) {
      let body = null;
      try { body = await resp.json(); } catch (_) { body = {message: resp.statusText}; }
      throw new ApiError(resp.status, body);
    }
    return resp;
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k === "style") for (const [p, x] of Object.entries(v)) node.style.setProperty(p, x); // CSSOM: CSP-safe
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
      if (c !== null && c !== undefined && c !== false) node.append(c instanceof Node ? c : String(c));
    }
    return node;
  }

  /** 75.4 → "1:15"; 3725 → "1:02:05"; clock(75.46, 1) → "1:15.5". */
  function clock(seconds, digits = 0) {
    const t = Math.max(0, Number(seconds) || 0), whole = Math.floor(t);
    const h = Math.floor(whole / 3600), m = Math.floor((whole % 3600) / 60);
    let r = String(whole % 60).padStart(2, "0");
    if (digits) r += (t - whole).toFixed(digits).slice(1);
    return h ? `${h}:${String(m).padStart(2, "0")}:${r}` : `${m}:${r}`;
  }

  function date(ms) {
    if (!ms) return "";
    return new Date(ms).toLocaleString(undefined, {dateStyle: "medium", timeStyle: "short"});
  }

  /** A stable colour per speaker (hue from the id). */
  function hue(id) {
    let h = 0;
    for (const ch of String(id)) h = (h * 31 + ch.codePointAt(0)) % 360;
    return h;
  }

  /** Wire the "paste a token" form; calls `done()` once a token is stored. */
  function tokenForm(panel, message, done) {
    panel.hidden = false;
    panel.querySelector(".token-error").textContent = message || "";
    const form = panel.querySelector("form");
    form.onsubmit = (ev) => {
      ev.preventDefault();
      const value = form.querySelector("input").value.trim();
      if (!value) return;
      store(value);
      panel.hidden = true;
      done();
    };
    form.querySelector("input").focus();
  }

  /** Header: who is signed in, and a button to forget the token. */
  function whoami(slot, onForget) {
    const c = claims(token());
    slot.replaceChildren();
    if (!c) return;
    const until = c.exp ? ` · until ${new Date(c.exp * 1000).toLocaleTimeString([], {timeStyle: "short"})}` : "";
    slot.append(el("span", {class: "who", text: `${c.sub} (${c.role}, ${c.org})${until}`}),
      el("button", {class: "link", type: "button", text: "Forget token",
        onclick: () => { store(null); onForget(); }}));
  }

  return {token, store, takeTokenFromUrl, claims, api, ApiError, el, clock, date, hue, tokenForm, whoami};
})();
