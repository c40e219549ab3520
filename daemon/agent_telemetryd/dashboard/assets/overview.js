// The overview: totals, events and errors over time, durations per event name, by agent
// and by event, consent, uploads, drops and rejects.
(function () {
  "use strict";
  const D = window.agentTelemetry;
  const $ = D.$;

  function setOutput(id, text, value) {
    const el = $(id);
    el.textContent = text;
    if (value !== undefined) el.dataset.value = String(value);
  }

  function fillBreakdown(id, data, total, key) {
    const tbody = D.tbody(id);
    const max = data.rows.reduce((m, r) => Math.max(m, r.events), 0) || 1;
    for (const r of data.rows) {
      const tr = tbody.appendChild(D.el("tr"));
      tr.dataset.name = r.name;
      tr.dataset.events = String(r.events);
      tr.dataset.errors = String(r.errors);
      D.cell(tr, "").appendChild(D.link(r.name, { [key]: r.name, run: "" }));
      D.cell(tr, D.fmt(r.events), "num");
      D.cell(tr, D.fmt(r.errors), "num");
      D.cell(tr, D.pct(r.error_rate), "num");
      D.bar(tr, r.events / max);
    }
    if (data.others.names) {
      const tr = tbody.appendChild(D.el("tr"));
      D.cell(tr, `${data.others.names} more`);
      D.cell(tr, D.fmt(data.others.events), "num");
      D.cell(tr, D.fmt(data.others.errors), "num");
      D.cell(tr, D.pct(data.others.events ? data.others.errors / data.others.events : null), "num");
      D.cell(tr, "");
    }
    if (!data.rows.length) D.emptyRow(tbody, total ? "none in range" : "no events yet", 5);
  }

  // Durations differ by kind (a whole run, an LLM call, a tool call): one percentile
  // over all of them would describe none, so they are listed per event name.
  function fillDurations(d) {
    const tbody = D.tbody("durations-by-event");
    for (const r of d.by_event) {
      const tr = tbody.appendChild(D.el("tr"));
      tr.dataset.name = r.name;
      D.cell(tr, "").appendChild(D.link(r.name, { event: r.name, run: "" }));
      D.cell(tr, D.fmt(r.count), "num");
      D.cell(tr, D.ms(r.p50_ms), "num");
      D.cell(tr, D.ms(r.p95_ms), "num");
      D.cell(tr, D.ms(r.max_ms), "num");
    }
    if (!d.by_event.length) D.emptyRow(tbody, "no event with a numeric duration_ms in range", 5);
  }

  function fillHealth(h, uploads) {
    const consent = $("consent");
    consent.dataset.mode = h.mode;
    consent.textContent = `mode: ${h.mode}`;
    const facts = $("consent-facts");
    facts.replaceChildren();
    const add = (k, v) => facts.append(D.el("dt", k), D.el("dd", v));
    add("Mode", `${h.mode} (set by ${h.mode_source})`);
    if (h.mode_reason) add("Why", h.mode_reason);
    if (h.mode_since) add("Since", String(h.mode_since));
    add("Sender", h.sender || "none");
    add("Daemon", h.running ? "running" : "not running");
    const b = h.buffer || {};
    add("Stored", `${D.fmt(b.events)} events (${D.fmt(b.pending_upload)} pending upload, ${D.fmt(b.sent)} sent, ${D.fmt(b.local_only)} local only, ${D.fmt(b.rate_limited)} rate-limited, ${D.fmt(b.quarantined)} quarantined)`);
    const limit = h.rate_limit || {};
    if (limit.events) add("Waiting", `${D.fmt(limit.events)} events wait for the upload rate limit (${limit.rule} per source, ${limit.all_sources_rule} for all sources together); later uploads send them, oldest first, by ${D.when(limit.all_eligible_by)}`);
    const lastUpload = h.last_upload;
    add("Last upload", !lastUpload ? "never" : typeof lastUpload === "string" ? D.when(lastUpload) : JSON.stringify(lastUpload));

    const tbody = D.tbody("uploads");
    const note = $("uploads-empty");
    note.hidden = uploads.recent.length > 0;
    note.textContent = h.mode === "upload"
      ? "Nothing uploaded yet. Uploads run on a schedule; `agent-telemetry flush` runs one now."
      : "Nothing uploaded: the mode is not upload. `agent-telemetry enable` turns uploading on.";
    for (const r of uploads.recent) {
      const tr = tbody.appendChild(D.el("tr"));
      D.cell(tr, D.when(r.sent_ms));
      D.cell(tr, r.backend);
      D.cell(tr, D.fmt(r.events), "num");
      D.cell(tr, r.status + (r.http_status ? ` (${r.http_status})` : "") + (r.error ? `: ${r.error}` : ""));
    }

    const c = h.counters || {};
    const acc = D.tbody("accounting");
    const line = (label, value, key) => {
      const tr = acc.appendChild(D.el("tr"));
      tr.dataset.counter = key;
      D.cell(tr, label);
      D.cell(tr, D.fmt(value), "num");
    };
    line("Received", c.received, "received");
    line("Stored", c.stored, "stored");
    line("Rejected (invalid)", c.rejected, "rejected");
    const reasons = Object.entries(c.dropped_by_reason || {});
    for (const [reason, n] of reasons) line(`Dropped: ${reason}`, n, `dropped.${reason}`);
    if (!reasons.length) line("Dropped", c.dropped || 0, "dropped");
    setOutput("dropped", D.fmt(c.dropped || 0), c.dropped || 0);
    setOutput("rejected", D.fmt(c.rejected || 0), c.rejected || 0);
  }

  function fillCards(d) {
    const t = d.totals;
    setOutput("total-events", D.fmt(t.events), t.events);
    setOutput("error-rate", D.pct(t.error_rate), t.error_rate === null ? "" : t.error_rate);
    $("total-errors").textContent = `${D.fmt(t.errors)} errors`;
    $("total-errors").dataset.value = String(t.errors);
    const m = d.models ? d.models.totals : null;
    setOutput("llm-calls", m ? D.fmt(m.calls) : "–", m ? m.calls : "");
    $("llm-tokens").textContent = m ? `${D.fmt(m.input_tokens)} tokens in, ${D.fmt(m.output_tokens)} out` : "";
    setOutput("total-cost", m ? D.money(m.calls ? m.cost_usd : 0) : "–", m && m.cost_usd !== null ? m.cost_usd : "");
    $("cost-note").textContent = !m ? "" : m.unpriced_calls
      ? `plus ${D.fmt(m.unpriced_calls)} calls of unknown cost`
      : "of the calls in range";
  }

  function draw(d, state) {
    const series = d.over_time;
    const show = series.length > 0;
    for (const id of ["panel-events", "panel-errors", "panel-durations"]) $(id).hidden = !show;
    for (const id of ["chart-events", "chart-errors", "chart-durations"]) D.destroyChart(id);
    if (!show) return;
    const bucket = d.filters.bucket;
    const step = D.bucketMs(bucket) / 1000;
    const starts = series.map((p) => p.t_ms);
    const xs = D.middles(starts, step);
    const range = D.xRange(d.filters, starts, step, d.generated_ms);
    const unit = D.bucketWord(bucket);
    $("events-unit").textContent = `events per ${unit}`;
    D.chart("chart-events", {
      series: [
        { label: "Events", stroke: D.cssVar("--accent"), fill: D.cssVar("--bar"), paths: D.barsPath(step), points: { show: false } },
        { label: "Errors", stroke: D.cssVar("--error"), fill: D.cssVar("--error"), paths: D.barsPath(step), points: { show: false } },
      ],
      data: [xs, series.map((p) => p.events), series.map((p) => p.errors)],
      axisLabel: `events / ${unit}`,
      range,
      step,
    });
    D.chart("chart-errors", {
      series: [{ label: "Error rate %", stroke: D.cssVar("--error"), width: 2, spanGaps: false,
        value: (u, v) => (v === null ? "–" : v.toFixed(2) + "%") }],
      data: [xs, series.map((p) => (p.error_rate === null ? null : p.error_rate * 100))],
      axisLabel: "% errors",
      range,
      step,
    });
    drawDurations(d, state, range, step);
  }

  function drawDurations(d, state, range, step) {
    const dur = d.durations.over_time;
    const event = d.filters.event;
    const chartable = Boolean(event) && dur.length > 0;
    $("chart-durations").hidden = !chartable;
    $("durations-of").textContent = event ? `${event}: p50 and p95 of duration_ms` : "";
    $("durations-hint").textContent = !event
      ? "Choose an event name (in the filters or under “Durations by event name”) to chart its durations: a run, an LLM call and a tool call take different times, so one percentile over all of them would describe none."
      : dur.length ? "" : `No ${event} event in this range has a numeric duration_ms property.`;
    if (!chartable) return;
    D.chart("chart-durations", {
      series: [
        { label: "p50", stroke: D.cssVar("--accent"), width: 2, value: (u, v) => D.ms(v) },
        { label: "p95", stroke: D.cssVar("--p95"), width: 2, value: (u, v) => D.ms(v) },
      ],
      data: [D.middles(dur.map((p) => p.t_ms), step), dur.map((p) => p.p50_ms), dur.map((p) => p.p95_ms)],
      axisLabel: "ms",
      range,
      step,
    });
  }

  D.views.overview = {
    render(d) {
      const anything = d.span.first_ms !== null;
      $("empty").hidden = anything;
      $("no-match").hidden = !anything || d.totals.events > 0;
      if (d.http_url) $("curl-example").textContent = $("curl-example").textContent.replace("http://127.0.0.1:7468", d.http_url);
      fillCards(d);
      fillBreakdown("by-agent", d.by_agent, d.totals.events, "agent");
      fillBreakdown("by-event", d.by_event, d.totals.events, "event");
      fillDurations(d.durations);
      fillHealth(d.health, d.uploads);
    },
    show(state, d) {
      draw(d, state);
    },
    draw,
  };
})();
