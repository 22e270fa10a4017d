// Sluice console: what the server-rendered pages cannot do alone. Every write is a call to the
// HTTP API (/v1/… or the registry) with a JSON body, the same call a script would make.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
const seg = (s) => encodeURIComponent(s);

// ---- API calls ---------------------------------------------------------------------------

// With HTTP authentication on, the page carries its session's CSRF token: every write sends it
// (the session cookie alone is what another site's form could send).
const csrfToken = (document.querySelector('meta[name="csrf-token"]') || {}).content;

async function api(method, path, body) {
  const init = { method, headers: {} };
  if (csrfToken && method !== "GET") init.headers["X-Sluice-CSRF"] = csrfToken;
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  const text = await resp.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (e) { json = null; }
  if (!resp.ok) {
    const msg = (json && json.message) || text || resp.statusText;
    const err = new Error(msg);
    err.status = resp.status;
    throw err;
  }
  return json;
}

function say(el, message, kind) {
  if (!el) return;
  el.textContent = message;
  el.className = "status" + (kind ? " " + kind : "");
}

// ---- confirmation --------------------------------------------------------------------------

// Resolves true when confirmed. With `typed`, the user must type that text first (destructive
// actions: deleting a topic, discarding dead letters).
function confirmAction(message, typed) {
  const dlg = $("#confirm");
  $("#confirm-message", dlg).textContent = message;
  const field = $("#confirm-typed", dlg);
  const input = $("input", field);
  const ok = $("#confirm-ok", dlg);
  field.hidden = !typed;
  input.value = "";
  $("#confirm-expected", dlg).textContent = typed || "";
  ok.disabled = !!typed;
  input.oninput = () => { ok.disabled = input.value !== typed; };
  return new Promise((resolve) => {
    dlg.onclose = () => resolve(dlg.returnValue === "ok");
    dlg.returnValue = "";
    dlg.showModal();
    (typed ? input : ok).focus();
  });
}

// ---- theme ---------------------------------------------------------------------------------

function initTheme() {
  const btn = $("#theme-toggle");
  if (!btn) return;
  const label = () => {
    const t = document.documentElement.dataset.theme || "system";
    btn.textContent = "Theme: " + t;
    btn.setAttribute("aria-label", "Colour theme: " + t + ". Change theme");
  };
  label();
  btn.addEventListener("click", () => {
    const order = ["system", "dark", "light"];
    const cur = document.documentElement.dataset.theme || "system";
    const next = order[(order.indexOf(cur) + 1) % order.length];
    if (next === "system") delete document.documentElement.dataset.theme;
    else document.documentElement.dataset.theme = next;
    try {
      if (next === "system") localStorage.removeItem("sluice-theme");
      else localStorage.setItem("sluice-theme", next);
    } catch (e) { /* storage off */ }
    label();
  });
}

// ---- live refresh ----------------------------------------------------------------------------

// Regions marked data-refresh="ms" (each with an id) are re-rendered from the page's own URL.
function initRefresh() {
  const regions = $$("[data-refresh][id]");
  if (!regions.length) return;
  const every = Math.max(1000, Math.min(...regions.map((r) => Number(r.dataset.refresh) || 5000)));
  setInterval(async () => {
    if (document.hidden) return;
    try {
      const resp = await fetch(location.href, { headers: { "Accept": "text/html" } });
      if (!resp.ok) return;
      const doc = new DOMParser().parseFromString(await resp.text(), "text/html");
      for (const r of regions) {
        const fresh = doc.getElementById(r.id);
        if (fresh && !r.contains(document.activeElement)) r.innerHTML = fresh.innerHTML;
      }
    } catch (e) { /* the next tick tries again */ }
  }, every);
}

// ---- topics ------------------------------------------------------------------------------------

function initCreateTopic() {
  const form = $("#create-topic");
  if (!form) return;
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const st = $("#create-topic-status");
    const body = { name: form.name.value.trim() };
    if (form.partitions.value) body.partitions = Number(form.partitions.value);
    if (form.replication_factor.value) body.replication_factor = Number(form.replication_factor.value);
    try {
      await api("POST", "/v1/topics", body);
      location.href = "/ui/topics/" + seg(body.name);
    } catch (e) { say(st, "Not created: " + e.message, "error"); }
  });
}

function initDeleteTopic() {
  const btn = $("#delete-topic");
  if (!btn) return;
  btn.addEventListener("click", async () => {
    const topic = btn.dataset.topic;
    if (!(await confirmAction("Delete topic " + topic + " and every record in it? This cannot be undone.", topic))) return;
    try {
      await api("DELETE", "/v1/topics/" + seg(topic));
      location.href = "/ui/topics";
    } catch (e) { say($("#delete-topic-status"), "Not deleted: " + e.message, "error"); }
  });
}

function initProduce() {
  const form = $("#produce");
  if (!form) return;
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const st = $("#produce-status");
    const rec = {};
    if (form.partition.value !== "") rec.partition = Number(form.partition.value);
    if (form.key.value !== "") rec.key = form.key.value;
    rec.value = form.value.value;
    rec.headers = form.headers.value.split("\n").map((l) => l.trim()).filter(Boolean).map((l) => {
      const i = l.indexOf("=");
      return i < 0 ? { name: l, value: null } : { name: l.slice(0, i), value: l.slice(i + 1) };
    });
    try {
      const r = await api("POST", "/v1/topics/" + seg(form.dataset.topic) + "/records", { records: [rec] });
      const o = r.offsets[0];
      say(st, "Written to partition " + o.partition + " at offset " + o.offset + ".", "ok");
    } catch (e) { say(st, "Not written: " + e.message, "error"); }
  });
}

// ---- live tail (Server-Sent Events from /v1/topics/{t}/tail) ------------------------------------

const TAIL_ROWS = 500;

function initTail() {
  const btn = $("#tail-toggle");
  if (!btn) return;
  let source = null;
  const rows = $("#tail-rows");
  const st = $("#tail-status");
  const stop = () => {
    if (source) source.close();
    source = null;
    btn.textContent = "Start live tail";
    btn.setAttribute("aria-pressed", "false");
    say(st, "Live tail stopped.");
  };
  btn.addEventListener("click", () => {
    if (source) { stop(); return; }
    const form = $("#browse");
    const q = new URLSearchParams();
    if (form.partition.value !== "") q.set("partition", form.partition.value);
    for (const f of ["key_contains", "value_contains", "header"]) {
      if (form[f].value) q.set(f, form[f].value);
    }
    q.set("decode", form.decode.value || "registry");
    source = new EventSource("/v1/topics/" + seg(btn.dataset.topic) + "/tail?" + q.toString());
    btn.textContent = "Stop live tail";
    btn.setAttribute("aria-pressed", "true");
    $("#tail").hidden = false;
    say(st, "Live tail connecting…");
    source.onopen = () => say(st, "Live tail running: new records appear at the top.");
    source.onerror = () => {
      if (!source) return;
      // CLOSED: the server refused the stream (unknown topic, too many tails); the browser
      // gives up. Otherwise it reconnects by itself, resuming after the last record shown.
      if (source.readyState === EventSource.CLOSED) {
        source = null;
        btn.textContent = "Start live tail";
        btn.setAttribute("aria-pressed", "false");
        say(st, "Live tail refused by the broker (too many tails, or the topic is gone).", "error");
      } else {
        say(st, "Live tail reconnecting…");
      }
    };
    source.addEventListener("tail-error", (ev) => {
      let why = "";
      try { why = JSON.parse(ev.data).message; } catch (e) { why = ev.data; }
      if (source) source.close();
      source = null;
      btn.textContent = "Start live tail";
      btn.setAttribute("aria-pressed", "false");
      say(st, "Live tail ended: " + why, "error");
    });
    source.addEventListener("record", (ev) => {
      let r;
      try { r = JSON.parse(ev.data); } catch (e) { return; }
      rows.prepend(recordRow(r));
      while (rows.children.length > TAIL_ROWS) rows.lastElementChild.remove();
    });
  });
  window.addEventListener("pagehide", () => { if (source) source.close(); });
}

function cell(text, cls) {
  const td = document.createElement("td");
  if (cls) td.className = cls;
  if (cls === "pre") {
    const pre = document.createElement("pre");
    pre.textContent = text;
    td.className = "";
    td.append(pre);
  } else {
    td.textContent = text;
  }
  return td;
}

function shown(value, decoded, error) {
  if (decoded && decoded.value !== undefined) return JSON.stringify(decoded.value, null, 2);
  if (error) return value + "\n(not decoded: " + error + ")";
  return value === null || value === undefined ? "(null)" : String(value);
}

function recordRow(r) {
  const tr = document.createElement("tr");
  tr.append(
    cell(String(r.partition), "num"),
    cell(String(r.offset), "num"),
    cell(new Date(r.timestamp).toISOString()),
    cell(shown(r.key, r.key_decoded, r.key_decode_error), "pre"),
    cell(shown(r.value, r.value_decoded, r.value_decode_error), "pre"),
    cell((r.headers || []).map((h) => h.name + "=" + (h.value === null ? "" : h.value)).join("\n"), "pre"),
  );
  return tr;
}

// ---- consumer groups: lag chart and offset reset ----------------------------------------------

function initLagChart() {
  const el = $("#lag-chart");
  if (!el || typeof uPlot === "undefined") return;
  const group = el.dataset.group;
  let plot = null;
  const draw = async () => {
    let h;
    try { h = await api("GET", "/v1/groups/" + seg(group) + "/lag-history"); } catch (e) {
      say($("#lag-chart-status"), "Lag history unavailable: " + e.message, "error");
      return;
    }
    const xs = h.samples.map((s) => s.at_ms / 1000);
    const lag = h.samples.map((s) => s.lag);
    const max = h.samples.map((s) => s.max_partition_lag);
    say($("#lag-chart-status"), h.samples.length
      ? h.samples.length + " samples, every " + h.interval_ms / 1000 + " s; latest total lag " + lag[lag.length - 1] + "."
      : "No samples yet: the first is taken within " + h.interval_ms / 1000 + " s of the group committing.");
    const tbody = $("#lag-table tbody");
    if (tbody) {
      tbody.replaceChildren(...h.samples.slice(-30).reverse().map((s) => {
        const tr = document.createElement("tr");
        tr.append(cell(new Date(s.at_ms).toISOString()), cell(String(s.lag), "num"), cell(String(s.max_partition_lag), "num"));
        return tr;
      }));
    }
    const styles = getComputedStyle(document.documentElement);
    const stroke = styles.getPropertyValue("--accent").trim() || "#0a58ca";
    const warn = styles.getPropertyValue("--warn").trim() || "#8a5300";
    const axis = styles.getPropertyValue("--fg").trim() || "#000";
    const data = [xs, lag, max];
    if (plot) { plot.setData(data); return; }
    plot = new uPlot({
      width: Math.min(el.clientWidth || 800, 1100),
      height: 240,
      series: [{}, { label: "total lag", stroke, width: 2 }, { label: "largest partition lag", stroke: warn, width: 1 }],
      axes: [{ stroke: axis }, { stroke: axis }],
    }, data, el);
  };
  draw();
  setInterval(() => { if (!document.hidden) draw(); }, 10000);
}

function initReset() {
  const form = $("#reset");
  if (!form) return;
  const st = $("#reset-status");
  const plan = $("#reset-plan");
  const apply = $("#reset-apply");
  const body = (execute) => {
    const b = { topic: form.topic.value, to: form.to.value, execute };
    if (["offset", "timestamp", "shift"].includes(form.to.value)) {
      let v = form.value.value.trim();
      if (form.to.value === "timestamp" && v && isNaN(Number(v))) v = String(Date.parse(v.endsWith("Z") ? v : v + "Z"));
      // Left blank: no value, which the API refuses by name rather than a silent 0.
      if (v !== "") b.value = Number(v);
    }
    return b;
  };
  const path = "/v1/groups/" + seg(form.dataset.group) + "/offsets/reset";
  const show = (r) => {
    const tbody = $("tbody", plan);
    tbody.replaceChildren(...r.offsets.map((o) => {
      const tr = document.createElement("tr");
      tr.append(cell(o.topic), cell(String(o.partition), "num"),
        cell(o.current_offset === null ? "–" : String(o.current_offset), "num"), cell(String(o.new_offset), "num"));
      return tr;
    }));
    plan.hidden = false;
  };
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const r = await api("POST", path, body(false));
      show(r);
      apply.disabled = false;
      say(st, "Dry run: nothing changed. Review the plan, then apply it.");
    } catch (e) { apply.disabled = true; plan.hidden = true; say(st, "No plan: " + e.message, "error"); }
  });
  apply.addEventListener("click", async () => {
    if (!(await confirmAction("Move the committed offsets of group " + form.dataset.group + " on " + form.topic.value + " as planned?"))) return;
    try {
      const r = await api("POST", path, body(true));
      show(r);
      apply.disabled = true;
      say(st, "Applied: the group's committed offsets moved.", "ok");
    } catch (e) { say(st, "Not applied: " + e.message, "error"); }
  });
}

// ---- dead-letter queues: redrive with progress and cancel --------------------------------------

function initRedrive() {
  const root = $("#redrive");
  if (!root) return;
  const topic = root.dataset.topic;
  const st = $("#redrive-status");
  const selected = () => $$("input[name=sel]:checked").map((c) => c.value.split(":").map(Number));
  const all = $("#select-all");
  if (all) all.addEventListener("change", () => $$("input[name=sel]").forEach((c) => { c.checked = all.checked; }));

  const start = async (action, which) => {
    const picked = which === "selected" ? selected() : [];
    if (which === "selected" && !picked.length) { say(st, "Select dead letters first.", "error"); return; }
    const count = which === "selected" ? picked.length + " selected dead letter(s)" : "every unhandled dead letter";
    const ok = action === "discard"
      ? await confirmAction("Discard " + count + " of " + topic + "? Discarded records are marked handled and not requeued.", topic)
      : await confirmAction("Requeue " + count + " of " + topic + " onto their original topics?");
    if (!ok) return;
    const byPartition = new Map();
    for (const [p, o] of picked) byPartition.set(p, (byPartition.get(p) || []).concat(o));
    const requests = which === "selected"
      ? Array.from(byPartition, ([partition, offsets]) => ({ partition, offsets }))
      : [{}];
    const rate = Number(($("#redrive-rate") || {}).value || 0);
    // One job per DLQ partition, one after another: a DLQ runs one job at a time.
    for (const body of requests) {
      if (action === "requeue" && rate > 0) body.max_per_second = rate;
      let job;
      try {
        job = await api("POST", "/v1/dlqs/" + seg(topic) + "/" + action, body);
      } catch (e) { say(st, action + " not started: " + e.message, "error"); return; }
      const end = await watchJob(job);
      if (end.state !== "done") return;
    }
  };
  $$("[data-redrive]", root).forEach((b) => b.addEventListener("click", () => start(b.dataset.redrive, b.dataset.which)));
  $$("[data-job]").forEach((row) => { if (row.dataset.state === "running") watchJob({ id: row.dataset.job }); });
}

// Shows a job's progress until it ends; the Cancel button asks the API to stop it. Resolves
// with the job as it ended.
function watchJob(job) {
  return new Promise((resolve) => followJob(job, resolve));
}

function followJob(job, resolve) {
  const list = $("#job-progress");
  let panel = $("#job-" + job.id);
  if (!panel) {
    panel = document.createElement("div");
    panel.id = "job-" + job.id;
    panel.className = "panel";
    panel.innerHTML = '<p><strong class="what"></strong> <span class="state"></span></p>' +
      '<progress max="1" value="0"></progress> <span class="count"></span> ' +
      '<button type="button" class="secondary cancel">Cancel</button>';
    list.prepend(panel);
    $(".cancel", panel).addEventListener("click", async () => {
      try { await api("DELETE", "/v1/jobs/" + job.id); } catch (e) { $(".state", panel).textContent = e.message; }
    });
  }
  const tick = async () => {
    let j;
    try { j = await api("GET", "/v1/jobs/" + job.id); } catch (e) {
      $(".state", panel).textContent = e.message;
      resolve({ state: "unknown" });
      return;
    }
    $(".what", panel).textContent = "Job " + j.id + ": " + j.action + " " + j.topic;
    $(".state", panel).textContent = "— " + j.state + (j.error ? ": " + j.error : "");
    const bar = $("progress", panel);
    bar.max = Math.max(1, j.planned);
    bar.value = j.progressed;
    bar.setAttribute("aria-label", "Job " + j.id + " progress");
    $(".count", panel).textContent = j.progressed + " of " + j.planned;
    if (j.state === "running" || j.state === "cancelling") setTimeout(tick, 500);
    else {
      const cancel = $(".cancel", panel);
      if (cancel) cancel.remove();
      say($("#redrive-status"), "Job " + j.id + " " + j.state + ". Reload to see the queue now.", j.state === "done" ? "ok" : "error");
      resolve(j);
    }
  };
  tick();
}

// ---- schema registry: compatibility check ---------------------------------------------------------

function initCompat() {
  const form = $("#compat");
  if (!form) return;
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const st = $("#compat-status");
    const body = { schema: form.schema.value };
    if (form.schemaType.value !== "AVRO") body.schemaType = form.schemaType.value;
    try {
      const r = await api("POST", "/compatibility/subjects/" + seg(form.dataset.subject) + "/versions/latest?verbose=true", body);
      const why = (r.messages || []).join("\n");
      say(st, r.is_compatible ? "Compatible with the latest version." : "Not compatible: " + why, r.is_compatible ? "ok" : "error");
    } catch (e) { say(st, "Check failed: " + e.message, "error"); }
  });
}

// ---- logging out (a write on the session: it carries the CSRF token) -----------------------

function initLogout() {
  const form = $("form.logout");
  if (!form) return;
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const resp = await fetch("/ui/logout", { method: "POST", headers: { "X-Sluice-CSRF": csrfToken || "" } });
      // Redirected to the login page (or already logged out): the session is over.
      if (resp.ok || resp.redirected || resp.status === 401) { location.href = "/ui/login"; return; }
      alert("Logging out failed (HTTP " + resp.status + "); the session is still open.");
    } catch (e) {
      alert("Logging out failed: " + e.message + "; the session is still open.");
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  initTheme();
  initLogout();
  initRefresh();
  initCreateTopic();
  initDeleteTopic();
  initProduce();
  initTail();
  initLagChart();
  initReset();
  initRedrive();
  initCompat();
});
