// Lepton console: every value from the server is put on the page as text (textContent), never as HTML.
"use strict";
const CSRF = document.querySelector('meta[name="csrf-token"]')?.content || "";
const PAGE = document.body.dataset.page;

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}
function $(id) { return document.getElementById(id); }
function pct(p) { return p === null || p === undefined ? "–" : (100 * p).toFixed(0) + " %"; }
function clock(ts) { return ts ? new Date(ts * 1000).toLocaleTimeString() : "–"; }
function ago(ts, now) {
  if (!ts) return "–";
  const s = Math.max(0, Math.round((now || Date.now() / 1000) - ts));
  return s < 60 ? s + " s ago" : s < 3600 ? Math.round(s / 60) + " min ago" : Math.round(s / 3600) + " h ago";
}
async function getJSON(url) {
  const r = await fetch(url, {credentials: "same-origin"});
  if (r.status === 401) { location.href = "/login"; throw new Error("logged out"); }
  return r.json();
}
async function post(url, body) {
  const r = await fetch(url, {method: "POST", credentials: "same-origin",
    headers: {"Content-Type": "application/json", "X-CSRF-Token": CSRF}, body: JSON.stringify(body || {})});
  const out = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(out.error || ("HTTP " + r.status));
  return out;
}
function throttle(fn, ms) {
  let timer = null, again = false;
  return function run() {
    if (timer) { again = true; return; }
    fn();
    timer = setTimeout(() => { timer = null; if (again) { again = false; run(); } }, ms);
  };
}
function confirmDialog(text) {
  const d = $("confirm");
  $("confirm-text").textContent = text;
  return new Promise(resolve => {
    d.addEventListener("close", () => resolve(d.returnValue === "ok"), {once: true});
    d.showModal();
  });
}
function live(handlers) {
  const badge = $("live");
  const es = new EventSource("/events");
  es.onopen = () => { badge.textContent = "live"; badge.className = "live on"; };
  es.onerror = () => { badge.textContent = "reconnecting…"; badge.className = "live off"; };
  es.onmessage = (m) => {
    let ev; try { ev = JSON.parse(m.data); } catch (e) { return; }
    const h = handlers[ev.type] || handlers["*"];
    if (h) h(ev);
  };
}

// ---- keys: a class's own name when every name is one distinct character, else 1..9, 0 -------------
const RESERVED = new Set(["n", "s", "u"]);
function classKeys(classes) {
  const own = classes.map(c => String(c).toLowerCase());
  if (own.length && own.every(c => c.length === 1 && /[0-9a-z]/.test(c) && !RESERVED.has(c))
      && new Set(own).size === own.length) return own;
  return classes.map((_, i) => i < 9 ? String(i + 1) : i === 9 ? "0" : null);
}

// ---- label queue ---------------------------------------------------------------------------------
function queuePage() {
  let items = [], classes = {}, shownKey = null;
  const flash = (t, bad) => { const f = $("flash"); f.textContent = t; f.className = "flash" + (bad ? " bad" : ""); };

  function answer(a) {
    if (!a) return "not yet";
    return a.name + " (" + pct(a.p) + ")" + (a.defer ? ", deferred to the device" : "") + (a.model ? " · " + a.model : "");
  }
  function renderCurrent() {
    const it = items[0];
    $("empty").hidden = !!it;
    for (const id of ["sample-box", "item-info", "keys", "actions"]) $(id).hidden = !it;
    if (!it) { shownKey = null; return; }
    if (shownKey !== it.key) {
      shownKey = it.key;
      const img = $("sample-img"), none = $("sample-none");
      if (it.sample_kind === "none") {
        img.hidden = true; img.removeAttribute("src");
        none.hidden = false; none.textContent = it.sample_note;
      } else {
        none.hidden = true; img.hidden = false;
        img.src = "/sample/" + encodeURIComponent(it.key);
        img.className = it.sample_kind === "png" ? "pixels" : "";
        img.width = it.sample_kind === "png" ? Math.max(192, it.width) : it.width;
        img.height = it.sample_kind === "png" ? Math.max(192, it.width) * it.height / it.width : it.height;
      }
      $("sample-note").textContent = it.sample_note;
    }
    $("i-device").textContent = it.device;
    $("i-stream").textContent = it.stream;
    $("i-time").textContent = clock(it.ts);
    $("i-model").textContent = it.task + " v" + it.model_version;
    $("i-reason").textContent = it.reason;
    $("i-score").textContent = it.score.toFixed(2);
    $("i-edge").textContent = it.edge.map(e => e.name + " " + pct(e.p)).join(" · ");
    $("i-cloud").textContent = answer(it.cloud);
    $("i-final").textContent = it.final ? it.final.name + " (by " + it.final.source + ")" : "not yet";
    const keys = $("keys"); keys.replaceChildren();
    const names = classes[it.task] || it.edge.map(e => e.name);
    classKeys(names).forEach((k, i) => {
      const b = el("button", null, "class");
      b.dataset.label = String(i);
      if (k) { b.dataset.key = k; b.append(el("kbd", k)); }
      b.append(el("span", " " + names[i]));
      b.addEventListener("click", () => act("/api/label", {key: it.key, label: i}, "labelled " + names[i]));
      keys.append(b);
    });
  }
  function renderSide(d) {
    $("s-total").textContent = d.session.total;
    $("s-waiting").textContent = d.waiting;
    const ul = $("s-per-class"); ul.replaceChildren();
    for (const [name, n] of Object.entries(d.session.per_class)) ul.append(el("li", name + ": " + n));
    const ol = $("next"); ol.replaceChildren();
    for (const it of items.slice(1, 8)) {
      const li = el("li");
      li.dataset.key = it.key;
      if (it.sample_kind !== "none") {
        const im = el("img", null, it.sample_kind === "png" ? "thumb pixels" : "thumb");
        im.src = "/sample/" + encodeURIComponent(it.key); im.alt = "";
        li.append(im);
      }
      li.append(el("span", it.device + " · " + (it.edge[0] ? it.edge[0].name + " " + pct(it.edge[0].p) : "") +
                     " · value " + it.score.toFixed(2)));
      ol.append(li);
    }
  }
  const pending = new Set();  // keys whose action is on its way: never shown again meanwhile
  let chain = Promise.resolve(), landed = 0;
  async function refresh() {
    // A queue read begun before an action landed may still hold the sample just labelled: it is dropped,
    // and the read chained after that action brings the queue as it is now.
    const began = landed;
    const d = await getJSON("/api/queue");
    if (began !== landed) return;
    items = d.items.filter(x => !pending.has(x.key)); classes = d.classes;
    // The sample on screen stays until the person acts on it (or someone labels it): a more valuable one
    // arriving meanwhile waits its turn, so a key never lands on a sample that just replaced the one seen.
    const cur = items.find(x => x.key === shownKey);
    if (cur) items = [cur, ...items.filter(x => x !== cur)];
    renderCurrent(); renderSide(d);
    document.body.dataset.ready = "1";
  }
  const soon = throttle(() => refresh().catch(() => {}), 300);
  function act(url, body, done) {
    // Keys are never dropped: the item leaves the screen at once and the requests go out in order.
    if (body.key) { pending.add(body.key); items = items.filter(x => x.key !== body.key); renderCurrent(); }
    chain = chain.then(async () => {
      try {
        const out = await post(url, body);
        flash(done + (out.undone ? " (" + out.undone + ")" : ""));
      } catch (e) { flash(e.message, true); }
      finally { landed++; if (body.key) pending.delete(body.key); }
      await refresh().catch(() => {});
    });
    return chain;
  }
  document.addEventListener("keydown", (ev) => {
    if (ev.target.closest && ev.target.closest("input, textarea, select, dialog")) return;
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const k = ev.key.toLowerCase(), it = items[0];
    if (k === "u" || ev.key === "Backspace") { ev.preventDefault(); act("/api/undo", {}, "undone"); return; }
    if (!it) return;
    if (k === "n") return act("/api/none", {key: it.key}, "none of these");
    if (k === "s") return act("/api/skip", {key: it.key}, "skipped");
    const b = document.querySelector('#keys button[data-key="' + CSS.escape(k) + '"]');
    if (b) { ev.preventDefault(); b.click(); }
  });
  $("btn-none").addEventListener("click", () => items[0] && act("/api/none", {key: items[0].key}, "none of these"));
  $("btn-skip").addEventListener("click", () => items[0] && act("/api/skip", {key: items[0].key}, "skipped"));
  $("btn-undo").addEventListener("click", () => act("/api/undo", {}, "undone"));
  $("training-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = new FormData(ev.target);
    try {
      const out = await post("/api/training", {target: f.get("target"), rate: Number(f.get("rate")),
                                                seconds: 60 * Number(f.get("minutes"))});
      $("training-state").textContent = Object.entries(out.training)
        .map(([t, r]) => t + ": " + pct(r.rate) + " until " + clock(r.until)).join("; ") || "off";
    } catch (e) { $("training-state").textContent = e.message; }
  });
  live({labelled: (ev) => {  // labelled anywhere: gone from this screen at once
          const gone = new Set(ev.keys);
          if (items.some(x => gone.has(x.key))) { items = items.filter(x => !gone.has(x.key)); renderCurrent(); }
          soon();
        },
        queue: soon});
  refresh();
}

// ---- review --------------------------------------------------------------------------------------
function reviewPage() {
  let filter = {task: "", label: ""}, data = null;
  async function refresh() {
    const q = new URLSearchParams(filter);
    data = await getJSON("/api/review?" + q);
    const tabs = $("class-tabs"); tabs.replaceChildren();
    const all = el("button", "all"); all.className = filter.label === "" ? "tab here" : "tab";
    all.addEventListener("click", () => { filter = {task: "", label: ""}; refresh(); });
    tabs.append(all);
    for (const [task, names] of Object.entries(data.classes)) {
      [...names.map((n, i) => [n, i]), ["none of these", -1]].forEach(([n, i]) => {
        const count = data.by_class[task + ":" + i] || 0;
        if (!count) return;
        const b = el("button", task + " · " + n + " (" + count + ")", "tab");
        if (filter.task === task && filter.label === String(i)) b.className = "tab here";
        b.addEventListener("click", () => { filter = {task, label: String(i)}; refresh(); });
        tabs.append(b);
      });
    }
    const grid = $("grid"); grid.replaceChildren();
    for (const h of data.labels) {
      const card = el("button", null, "card");
      card.dataset.key = h.key;
      if (h.sample_kind !== "none") {
        const im = el("img", null, h.sample_kind === "png" ? "thumb pixels" : "thumb");
        im.src = "/sample/" + encodeURIComponent(h.key); im.alt = "";
        card.append(im);
      } else card.append(el("div", h.sample_note, "placeholder small"));
      card.append(el("span", h.label_name, "lbl"), el("span", h.device + " · " + clock(h.labelled_at), "muted"),
                  el("span", "by " + h.by, "muted"));
      card.addEventListener("click", () => correct(h));
      grid.append(card);
    }
    document.body.dataset.ready = "1";
  }
  function correct(h) {
    const d = $("correct");
    $("c-key").textContent = h.device + " sample " + h.sample;
    $("c-now").textContent = "now: " + h.label_name + " (by " + h.by + ")";
    const img = $("c-img");
    if (h.sample_kind !== "none") { img.hidden = false; img.src = "/sample/" + encodeURIComponent(h.key); img.className = h.sample_kind === "png" ? "pixels big" : ""; }
    else img.hidden = true;
    const box = $("c-classes"); box.replaceChildren();
    const names = data.classes[h.task] || [];
    [...names.map((n, i) => [n, i]), ["none of these", -1]].forEach(([n, i]) => {
      const b = el("button", n, "class");
      b.dataset.label = String(i);
      b.disabled = i === h.label;
      b.addEventListener("click", async (ev) => {
        ev.preventDefault();
        try { await post("/api/correct", {key: h.key, label: i}); d.close(); refresh(); }
        catch (e) { $("c-now").textContent = e.message; }
      });
      box.append(b);
    });
    d.showModal();
  }
  live({labelled: throttle(() => refresh().catch(() => {}), 500)});
  refresh();
}

// ---- fleet ---------------------------------------------------------------------------------------
function fleetPage() {
  let rows = [], now = Date.now() / 1000, sortCol = "device", desc = false;
  function render() {
    const q = $("filter").value.trim().toLowerCase();
    const shown = rows.filter(r => !q || [r.device, r.task, r.state, r.last_error].join(" ").toLowerCase().includes(q));
    shown.sort((a, b) => {
      const x = a[sortCol], y = b[sortCol];
      const c = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
      return desc ? -c : c;
    });
    const tb = document.querySelector("#fleet-table tbody"); tb.replaceChildren();
    for (const r of shown) {
      const tr = el("tr", null, "state-" + (r.state === "online" ? "online" : "offline"));
      tr.dataset.device = r.device;
      const a = el("a", r.device); a.href = "/device/" + encodeURIComponent(r.device);
      const td = el("td"); td.append(a); tr.append(td);
      tr.append(el("td", r.state, "state"), el("td", ago(r.since, now)), el("td", r.task), el("td", "v" + r.model),
                el("td", r.fps.toFixed(1)), el("td", pct(r.escalation_ratio)), el("td", r.outbox),
                el("td", r.custody_lag_s ? r.custody_lag_s + " s" : "–"), el("td", r.last_error || "", "err"));
      tb.append(tr);
    }
    document.querySelectorAll("#fleet-table th").forEach(th => {
      th.className = th.dataset.col === sortCol ? (desc ? "sorted desc" : "sorted") : "";
    });
  }
  async function refresh() {
    const d = await getJSON("/api/fleet");
    rows = d.devices; now = d.now;
    const online = rows.filter(r => r.state === "online").length;
    $("summary").textContent = online + " of " + rows.length + " devices online · hub " +
      (d.hub ? d.hub.state : "not seen") + " · workers: " +
      (Object.entries(d.workers).map(([w, s]) => w + " " + s).join(", ") || "not seen");
    render();
    document.body.dataset.ready = "1";
  }
  document.querySelectorAll("#fleet-table th").forEach(th => th.addEventListener("click", () => {
    if (sortCol === th.dataset.col) desc = !desc; else { sortCol = th.dataset.col; desc = false; }
    render();
  }));
  $("filter").addEventListener("input", render);
  const soon = throttle(() => refresh().catch(() => {}), 1000);
  live({fleet: soon, tick: soon});
  refresh();
}

// ---- one device ------------------------------------------------------------------------------------
function devicePage() {
  const device = document.body.dataset.device;
  async function refresh() {
    const d = await getJSON("/api/device/" + encodeURIComponent(device));
    const r = d.row;
    $("d-row").textContent = r ? (r.state + " since " + clock(r.since) + " · " + r.task + " v" + r.model + " · " +
      r.fps.toFixed(1) + " samples/s · escalated " + pct(r.escalation_ratio) + " · outbox " + r.outbox +
      (r.last_error ? " · last error: " + r.last_error : "")) : "not seen yet";
    const tb = document.querySelector("#d-preds tbody"); tb.replaceChildren();
    for (const p of d.preds) {
      const tr = el("tr");
      tr.append(el("td", clock(p.ts)), el("td", p.sample), el("td", p.name), el("td", p.confidence.toFixed(2)),
                el("td", p.source), el("td", p.escalated ? "yes" : ""), el("td", "v" + p.model_version));
      tb.append(tr);
    }
    const ul = $("d-events"); ul.replaceChildren();
    for (const e of d.events) ul.append(el("li", clock(e.ts) + " " + e.what));
    const sl = $("d-snapshots"); sl.replaceChildren();
    if (!d.snapshots.length) sl.append(el("li", "none yet (the frame of each alert class's newest event)", "muted"));
    for (const s of d.snapshots) {
      const a = el("a", s.name + " (" + s.stream + "), " + clock(s.ts));
      a.href = s.url + "?t=" + Math.round(s.ts);
      a.target = "_blank";
      const li = el("li");
      li.append(a);
      sl.append(li);
    }
    document.body.dataset.ready = "1";
  }
  document.querySelectorAll("button.cmd").forEach(b => b.addEventListener("click", async () => {
    if (!await confirmDialog("Send " + b.dataset.name + " to " + device + "?")) return;
    try { await post("/api/command", {device, name: b.dataset.name}); } catch (e) { alert(e.message); }
  }));
  $("d-thresholds").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const t = Number(new FormData(ev.target).get("threshold"));
    if (!await confirmDialog("Set " + device + "'s escalation threshold to " + t + "?")) return;
    try { await post("/api/command", {device, name: "thresholds", args: {threshold: t}}); } catch (e) { alert(e.message); }
  });
  const soon = throttle(() => refresh().catch(() => {}), 1000);
  live({fleet: soon, tick: soon});
  refresh();
}

// ---- models ----------------------------------------------------------------------------------------
function modelsPage() {
  function cell(v) { return v === null || v === undefined ? "–" : typeof v === "number" ? v.toFixed(3) : String(v); }
  async function refresh() {
    const d = await getJSON("/api/models");
    const box = $("tasks"); box.replaceChildren();
    for (const [task, t] of Object.entries(d.tasks)) {
      const sec = el("section", null, "task");
      sec.append(el("h2", "Task " + task));
      const tbl = el("table");
      const head = el("tr");
      for (const h of ["version", "made", "holdout edge", "holdout cloud", "holdout joint", "field joint",
                       "cloud defers", "devices running it"]) head.append(el("th", h));
      tbl.append(head);
      for (const v of t.versions.slice().reverse()) {
        const tr = el("tr");
        tr.append(el("td", "v" + v.version), el("td", clock(v.created)), el("td", cell(v.holdout_edge)),
                  el("td", cell(v.holdout_cloud)), el("td", cell(v.holdout_joint)), el("td", cell(v.field_joint)),
                  el("td", v.defer ? "yes" : "no"), el("td", (t.devices[String(v.version)] || []).join(", ")));
        tbl.append(tr);
      }
      sec.append(tbl);
      const cmds = el("p", null, "commands");
      const rb = el("button", "roll back every device of " + task, "danger");
      rb.addEventListener("click", async () => {
        if (!await confirmDialog("Roll every device of " + task + " back to its previous model?")) return;
        try { await post("/api/command", {task, name: "rollback"}); } catch (e) { alert(e.message); }
      });
      const rebirth = el("button", "ask every device of " + task + " to republish its state");
      rebirth.addEventListener("click", async () => {
        if (!await confirmDialog("Send rebirth to every device of " + task + "?")) return;
        try { await post("/api/command", {task, name: "rebirth"}); } catch (e) { alert(e.message); }
      });
      const form = el("form");
      const inp = el("input"); inp.type = "number"; inp.min = "0"; inp.max = "1"; inp.step = "0.01"; inp.value = "0.8";
      form.append(el("label", "escalation threshold "), inp, el("button", "set for " + task));
      form.addEventListener("submit", async (ev) => {
        ev.preventDefault();
        if (!await confirmDialog("Set the escalation threshold of every device of " + task + " to " + inp.value + "?")) return;
        try { await post("/api/command", {task, name: "thresholds", args: {threshold: Number(inp.value)}}); } catch (e) { alert(e.message); }
      });
      cmds.append(rb, rebirth);
      sec.append(cmds, form);
      if (t.decisions.length) {
        sec.append(el("h3", "Gate decisions (newest first)"));
        const ul = el("ul", null, "decisions");
        for (const g of t.decisions) {
          ul.append(el("li", clock(g.ts) + " · " + (g.event || "") + (g.trigger ? " (" + g.trigger + ")" : "") +
                     " · " + (g.published ? "published v" + g.version : "refused") + " · " + (g.why || "")));
        }
        sec.append(ul);
      } else sec.append(el("p", "Gate decisions show here when the console can read the worker's registry (--registry).", "muted"));
      box.append(sec);
    }
    releases(d.rollout);
    document.body.dataset.ready = "1";
  }
  function arm(a) {
    if (!a) return "–";
    const acc = a.accuracy === null || a.accuracy === undefined ? "–" : a.accuracy.toFixed(3);
    return "v" + a.version + ": accuracy " + acc + " (n=" + a.labelled + "), " + a.devices + (a.devices === 1 ? " device" : " devices");
  }
  function releases(r) {
    const liveBox = $("release-live"), list = $("release-list"), evBox = $("release-events");
    liveBox.replaceChildren(...r.live.map(line => el("p", line, "release-live")));
    list.replaceChildren();
    if (!r.releases.length) list.append(el("p", "No staged release yet: with a rollout plan, each new version goes to a canary group first.", "muted"));
    else {
      const tbl = el("table");
      const head = el("tr");
      for (const h of ["release", "task", "state", "candidate", "control", "restored", "stage", "pins"]) head.append(el("th", h));
      tbl.append(head);
      for (const x of r.releases.slice().reverse()) {
        const tr = el("tr", null, "release " + x.state);
        const pins = Object.entries(x.pins).map(([g, v]) => g + " → v" + v).join(", ");
        tr.append(el("td", x.release + (x.forced ? " (forced past the gate)" : "")), el("td", x.task),
                  el("td", x.state.replace("_", " ")), el("td", "v" + x.candidate), el("td", "v" + x.control),
                  el("td", x.restored ? "v" + x.restored : "–"), el("td", x.stage), el("td", pins || "–"));
        tbl.append(tr);
      }
      list.append(tbl);
    }
    evBox.replaceChildren();
    if (!r.events.length) { evBox.append(el("p", "none yet", "muted")); return; }
    const tbl = el("table", null, "release-events");
    const head = el("tr");
    for (const h of ["time", "release", "action", "versions", "group", "candidate", "control", "candidate - control (lower bound) vs -margin", "reason"]) head.append(el("th", h));
    tbl.append(head);
    for (const e of r.events) {
      const f = e.figures;
      const diff = f && f.difference !== null ? f.difference.toFixed(3) + (f.bounds ? " (" + f.bounds[0].toFixed(3) + ")" : "") + " vs -" + f.margin : "–";
      const tr = el("tr", null, "event " + e.action);
      tr.append(el("td", clock(e.ts)), el("td", e.release), el("td", e.action), el("td", "v" + e.from_version + " → v" + e.to_version),
                el("td", e.group), el("td", f ? arm(f.candidate) : "–"), el("td", f ? arm(f.control) : "–"), el("td", diff), el("td", e.reason));
      tbl.append(tr);
    }
    evBox.append(tbl);
  }
  let n = 0;
  const soon = throttle(() => refresh().catch(() => {}), 2000);
  live({models: soon, tick: () => {
    if (++n % 2) return;
    for (const id of ["plot-accuracy", "plot-escalation"]) {
      const img = $(id); img.src = img.src.split("?")[0] + "?t=" + Date.now();
    }
    soon();
  }});
  refresh();
}

({queue: queuePage, review: reviewPage, fleet: fleetPage, device: devicePage, models: modelsPage}[PAGE] || (() => {}))();
