// CellGuard fleet dashboard: three views (#/ fleet, #/vehicles/<VIN>, #/model) over /dashboard/api JSON.
// The server sorts, filters and pages; the browser only draws what one view needs.
"use strict";

const COLORS = {
  ink: "#111827", muted: "#6b7280", grid: "#eef1f5", accent: "#2563eb", risk: "#dc2626", warn: "#f59e0b",
  ok: "#059669", bms: "#ef4444", p95: "#f97316", mean: "#64748b", reference: "#9ca3af",
};
const PLOT_CONFIG = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["lasso2d", "select2d", "autoScale2d"] };
const state = {
  featureSet: "full", asOf: "", sort: "probability", order: "desc", q: "", show: "all", page: 1, pageSize: 50,
  vehicleDays: 60, measure: "all",
};
let renderToken = 0; // a newer navigation makes an older, slower render stop drawing

// ---------------------------------------------------------------------------------------------- helpers

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "style") node.setAttribute("style", value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const fmt = {
  pct: (v, digits = 1) => (v === null || v === undefined ? "—" : `${(v * 100).toFixed(digits)}%`),
  num: (v, digits = 0) => (v === null || v === undefined ? "—" : Number(v).toLocaleString("en", {
    minimumFractionDigits: digits, maximumFractionDigits: digits })),
  mv: (v) => (v === null || v === undefined ? "—" : `${Math.round(v)} mV`),
  signed: (v, digits = 3) => (v === null || v === undefined ? "—" : `${v > 0 ? "+" : ""}${v.toFixed(digits)}`),
};

class Unauthorised extends Error {}

async function api(path, params = {}) {
  const query = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== "" && v !== null && v !== undefined));
  const url = `/dashboard/api/${path}${query.toString() ? `?${query}` : ""}`;
  const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (response.status === 401) {
    location.assign(`/login?next=${encodeURIComponent(`/${location.hash}`)}`);
    throw new Unauthorised();
  }
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const detail = body && body.detail && body.detail[0];
    throw new Error(detail ? detail.msg : `${response.status} ${response.statusText}`);
  }
  return body;
}

function showError(error) {
  if (error instanceof Unauthorised) return;
  const banner = $("error");
  banner.textContent = `Could not load the data: ${error.message}`;
  banner.hidden = false;
}

function baseLayout(extra = {}) {
  return {
    font: { family: "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", size: 12, color: COLORS.ink },
    paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)",
    margin: { l: 56, r: 24, t: 12, b: 40 },
    hovermode: "x unified", hoverlabel: { bgcolor: "#fff", bordercolor: "#d1d5db" },
    legend: { orientation: "h", x: 0, y: 1.12, bgcolor: "rgba(0,0,0,0)" },
    xaxis: { gridcolor: COLORS.grid, linecolor: "#d1d5db", zeroline: false },
    yaxis: { gridcolor: COLORS.grid, linecolor: "#d1d5db", zeroline: false, rangemode: "tozero" },
    ...extra,
  };
}

function draw(id, traces, layout) {
  return Plotly.react($(id), traces, layout, PLOT_CONFIG);
}

function empty(id, message) {
  Plotly.purge($(id));
  $(id).replaceChildren(el("p", { class: "hint", style: "padding:40px;text-align:center" }, message));
}

function shortDay(isoDay) {
  return new Date(`${isoDay}T00:00:00Z`).toLocaleDateString("en", { month: "short", day: "numeric", timeZone: "UTC" });
}

function dayShift(isoDay, days) {
  return new Date(Date.parse(`${isoDay}T00:00:00Z`) + days * 86400000).toISOString().slice(0, 16).replace("T", " ");
}

// ---------------------------------------------------------------------------------------------- router

function route() {
  const hash = location.hash || "#/";
  const vehicle = hash.match(/^#\/vehicles\/([A-Za-z0-9]{17})$/);
  const view = vehicle ? "vehicle" : hash === "#/model" ? "model" : "fleet";
  for (const name of ["fleet", "vehicle", "model"]) $(`view-${name}`).hidden = name !== view;
  for (const link of document.querySelectorAll("[data-nav]")) {
    link.classList.toggle("on", link.dataset.nav === (view === "vehicle" ? "fleet" : view));
  }
  $("error").hidden = true;
  document.body.dataset.ready = "";
  const token = ++renderToken;
  const render = view === "vehicle" ? renderVehicle(vehicle[1].toUpperCase(), token)
    : view === "model" ? renderModel(token) : renderFleet(token, true);
  render.then(() => { if (token === renderToken) document.body.dataset.ready = view; }).catch(showError);
}

// ---------------------------------------------------------------------------------------------- fleet

async function renderFleet(token, withTimeline) {
  const fleet = await api("fleet", {
    feature_set: state.featureSet, as_of: state.asOf, sort: state.sort, order: state.order, q: state.q,
    show: state.show, page: state.page, page_size: state.pageSize,
  });
  if (token !== renderToken) return;
  fillFleetControls(fleet);
  renderKpis(fleet);
  renderTable(fleet);
  if (withTimeline) {
    const timeline = await api("timeline", { feature_set: state.featureSet, days: 90 });
    if (token !== renderToken) return;
    renderTimeline(timeline);
  }
}

function fillFleetControls(fleet) {
  const sets = fleet.feature_sets.length ? fleet.feature_sets : [fleet.feature_set];
  $("feature-set").replaceChildren(...sets.map((fs) => el("option", { value: fs, selected: fs === fleet.feature_set }, fs)));
  $("as-of").replaceChildren(...fleet.as_of_dates.map((day) => el("option", { value: day, selected: day === fleet.as_of }, day)));
  $("fleet-sub").textContent = fleet.as_of
    ? `${fmt.num(fleet.summary.vehicles)} vehicles scored for ${fleet.as_of} by ${fleet.model_version}` +
      (fleet.threshold !== null ? `, alarm at probability ≥ ${fleet.threshold.toFixed(3)}` : "")
    : "No batch predictions yet: run bms_batch_inference (or `make demo`).";
  for (const th of document.querySelectorAll("#fleet-table th[data-sort]")) {
    th.setAttribute("aria-sort", th.dataset.sort === state.sort ? (state.order === "asc" ? "ascending" : "descending") : "none");
  }
}

function kpi(label, value, note, tone = "") {
  return el("div", { class: `kpi ${tone}` }, el("div", { class: "label" }, label), el("div", { class: "value" }, value),
    el("div", { class: "note" }, note));
}

function renderKpis(fleet) {
  const s = fleet.summary;
  const share = s.vehicles ? s.predicted_alarms / s.vehicles : null;
  $("kpis").replaceChildren(
    kpi("Vehicles scored", fmt.num(s.vehicles), fleet.as_of ? `as of ${fleet.as_of}` : "none yet"),
    kpi("Predicted to alarm", fmt.num(s.predicted_alarms), share === null ? "" : `${fmt.pct(share)} of the fleet, within 14 days`,
      s.predicted_alarms ? "risk" : ""),
    kpi("BMS alarming", fmt.num(s.bms_alarmed_vehicles), "vehicles with bit 10 set in the last 14 days",
      s.bms_alarmed_vehicles ? "warn" : ""),
    kpi("Alerts started", fmt.num(s.alerts_started_14d), "new alarm episodes in the last 14 days"),
    kpi("Mean risk", fmt.pct(s.mean_probability), "probability of an alarm within 14 days"),
  );
}

function riskCell(row) {
  const width = Math.max(2, Math.round((row.probability || 0) * 100));
  const mark = row.threshold !== null ? el("i", { style: `left:${Math.min(98, row.threshold * 100)}%`, title: "threshold" }) : null;
  return el("div", { class: "riskcell" },
    el("span", { class: "mono" }, fmt.pct(row.probability)),
    el("span", { class: "bar" }, el("span", { class: row.alarm ? "hot" : "", style: `width:${width}%` }), mark));
}

function rangeCell(row, threshold) {
  if (row.range_max_mv === null) return el("span", { class: "muted" }, "—");
  const tone = row.range_max_mv >= threshold ? "hot" : row.range_max_mv >= threshold / 2 ? "warm" : "";
  return el("span", { class: `range ${tone}`, title: row.last_day ? `max of ${row.last_day}; p95 ${fmt.mv(row.range_p95_mv)}` : "" },
    fmt.mv(row.range_max_mv));
}

function renderTable(fleet) {
  const body = document.querySelector("#fleet-table tbody");
  const threshold = 300; // the BMS range alarm (GB/T 32960 bit 10) of this fleet, as the vehicle page shows it
  if (!fleet.rows.length) {
    body.replaceChildren(el("tr", {}, el("td", { colspan: 8, class: "empty" },
      fleet.as_of ? "No vehicle matches." : "No predictions to show yet.")));
  } else {
    body.replaceChildren(...fleet.rows.map((row) => el("tr", { "data-vin": row.vin },
      el("td", { class: "vin" }, el("a", { href: `#/vehicles/${row.vin}` }, row.vin)),
      el("td", { class: "num" }, riskCell(row)),
      el("td", { class: `num ${row.change > 0.005 ? "up" : row.change < -0.005 ? "down" : ""}` },
        row.change === null ? "—" : `${row.change > 0 ? "▲" : row.change < 0 ? "▼" : ""} ${fmt.pct(Math.abs(row.change))}`),
      el("td", { class: "num" }, row.suspect_cell === null ? "—" : el("span", { class: "cellchip" }, `#${row.suspect_cell}`)),
      el("td", { class: "reason" }, row.reason
        ? [el("b", {}, row.reason.feature), ` = ${row.reason.value === null ? "missing" : fmt.num(row.reason.value, 1)}`]
        : "—"),
      el("td", { class: "num" }, rangeCell(row, threshold)),
      el("td", { class: "num" }, row.bms_alarm_days ? el("span", { class: "badge warn" }, row.bms_alarm_days) : "0"),
      el("td", {}, row.alarm
        ? el("span", { class: "badge risk", title: row.alert_since ? `alert episode since ${row.alert_since}` : "" },
          row.alert_since ? `since ${shortDay(row.alert_since)}` : "alarm")
        : el("span", { class: "badge ok" }, "ok")),
    )));
  }
  const first = fleet.matching ? (fleet.page - 1) * fleet.page_size + 1 : 0;
  const last = Math.min(fleet.matching, fleet.page * fleet.page_size);
  $("pager").replaceChildren(
    el("span", {}, `${fmt.num(first)}–${fmt.num(last)} of ${fmt.num(fleet.matching)} matching` +
      (fleet.matching !== fleet.summary.vehicles ? ` (${fmt.num(fleet.summary.vehicles)} vehicles)` : "")),
    el("div", { class: "buttons" },
      el("button", { disabled: fleet.page <= 1, onclick: () => { state.page -= 1; refreshTable(); } }, "‹ Previous"),
      el("span", {}, `Page ${fleet.page} of ${fleet.pages}`),
      el("button", { disabled: fleet.page >= fleet.pages, onclick: () => { state.page += 1; refreshTable(); } }, "Next ›")),
  );
  state.page = fleet.page;
}

function refreshTable(withTimeline = false) {
  const token = ++renderToken;
  document.body.dataset.ready = "";
  renderFleet(token, withTimeline).then(() => { if (token === renderToken) document.body.dataset.ready = "fleet"; }).catch(showError);
}

function renderTimeline(t) {
  if (!t.dates.length) { empty("timeline-chart", "No daily rows or predictions yet."); return; }
  const traces = [
    { type: "bar", name: "BMS alarm (bit 10)", x: t.dates, y: t.bms_alarmed, marker: { color: COLORS.bms, opacity: 0.75 },
      hovertemplate: "%{y} vehicles<extra>BMS alarm</extra>" },
    { type: "scatter", mode: "lines+markers", name: "Predicted to alarm within 14 d", x: t.dates, y: t.predicted_alarms,
      line: { color: COLORS.accent, width: 2.5 }, marker: { size: 4 }, connectgaps: false,
      hovertemplate: "%{y} vehicles<extra>predicted</extra>" },
    { type: "scatter", mode: "markers", name: "Alert episodes started", x: t.dates,
      y: t.alerts_started.map((n) => (n ? n : null)), marker: { color: COLORS.warn, symbol: "diamond", size: 10,
        line: { color: "#92400e", width: 1 } }, hovertemplate: "%{y} new<extra>alerts</extra>" },
    { type: "scatter", mode: "lines", name: "Vehicles reporting", x: t.dates, y: t.vehicles_reporting, visible: "legendonly",
      line: { color: COLORS.mean, width: 1, dash: "dot" }, hovertemplate: "%{y}<extra>reporting</extra>" },
  ];
  draw("timeline-chart", traces, baseLayout({ bargap: 0.25, yaxis: { title: { text: "vehicles" }, gridcolor: COLORS.grid,
    rangemode: "tozero", zeroline: false } }));
}

// ---------------------------------------------------------------------------------------------- a vehicle

async function renderVehicle(vin, token) {
  $("vehicle-vin").textContent = vin;
  $("vehicle-sub").textContent = "Loading…";
  const [vehicle, cells] = await Promise.all([
    api(`vehicles/${vin}`, { feature_set: state.featureSet, days: state.vehicleDays }),
    api(`vehicles/${vin}/cells`, { feature_set: state.featureSet, days: state.vehicleDays, measure: state.measure })
      .catch((error) => ({ error })),
  ]);
  if (token !== renderToken) return;
  const latest = vehicle.latest;
  $("vehicle-sub").textContent = latest
    ? `Newest ${latest.source} prediction for ${latest.as_of} by ${latest.model_version}`
    : "No predictions yet: only its daily rows.";
  renderRiskCard(latest, cells.suspect_cell);
  renderReasons(latest);
  renderHistory(vehicle.history, vehicle.trend.dates);
  if (cells.error) throw cells.error;
  renderHeatmap(cells);
  renderRange(vehicle.trend, vehicle.alarm_threshold);
}

function renderRiskCard(latest, suspect) {
  const card = $("risk-card");
  if (!latest) { card.replaceChildren(el("p", { class: "hint" }, "Not scored yet.")); return; }
  card.replaceChildren(
    el("div", { class: "label hint" }, "Probability of a consistency alarm within 14 days"),
    el("div", { class: `big ${latest.alarm ? "hot" : ""}` }, fmt.pct(latest.probability)),
    el("div", {}, latest.alarm ? el("span", { class: "badge risk" }, "at or above the alarm threshold")
      : el("span", { class: "badge ok" }, "below the alarm threshold")),
    el("dl", {},
      el("dt", {}, "Threshold"), el("dd", {}, latest.threshold === null ? "—" : latest.threshold.toFixed(3)),
      el("dt", {}, "Suspect cell"), el("dd", {}, suspect === null || suspect === undefined ? "—" : `#${suspect}`),
      el("dt", {}, "Scored for"), el("dd", {}, latest.as_of),
      el("dt", {}, "Model"), el("dd", { class: "mono" }, `${latest.feature_set} · ${latest.model_version}`)),
  );
}

function renderReasons(latest) {
  const body = document.querySelector("#reasons tbody");
  const reasons = latest ? latest.reasons : [];
  if (!reasons.length) { body.replaceChildren(el("tr", {}, el("td", { class: "empty" }, "No reasons recorded."))); return; }
  const largest = Math.max(...reasons.map((r) => Math.abs(r.contribution || 0)), 1e-9);
  body.replaceChildren(...reasons.map((r) => el("tr", {},
    el("td", { class: "mono" }, r.feature),
    el("td", { class: "num" }, r.value === null ? "missing" : fmt.num(r.value, 2)),
    el("td", {}, el("span", { class: `contrib ${r.contribution < 0 ? "neg" : ""}`,
      style: `width:${Math.round(80 * Math.abs(r.contribution) / largest)}px` }), fmt.signed(r.contribution, 3)),
  )));
}

function renderHistory(history, window) {
  if (!history.length) { empty("history-chart", "No predictions for this vehicle yet."); return; }
  // The same days as the charts below (older scorings are a pan away), and the newest scoring even past them.
  const scored = history.flatMap((series) => series.as_of).sort();
  const start = window.length ? window[0] : scored[0];
  const end = [window.length ? window[window.length - 1] : scored[0], scored[scored.length - 1]].sort()[1];
  const palette = [COLORS.accent, "#7c3aed", "#0891b2", "#db2777"];
  const traces = [];
  history.forEach((series, n) => {
    const color = palette[n % palette.length];
    const batch = series.source === "batch";
    traces.push({ type: "scatter", mode: batch ? "lines+markers" : "markers", name: `${series.feature_set} (${series.source})`,
      x: series.as_of, y: series.probability, line: { color, width: 2.5 },
      marker: { size: batch ? 6 : 9, symbol: batch ? "circle" : "diamond-open",
        color: series.alarm.map((a) => (a ? COLORS.risk : color)) },
      customdata: series.model_version, hovertemplate: "%{y:.1%}<extra>%{fullData.name}<br>%{customdata}</extra>" });
    if (batch) {
      traces.push({ type: "scatter", mode: "lines", name: `${series.feature_set} threshold`, x: series.as_of, y: series.threshold,
        line: { color, width: 1.5, dash: "dash", shape: "hv" }, hovertemplate: "%{y:.3f}<extra>threshold</extra>" });
    }
  });
  draw("history-chart", traces, baseLayout({ yaxis: { tickformat: ".0%", range: [0, 1.02], gridcolor: COLORS.grid,
    zeroline: false }, xaxis: { type: "date", range: [dayShift(start, -0.5), dayShift(end, 0.5)], gridcolor: COLORS.grid } }));
}

function renderHeatmap(cells) {
  if (!cells.cells.length) { empty("heatmap-chart", "No per-cell rows for this vehicle in these days."); return; }
  const span = cells.color_span_mv;
  const traces = [{
    type: "heatmap", x: cells.dates, y: cells.cells, z: cells.deviation_mv, zmin: -span, zmax: span, zmid: 0,
    colorscale: [[0, "#1d4ed8"], [0.35, "#93c5fd"], [0.5, "#f8fafc"], [0.65, "#fca5a5"], [1, "#b91c1c"]],
    colorbar: { title: { text: "mV", side: "right" }, thickness: 12, outlinewidth: 0 }, xgap: 1, ygap: 0,
    hovertemplate: "cell %{y}<br>%{x}<br>%{z:+.1f} mV from the median<extra></extra>", hoverongaps: false,
  }, {
    type: "scatter", mode: "markers", name: "most deviating cell that day", x: cells.daily_suspects.dates,
    y: cells.daily_suspects.cells, marker: { symbol: "x-thin", size: 7, line: { width: 1.6, color: "#111827" } },
    hovertemplate: "suspect that day: cell %{y}<extra></extra>", showlegend: false,
  }];
  const shapes = [];
  const annotations = [];
  if (cells.suspect_cell !== null && cells.suspect_cell !== undefined) {
    // A frame a little wider than the row, so the row's own colours stay visible inside it.
    const pad = Math.max(1.5, cells.cells.length / 60);
    shapes.push({ type: "rect", xref: "paper", x0: 0, x1: 1, yref: "y", y0: cells.suspect_cell - pad, y1: cells.suspect_cell + pad,
      line: { color: COLORS.warn, width: 2 }, fillcolor: "rgba(0,0,0,0)" });
    annotations.push({ xref: "paper", x: 1, xanchor: "right", yref: "y", y: cells.suspect_cell - pad, yanchor: "bottom",
      text: `suspect cell #${cells.suspect_cell}`, showarrow: false, font: { color: "#92400e", size: 12 },
      bgcolor: "rgba(254,243,199,.92)", borderpad: 2 });
  }
  draw("heatmap-chart", traces, baseLayout({ hovermode: "closest", shapes, annotations, margin: { l: 56, r: 16, t: 12, b: 40 },
    yaxis: { title: { text: "cell (series position)" }, autorange: "reversed", gridcolor: COLORS.grid, zeroline: false },
    xaxis: { gridcolor: COLORS.grid } }));
}

function renderRange(trend, rule) {
  $("threshold-rule").textContent = `Daily maximum, 95th percentile and mean of the vehicle's frame-by-frame cell range. ` +
    `The BMS ${rule.rule}.`;
  if (!trend.dates.length || trend.range_max_mv.every((v) => v === null)) {
    empty("range-chart", "No daily rows for this vehicle in these days."); return;
  }
  const alarmed = trend.dates.map((d, n) => (trend.bms_alarm[n] ? d : null)).filter((d) => d !== null);
  const alarmedY = trend.dates.map((d, n) => (trend.bms_alarm[n] ? trend.range_max_mv[n] : null)).filter((v, n) => trend.bms_alarm[n]);
  const traces = [
    { type: "scatter", mode: "lines", name: "max", x: trend.dates, y: trend.range_max_mv, line: { color: COLORS.risk, width: 2.2 },
      hovertemplate: "%{y:.0f} mV<extra>max</extra>" },
    { type: "scatter", mode: "lines", name: "p95", x: trend.dates, y: trend.range_p95_mv, line: { color: COLORS.p95, width: 1.8 },
      hovertemplate: "%{y:.0f} mV<extra>p95</extra>" },
    { type: "scatter", mode: "lines", name: "mean", x: trend.dates, y: trend.range_mean_mv, line: { color: COLORS.mean, width: 1.5 },
      hovertemplate: "%{y:.0f} mV<extra>mean</extra>" },
    { type: "scatter", mode: "markers", name: "BMS alarm that day", x: alarmed, y: alarmedY,
      marker: { color: COLORS.risk, size: 10, symbol: "triangle-up", line: { color: "#7f1d1d", width: 1 } },
      hovertemplate: "bit 10 set<extra>BMS alarm</extra>" },
  ];
  const highest = Math.max(rule.set_mv * 1.15, ...trend.range_max_mv.filter((v) => v !== null));
  const line = (y, dash, color, text) => [
    { type: "line", xref: "paper", x0: 0, x1: 1, yref: "y", y0: y, y1: y, line: { color, width: 1.8, dash } },
    { xref: "paper", x: 0.005, xanchor: "left", yref: "y", y, yanchor: "bottom", text, showarrow: false,
      font: { color, size: 11 } }];
  const [setLine, setNote] = line(rule.set_mv, "dash", COLORS.risk, `alarm sets ≥ ${rule.set_mv} mV`);
  const [releaseLine, releaseNote] = line(rule.release_mv, "dot", COLORS.muted, `clears < ${rule.release_mv} mV`);
  draw("range-chart", traces, baseLayout({ shapes: [setLine, releaseLine], annotations: [setNote, releaseNote],
    yaxis: { title: { text: "cell range (mV)" }, range: [0, highest * 1.05], gridcolor: COLORS.grid, zeroline: false } }));
}

// ---------------------------------------------------------------------------------------------- the model

async function renderModel(token) {
  const { models, problems } = await api("model");
  if (token !== renderToken) return;
  const root = $("models");
  const notes = problems.map((p) => el("p", { class: "banner" }, `${p.feature_set}: ${p.problem}`));
  if (!models.length) {
    root.replaceChildren(...notes, el("div", { class: "card" }, el("p", { class: "hint" }, "No champion yet: run bms_training.")));
    return;
  }
  root.replaceChildren(...notes, ...models.map((m, n) => modelCard(m, n)));
  models.forEach((m, n) => drawCurves(m, n));
}

function modelCard(m, n) {
  const better = (row) => {
    if (row.ours === null || row.reference === null) return "";
    const lowerIsBetter = ["healthy_alarmed", "false_alarms_per_1000_vehicle_days"].includes(row.key);
    return (lowerIsBetter ? row.ours < row.reference : row.ours > row.reference) ? "better" : "";
  };
  const table = el("table", { class: "metrics" },
    el("thead", {}, el("tr", {}, el("th", {}, "Test window"), el("th", { class: "num" }, "this model"),
      el("th", { class: "num" }, "reference recipe"))),
    el("tbody", {}, m.metrics.map((row) => el("tr", {},
      el("td", {}, row.label),
      el("td", { class: `num ${better(row)}` }, fmt.num(row.ours, row.digits)),
      el("td", { class: "num" }, fmt.num(row.reference, row.digits))))));
  const figure = (kind, title) => {
    const curves = m.curves && m.curves[kind];
    if (curves) return el("div", {}, el("h2", {}, title), el("div", { id: `curve-${kind}-${n}`, class: "chart chart-md" }));
    if (m.figures[kind]) return el("div", {}, el("h2", {}, title), el("img", { src: m.figures[kind], alt: `${title} of ${m.version}` }));
    return el("div", {}, el("h2", {}, title), el("p", { class: "hint" }, "Not in this version's report."));
  };
  const data = m.training_data || {};
  return el("div", { class: "card model" },
    el("div", { class: "model-head" },
      el("div", {}, el("h2", {}, `${m.feature_set} champion`), el("div", { class: "mono hint" }, m.version)),
      el("div", { class: "hint" }, `alarm threshold ${m.threshold === null ? "—" : m.threshold.toFixed(3)}` +
        (m.target_precision ? ` (chosen for precision ${m.target_precision} on validation)` : "") +
        (data.daily_first ? ` · trained on ${data.daily_first} … ${data.daily_last}, ${fmt.num(data.vehicles)} vehicles` : "")),
      m.report_url ? el("a", { href: m.report_url, target: "_blank", rel: "noopener" }, "Full evaluation report ↗") : null),
    el("div", { class: "model-grid" }, table, figure("roc", "ROC curve"), figure("pr", "Precision–recall curve")));
}

function drawCurves(m, n) {
  if (!m.curves) return;
  const axes = { roc: ["false positive rate", "true positive rate"], pr: ["recall", "precision"] };
  for (const kind of ["roc", "pr"]) {
    const ours = m.curves[kind];
    if (!ours) continue;
    const traces = [{ type: "scatter", mode: "lines", name: "this model", x: ours.x, y: ours.y,
      line: { color: COLORS.accent, width: 2.5, shape: kind === "pr" ? "hv" : "linear" } }];
    const reference = m.reference_curves && m.reference_curves[kind];
    if (reference) {
      traces.push({ type: "scatter", mode: "lines", name: "reference recipe", x: reference.x, y: reference.y,
        line: { color: COLORS.reference, width: 2, dash: "dot", shape: kind === "pr" ? "hv" : "linear" } });
    }
    if (kind === "roc") {
      traces.push({ type: "scatter", mode: "lines", name: "chance", x: [0, 1], y: [0, 1], hoverinfo: "skip",
        line: { color: "#d1d5db", width: 1, dash: "dash" } });
    }
    draw(`curve-${kind}-${n}`, traces, baseLayout({ hovermode: "closest", margin: { l: 52, r: 12, t: 10, b: 44 },
      xaxis: { title: { text: axes[kind][0] }, range: [0, 1], gridcolor: COLORS.grid, zeroline: false },
      yaxis: { title: { text: axes[kind][1] }, range: [0, 1.02], gridcolor: COLORS.grid, zeroline: false },
      legend: { x: kind === "roc" ? 0.4 : 0.02, y: 0.05, bgcolor: "rgba(255,255,255,.8)" } }));
  }
}

// ---------------------------------------------------------------------------------------------- wiring

function debounce(fn, ms) {
  let timer;
  return (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
}

document.addEventListener("DOMContentLoaded", () => {
  $("feature-set").addEventListener("change", (e) => { state.featureSet = e.target.value; state.asOf = ""; state.page = 1; refreshTable(true); });
  $("as-of").addEventListener("change", (e) => { state.asOf = e.target.value; state.page = 1; refreshTable(); });
  $("search").addEventListener("input", debounce((e) => { state.q = e.target.value.trim(); state.page = 1; refreshTable(); }, 250));
  $("show").addEventListener("change", (e) => { state.show = e.target.value; state.page = 1; refreshTable(); });
  $("page-size").addEventListener("change", (e) => { state.pageSize = Number(e.target.value); state.page = 1; refreshTable(); });
  for (const th of document.querySelectorAll("#fleet-table th[data-sort]")) {
    th.addEventListener("click", () => {
      const key = th.dataset.sort;
      state.order = state.sort === key ? (state.order === "desc" ? "asc" : "desc") : (key === "vin" ? "asc" : "desc");
      state.sort = key;
      state.page = 1;
      refreshTable();
    });
  }
  $("vehicle-days").addEventListener("change", (e) => { state.vehicleDays = Number(e.target.value); route(); });
  for (const button of document.querySelectorAll("#measure button")) {
    button.addEventListener("click", () => {
      state.measure = button.dataset.measure;
      for (const b of document.querySelectorAll("#measure button")) b.classList.toggle("on", b === button);
      route();
    });
  }
  window.addEventListener("hashchange", route);
  route();
});
