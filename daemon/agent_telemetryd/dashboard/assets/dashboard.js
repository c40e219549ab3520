// The dashboard page. Live mode fetches /dashboard/api/all with the token from the URL;
// report mode reads the JSON embedded in the file. Both render the same way, and set
// body[data-ready] once drawn (the browser tests wait for it).
(function () {
  "use strict";
  const body = document.body;
  const mode = body.dataset.mode;
  const $ = (id) => document.getElementById(id);
  const HOUR = 3600 * 1000;
  let charts = [];
  let last = null;

  const fmt = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString());
  const pct = (r) => (r === null || r === undefined ? "–" : (r * 100).toFixed(r < 0.1 ? 2 : 1) + "%");
  const ms = (v) => {
    if (v === null || v === undefined) return "–";
    if (v >= 60000) return (v / 60000).toFixed(1) + " min";
    if (v >= 1000) return (v / 1000).toFixed(2) + " s";
    return Math.round(v) + " ms";
  };
  const when = (t) => (t ? new Date(t).toLocaleString() : "–");
  const cssVar = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

  function setOutput(id, text, value) {
    const el = $(id);
    el.textContent = text;
    if (value !== undefined) el.dataset.value = String(value);
  }

  function cell(row, text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    row.appendChild(td);
    return td;
  }

  function bar(row, fraction, errors) {
    const td = cell(row, "");
    const div = document.createElement("div");
    div.className = errors ? "bar errors" : "bar";
    div.style.width = Math.max(1, Math.round(fraction * 100)) + "%"; // CSSOM: allowed by the CSP
    td.appendChild(div);
  }

  function fillBreakdown(id, data, total) {
    const tbody = $(id).querySelector("tbody");
    tbody.replaceChildren();
    const max = data.rows.reduce((m, r) => Math.max(m, r.events), 0) || 1;
    for (const r of data.rows) {
      const tr = document.createElement("tr");
      tr.dataset.name = r.name;
      tr.dataset.events = String(r.events);
      tr.dataset.errors = String(r.errors);
      cell(tr, r.name);
      cell(tr, fmt(r.events), "num");
      cell(tr, fmt(r.errors), "num");
      cell(tr, pct(r.error_rate), "num");
      bar(tr, r.events / max, false);
      tbody.appendChild(tr);
    }
    if (data.others.names) {
      const tr = document.createElement("tr");
      cell(tr, `${data.others.names} more`);
      cell(tr, fmt(data.others.events), "num");
      cell(tr, fmt(data.others.errors), "num");
      cell(tr, pct(data.others.events ? data.others.errors / data.others.events : null), "num");
      cell(tr, "");
      tbody.appendChild(tr);
    }
    if (!data.rows.length) {
      const tr = document.createElement("tr");
      cell(tr, total ? "none in range" : "no events yet").colSpan = 5;
      tbody.appendChild(tr);
    }
  }

  function fillDurations(d) {
    const tbody = $("durations-by-event").querySelector("tbody");
    tbody.replaceChildren();
    for (const r of d.by_event) {
      const tr = document.createElement("tr");
      tr.dataset.name = r.name;
      cell(tr, r.name);
      cell(tr, fmt(r.count), "num");
      cell(tr, ms(r.p50_ms), "num");
      cell(tr, ms(r.p95_ms), "num");
      cell(tr, ms(r.max_ms), "num");
      tbody.appendChild(tr);
    }
    if (!d.by_event.length) {
      const tr = document.createElement("tr");
      cell(tr, "no event with a numeric duration_ms in range").colSpan = 5;
      tbody.appendChild(tr);
    }
  }

  function fillHealth(h, uploads) {
    const consent = $("consent");
    consent.dataset.mode = h.mode;
    consent.textContent = `mode: ${h.mode}`;
    const facts = $("consent-facts");
    facts.replaceChildren();
    const add = (k, v) => {
      const dt = document.createElement("dt");
      dt.textContent = k;
      const dd = document.createElement("dd");
      dd.textContent = v;
      facts.append(dt, dd);
    };
    add("Mode", `${h.mode} (set by ${h.mode_source})`);
    if (h.mode_reason) add("Why", h.mode_reason);
    if (h.mode_since) add("Since", String(h.mode_since));
    add("Sender", h.sender || "none");
    add("Daemon", h.running ? "running" : "not running");
    const b = h.buffer || {};
    add("Stored", `${fmt(b.events)} events (${fmt(b.pending_upload)} pending upload, ${fmt(b.sent)} sent, ${fmt(b.local_only)} local only, ${fmt(b.rate_limited)} rate-limited, ${fmt(b.quarantined)} quarantined)`);
    const limit = h.rate_limit || {};
    if (limit.events) add("Waiting", `${fmt(limit.events)} events wait for the upload rate limit (${limit.rule} per source); later uploads send them, oldest first, by ${when(limit.all_eligible_by)}`);
    const lastUpload = h.last_upload;
    add("Last upload", !lastUpload ? "never" : typeof lastUpload === "string" ? when(lastUpload) : JSON.stringify(lastUpload));

    const tbody = $("uploads").querySelector("tbody");
    tbody.replaceChildren();
    const note = $("uploads-empty");
    if (!uploads.recent.length) {
      note.hidden = false;
      note.textContent = h.mode === "upload"
        ? "Nothing uploaded yet. Uploads run on a schedule; `agent-telemetry flush` runs one now."
        : "Nothing uploaded: the mode is not upload. `agent-telemetry enable` turns uploading on.";
    } else {
      note.hidden = true;
    }
    for (const r of uploads.recent) {
      const tr = document.createElement("tr");
      cell(tr, when(r.sent_ms));
      cell(tr, r.backend);
      cell(tr, fmt(r.events), "num");
      cell(tr, r.status + (r.http_status ? ` (${r.http_status})` : "") + (r.error ? `: ${r.error}` : ""));
      tbody.appendChild(tr);
    }

    const c = h.counters || {};
    const acc = $("accounting").querySelector("tbody");
    acc.replaceChildren();
    const line = (label, value, key) => {
      const tr = document.createElement("tr");
      tr.dataset.counter = key;
      cell(tr, label);
      cell(tr, fmt(value), "num");
      acc.appendChild(tr);
    };
    line("Received", c.received, "received");
    line("Stored", c.stored, "stored");
    line("Rejected (invalid)", c.rejected, "rejected");
    const reasons = Object.entries(c.dropped_by_reason || {});
    for (const [reason, n] of reasons) line(`Dropped: ${reason}`, n, `dropped.${reason}`);
    if (!reasons.length) line("Dropped", c.dropped || 0, "dropped");
    setOutput("dropped", fmt(c.dropped || 0), c.dropped || 0);
    setOutput("rejected", fmt(c.rejected || 0), c.rejected || 0);
  }

  function fillChoices(select, values, current) {
    const keep = select.options[0];
    select.replaceChildren(keep);
    for (const v of values) select.add(new Option(v, v, false, v === current));
    if (current && !values.includes(current)) select.add(new Option(current, current, false, true));
  }

  // The x axis spans the chosen range (not just the buckets with data), so a quiet
  // week looks quiet; half a bucket of margin keeps the edge bars whole.
  function xRange(d, xs, step) {
    const f = d.filters;
    let lo = xs[0];
    let hi = xs[xs.length - 1];
    if (f.since_ms) {
      lo = Math.min(lo, f.since_ms / 1000);
      hi = Math.max(hi, (f.until_ms || d.generated_ms || f.since_ms) / 1000 - step);
    }
    return [lo - step / 2, hi + step / 2];
  }

  function chartOpts(title, width, series, axisLabel, range) {
    const text = cssVar("--muted");
    const grid = cssVar("--grid");
    const axis = { stroke: text, grid: { stroke: grid }, ticks: { stroke: grid } };
    return {
      title: undefined,
      width,
      height: 240,
      series: [{}, ...series],
      // Counts, rates and durations all start at zero: a bar that starts at 40 misleads.
      scales: {
        x: { time: true, auto: false, range: () => range },
        y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] },
      },
      axes: [axis, { ...axis, label: axisLabel, size: 60 }],
      legend: { live: true },
      cursor: { drag: { x: false, y: false } },
    };
  }

  function drawCharts(d) {
    for (const c of charts) c.destroy();
    charts = [];
    const series = d.over_time;
    const step = (d.filters.bucket === "day" ? 24 * HOUR : HOUR) / 1000;
    const show = series.length > 0;
    for (const id of ["panel-events", "panel-errors", "panel-durations"]) $(id).hidden = !show;
    if (!show) return;
    const width = Math.max(320, $("chart-events").clientWidth || 800);
    const xs = series.map((p) => p.t_ms / 1000);
    const range = xRange(d, xs, step);
    const bars = uPlot.paths.bars({ size: [0.8, 60] });
    const unit = d.filters.bucket === "day" ? "day" : "hour";
    $("events-unit").textContent = `events per ${unit}`;
    charts.push(new uPlot(chartOpts("events", width, [
      { label: "Events", stroke: cssVar("--accent"), fill: cssVar("--bar"), paths: bars, points: { show: false } },
      { label: "Errors", stroke: cssVar("--error"), fill: cssVar("--error"), paths: bars, points: { show: false } },
    ], `events / ${unit}`, range), [xs, series.map((p) => p.events), series.map((p) => p.errors)], $("chart-events")));
    charts.push(new uPlot(chartOpts("errors", width, [
      { label: "Error rate %", stroke: cssVar("--error"), width: 2, spanGaps: false,
        value: (u, v) => (v === null ? "–" : v.toFixed(2) + "%") },
    ], "% errors", range), [xs, series.map((p) => (p.error_rate === null ? null : p.error_rate * 100))], $("chart-errors")));
    const dur = d.durations.over_time;
    $("durations-empty").hidden = dur.length > 0;
    $("chart-durations").hidden = dur.length === 0;
    if (dur.length) {
      const dx = dur.map((p) => p.t_ms / 1000);
      charts.push(new uPlot(chartOpts("durations", width, [
        { label: "p50 ms", stroke: cssVar("--accent"), width: 2, value: (u, v) => ms(v) },
        { label: "p95 ms", stroke: cssVar("--p95"), width: 2, value: (u, v) => ms(v) },
      ], "ms", range), [dx, dur.map((p) => p.p50_ms), dur.map((p) => p.p95_ms)], $("chart-durations")));
    }
  }

  function render(d) {
    last = d;
    const t = d.totals;
    const f = d.filters;
    const anything = d.span.first_ms !== null;
    $("empty").hidden = anything;
    $("no-match").hidden = !anything || t.events > 0;
    if (d.http_url) $("curl-example").textContent = $("curl-example").textContent.replace("http://127.0.0.1:7468", d.http_url);
    setOutput("total-events", fmt(t.events), t.events);
    setOutput("error-rate", pct(t.error_rate), t.error_rate === null ? "" : t.error_rate);
    $("total-errors").textContent = `${fmt(t.errors)} errors`;
    $("total-errors").dataset.value = String(t.errors);
    setOutput("p50", ms(d.durations.p50_ms), d.durations.p50_ms ?? "");
    setOutput("p95", ms(d.durations.p95_ms), d.durations.p95_ms ?? "");
    $("duration-count").textContent = `of ${fmt(d.durations.count)} timed events, ms`;
    const range = f.since_ms ? `since ${when(f.since_ms)}` : "all time";
    const who = [f.agent ? `agent ${f.agent}` : "all agents", f.event ? `event ${f.event}` : "all events"];
    const made = mode === "report" ? `Report made ${when(d.generated_ms)}. ` : "";
    const held = anything ? `The buffer holds events from ${when(d.span.first_ms)} to ${when(d.span.last_ms)}.` : "";
    $("scope").textContent = `${made}Showing ${range}, ${who.join(", ")}, in ${f.bucket} buckets. ${held}`;
    fillBreakdown("by-agent", d.by_agent, t.events);
    fillBreakdown("by-event", d.by_event, t.events);
    fillDurations(d.durations);
    fillHealth(d.health, d.uploads);
    const form = $("filters");
    fillChoices(form.elements.agent, d.choices.agents, f.agent);
    fillChoices(form.elements.event, d.choices.events, f.event);
    drawCharts(d);
    body.dataset.ready = "1";
  }

  function query() {
    const form = $("filters");
    const q = new URLSearchParams();
    const range = form.elements.range.value;
    if (range) q.set("since", range);
    for (const k of ["agent", "event", "bucket"]) if (form.elements[k].value) q.set(k, form.elements[k].value);
    q.set("tz", String(-new Date().getTimezoneOffset()));
    return q;
  }

  async function load() {
    body.dataset.ready = "";
    const token = new URLSearchParams(location.search).get("token") || "";
    try {
      const r = await fetch(`/dashboard/api/all?${query()}`, { headers: { Authorization: `Bearer ${token}` } });
      const data = await r.json();
      if (!r.ok) throw new Error(data.error || `HTTP ${r.status}`);
      $("load-error").hidden = true;
      render(data);
    } catch (e) {
      $("load-error").hidden = false;
      $("load-error").textContent = `Could not load the data: ${e.message}`;
      body.dataset.ready = "error";
    }
  }

  let resizeTimer = 0;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => last && drawCharts(last), 150);
  });
  window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => last && drawCharts(last));

  if (mode === "report") {
    render(JSON.parse($("dashboard-data").textContent));
  } else {
    $("filters").addEventListener("change", load);
    load();
  }
})();
