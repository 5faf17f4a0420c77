// The tollgate dashboard: plain JavaScript over the admin API (no build step, no
// framework). Every value from the API is written with textContent, never as HTML.
"use strict";

const KEY_STORE = "tollgate-admin-key";
const RANGES = { "24h": [86400, "hour"], "7d": [7 * 86400, "day"], "30d": [30 * 86400, "day"] };
const state = { key: sessionStorage.getItem(KEY_STORE), next: null };

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child ?? "")));
  }
  return node;
}

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(method, path, body) {
  const init = { method, headers: { authorization: "Bearer " + state.key } };
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  const text = await res.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (_) { json = null; }
  if (!res.ok) {
    const message = (json && json.error && json.error.message) || res.status + " " + res.statusText;
    throw new ApiError(res.status, message);
  }
  return json;
}

// ---- formatting -------------------------------------------------------------

const fmtInt = (n) => Number(n || 0).toLocaleString("en-US");
const fmtPct = (part, whole) => (whole ? ((100 * part) / whole).toFixed(1) + "%" : "-");
const fmtCost = (s) => Number(s || 0).toFixed(6);
const fmtUsd = (v) => "$" + (v >= 1 ? v.toFixed(2) : v >= 0.01 ? v.toFixed(4) : v ? v.toPrecision(2) : "0");
const fmtMs = (us) => (us == null ? "-" : (us / 1000).toFixed(1));
const fmtTime = (secsOrMs, ms) => {
  if (secsOrMs == null) return "-";
  const d = new Date(ms ? secsOrMs : secsOrMs * 1000);
  return d.toISOString().replace("T", " ").slice(0, 19);
};

function since(range) {
  return Math.floor(Date.now() / 1000) - RANGES[range][0];
}

// ---- charts (plain SVG) -------------------------------------------------------

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  return node;
}

// Vertical bars over time buckets; `series` is [{values, className}] drawn over each other.
function barChart(container, labels, series, format) {
  const width = 960, height = 180, left = 56, bottom = 20, top = 8;
  const max = Math.max(1e-12, ...series.flatMap((s) => s.values));
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img" });
  const plotW = width - left - 8, plotH = height - top - bottom;
  const step = plotW / Math.max(1, labels.length);
  root.append(svg("line", { x1: left, y1: top + plotH, x2: width - 8, y2: top + plotH, class: "axis" }));
  for (const tick of [0, 0.5, 1]) {
    const y = top + plotH - tick * plotH;
    const text = svg("text", { x: left - 6, y: y + 3, "text-anchor": "end" });
    text.textContent = format(max * tick);
    root.append(text, svg("line", { x1: left, y1: y, x2: width - 8, y2: y, class: "axis" }));
  }
  for (const { values, className } of series) {
    values.forEach((value, i) => {
      const h = (value / max) * plotH;
      const rect = svg("rect", {
        x: left + i * step + step * 0.15, y: top + plotH - h,
        width: Math.max(1, step * 0.7), height: h, class: className,
      });
      const title = svg("title", {});
      title.textContent = `${labels[i]}: ${format(value)}`;
      rect.append(title);
      root.append(rect);
    });
  }
  const every = Math.ceil(labels.length / 8);
  labels.forEach((label, i) => {
    if (i % every) return;
    const text = svg("text", { x: left + i * step + step / 2, y: height - 5, "text-anchor": "middle" });
    text.textContent = label.length > 10 ? label.slice(5) : label;
    root.append(text);
  });
  container.replaceChildren(root);
}

// Horizontal bars, one per row.
function rankChart(container, rows, value, format) {
  const shown = rows.slice(0, 12);
  const width = 960, rowH = 22, left = 220;
  const max = Math.max(1e-12, ...shown.map(value));
  const root = svg("svg", { viewBox: `0 0 ${width} ${Math.max(1, shown.length) * rowH + 6}`, role: "img" });
  shown.forEach((row, i) => {
    const y = 3 + i * rowH;
    const name = svg("text", { x: left - 8, y: y + 14, "text-anchor": "end" });
    name.textContent = row.group;
    const w = (value(row) / max) * (width - left - 120);
    const amount = svg("text", { x: left + w + 6, y: y + 14 });
    amount.textContent = format(value(row));
    root.append(name, svg("rect", { x: left, y: y + 3, width: Math.max(1, w), height: rowH - 8, class: "bar-main" }), amount);
  });
  container.replaceChildren(root);
}

// Every bucket of the range, oldest first, so quiet hours show as zero.
function buckets(range) {
  const [span, unit] = RANGES[range];
  const size = unit === "hour" ? 3600 : 86400;
  const now = Math.floor(Date.now() / 1000);
  const out = [];
  for (let t = Math.floor((now - span) / size) * size + size; t <= now; t += size) {
    const iso = new Date(t * 1000).toISOString();
    out.push(unit === "hour" ? iso.slice(0, 13) + ":00" : iso.slice(0, 10));
  }
  return out;
}

// ---- pages --------------------------------------------------------------------

async function showOverview() {
  const range = $("overview-range").value;
  const from = since(range);
  // One aggregate query: the totals are the sums of the buckets.
  const series = await api("GET", `/admin/usage?from=${from}&group_by=${RANGES[range][1]}`);
  const t = { requests: 0, prompt_tokens: 0, completion_tokens: 0, cost: 0, errors: 0, cache_hits: 0 };
  for (const row of series.data) {
    for (const field of Object.keys(t)) t[field] += Number(row[field]);
  }
  $("stat-requests").textContent = fmtInt(t.requests);
  $("stat-tokens").textContent = fmtInt(t.prompt_tokens + t.completion_tokens);
  $("stat-cost").textContent = fmtCost(t.cost);
  $("stat-errors").textContent = fmtPct(t.errors, t.requests);
  $("stat-cache").textContent = fmtPct(t.cache_hits, t.requests);

  const labels = buckets(range);
  const byGroup = new Map(series.data.map((row) => [row.group, row]));
  const pick = (f) => labels.map((label) => (byGroup.has(label) ? f(byGroup.get(label)) : 0));
  barChart($("chart-requests"), labels, [
    { values: pick((r) => r.requests), className: "bar-main" },
    { values: pick((r) => r.errors), className: "bar-bad" },
  ], (v) => fmtInt(Math.round(v)));
  barChart($("chart-tokens"), labels, [
    { values: pick((r) => r.prompt_tokens + r.completion_tokens), className: "bar-main" },
  ], (v) => fmtInt(Math.round(v)));
  barChart($("chart-cost"), labels, [
    { values: pick((r) => Number(r.cost)), className: "bar-main" },
  ], fmtUsd);
}

async function showSpend() {
  const group = $("spend-group").value;
  const range = $("spend-range").value;
  const result = await api("GET", `/admin/usage?from=${since(range)}&group_by=${group}`);
  const rows = result.data.slice().sort((a, b) => Number(b.cost) - Number(a.cost) || b.requests - a.requests);
  $("spend-group-head").textContent = group;
  rankChart($("chart-spend"), rows, (r) => Number(r.cost), (v) => "$" + v.toFixed(6));
  $("spend-table").tBodies[0].replaceChildren(...rows.map((r) => el("tr", {},
    el("td", {}, r.group),
    el("td", { class: "num" }, fmtInt(r.requests)),
    el("td", { class: "num" }, fmtInt(r.prompt_tokens)),
    el("td", { class: "num" }, fmtInt(r.completion_tokens)),
    el("td", { class: "num" }, fmtCost(r.cost)),
  )));
  await showBudgets();
}

// Budgets in their current period, under the spend table; hidden when there is none
// (or the gateway serves no budgets route).
async function showBudgets() {
  let rows = [];
  try { rows = (await api("GET", "/admin/budgets")).data; } catch (_) { rows = []; }
  $("budgets").hidden = rows.length === 0;
  $("budgets-table").tBodies[0].replaceChildren(...rows.map((b) => el("tr", {},
    el("td", {}, b.scope + ":" + (b.key_id || b.team)),
    el("td", {}, b.period),
    el("td", { class: "num" }, fmtCost(b.limit)),
    el("td", { class: "num" }, fmtCost(b.spent)),
    el("td", { class: "num" }, fmtCost(b.remaining)),
    el("td", {}, fmtTime(b.resets_at)),
  )));
}

function showSecret(created) {
  $("secret-value").textContent = created.key;
  $("secret").hidden = false;
}

async function keyAction(path, body) {
  $("keys-error").textContent = "";
  try {
    const result = await api("POST", path, body);
    if (result && result.key) {
      showSecret(result);
      $("key-form").reset();
    }
    await showKeys();
  } catch (err) {
    $("keys-error").textContent = err.message;
  }
}

async function revokeKey(id) {
  $("keys-error").textContent = "";
  try {
    await api("DELETE", `/admin/keys/${encodeURIComponent(id)}`);
    await showKeys();
  } catch (err) {
    $("keys-error").textContent = err.message;
  }
}

async function showKeys() {
  const result = await api("GET", "/admin/keys");
  const rows = result.data.slice().sort((a, b) => b.created_at - a.created_at);
  $("keys-table").tBodies[0].replaceChildren(...rows.map((k) => {
    const id = encodeURIComponent(k.id);
    const actions = el("td", {});
    if (k.status !== "revoked") {
      actions.append(
        el("button", { type: "button", "data-action": "rotate", onclick: () => keyAction(`/admin/keys/${id}/rotate`) }, "Rotate"),
        k.enabled
          ? el("button", { type: "button", "data-action": "disable", onclick: () => keyAction(`/admin/keys/${id}/disable`) }, "Disable")
          : el("button", { type: "button", "data-action": "enable", onclick: () => keyAction(`/admin/keys/${id}/enable`) }, "Enable"),
        el("button", { type: "button", "data-action": "revoke", onclick: () => revokeKey(k.id) }, "Revoke"),
      );
    }
    return el("tr", { "data-key-id": k.id },
      el("td", {}, k.id), el("td", {}, k.name || ""), el("td", {}, k.team || ""),
      el("td", {}, k.role), el("td", {}, k.prefix),
      el("td", { class: "status-" + k.status }, k.status),
      el("td", {}, fmtTime(k.created_at)), actions);
  }));
}

async function channelAction(id, action) {
  $("channels-error").textContent = "";
  try {
    await api("POST", `/admin/channels/${encodeURIComponent(id)}/${action}`);
    await showChannels();
  } catch (err) {
    $("channels-error").textContent = err.message;
  }
}

async function showChannels() {
  let result;
  try {
    result = await api("GET", "/admin/channels");
  } catch (err) {
    if (err.status !== 404) throw err;
    $("channels-note").textContent = "This gateway has no channel routing configured.";
    $("channels-table").tBodies[0].replaceChildren();
    return;
  }
  $("channels-note").textContent = "";
  $("channels-table").tBodies[0].replaceChildren(...result.data.map((c) => el("tr", { "data-channel-id": c.id },
    el("td", {}, c.id),
    el("td", {}, c.provider),
    el("td", {}, (c.models || []).join(", ")),
    el("td", { class: "status-" + c.health }, c.health),
    el("td", { class: "status-" + c.circuit }, c.circuit),
    el("td", { class: "num" }, c.latency_ms == null ? "-" : Number(c.latency_ms).toFixed(1)),
    el("td", { class: "num" }, c.success_rate == null ? "-" : (100 * c.success_rate).toFixed(1) + "%"),
    el("td", { class: c.enabled ? "" : "status-disabled", "data-field": "state" }, c.enabled ? "enabled" : "disabled"),
    el("td", {}, el("button", {
      type: "button", "data-action": c.enabled ? "disable" : "enable",
      onclick: () => channelAction(c.id, c.enabled ? "disable" : "enable"),
    }, c.enabled ? "Disable" : "Enable")),
  )));
}

function requestRow(r) {
  return el("tr", { "data-request-id": r.id },
    el("td", {}, fmtTime(r.time_ms, true)),
    el("td", {}, r.key_id || "-"),
    el("td", {}, r.team || "-"),
    el("td", {}, r.model),
    el("td", {}, r.provider || "-"),
    el("td", { class: "num" }, r.status),
    el("td", {}, r.end),
    el("td", { class: "num" }, `${fmtInt(r.prompt_tokens)} / ${fmtInt(r.completion_tokens)}${r.exact ? "" : " (est.)"}`),
    el("td", { class: "num" }, fmtCost(r.cost)),
    el("td", { class: "num" }, fmtMs(r.latency_us)),
    el("td", {}, r.cache_hit ? "hit" : ""));
}

async function showRequests(more) {
  const path = "/admin/requests?limit=50" + (more && state.next ? "&before=" + encodeURIComponent(state.next) : "");
  const result = await api("GET", path);
  const body = $("requests-table").tBodies[0];
  const rows = result.data.map(requestRow);
  if (more) body.append(...rows); else body.replaceChildren(...rows);
  state.next = result.next;
  $("requests-more").hidden = !result.next;
}

const PAGES = { overview: showOverview, spend: showSpend, keys: showKeys, channels: showChannels, requests: () => showRequests(false) };

async function route() {
  if (!state.key) return showLogin();
  const page = (location.hash || "#overview").slice(1);
  const show = PAGES[page] ? page : "overview";
  for (const section of document.querySelectorAll("section.page")) section.hidden = section.id !== show;
  for (const link of document.querySelectorAll("nav a")) link.classList.toggle("active", link.dataset.page === show);
  try {
    await PAGES[show]();
    document.body.dataset.loaded = show;
  } catch (err) {
    if (err.status === 401 || err.status === 403) return logout(err.message);
    document.body.dataset.loaded = show;
    const box = $(show + "-error") || $("login-error");
    box.textContent = err.message;
  }
}

function showLogin(message) {
  $("login").hidden = false;
  $("nav").hidden = true;
  for (const section of document.querySelectorAll("section.page")) section.hidden = true;
  $("login-error").textContent = message || "";
  document.body.dataset.loaded = "login";
}

function logout(message) {
  state.key = null;
  sessionStorage.removeItem(KEY_STORE);
  showLogin(message);
}

async function login(event) {
  event.preventDefault();
  state.key = $("login-key").value.trim();
  $("login-key").value = "";
  try {
    await api("GET", "/admin/keys");
  } catch (err) {
    return logout(err.status === 401 || err.status === 403 ? "That key may not use the admin API: " + err.message : err.message);
  }
  sessionStorage.setItem(KEY_STORE, state.key);
  $("login").hidden = true;
  $("nav").hidden = false;
  route();
}

function start() {
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", () => logout());
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const models = $("key-models").value.split(",").map((m) => m.trim()).filter(Boolean);
    const body = { name: $("key-name").value.trim(), role: $("key-role").value };
    if ($("key-team").value.trim()) body.team = $("key-team").value.trim();
    if (models.length) body.models = models;
    keyAction("/admin/keys", body);
  });
  $("secret-done").addEventListener("click", () => {
    $("secret-value").textContent = "";
    $("secret").hidden = true;
  });
  $("requests-more").addEventListener("click", () => showRequests(true));
  for (const select of ["overview-range", "spend-range", "spend-group"]) $(select).addEventListener("change", route);
  window.addEventListener("hashchange", route);
  if (state.key) {
    $("login").hidden = true;
    $("nav").hidden = false;
  }
  route();
}

document.addEventListener("DOMContentLoaded", start);
