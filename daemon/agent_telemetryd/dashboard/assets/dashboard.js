// The dashboard's core: formatting, DOM and chart helpers, the state in the address, data
// access and the router. The views (overview.js, agents.js, runs.js, explore.js,
// metrics.js) register themselves in `agentTelemetry.views`; the router starts once every
// script has run. Live mode asks /dashboard/api/* with the token; report mode reads the
// JSON embedded in the file. body[data-ready] is "1" once the shown view is drawn (the
// browser tests wait for it). Text goes in through textContent only.
(function () {
  "use strict";
  const D = (window.agentTelemetry = { views: {} });
  const body = document.body;
  const $ = (D.$ = (id) => document.getElementById(id));
  D.mode = body.dataset.mode;
  const MINUTE = 60 * 1000;
  const HOUR = (D.HOUR = 60 * MINUTE);
  const DAY = 24 * HOUR;

  // --- formatting ---------------------------------------------------------------------
  const none = (v) => v === null || v === undefined;
  D.fmt = (n) => (none(n) ? "–" : Number(n).toLocaleString());
  D.pct = (r) => (none(r) ? "–" : (r * 100).toFixed(r < 0.1 ? 2 : 1) + "%");
  D.ms = (v) => {
    if (none(v)) return "–";
    if (v >= 60000) return (v / 60000).toFixed(1) + " min";
    if (v >= 1000) return (v / 1000).toFixed(2) + " s";
    return Math.round(v) + " ms";
  };
  D.when = (t) => (t ? new Date(t).toLocaleString() : "–");
  // Dollars to a precision that tells small LLM costs apart (0.0459, not 0.05).
  D.money = (v) => {
    if (none(v)) return "unknown";
    if (v === 0) return "$0";
    if (v < 0.0001) return "$" + v.toPrecision(2);
    return "$" + v.toFixed(v < 1 ? 4 : 2);
  };
  // A cost that may be partly unknown: never shown as 0 when it is not known.
  D.costText = (cost, unpriced) => {
    if (none(cost)) return "unknown";
    return unpriced ? `${D.money(cost)} + ${unpriced} unknown` : D.money(cost);
  };
  D.bucketWord = (bucket) => ({ minute: "minute", day: "day" })[bucket] || "hour";
  D.bucketMs = (bucket) => ({ minute: MINUTE, day: DAY })[bucket] || HOUR;

  // --- DOM ----------------------------------------------------------------------------
  D.el = (tag, text, cls) => {
    const node = document.createElement(tag);
    if (!none(text)) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  };
  D.cell = (row, text, cls) => row.appendChild(D.el("td", none(text) ? "" : text, cls));
  D.link = (text, changes, cls) => {
    // The report's data is for its own filters: a link to others would lead nowhere.
    if (D.mode === "report" && Object.keys(changes).some((k) => FILTERS.includes(k))) return D.el("span", text, cls);
    const a = D.el("a", text, cls);
    a.href = D.hrefFor(changes);
    a.dataset.changes = JSON.stringify(changes); // `showView` points it anew
    return a;
  };
  D.tbody = (id) => {
    const tbody = $(id).querySelector("tbody");
    tbody.replaceChildren();
    return tbody;
  };
  D.emptyRow = (tbody, text, columns) => {
    const tr = tbody.appendChild(D.el("tr", null, "none"));
    D.cell(tr, text).colSpan = columns;
  };
  D.bar = (row, fraction, cls) => {
    const div = D.el("div", null, cls ? `bar ${cls}` : "bar");
    div.style.width = Math.max(1, Math.round(fraction * 100)) + "%"; // CSSOM: allowed by the CSP
    D.cell(row, "").appendChild(div);
  };
  // A property value as text: strings as they are, anything else as JSON.
  D.valueText = (v) => (typeof v === "string" ? v : JSON.stringify(v));
  D.propertyList = (properties) => {
    const dl = D.el("dl", null, "props");
    for (const [key, value] of Object.entries(properties || {})) {
      dl.append(D.el("dt", key), D.el("dd", D.valueText(value)));
    }
    return dl;
  };
  D.fillChoices = (select, values, current) => {
    const keep = select.options[0];
    select.replaceChildren(keep);
    for (const v of values) select.add(new Option(v, v, false, v === current));
    if (current && !values.includes(current)) select.add(new Option(current, current, false, true));
    select.value = current || "";
    select.title = current || ""; // the whole name, where the menu is too narrow for it
  };

  // --- charts -------------------------------------------------------------------------
  const charts = new Map();
  D.cssVar = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  D.destroyChart = (id) => {
    if (charts.has(id)) charts.get(id).destroy();
    charts.delete(id);
  };
  // Each bucket is drawn at its middle: a bar then covers its own bucket (not half of the
  // one before), and the cursor picks the bucket it is over.
  D.middles = (startsMs, stepS) => startsMs.map((t) => t / 1000 + stepS / 2);
  // The x axis spans the chosen range (not just the buckets with data), so a quiet
  // stretch looks quiet, and ends where the last bucket ends, so its bar is whole.
  // `startsMs` are the buckets' starts, in order.
  D.xRange = (filters, startsMs, stepS, nowMs) => {
    let lo = startsMs[0] / 1000;
    let hi = startsMs[startsMs.length - 1] / 1000 + stepS;
    if (filters.since_ms) {
      lo = Math.min(lo, filters.since_ms / 1000);
      hi = Math.max(hi, (filters.until_ms || nowMs || filters.since_ms) / 1000);
    }
    return [lo, hi];
  };
  // uPlot leaves out a line's point markers where the buckets are dense, and a value whose
  // neighbours are empty has no line either: without its marker it would not be drawn.
  const lonePoints = (u, seriesIdx, show) => {
    if (show) return null;
    const ys = u.data[seriesIdx];
    const lone = [];
    for (let i = 0; i < ys.length; i++) if (!none(ys[i]) && none(ys[i - 1]) && none(ys[i + 1])) lone.push(i);
    return lone.length ? lone : null;
  };
  // One uPlot chart in the element `id` (replacing the one drawn there before); `step` is
  // the buckets' length in seconds, the x values their middles.
  D.chart = (id, { series, data, axisLabel, range, height, step }) => {
    D.destroyChart(id);
    const target = $(id);
    const text = D.cssVar("--muted");
    const grid = D.cssVar("--grid");
    const axis = { stroke: text, grid: { stroke: grid }, ticks: { stroke: grid } };
    const lines = series.map((s) => (s.paths ? s : { ...s, points: { filter: lonePoints, ...s.points } }));
    const opts = {
      width: Math.max(320, target.clientWidth || 800),
      height: height || 240,
      // The legend names the bucket by its start, as the tables do.
      series: [{ value: (u, v) => (none(v) ? "–" : D.when((v - step / 2) * 1000)) }, ...lines],
      // Counts, rates, durations and costs all start at zero: a bar from 40 misleads.
      scales: {
        x: { time: true, auto: false, range: () => range },
        y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] },
      },
      axes: [axis, { ...axis, label: axisLabel, size: 70 }],
      legend: { live: true },
      cursor: { drag: { x: false, y: false } },
    };
    charts.set(id, new uPlot(opts, data, target));
  };
  // The uPlot chart drawn in `id`, if any (the browser tests read its scales).
  D.chartIn = (id) => charts.get(id);
  // Bars as wide as 80% of a bucket of `stepS` seconds, placed by time rather than by
  // the gap between neighbours (a lone bar would otherwise be as wide as the chart).
  D.barsPath = (stepS) =>
    uPlot.paths.bars({
      size: [1, Infinity, 1],
      disp: {
        x0: { unit: 1, values: (u) => u.data[0].map((x) => x - 0.4 * stepS) },
        size: { unit: 1, values: () => [0.8 * stepS] },
      },
    });

  // --- state in the address -------------------------------------------------------------
  // Everything that decides what is shown is in the fragment (#view=runs&since=6h&...):
  // a bookmark or the back button brings the same view back. Defaults are left out.
  const FILTERS = ["since", "until", "agent", "event", "model", "tool", "bucket"];
  const KEYS = ["view", ...FILTERS, "run"];
  D.readState = () => {
    const found = new URLSearchParams(location.hash.slice(1));
    const state = {};
    for (const key of KEYS) if (found.get(key)) state[key] = found.get(key);
    if (!D.views[state.view]) state.view = "overview";
    if (D.mode === "report") for (const key of FILTERS) delete state[key];
    return state;
  };
  D.state = {};
  D.hrefFor = (changes) => {
    const next = { ...D.state, ...changes };
    const q = new URLSearchParams();
    for (const key of KEYS) {
      const value = next[key];
      if (!value || (key === "view" && value === "overview") || (key === "bucket" && value === "auto")) continue;
      q.set(key, value);
    }
    const text = q.toString();
    return text ? `#${text}` : "#";
  };
  // Filters changed: the same view, no run chosen any more (it may be filtered out).
  D.go = (changes, replace) => {
    const href = D.hrefFor(changes);
    if (replace) {
      history.replaceState(null, "", location.pathname + location.search + href);
      route();
    } else if (href !== (location.hash || "#")) {
      location.hash = href; // a history entry; `hashchange` routes
    }
  };
  D.filterKey = (state) => FILTERS.map((k) => state[k] || "").join("\u0001");
  // The API's query for the state's filters (and `extra`, e.g. a page cursor).
  D.query = (state, extra) => {
    const q = new URLSearchParams();
    for (const key of FILTERS) {
      const value = state[key];
      if (value && !(key === "since" && value === "all")) q.set(key, value);
    }
    q.set("tz", String(-new Date().getTimezoneOffset()));
    for (const [k, v] of Object.entries(extra || {})) if (!none(v)) q.set(k, v);
    return q;
  };

  // --- data ---------------------------------------------------------------------------
  // The token arrives once in the address (?token=…); it is kept in this origin's
  // localStorage for the API calls and taken out of the address at once, so it is not in
  // the history, a bookmark or a screen share, and a bookmarked view opens in any tab of
  // this browser. localStorage belongs to this origin alone (scheme, host and port): a
  // page on another port of this machine cannot read it, where a cookie would be sent.
  const TOKEN_KEY = "agent-telemetry.dashboard-token";
  let memoryToken = "";
  function takeToken() {
    const query = new URLSearchParams(location.search);
    const given = query.get("token");
    if (given) {
      memoryToken = given;
      try {
        localStorage.setItem(TOKEN_KEY, given);
      } catch (e) {
        // Storage refused (a locked-down profile): the token lives until this page closes.
      }
      // Old-style filters in the query move to the fragment with the rest of the state.
      const moved = new URLSearchParams(location.hash.slice(1));
      for (const key of KEYS) if (query.get(key) && !moved.get(key)) moved.set(key, query.get(key));
      const hash = moved.toString();
      history.replaceState(null, "", location.pathname + (hash ? `#${hash}` : ""));
    }
  }
  function token() {
    try {
      return localStorage.getItem(TOKEN_KEY) || memoryToken;
    } catch (e) {
      return memoryToken;
    }
  }
  // A token the daemon refuses (another install's, or one from before a reset) is dropped.
  function forgetToken() {
    memoryToken = "";
    try {
      localStorage.removeItem(TOKEN_KEY);
    } catch (e) {
      // nothing stored
    }
  }
  class ApiError extends Error {
    constructor(message, status) {
      super(message);
      this.status = status;
    }
  }
  D.ApiError = ApiError;
  let embedded = null;
  D.embedded = () => embedded;
  // GET /dashboard/api/<path>?<query>; in the report, the embedded answer.
  D.api = async (path, query) => {
    if (D.mode === "report") {
      const found = D.fromReport(path, query);
      if (found === undefined) throw new ApiError("this report does not hold that page", 404);
      return found;
    }
    const r = await fetch(`/dashboard/api/${path}?${query || ""}`, {
      headers: { Authorization: `Bearer ${token()}` },
    });
    const data = await r.json();
    if (r.status === 403) forgetToken();
    if (!r.ok) throw new ApiError(data.error || `HTTP ${r.status}`, r.status);
    return data;
  };
  D.fromReport = (path, query) => {
    const q = new URLSearchParams(query || "");
    if (q.get("before")) return undefined; // only the first page of each list is embedded
    if (path === "all") return embedded;
    if (path.startsWith("run/")) return (embedded.run_spans || {})[path.slice(4)];
    return embedded[path];
  };

  // Where the first view opens when the address names no range: the shortest of the
  // usual ranges holding every event, else the last 30 days, else (nothing that recent)
  // the 30 days up to the newest event.
  const RANGES = [["1h", HOUR], ["6h", 6 * HOUR], ["24h", DAY], ["7d", 7 * DAY], ["30d", 30 * DAY]];
  D.fitRange = (span, now) => {
    if (none(span.first_ms)) return { since: "24h" };
    for (const [name, length] of RANGES) if (now - span.first_ms <= length) return { since: name };
    if (now - span.last_ms <= 30 * DAY) return { since: "30d" };
    const until = Math.ceil((span.last_ms + 1) / HOUR) * HOUR;
    const length = (RANGES.find(([, l]) => until - span.first_ms <= l) || RANGES[4])[1];
    return { since: String(until - length), until: String(until) };
  };

  // --- the filter form and the scope line -------------------------------------------------
  const PRESET = { "1h": "the last hour", "6h": "the last 6 hours", "24h": "the last 24 hours",
    "7d": "the last 7 days", "30d": "the last 30 days", all: "all time" };

  function syncFilters(state, all) {
    const form = $("filters");
    const f = all.filters;
    const range = form.elements.since;
    for (const option of [...range.options]) if (option.value === "custom") option.remove();
    if (PRESET[state.since]) {
      range.value = state.since;
    } else {
      const to = f.until_ms ? D.when(f.until_ms) : "now";
      range.add(new Option(`${D.when(f.since_ms)} – ${to}`, "custom", false, true));
      range.value = "custom";
    }
    D.fillChoices(form.elements.agent, all.choices.agents, f.agent);
    D.fillChoices(form.elements.event, all.choices.events, f.event);
    const models = (all.models ? all.models.models : []).map((m) => m.model).filter((m) => m);
    D.fillChoices(form.elements.model, models, state.model);
    D.fillChoices(form.elements.tool, (all.tools ? all.tools.tools : []).map((t) => t.tool), state.tool);
    form.elements.bucket.value = state.bucket || "auto";
  }

  function describeScope(state, all) {
    const f = all.filters;
    // The range as counted: whole hours, so it may start up to an hour before the one
    // asked for; the start is said, not just the preset's name.
    const preset = D.mode === "live" ? PRESET[state.since] : null;
    const end = f.until_ms || (D.mode === "report" ? all.generated_ms : null);
    const bounds = f.since_ms ? `from ${D.when(f.since_ms)} to ${end ? D.when(end) : "now"}` : null;
    const range = !bounds ? preset || "all time" : preset ? `${preset}, ${bounds}` : bounds;
    const who = [f.agent ? `agent ${f.agent}` : "all agents", f.event ? `event ${f.event}` : "all events"];
    if (f.model) who.push(`model ${f.model}`);
    if (f.tool) who.push(`tool ${f.tool}`);
    const made = D.mode === "report" ? `Report made ${D.when(all.generated_ms)}. ` : "";
    const held = all.span.first_ms === null ? "The buffer holds no events yet."
      : `The buffer holds events from ${D.when(all.span.first_ms)} to ${D.when(all.span.last_ms)}.`;
    // Exactly where each applies: every other number on the page counts all events.
    let narrow = "";
    if (f.model) narrow += " The model filter applies to the Models & cost, Runs and Events views and the LLM calls and Cost cards only.";
    if (f.tool) narrow += " The tool filter applies to the Tools and Events views only.";
    $("scope").textContent = `${made}Showing ${range}, ${who.join(", ")}, in ${D.bucketWord(f.bucket)} buckets. ${held}${narrow}`;
  }

  // --- the router ---------------------------------------------------------------------
  let routing = 0;
  let loadedKey = null;
  D.all = null;

  function showView(view) {
    body.dataset.view = view;
    // A view's links are made when its data loads, perhaps while another view was shown:
    // from the state of now, a link keeps the reader in the view it is in.
    for (const a of document.querySelectorAll("a[data-changes]")) a.href = D.hrefFor(JSON.parse(a.dataset.changes));
    for (const section of document.querySelectorAll("section.view")) section.hidden = section.dataset.view !== view;
    for (const a of document.querySelectorAll("#tabs a")) {
      a.href = D.hrefFor({ view: a.dataset.view, run: a.dataset.view === "runs" ? D.state.run : "" });
      if (a.dataset.view === view) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
  }

  function fail(error) {
    const needsToken = error.status === 401 || error.status === 403;
    $("need-token").hidden = !needsToken;
    $("load-error").hidden = needsToken;
    $("load-error").textContent = `Could not load the data: ${error.message}`;
    body.dataset.ready = "error";
  }

  async function route() {
    const mine = ++routing;
    const current = () => mine === routing;
    body.dataset.ready = "";
    let state = D.readState();
    try {
      if (D.mode === "live" && !state.since) {
        const { span } = await D.api("span", "");
        if (!current()) return;
        D.state = state;
        D.go({ ...D.fitRange(span, Date.now()) }, true);
        return;
      }
      D.state = state;
      showView(state.view);
      const key = D.filterKey(state);
      if (key !== loadedKey) {
        const all = await D.api("all", D.query(state));
        if (!current()) return;
        D.all = all;
        loadedKey = key;
        syncFilters(state, all);
        describeScope(state, all);
        for (const view of Object.values(D.views)) if (view.render) view.render(all, state);
      }
      const view = D.views[state.view];
      if (view.show) await view.show(state, D.all, current);
      if (!current()) return;
      // Whatever failed before (a bad run id, a filter), what is shown now loaded.
      $("load-error").hidden = true;
      $("need-token").hidden = true;
      body.dataset.ready = "1";
    } catch (error) {
      if (current()) fail(error);
    }
  }
  D.route = route;
  D.redraw = () => {
    const view = D.views[D.state.view];
    if (D.all && view && view.draw) view.draw(D.all, D.state);
  };

  function boot() {
    if (D.mode === "report") {
      embedded = JSON.parse($("dashboard-data").textContent);
    } else {
      takeToken();
      const form = $("filters");
      form.addEventListener("change", (event) => {
        const name = event.target.name;
        if (!name) return;
        const value = event.target.value;
        if (name === "since") D.go({ since: value === "custom" ? D.state.since : value, until: "", run: "" });
        else D.go({ [name]: value, run: "" });
      });
    }
    window.addEventListener("hashchange", route);
    let resizeTimer = 0;
    window.addEventListener("resize", () => {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(D.redraw, 150);
    });
    window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", D.redraw);
    route();
  }
  // After the other scripts of the page have registered their views.
  document.addEventListener("DOMContentLoaded", boot);
})();
