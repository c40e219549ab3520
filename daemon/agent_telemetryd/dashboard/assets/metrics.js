// OpenTelemetry metric series (sums per bucket, gauges and histograms as means), one
// chart per metric and agent.
(function () {
  "use strict";
  const D = window.agentTelemetry;
  const $ = D.$;
  const SHOWN = 24; // charts drawn; the rest are named
  let loadedKey = null;
  let data = null;
  let drawn = 0;

  function draw() {
    for (let i = 0; i < drawn; i++) D.destroyChart(`metric-chart-${i}`);
    const holder = $("metric-charts");
    holder.replaceChildren();
    drawn = 0;
    const series = data ? data.series : [];
    $("metrics-empty").hidden = series.length > 0;
    if (!series.length) return;
    const step = D.bucketMs(data.bucket) / 1000;
    const starts = series.flatMap((s) => s.points.map((p) => p[0])).sort((a, b) => a - b);
    const range = D.xRange(data.filters, starts, step, D.all ? D.all.generated_ms : Date.now());
    const unit = D.bucketWord(data.bucket);
    series.slice(0, SHOWN).forEach((s, i) => {
      const box = holder.appendChild(D.el("div", null, "metric"));
      box.dataset.name = s.name;
      box.dataset.agent = s.agent || "";
      let what = `mean per ${unit}`;
      if (s.type === "sum") {
        const total = s.points.reduce((sum, p) => sum + p[1], 0);
        box.dataset.total = String(total);
        what = `added per ${unit}; ${D.fmt(total)} in range`;
      }
      box.appendChild(D.el("h3", `${s.name}${s.unit ? " (" + s.unit + ")" : ""} — ${s.agent || "no agent"}, ${s.type}, ${what}`));
      const chart = box.appendChild(D.el("div", null, "chart small"));
      chart.id = `metric-chart-${i}`;
      drawn = i + 1;
      D.chart(chart.id, {
        series: [{ label: s.name, stroke: D.cssVar("--accent"), width: 2, points: { show: true, size: 5 } }],
        data: [D.middles(s.points.map((p) => p[0]), step), s.points.map((p) => p[1])],
        axisLabel: s.unit || "value",
        range,
        step,
        height: 180,
      });
    });
    if (series.length > SHOWN) {
      const rest = series.slice(SHOWN).map((s) => `${s.name} (${s.agent || "no agent"})`);
      holder.appendChild(D.el("p", `${rest.length} more series, choose one with the Event filter: ${rest.join(", ")}`, "note"));
    }
  }

  D.views.metrics = {
    async show(state, d, current) {
      const key = D.filterKey(state);
      if (key !== loadedKey) {
        const found = await D.api("metrics", D.query(state));
        if (!current()) return;
        data = found;
        loadedKey = key;
      }
      draw();
    },
    draw,
  };
})();
