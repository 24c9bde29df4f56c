/* /search: query + role/date filters over GET /v1/search; hits link to /review/{id}#t=…. */
"use strict";

(() => {
  const R = Recorder, el = R.el, $ = (id) => document.getElementById(id);
  const LIMIT = 20;
  const state = {params: null, offset: 0};

  /** Snippet HTML from the API (escaped text + <mark>) → DOM nodes, without innerHTML on a live node. */
  function snippetNodes(html) {
    const decode = document.createElement("textarea"); // RCDATA: entities decoded, no elements made
    let inMark = false;
    const nodes = [];
    for (const part of String(html).split(/(<mark>|<\/mark>)/)) {
      if (part === "<mark>") { inMark = true; continue; }
      if (part === "</mark>") { inMark = false; continue; }
      decode.innerHTML = part;
      const text = decode.value;
      if (text) nodes.push(inMark ? el("mark", {text}) : document.createTextNode(text));
    }
    return nodes;
  }

  function linkOf(hit) {
    const fallback = `/review/${encodeURIComponent(hit.recording_id)}#t=${(hit.start_ms / 1000).toFixed(1)}`;
    return typeof hit.link === "string" && hit.link.startsWith("/review/") ? hit.link : fallback;
  }

  function hitNode(hit) {
    const who = [hit.speaker, hit.role].filter(Boolean).join(" · ");
    return el("li", {}, el("a", {class: "hit", href: linkOf(hit)},
      el("div", {class: "hit-head"},
        el("span", {class: "hit-title", text: hit.recording_title || hit.recording_id}),
        el("span", {class: "hit-meta", text: `${R.date(hit.recorded_at)} · at ${R.clock(hit.start_ms / 1000)} · ${who}`})),
      el("p", {class: "hit-snippet"}, snippetNodes(hit.snippet))));
  }

  function formParams() {
    const p = new URLSearchParams();
    for (const name of ["q", "role", "from", "to"]) {
      const v = $(name).value.trim();
      if (v) p.set(name, v);
    }
    return p;
  }

  function fillForm(params) {
    for (const name of ["q", "role", "from", "to"]) $(name).value = params.get(name) || "";
  }

  function apiQuery(params, offset) {
    const q = new URLSearchParams({q: params.get("q"), limit: String(LIMIT), offset: String(offset)});
    if (params.get("role")) q.set("role", params.get("role"));
    if (params.get("from")) q.set("from", params.get("from"));
    if (params.get("to")) { // inclusive day in the form; the API's `to` is exclusive
      const next = new Date(`${params.get("to")}T00:00:00Z`);
      next.setUTCDate(next.getUTCDate() + 1);
      q.set("to", next.toISOString().slice(0, 10));
    }
    return q;
  }

  async function run(params, offset) {
    state.params = params;
    state.offset = offset;
    const note = $("results-note");
    if (!offset) { $("hits").replaceChildren(); note.textContent = "Searching…"; }
    let body;
    try {
      body = await (await R.api(`/v1/search?${apiQuery(params, offset)}`)).json();
    } catch (err) {
      if (err.status === 401) return requireToken(`The token was refused: ${err.message}. Paste another one.`);
      note.textContent = `Search failed: ${err.message}`;
      return;
    }
    $("hits").append(...body.hits.map(hitNode));
    const shown = offset + body.count;
    note.textContent = shown ? `${shown}${body.count === LIMIT ? "+" : ""} moment${shown > 1 ? "s" : ""} for “${body.query}”`
      : `Nothing found for “${body.query}”.`;
    $("more").hidden = body.count < LIMIT;
  }

  function requireToken(message) {
    $("search").hidden = true;
    R.tokenForm($("token-panel"), message, start);
  }

  $("search-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const params = formParams();
    if (!params.get("q")) return;
    history.pushState(null, "", `/search?${params}`);
    run(params, 0);
  });
  $("more").addEventListener("click", () => run(state.params, state.offset + LIMIT));
  window.addEventListener("popstate", () => {
    const params = new URLSearchParams(location.search);
    fillForm(params);
    if (params.get("q")) run(params, 0);
  });

  function start() {
    R.takeTokenFromUrl();
    R.whoami($("whoami"), () => requireToken(""));
    if (!R.token()) return requireToken("");
    $("token-panel").hidden = true;
    $("search").hidden = false;
    const params = new URLSearchParams(location.search);
    fillForm(params);
    if (params.get("q")) run(params, 0);
    else $("q").focus();
  }

  start();
})();
