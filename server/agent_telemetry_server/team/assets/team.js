// The team dashboard. The read key is asked for once and kept in sessionStorage (this tab
// only, gone when it closes); it travels in an Authorization header, never in the URL. A
// link may carry it in the fragment (#key=…), which browsers never send to a server: it is
// moved into sessionStorage and wiped from the address bar at once.
// body[data-ready] says where the page is: "needs-key", "refused", "1" (drawn) or "error".
(function () {
  "use strict";
  const STORE = "agent-telemetry-team-read-key";
  const VIEWS = ["overview", "models", "cost", "tools", "durations", "agents", "errors"];
  const body = document.body;
  const $ = (id) => document.getElementById(id);
  let charts = [];
  let last = null;

  const fmt = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US"));
  const pct = (r) => (r === null || r === undefined ? "–" : (r * 100).toFixed(r < 0.1 ? 2 : 1) + "%");
  const usd = (v) => (v === null || v === undefined ? "cost unknown" : "$" + v.toFixed(v >= 1 ? 2 : 4));
  const ms = (v) => {
    if (v === null || v === undefined) return "–";
    if (v >= 60000) return (v / 60000).toFixed(1) + " min";
    if (v >= 1000) return (v / 1000).toFixed(2) + " s";
    return Math.round(v) + " ms";
  };
  const plural = (n, one, many) => `${fmt(n)} ${n === 1 ? one : many}`;
  const cssVar = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  const PALETTE = ["--accent", "--p95", "--series3", "--series4", "--series5", "--series6"];

  function takeKeyFromFragment() {
    const match = location.hash.match(/(?:^#|&)key=([^&]*)/);
    if (!match) return;
    sessionStorage.setItem(STORE, decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }

  function daysFromUrl() {
    const days = new URLSearchParams(location.search).get("days");
    return ["7", "30", "90"].includes(days) ? days : "30";
  }

  function setOutput(id, text, value) {
    const el = $(id);
    el.textContent = text;
    el.dataset.value = value === null || value === undefined ? "" : String(value);
  }

  function row(tbody, cells, data) {
    const tr = document.createElement("tr");
    for (const [k, v] of Object.entries(data || {})) tr.dataset[k] = v === null ? "" : String(v);
    for (const [text, cls] of cells) {
      const td = document.createElement("td");
      td.textContent = text;
      if (cls) td.className = cls;
      tr.appendChild(td);
    }
    tbody.appendChild(tr);
  }

  function table(id, rows, empty, toCells, toData) {
    const tbody = $(id).querySelector("tbody");
    tbody.replaceChildren();
    for (const r of rows) row(tbody, toCells(r), toData ? toData(r) : {});
    if (!rows.length) {
      const cols = $(id).querySelectorAll("thead th").length;
      row(tbody, [[empty, "empty"]]);
      tbody.lastChild.firstChild.colSpan = cols;
    }
  }

  function costText(c) {
    if (!c.calls) return "–";
    if (!c.costed_calls) return "cost unknown";
    const rest = c.uncosted_calls ? ` + ${plural(c.uncosted_calls, "call", "calls")} without a reported cost` : "";
    return usd(c.cost_usd) + rest;
  }

  function showKeyPanel(message) {
    $("key-panel").hidden = false;
    $("content").hidden = true;
    $("forget-key").hidden = true;
    $("refused").hidden = !message;
    $("refused").textContent = message || "";
    $("key-input").value = "";
    $("key-input").focus();
  }

  async function fetchViews(key, days) {
    const answers = await Promise.all(
      VIEWS.map((view) =>
        fetch(`/api/v1/analytics/${view}?days=${days}`, {
          headers: { Authorization: `Bearer ${key}` },
          cache: "no-store",
          credentials: "omit",
        }),
      ),
    );
    if (answers.some((r) => r.status === 401)) return null;
    const bodies = await Promise.all(answers.map((r) => r.json()));
    answers.forEach((r, i) => {
      if (!r.ok) throw new Error(`${VIEWS[i]}: ${bodies[i].error || "HTTP " + r.status}`);
    });
    return Object.fromEntries(VIEWS.map((v, i) => [v, bodies[i]]));
  }

  async function load() {
    body.dataset.ready = "";
    const key = sessionStorage.getItem(STORE);
    if (!key) {
      showKeyPanel("");
      body.dataset.ready = "needs-key";
      return;
    }
    const days = $("filters").elements.days.value;
    try {
      const data = await fetchViews(key, days);
      if (data === null) {
        sessionStorage.removeItem(STORE);
        showKeyPanel("The server refused this key (401): this page needs one of its read keys; an ingest key does not open it.");
        body.dataset.ready = "refused";
        return;
      }
      $("key-panel").hidden = true;
      $("content").hidden = false;
      $("forget-key").hidden = false;
      $("load-error").hidden = true;
      render(data);
      body.dataset.ready = "1";
    } catch (e) {
      $("key-panel").hidden = true;
      $("content").hidden = false;
      $("load-error").hidden = false;
      $("load-error").textContent = `Could not load the data: ${e.message}`;
      body.dataset.ready = "error";
    }
  }

  function render(d) {
    last = d;
    const o = d.overview.totals;
    const c = d.cost.total;
    setOutput("installs", fmt(o.installs), o.installs);
    setOutput("events", fmt(o.events), o.events);
    $("event-types").textContent = plural(o.event_types, "event name", "event names");
    setOutput("error-rate", pct(o.error_rate), o.error_rate);
    $("errors").textContent = plural(o.errors, "error", "errors");
    setOutput("agents", fmt(o.agents), o.agents);
    setOutput("model-calls", fmt(c.calls), c.calls);
    $("tokens").textContent = `${fmt(c.input_tokens)} in, ${fmt(c.output_tokens)} out tokens`;
    setOutput("cost", usd(c.cost_usd), c.cost_usd);
    $("cost-note").textContent = c.uncosted_calls
      ? `${plural(c.uncosted_calls, "call", "calls")} without a reported cost`
      : c.costed_calls ? "every call reported its cost" : "no call reported a cost";
    $("scope").textContent = `${d.overview.from} to ${d.overview.to} (UTC), every installation.`;

    table("models", d.models.models, "no event in this window names a model", (m) => [
      [m.model], [fmt(m.calls), "num"], [pct(m.error_rate), "num"], [fmt(m.input_tokens), "num"],
      [fmt(m.output_tokens), "num"], [costText(m), "num"], [fmt(m.installs), "num"],
      [ms(m.duration.p50_ms), "num"], [ms(m.duration.p95_ms), "num"],
    ], (m) => ({ name: m.model, calls: m.calls, cost: m.cost_usd, uncosted: m.uncosted_calls,
      inputTokens: m.input_tokens, outputTokens: m.output_tokens }));
    table("agents-table", d.agents.agents, "no events in this window", (a) => [
      [a.agent ?? "(none named)"], [fmt(a.events), "num"], [fmt(a.errors), "num"],
      [pct(a.events ? a.errors / a.events : null), "num"], [fmt(a.unique_anonymous_ids), "num"],
    ], (a) => ({ name: a.agent ?? "", events: a.events, errors: a.errors }));
    table("tools", d.tools.tools, "no event in this window names a tool", (t) => [
      [t.tool], [fmt(t.calls), "num"], [fmt(t.errors), "num"], [pct(t.error_rate), "num"],
      [ms(t.duration.p50_ms), "num"], [ms(t.duration.p95_ms), "num"],
    ], (t) => ({ name: t.tool, calls: t.calls, errors: t.errors, errorRate: t.error_rate }));
    table("errors-table", d.errors.errors, "no events in this window", (e) => [
      [e.event], [e.agent ?? "(none named)"], [fmt(e.events), "num"], [fmt(e.errors), "num"],
      [pct(e.error_rate), "num"],
    ], (e) => ({ name: e.event, errorRate: e.error_rate }));
    table("durations", d.durations.durations, "no event in this window has a numeric duration_ms", (t) => [
      [t.event], [fmt(t.samples), "num"], [ms(t.p50_ms), "num"], [ms(t.p95_ms), "num"], [ms(t.max_ms), "num"],
    ], (t) => ({ name: t.event, p50: t.p50_ms, p95: t.p95_ms }));
    const costByDay = Object.fromEntries(d.cost.by_day.map((x) => [x.day, x]));
    table("days", [...d.overview.by_day].reverse(), "", (x) => [
      [x.day], [fmt(x.installs), "num"], [fmt(x.events), "num"], [fmt(x.errors), "num"],
      [pct(x.error_rate), "num"], [fmt(costByDay[x.day].calls), "num"], [costText(costByDay[x.day]), "num"],
    ], (x) => ({ day: x.day, installs: x.installs, events: x.events, errors: x.errors,
      errorRate: x.error_rate, cost: costByDay[x.day].cost_usd }));
    $("rules").textContent = `Errors: ${d.overview.rule}. Cost: ${d.cost.cost_rule}. Durations: ${d.durations.rule}.`;
    drawCharts(d);
  }

  const toX = (day) => Date.parse(day + "T00:00:00Z") / 1000;

  const DAY_S = 86400;
  const dayText = (ts) => new Date(ts * 1000).toISOString().slice(0, 10);

  // The x axis is whole UTC days: ticks on days (or weeks), labelled by date, and half a
  // day of margin each side so the first and last bars are whole.
  function options(width, series, label, xs) {
    const text = cssVar("--muted");
    const grid = cssVar("--grid");
    const axis = { stroke: text, grid: { stroke: grid }, ticks: { stroke: grid } };
    const xAxis = {
      ...axis,
      space: 48,
      incrs: [DAY_S, 2 * DAY_S, 7 * DAY_S, 14 * DAY_S, 28 * DAY_S],
      values: (u, splits) => splits.map((ts) => dayText(ts).slice(5)),
    };
    const lo = xs[0] - DAY_S / 2;
    const hi = xs[xs.length - 1] + DAY_S / 2;
    return {
      width,
      height: 220,
      series: [{ label: "Day", value: (u, v) => (v === null ? "–" : dayText(v)) }, ...series],
      scales: {
        x: { time: false, auto: false, range: () => [lo, hi] },
        y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] },
      },
      axes: [xAxis, { ...axis, label, size: 60 }],
      legend: { live: true },
      cursor: { drag: { x: false, y: false } },
    };
  }

  // One column per model over the window's days; `missing` fills days without calls
  // (0 for counts, null for cost: no call, no cost known).
  function perModel(byDay, days, field, missing) {
    const models = [...new Set(byDay.map((x) => x.model))].sort();
    const index = Object.fromEntries(days.map((day, i) => [day, i]));
    const columns = models.map(() => days.map(() => missing));
    byDay.forEach((x) => {
      const i = models.indexOf(x.model);
      const value = typeof field === "function" ? field(x) : x[field];
      columns[i][index[x.day]] = value;
    });
    return { models, columns };
  }

  function drawCharts(d) {
    for (const c of charts) c.destroy();
    charts = [];
    const days = d.overview.by_day.map((x) => x.day);
    const xs = days.map(toX);
    const width = Math.max(320, $("chart-installs").clientWidth || 800);
    const half = Math.max(300, $("chart-events").clientWidth || 400);
    const bars = uPlot.paths.bars({ size: [0.7, 48] });
    const barSeries = (label, color) => ({ label, stroke: cssVar(color), fill: cssVar(color), paths: bars, points: { show: false } });
    const line = (label, color, value) => ({ label, stroke: cssVar(color), width: 2, spanGaps: false, value });
    const ov = d.overview.by_day;
    charts.push(new uPlot(options(width, [barSeries("Installations", "--accent")], "installations", xs),
      [xs, ov.map((x) => x.installs)], $("chart-installs")));
    charts.push(new uPlot(options(half, [barSeries("Events", "--bar-strong"), barSeries("Errors", "--error")], "events", xs),
      [xs, ov.map((x) => x.events), ov.map((x) => x.errors)], $("chart-events")));
    charts.push(new uPlot(options(half, [line("Error rate %", "--error", (u, v) => (v === null ? "–" : v.toFixed(2) + "%"))], "% errors", xs),
      [xs, ov.map((x) => (x.error_rate === null ? null : x.error_rate * 100))], $("chart-errors")));
    const color = (i) => PALETTE[i % PALETTE.length];
    const calls = perModel(d.models.by_day, days, "calls", 0);
    const tokens = perModel(d.models.by_day, days, (x) => x.input_tokens + x.output_tokens, 0);
    const cost = perModel(d.models.by_day, days, "cost_usd", null);
    charts.push(new uPlot(options(half, calls.models.map((m, i) => line(m, color(i))), "calls", xs),
      [xs, ...calls.columns], $("chart-calls")));
    charts.push(new uPlot(options(half, tokens.models.map((m, i) => line(m, color(i))), "tokens", xs),
      [xs, ...tokens.columns], $("chart-tokens")));
    const anyCost = d.cost.total.costed_calls > 0;
    $("cost-empty").hidden = anyCost;
    $("chart-cost").hidden = !anyCost;
    if (anyCost) {
      charts.push(new uPlot(options(width, cost.models.map((m, i) => line(m, color(i), (u, v) => (v === null ? "unknown" : usd(v)))), "US$", xs),
        [xs, ...cost.columns], $("chart-cost")));
    }
  }

  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("key-input").value.trim();
    if (!key) return;
    sessionStorage.setItem(STORE, key);
    $("key-input").value = "";
    load();
  });
  $("forget-key").addEventListener("click", () => {
    sessionStorage.removeItem(STORE);
    showKeyPanel("");
    body.dataset.ready = "needs-key";
  });
  $("filters").addEventListener("change", () => {
    const days = $("filters").elements.days.value;
    history.replaceState(null, "", `${location.pathname}?days=${days}`);
    load();
  });
  let resizeTimer = 0;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => last && drawCharts(last), 150);
  });

  takeKeyFromFragment();
  $("filters").elements.days.value = daysFromUrl();
  load();
})();
