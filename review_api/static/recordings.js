/* /recordings: the landing page. "My interviews" first, then what else the caller may see.
   Both lists come from GET /v1/recordings (permission-aware in SQL); items still processing
   are polled until they settle, so status changes show without a reload. */
"use strict";

(() => {
  const R = Recorder, el = R.el, $ = (id) => document.getElementById(id);
  const LIMIT = 25, POLL_MS = 3000;
  const STATUS = {recording: "live", processing: "processing", ready: "ready", failed: "failed", deleted: "deleted by policy"};
  const state = {filters: new URLSearchParams(), cursor: null, timer: null};

  function duration(item) {
    return item.duration_ms ? R.clock(item.duration_ms / 1000) : "—";
  }

  function statusNode(item) {
    const label = item.status === "processing" ? `processing ${Math.round(item.progress * 100)}%` : STATUS[item.status] || item.status;
    return el("span", {class: `badge status-${item.status}`, text: label});
  }

  function itemNode(item) {
    const people = item.participants.map((p) => `${p.display_name || p.participant_id} (${p.role})`).join(", ");
    return el("li", {"data-id": item.id, "data-status": item.status},
      el("a", {class: "recording", href: item.link},
        el("div", {class: "hit-head"},
          el("span", {class: "hit-title", text: item.title || item.id}),
          statusNode(item)),
        el("p", {class: "hit-meta", text: `${R.date(item.started_at_ms || item.created_at)} · ${duration(item)} · ${people || "no participants yet"}`}),
        item.status === "failed" && item.error ? el("p", {class: "error", text: `Failed: ${item.error}`}) : null));
  }

  function query(extra) {
    const q = new URLSearchParams(state.filters);
    if (q.get("to")) { // the form's day is inclusive; the API's `to` is exclusive
      const next = new Date(`${q.get("to")}T00:00:00Z`);
      next.setUTCDate(next.getUTCDate() + 1);
      q.set("to", next.toISOString().slice(0, 10));
    }
    for (const [k, v] of Object.entries(extra)) q.set(k, v);
    return q;
  }

  async function fetchPage(extra) {
    return (await R.api(`/v1/recordings?${query(extra)}`)).json();
  }

  function emptyNote(which, count) {
    if (count) return "";
    const filtered = [...state.filters.keys()].length > 0;
    if (filtered) return "No interviews match these filters.";
    return which === "mine"
      ? "You have no interviews yet. Interviews you create or take part in appear here as soon as recording starts."
      : "Nothing has been shared with you yet. Ask an interviewer or an admin to share an interview with you or your group.";
  }

  async function load() {
    let mine, all;
    try {
      mine = await fetchPage({mine: "true", limit: String(LIMIT)});
      all = await fetchPage({limit: String(LIMIT)});
    } catch (err) {
      if (err.status === 401) return requireToken(`The token was refused: ${err.message}. Paste another one.`);
      $("mine-note").textContent = `Could not load interviews: ${err.message}`;
      return;
    }
    $("mine").replaceChildren(...mine.items.map(itemNode));
    $("mine-note").textContent = emptyNote("mine", mine.items.length);
    const others = all.items.filter((i) => !i.mine);
    $("shared").replaceChildren(...others.map(itemNode));
    $("shared-note").textContent = emptyNote("shared", others.length);
    state.cursor = all.next_cursor;
    $("more").hidden = !state.cursor;
    schedulePoll();
  }

  async function more() {
    const page = await fetchPage({limit: String(LIMIT), cursor: state.cursor});
    $("shared").append(...page.items.filter((i) => !i.mine).map(itemNode));
    state.cursor = page.next_cursor;
    $("more").hidden = !state.cursor;
  }

  function schedulePoll() {
    clearTimeout(state.timer);
    const busy = document.querySelector("li[data-status=recording], li[data-status=processing]");
    if (busy) state.timer = setTimeout(load, POLL_MS);
  }

  function requireToken(message) {
    $("list").hidden = true;
    R.tokenForm($("token-panel"), message, start);
  }

  $("filters").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const p = new URLSearchParams();
    for (const [id, name] of [["text", "q"], ["status", "status"], ["from", "from"], ["to", "to"]]) {
      const v = $(id).value.trim();
      if (v) p.set(name, v);
    }
    state.filters = p;
    history.replaceState(null, "", `/recordings${p.toString() ? "?" + p : ""}`);
    load();
  });
  $("more").addEventListener("click", more);

  function start() {
    R.takeTokenFromUrl();
    R.whoami($("whoami"), () => requireToken(""));
    if (!R.token()) return requireToken("");
    $("token-panel").hidden = true;
    $("list").hidden = false;
    const p = new URLSearchParams(location.search);
    for (const [id, name] of [["text", "q"], ["status", "status"], ["from", "from"], ["to", "to"]]) $(id).value = p.get(name) || "";
    state.filters = new URLSearchParams([...p].filter(([k]) => ["q", "status", "from", "to"].includes(k)));
    load();
  }

  start();
})();
