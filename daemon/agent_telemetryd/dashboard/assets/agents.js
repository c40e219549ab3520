// Models (calls, tokens, cost, latency, errors), tokens and cost over time, and tools.
// A cost that could not be priced is "unknown", never 0.
(function () {
  "use strict";
  const D = window.agentTelemetry;
  const $ = D.$;

  function pricesNote(prices, unpriced) {
    if (!prices) return "";
    const table = `Costs are what the agents reported, else tokens × the price table of ${prices.version}`;
    const own = prices.overridden && prices.overridden.length ? ` with your config's prices for ${prices.overridden.join(", ")}` : "";
    const unknown = unpriced
      ? ` ${D.fmt(unpriced)} calls have an unknown cost (a model with no price, or no tokens reported): they are left out of the sums, not counted as 0.`
      : "";
    return `${table}${own}.${unknown}`;
  }

  function fillModels(m) {
    const tbody = D.tbody("models");
    for (const r of m.models) {
      const tr = tbody.appendChild(D.el("tr"));
      tr.dataset.model = r.model === null ? "" : r.model;
      const name = D.cell(tr, "");
      if (r.model === null) name.textContent = "(no model named)";
      else name.appendChild(D.link(r.model, { model: r.model, run: "" }));
      D.cell(tr, r.provider || "–");
      D.cell(tr, D.fmt(r.calls), "num");
      D.cell(tr, D.fmt(r.input_tokens), "num");
      D.cell(tr, D.fmt(r.output_tokens), "num");
      D.cell(tr, D.fmt(r.cache_read_tokens), "num");
      const cost = D.cell(tr, D.costText(r.cost_usd, r.unpriced_calls), "num");
      if (r.cost_usd === null) cost.classList.add("unknown");
      D.cell(tr, D.ms(r.p50_ms), "num");
      D.cell(tr, D.ms(r.p95_ms), "num");
      D.cell(tr, D.pct(r.error_rate), r.errors ? "num bad" : "num");
    }
    if (!m.models.length) D.emptyRow(tbody, "no LLM call in range (an event with a model or token counts)", 10);
    const foot = $("models").querySelector("tfoot");
    foot.replaceChildren();
    if (m.models.length) {
      const t = m.totals;
      const tr = foot.appendChild(D.el("tr"));
      tr.dataset.total = "1";
      D.cell(tr, "All models");
      D.cell(tr, "");
      D.cell(tr, D.fmt(t.calls), "num");
      D.cell(tr, D.fmt(t.input_tokens), "num");
      D.cell(tr, D.fmt(t.output_tokens), "num");
      D.cell(tr, "");
      D.cell(tr, D.costText(t.cost_usd, t.unpriced_calls), "num");
      for (let i = 0; i < 3; i++) D.cell(tr, "");
    }
    $("prices-note").textContent = pricesNote(m.prices, m.totals.unpriced_calls);
  }

  function fillTools(t) {
    const tbody = D.tbody("tools");
    for (const r of t.tools) {
      const tr = tbody.appendChild(D.el("tr"));
      tr.dataset.tool = r.tool;
      D.cell(tr, "").appendChild(D.link(r.tool, { tool: r.tool, run: "" }));
      D.cell(tr, D.fmt(r.calls), "num");
      D.cell(tr, D.fmt(r.errors), r.errors ? "num bad" : "num");
      D.cell(tr, D.pct(r.error_rate), "num");
      D.cell(tr, D.ms(r.p50_ms), "num");
      D.cell(tr, D.ms(r.p95_ms), "num");
      D.bar(tr, r.error_rate || 0, "errors");
    }
    if (!t.tools.length) D.emptyRow(tbody, "no tool call in range (an event with a tool name)", 7);
  }

  // The same series as a table (the buckets with calls): the numbers behind the bars.
  function fillCostTable(c) {
    const tbody = D.tbody("cost-table");
    $("cost-table-unit").textContent = D.bucketWord(c ? c.bucket : "hour");
    const filled = c ? c.series.filter((p) => p.calls) : [];
    for (const p of filled.reverse()) {
      const tr = tbody.appendChild(D.el("tr"));
      tr.dataset.t = String(p.t);
      D.cell(tr, D.when(p.t));
      D.cell(tr, D.fmt(p.calls), "num");
      D.cell(tr, D.fmt(p.input_tokens), "num");
      D.cell(tr, D.fmt(p.output_tokens), "num");
      const cost = D.cell(tr, D.costText(p.cost_usd, p.unpriced_calls), "num");
      if (p.cost_usd === null) cost.classList.add("unknown");
    }
    if (!filled.length) D.emptyRow(tbody, "no LLM call in range", 5);
  }

  function drawCost(d) {
    D.destroyChart("chart-cost");
    D.destroyChart("chart-tokens");
    const c = d.cost;
    const series = c ? c.series : [];
    const unpriced = series.reduce((n, p) => n + p.unpriced_calls, 0);
    $("cost-unpriced").hidden = !unpriced;
    $("cost-unpriced").textContent = unpriced ? `${D.fmt(unpriced)} calls in these buckets have an unknown cost and are not in the bars.` : "";
    for (const id of ["chart-cost", "chart-tokens"]) $(id).hidden = !series.length;
    for (const id of ["cost-none", "tokens-none"]) $(id).hidden = series.length > 0;
    if (!series.length) return;
    const unit = D.bucketWord(c.bucket);
    $("cost-unit").textContent = `USD per ${unit}`;
    $("tokens-unit").textContent = `tokens per ${unit}`;
    const step = D.bucketMs(c.bucket) / 1000;
    const starts = series.map((p) => p.t);
    const xs = D.middles(starts, step);
    const range = D.xRange(c.filters, starts, step, d.generated_ms);
    D.chart("chart-cost", {
      series: [{ label: "Cost (USD)", stroke: D.cssVar("--accent"), fill: D.cssVar("--bar"), paths: D.barsPath(step),
        points: { show: false }, value: (u, v) => D.money(v) }],
      data: [xs, series.map((p) => p.cost_usd)],
      axisLabel: `USD / ${unit}`,
      range,
      step,
    });
    D.chart("chart-tokens", {
      series: [
        { label: "Input tokens", stroke: D.cssVar("--accent"), fill: D.cssVar("--bar"), paths: D.barsPath(step), points: { show: false } },
        { label: "Output tokens", stroke: D.cssVar("--p95"), fill: D.cssVar("--p95"), paths: D.barsPath(step), points: { show: false } },
      ],
      data: [xs, series.map((p) => p.input_tokens), series.map((p) => p.output_tokens)],
      axisLabel: `tokens / ${unit}`,
      range,
      step,
    });
  }

  D.views.models = {
    render(d) {
      if (d.models) fillModels(d.models);
      fillCostTable(d.cost);
    },
    show(state, d) {
      drawCost(d);
    },
    draw: drawCost,
  };
  D.views.tools = {
    render(d) {
      if (d.tools) fillTools(d.tools);
    },
  };
})();
