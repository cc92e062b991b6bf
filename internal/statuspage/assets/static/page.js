// The ddnn status page: reads /v1/status (what `ddnn status --json` prints)
// and /v1/status/history (each tier's last minute) every interval and draws
// them. Everything is built with DOM calls and textContent: nothing read
// from the server is parsed as HTML.
"use strict";

const STATUS = "/v1/status";
const HISTORY = "/v1/status/history";
const SVG = "http://www.w3.org/2000/svg";

let intervalMs = 2000; // the history's interval_seconds once read
let lastGood = null; // when /v1/status last answered

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

// Formatting.
const pad = (n) => String(n).padStart(2, "0");
function clock(t) {
  const d = new Date(t);
  return `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())} UTC`;
}
function age(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${pad(s % 60)}s`;
  return `${Math.floor(m / 60)}h ${pad(m % 60)}m`;
}
const count = (n) => Number(n).toLocaleString("en-US");
function rate(r) {
  if (r === null || r === undefined) return "–";
  return r >= 100 ? `${Math.round(r)}/s` : `${r.toFixed(1)}/s`;
}
function seconds(s) {
  if (s === null || s === undefined) return "–";
  if (s >= 1) return `${s.toFixed(2)} s`;
  const ms = s * 1000;
  return ms >= 10 ? `${ms.toFixed(0)} ms` : `${ms.toFixed(1)} ms`;
}
const percent = (r) => (r === null || r === undefined ? "–" : `${(r * 100).toFixed(1)}%`);
const basename = (p) => (p || "").split("/").pop();

const STATE_MARK = { ok: "✔ ok", down: "✖ DOWN", lagging: "▲ LAGGING", "dead-lettering": "⚠ DEAD-LETTERING", unknown: "? unknown" };

// The page.
function renderProblems(problems) {
  const box = document.getElementById("problems");
  if (!problems || problems.length === 0) {
    box.className = "problems none";
    box.replaceChildren(el("p", {}, "✔ No problems: every site answers and every tier is ok."));
    return;
  }
  box.className = "problems some";
  box.replaceChildren(
    el("h2", {}, `Problems (${problems.length})`),
    el("ul", {}, ...problems.map((p) => el("li", {}, p))),
  );
}

function endpoint(name, ep) {
  const up = ep && ep.up;
  return el("li", { class: up ? "endpoint up" : "endpoint down", title: (ep && ep.error) || "" },
    el("span", { class: "mark" }, up ? "✔" : "✖"), ` ${name} `,
    el("code", {}, (ep && ep.address) || "?"),
    up ? " answering" : ` not answering${ep && ep.error ? ": " + ep.error : ""}`);
}

function tierRow(site, t, now) {
  const state = t.state || "unknown";
  const downFor = t.down_since ? `${clock(t.down_since)} (for ${age(now - Date.parse(t.down_since))})` : "";
  const dlNow = t.dead_letters_last_minute > 0;
  return el("tr", { class: `tier state-${state}`, "data-tier": `${site}/${t.name}`, "data-state": state },
    el("th", { scope: "row" }, t.name),
    el("td", { class: "state" }, el("span", { class: "badge" }, STATE_MARK[state] || state)),
    el("td", { class: t.ready_replicas < t.desired_replicas ? "num warn" : "num" },
      `${t.ready_replicas}/${t.desired_replicas}`,
      el("small", {}, ` (${t.min_replicas}–${t.max_replicas})`)),
    el("td", {}, t.runtime || "–"),
    el("td", { class: "model" }, basename(t.model && t.model.file), " ", el("code", {}, (t.model && t.model.sha256) || "")),
    el("td", { class: state === "lagging" ? "num warn" : "num" }, count(t.lag)),
    el("td", { class: "num in-rate" }, rate(t.in_rate)),
    el("td", { class: "num" }, rate(t.out_rate)),
    el("td", { class: "num" }, percent(t.exit_ratio)),
    el("td", { class: "num" }, seconds(t.p50_seconds)),
    el("td", { class: "num" }, seconds(t.p99_seconds)),
    el("td", { class: dlNow ? "num warn" : "num" }, `${count(t.dead_letters)} / ${count(t.dead_letters_last_minute)}`),
    el("td", { class: "down-since" }, downFor),
  );
}

// Column heads; those marked num are right-aligned like their numbers.
const TIER_HEAD = ["tier", "state", "num:replicas", "runtime", "model (sha256)", "num:lag", "num:in", "num:out", "num:exit", "num:p50", "num:p99", "num:dead letters (total / 1 min)", "down since"];
const UPLINK_HEAD = ["uplink", "state", "num:backlog", "down since", "error"];

function uplinkRow(site, u, now) {
  return el("tr", { class: u.up ? "uplink state-ok" : "uplink state-down", "data-uplink": `${site}->${u.to}` },
    el("th", { scope: "row" }, `${site} → ${u.to}`),
    el("td", { class: "state" }, el("span", { class: "badge" }, u.up ? "✔ up" : "✖ DOWN")),
    el("td", { class: "num" }, count(u.backlog)),
    el("td", { class: "down-since" }, u.down_since ? `${clock(u.down_since)} (for ${age(now - Date.parse(u.down_since))})` : ""),
    el("td", { class: "error" }, u.error || ""),
  );
}

function table(cls, head, rows) {
  return el("table", { class: cls },
    el("thead", {}, el("tr", {}, ...head.map((h) => h.startsWith("num:")
      ? el("th", { scope: "col", class: "num" }, h.slice(4))
      : el("th", { scope: "col" }, h)))),
    el("tbody", {}, ...rows));
}

// Charts: one SVG per measure, the window's points as lines with a dot each.
const CHARTS = [
  { kind: "latency", title: "latency", unit: "ms", series: [
    { key: "p50_seconds", label: "p50", cls: "s1", scale: 1000 },
    { key: "p99_seconds", label: "p99", cls: "s2", scale: 1000 }] },
  { kind: "throughput", title: "throughput", unit: "/s", series: [
    { key: "in_rate", label: "in", cls: "s1", scale: 1 },
    { key: "out_rate", label: "out", cls: "s2", scale: 1 }] },
];
const W = 320, H = 120, L = 44, R = 8, T = 18, B = 16;

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}
const tick = (v) => (v >= 100 ? String(Math.round(v)) : String(+v.toPrecision(2)));

function chart(spec, points, windowMs) {
  const s = svg("svg", { class: `chart ${spec.kind}`, "data-chart": spec.kind, viewBox: `0 0 ${W} ${H}`, role: "img" });
  const end = points.length ? Date.parse(points[points.length - 1].time) : 0;
  const start = end - windowMs;
  let max = 0;
  for (const p of points) for (const se of spec.series) {
    const v = p[se.key];
    if (v !== null && v !== undefined) max = Math.max(max, v * se.scale);
  }
  const top = niceMax(max);
  const x = (t) => L + ((t - start) / windowMs) * (W - L - R);
  const y = (v) => H - B - (v / top) * (H - T - B);
  for (const g of [0, top / 2, top]) {
    s.append(svg("line", { class: "grid", x1: L, x2: W - R, y1: y(g), y2: y(g) }));
    s.append(svg("text", { class: "tick", x: L - 4, y: y(g) + 3, "text-anchor": "end" }, tick(g)));
  }
  s.append(svg("text", { class: "tick", x: L, y: H - 3 }, `-${Math.round(windowMs / 1000)}s`));
  s.append(svg("text", { class: "tick", x: W - R, y: H - 3, "text-anchor": "end" }, "now"));
  const legend = svg("text", { class: "legend", x: L, y: 11 });
  legend.append(svg("tspan", { class: "title" }, `${spec.title} (${spec.unit})`));
  const last = points[points.length - 1];
  for (const se of spec.series) {
    const v = last ? last[se.key] : null;
    const shown = v === null || v === undefined ? "–" : tick(v * se.scale);
    legend.append(svg("tspan", { class: `key ${se.cls}`, dx: 10 }, `● ${se.label} ${shown}`));
    // A missing value (no invocation yet) breaks the line.
    let run = [];
    const flush = () => {
      if (run.length > 1) s.append(svg("polyline", { class: `line ${se.cls}`, "data-series": se.label, points: run.join(" ") }));
      run = [];
    };
    for (const p of points) {
      const v = p[se.key];
      if (v === null || v === undefined) { flush(); continue; }
      const px = x(Date.parse(p.time)).toFixed(1), py = y(v * se.scale).toFixed(1);
      run.push(`${px},${py}`);
      s.append(svg("circle", { class: `pt ${se.cls}`, "data-series": se.label, cx: px, cy: py, r: 1.8 }));
    }
    flush();
  }
  s.append(legend);
  if (!points.length) s.append(svg("text", { class: "empty", x: W / 2, y: H / 2, "text-anchor": "middle" }, "collecting…"));
  return s;
}

function tierCharts(site, tier, history) {
  const h = history && history.tiers.find((x) => x.site === site && x.tier === tier.name);
  const windowMs = ((history && history.window_seconds) || 60) * 1000;
  const points = (h && h.points) || [];
  return el("figure", { class: `tier-charts state-${tier.state || "unknown"}`, "data-tier": `${site}/${tier.name}` },
    el("figcaption", {}, `${site} / ${tier.name}`),
    ...CHARTS.map((spec) => chart(spec, points, windowMs)));
}

function renderSites(snap, history) {
  const now = Date.parse(snap.time) || Date.now();
  const sections = (snap.sites || []).map((site) => {
    const tiers = site.tiers || [], uplinks = site.uplinks || [];
    return el("section", { class: "site", "data-site": site.name },
      el("h2", {}, `site ${site.name}`),
      el("ul", { class: "endpoints" }, endpoint("Kafka", site.kafka), endpoint("funnel", site.funnel), endpoint("admin", site.admin)),
      tiers.length ? table("tiers", TIER_HEAD, tiers.map((t) => tierRow(site.name, t, now))) : el("p", { class: "none" }, "No tier runs on this site."),
      uplinks.length ? table("uplinks", UPLINK_HEAD, uplinks.map((u) => uplinkRow(site.name, u, now))) : null,
      tiers.length ? el("div", { class: "charts" }, ...tiers.map((t) => tierCharts(site.name, t, history))) : null,
    );
  });
  document.getElementById("sites").replaceChildren(...sections);
}

function freshness(text, cls) {
  const f = document.getElementById("freshness");
  f.textContent = text;
  f.className = `freshness ${cls}`;
}

async function getJSON(url) {
  const resp = await fetch(url, { cache: "no-store", headers: { Accept: "application/json" } });
  if (!resp.ok) {
    const body = (await resp.text()).trim();
    throw new Error(`${url}: ${resp.status} ${resp.statusText}${body ? ": " + body.slice(0, 200) : ""}`);
  }
  return resp.json();
}

async function refresh() {
  const [snap, history] = await Promise.allSettled([getJSON(STATUS), getJSON(HISTORY)]);
  if (history.status === "fulfilled" && history.value.interval_seconds > 0) {
    intervalMs = history.value.interval_seconds * 1000;
  }
  const hist = history.status === "fulfilled" ? history.value : null;
  if (snap.status === "rejected") {
    const since = lastGood ? ` (last answer ${clock(lastGood)})` : "";
    freshness(`status not answering${since}: ${snap.reason.message}`, "stale");
    return;
  }
  const s = snap.value;
  lastGood = Date.now();
  document.getElementById("pipeline").textContent = `pipeline ${s.pipeline}`;
  document.title = `${(s.problems || []).length ? "⚠ " : ""}ddnn ${s.pipeline}`;
  renderProblems(s.problems);
  renderSites(s, hist);
  const histNote = hist ? (hist.error ? ` · history: ${hist.error}` : "") : ` · history: ${history.reason.message}`;
  freshness(`live · as of ${clock(s.time)}${histNote}`, "live");
}

async function loop() {
  try {
    await refresh();
  } catch (e) {
    freshness(`page error: ${e.message}`, "stale");
  }
  setTimeout(loop, intervalMs);
}

loop();
