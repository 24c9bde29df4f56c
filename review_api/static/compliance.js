/* /compliance: retention for compliance teams and admins, on the existing API only.
   Policy (GET/PUT /v1/retention/policy), legal holds (GET/POST /v1/legal-holds, …/release),
   a preview on demand (GET /v1/retention/preview: it freezes a manifest, so never on load),
   runs with approvals (GET /v1/retention/manifests, …/approve), receipts (GET /v1/receipts/{id},
   fetched with the token and saved as a file) and the audit chain (GET /v1/audit/verify). */
"use strict";

(() => {
  const R = Recorder, el = R.el, $ = (id) => document.getElementById(id);
  const MANAGERS = ["admin", "compliance"];
  const state = {me: null, canManage: false};

  function roles(c) {
    return [].concat((c && (c.roles || c.role)) || []);
  }

  function rulesText(rules) {
    if (!rules || !rules.length) return "kept (no rule)";
    return rules.map((r) => `${r.days} days after ${r.after === "end" ? "the interview ends" : `the candidate is ${r.after}`}`).join("; or ");
  }

  function bytes(n) {
    const units = ["B", "KB", "MB", "GB", "TB"];
    let v = Number(n) || 0, i = 0;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
    return `${i ? v.toFixed(1) : v} ${units[i]}`;
  }

  function note(id, text, isError) {
    $(id).textContent = text;
    $(id).classList.toggle("error", Boolean(isError));
  }

  function problem(err) {
    return err.status === 403 ? "Not permitted for your role." : err.message;
  }

  async function json(path, options) {
    return (await R.api(path, options)).json();
  }

  function send(method, body) {
    return {method, headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)};
  }

  // ---------------------------------------------------------------- audit chain

  async function loadVerify() {
    try {
      const v = await json("/v1/audit/verify");
      $("verify").textContent = v.ok ? "intact" : "broken";
      $("verify").className = `badge ${v.ok ? "status-ready" : "status-failed"}`;
      $("verify-detail").textContent = v.ok
        ? `${v.checked} events checked up to #${v.head_seq}, ${v.checkpoints} signed checkpoints`
        : `first broken event #${v.first_broken_seq}: ${v.reason}`;
    } catch (err) {
      $("verify").textContent = "unknown";
      $("verify").className = "badge";
      $("verify-detail").textContent = problem(err);
    }
  }

  // ---------------------------------------------------------------- policy

  function showPolicy(p) {
    $("policy-table").tBodies[0].replaceChildren(...p.kinds.map((kind) =>
      el("tr", {"data-kind": kind}, el("th", {scope: "row", text: kind}), el("td", {text: rulesText(p.rules[kind])}))));
    const mode = p.run_mode === "approval" ? "runs wait for a second compliance user's approval" : "runs are automatic";
    const lock = p.locked ? `Locked by ${p.locked_by || "?"} on ${R.date(p.locked_at)}: retention can only be made longer.` : "Not locked.";
    const updated = p.updated_at ? ` Last changed${p.updated_by ? ` by ${p.updated_by}` : ""} on ${R.date(p.updated_at)}.` : "";
    $("policy-state").textContent = `${lock} ${mode[0].toUpperCase()}${mode.slice(1)}.${updated}`;
    $("policy-form").hidden = !state.canManage;
    $("policy-rules").value = JSON.stringify(p.rules, null, 2);
    $("policy-locked").checked = p.locked;
    $("policy-locked").disabled = p.locked; // a locked policy stays locked
    $("policy-mode").value = p.run_mode;
  }

  async function loadPolicy() {
    showPolicy(await json("/v1/retention/policy"));
  }

  async function savePolicy(ev) {
    ev.preventDefault();
    let rules;
    try { rules = JSON.parse($("policy-rules").value || "{}"); } catch (_) {
      return note("policy-msg", "The rules are not valid JSON.", true);
    }
    try {
      showPolicy(await json("/v1/retention/policy", send("PUT",
        {rules, locked: $("policy-locked").checked, run_mode: $("policy-mode").value})));
      note("policy-msg", "Policy saved.");
    } catch (err) {
      note("policy-msg", `Not saved: ${problem(err)}`, true);
    }
  }

  // ---------------------------------------------------------------- legal holds

  function holdRow(h) {
    const release = state.canManage && !h.released_at
      ? el("button", {type: "button", class: "secondary", text: "Release", "aria-label": `Release hold on ${h.scope} ${h.target}`,
        onclick: () => releaseHold(h)})
      : null;
    const where = h.released_at ? `released ${R.date(h.released_at)} by ${h.released_by}` : "active";
    return el("tr", {"data-id": h.id, "data-state": h.released_at ? "released" : "active"},
      el("td", {text: h.scope}), el("td", {text: h.target}), el("td", {text: h.reason}),
      el("td", {text: `${R.date(h.created_at)} by ${h.created_by}`}), el("td", {text: where}), el("td", {}, release));
  }

  async function loadHolds() {
    const out = await json("/v1/legal-holds");
    const enforced = {true: "The object store also refuses to delete held objects.",
      false: "The object store does not enforce holds itself (the database does).",
      null: "Whether the object store enforces holds is not known right now."};
    $("holds-enforced").textContent = enforced[String(out.storage_enforced)];
    $("holds").tBodies[0].replaceChildren(...out.holds.map(holdRow));
    note("holds-msg", out.holds.length ? "" : "No legal holds.");
    $("hold-form").hidden = !state.canManage;
  }

  async function createHold(ev) {
    ev.preventDefault();
    const body = {scope: $("hold-scope").value, target: $("hold-target").value.trim(), reason: $("hold-reason").value.trim()};
    try {
      const h = await json("/v1/legal-holds", send("POST", body));
      $("hold-form").reset();
      await loadHolds();
      note("holds-msg", `Hold placed on ${h.scope} ${h.target}: ${h.recordings.length} recording(s) covered.`);
      loadVerify();
    } catch (err) {
      note("holds-msg", `Hold not placed: ${problem(err)}`, true);
    }
  }

  async function releaseHold(h) {
    try {
      await json(`/v1/legal-holds/${encodeURIComponent(h.id)}/release`, send("POST", {reason: "released from the compliance page"}));
      await loadHolds();
      note("holds-msg", `Hold on ${h.scope} ${h.target} released.`);
      loadVerify();
    } catch (err) {
      note("holds-msg", `Not released: ${problem(err)}`, true);
    }
  }

  // ---------------------------------------------------------------- preview

  function showPreview(m) {
    const s = m.summary || {due: {}, held: {}, recordings: 0};
    const kinds = [...new Set([...Object.keys(s.due), ...Object.keys(s.held)])].sort();
    $("preview-head").textContent = `Manifest ${m.id} at ${R.date(m.at)}: ${s.recordings} recording(s)` +
      (m.needs_approval ? ", needs a second compliance user's approval before it runs." : ".");
    $("preview-kinds").tBodies[0].replaceChildren(...kinds.map((kind) => {
      const d = s.due[kind] || {items: 0, objects: 0, bytes: 0, rows: 0}, h = s.held[kind] || {items: 0};
      return el("tr", {"data-kind": kind}, el("th", {scope: "row", text: kind}), el("td", {class: "due", text: d.items}),
        el("td", {text: d.objects}), el("td", {text: bytes(d.bytes)}), el("td", {text: d.rows}), el("td", {class: "held", text: h.items}));
    }));
    const held = (m.items || []).filter((i) => i.status === "held");
    $("preview-held").replaceChildren(...held.map((i) =>
      el("li", {text: `${i.recording_id} · ${i.kind} · held by ${(i.held_by || []).join(", ")}`})));
    if (!held.length) $("preview-held").append(el("li", {class: "meta", text: "Nothing held."}));
    $("preview").hidden = false;
    note("preview-msg", kinds.length ? "" : "Nothing is due at this date.");
  }

  async function preview(ev) {
    ev.preventDefault();
    const at = $("preview-at").value;
    note("preview-msg", "Computing…");
    try {
      showPreview(await json(`/v1/retention/preview${at ? `?at=${encodeURIComponent(at)}` : ""}`));
      await loadRuns();
      loadVerify();
    } catch (err) {
      note("preview-msg", `No preview: ${problem(err)}`, true);
    }
  }

  // ---------------------------------------------------------------- runs, approvals, receipts

  async function download(receiptId, button) {
    try {
      const blob = await (await R.api(`/v1/receipts/${encodeURIComponent(receiptId)}`)).blob();
      const url = URL.createObjectURL(blob);
      const a = el("a", {href: url, download: `${receiptId}.json`, hidden: true});
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
      note("runs-msg", `Receipt ${receiptId} downloaded: check it with "recorder receipt verify ${receiptId}.json".`);
    } catch (err) {
      note("runs-msg", `Receipt not downloaded: ${problem(err)}`, true);
    }
    button.focus();
  }

  async function approve(m) {
    try {
      await json(`/v1/retention/manifests/${encodeURIComponent(m.id)}/approve`, {method: "POST"});
      await loadRuns();
      note("runs-msg", `Manifest ${m.id} approved.`);
    } catch (err) {
      note("runs-msg", `Not approved: ${problem(err)}`, true);
    }
  }

  function approval(m) {
    if (!m.needs_approval) return "not needed";
    if (m.approved_by) return `approved by ${m.approved_by} on ${R.date(m.approved_at)}`;
    if (state.canManage && m.status === "pending" && m.created_by !== state.me) {
      return el("button", {type: "button", class: "secondary", text: "Approve", onclick: () => approve(m)});
    }
    return m.status === "pending" ? "waits for another compliance user" : "—";
  }

  function runRow(m) {
    const receipt = m.receipt_id
      ? el("button", {type: "button", class: "link", text: `Download ${m.receipt_id}`,
        onclick: (ev) => download(m.receipt_id, ev.currentTarget)})
      : "—";
    const run = m.summary && m.summary.run;
    const status = run ? `${m.status}: ${Object.entries(run.items).map(([k, v]) => `${v} ${k}`).join(", ")}` : m.status;
    return el("tr", {"data-id": m.id},
      el("td", {text: m.id}), el("td", {text: m.purpose}), el("td", {text: `${R.date(m.created_at)} by ${m.created_by}`}),
      el("td", {text: status}), el("td", {}, approval(m)), el("td", {}, receipt));
  }

  async function loadRuns() {
    const out = await json("/v1/retention/manifests");
    $("runs").tBodies[0].replaceChildren(...out.items.map(runRow));
    note("runs-msg", out.items.length ? "" : "No previews or runs yet.");
  }

  // ---------------------------------------------------------------- start

  function requireToken(message) {
    $("page").hidden = true;
    $("denied").hidden = true;
    R.tokenForm($("token-panel"), message, start);
  }

  async function start() {
    R.takeTokenFromUrl();
    R.whoami($("whoami"), () => requireToken(""));
    if (!R.token()) return requireToken("");
    $("token-panel").hidden = true;
    const c = R.claims(R.token());
    state.me = c && c.sub;
    state.canManage = roles(c).some((r) => MANAGERS.includes(r));
    try {
      await loadPolicy();
    } catch (err) {
      if (err.status === 401) return requireToken(`The token was refused: ${err.message}. Paste another one.`);
      $("page").hidden = true;
      $("denied").hidden = false;
      if (err.status !== 403) $("denied-text").textContent = `Could not load the compliance page: ${err.message}`;
      return;
    }
    $("denied").hidden = true;
    $("page").hidden = false;
    $("preview-at").value = new Date().toISOString().slice(0, 10);
    await Promise.all([loadVerify(), loadHolds().catch((e) => note("holds-msg", problem(e), true)),
      loadRuns().catch((e) => note("runs-msg", problem(e), true))]);
  }

  $("policy-form").addEventListener("submit", savePolicy);
  $("hold-form").addEventListener("submit", createHold);
  $("preview-form").addEventListener("submit", preview);
  start();
})();
