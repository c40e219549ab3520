// Runs: one row per trace, newest first, paged; a chosen run's spans as a waterfall (in
// order, each a bar offset by its start), with each span's properties a click away.
(function () {
  "use strict";
  const D = window.agentTelemetry;
  const $ = D.$;
  const details = new Map(); // trace id -> the run's spans, for the filters loaded
  let page = null; // the runs page shown
  let first = null; // the first page (from the page's first load)

  function fillRuns(data, state) {
    page = data;
    const tbody = D.tbody("runs");
    for (const r of data.runs) {
      const tr = tbody.appendChild(D.el("tr", null, "run"));
      tr.dataset.trace = r.trace_id;
      if (r.trace_id === state.run) tr.classList.add("selected");
      D.cell(tr, D.when(r.start_ms));
      const root = D.cell(tr, "");
      root.appendChild(D.link(r.root || "(root not arrived yet)", { view: "runs", run: r.trace_id }));
      D.cell(tr, r.agent);
      D.cell(tr, D.ms(r.duration_ms), "num");
      D.cell(tr, D.fmt(r.spans), "num");
      D.cell(tr, D.fmt(r.llm_calls), "num");
      D.cell(tr, D.fmt(r.input_tokens), "num");
      D.cell(tr, D.fmt(r.output_tokens), "num");
      const cost = D.cell(tr, D.costText(r.cost_usd, r.unpriced_calls), "num");
      if (r.cost_usd === null) cost.classList.add("unknown");
      D.cell(tr, D.fmt(r.errors), r.errors ? "num bad" : "num");
      tr.addEventListener("click", (event) => {
        if (event.target.closest("a")) return; // the link navigates by itself
        D.go({ view: "runs", run: r.trace_id });
      });
    }
    if (!data.runs.length) D.emptyRow(tbody, "no run in range: runs are events with a trace id (the shims' span(), or OTLP traces)", 10);
    const report = D.mode === "report";
    $("runs-older").hidden = report || !data.next;
    $("runs-newest").hidden = report || data === first;
    $("runs-note").textContent = report && first && first.next ? `This report holds the latest ${first.runs.length} runs.` : "";
  }

  function bounds(spans) {
    let start = Infinity;
    let end = -Infinity;
    for (const s of spans) {
      start = Math.min(start, s.start_ms);
      end = Math.max(end, s.start_ms + (s.duration_ms || 0));
    }
    return { start, total: Math.max(end - start, 1) };
  }

  function spanRow(tbody, s, start, total) {
    const tr = tbody.appendChild(D.el("tr", null, s.error ? "span error" : "span"));
    tr.dataset.spanId = s.span_id || "";
    tr.dataset.depth = String(s.depth);
    tr.dataset.name = s.name;
    const name = D.cell(tr, "", "span-name");
    name.style.paddingLeft = `${6 + s.depth * 18}px`; // CSSOM: allowed by the CSP
    const toggle = name.appendChild(D.el("button", s.name, "toggle"));
    toggle.type = "button";
    toggle.setAttribute("aria-expanded", "false");
    // What the span called, when it says: the model (the one that answered, as the models
    // view names it) or the tool.
    const p = s.properties || {};
    const called = p["gen_ai.response.model"] || p["gen_ai.request.model"] || p["gen_ai.tool.name"];
    if (typeof called === "string") name.appendChild(D.el("span", called, "tag"));
    if (s.span_id === null) name.appendChild(D.el("span", "event", "tag"));
    if (s.error) name.appendChild(D.el("span", s.error_type || "error", "tag bad"));
    D.cell(tr, `+${D.ms(s.start_ms - start)}`, "num");
    D.cell(tr, s.duration_ms === null ? "–" : D.ms(s.duration_ms), "num");
    const track = D.cell(tr, "").appendChild(D.el("div", null, "track"));
    const bar = track.appendChild(D.el("div", null, s.duration_ms === null ? "mark" : "span-bar"));
    bar.style.left = `${(((s.start_ms - start) / total) * 100).toFixed(2)}%`;
    if (s.duration_ms !== null) bar.style.width = `${Math.max(0.3, (s.duration_ms / total) * 100).toFixed(2)}%`;
    bar.title = `${s.name}: ${D.ms(s.duration_ms)} from +${D.ms(s.start_ms - start)}`;

    const more = tbody.appendChild(D.el("tr", null, "span-props"));
    more.hidden = true;
    const td = D.cell(more, "");
    td.colSpan = 4;
    if (s.error) {
      const words = [s.error_type, s.error_message].filter((w) => w).join(": ");
      td.appendChild(D.el("p", `Error${words ? ": " + words : ""}`, "bad"));
    }
    td.appendChild(D.el("p", `${s.agent || ""} · ${new Date(s.start_ms).toISOString()}${s.span_id ? " · span " + s.span_id : ""}`, "note"));
    td.appendChild(D.propertyList(s.properties));
    toggle.addEventListener("click", () => {
      more.hidden = !more.hidden;
      toggle.setAttribute("aria-expanded", String(!more.hidden));
    });
  }

  function drawWaterfall(traceId, data) {
    const run = (page ? page.runs : []).find((r) => r.trace_id === traceId);
    const spans = data.spans;
    $("waterfall-panel").hidden = false;
    $("waterfall-title").textContent = `Run ${run && run.root ? run.root : spans.length ? spans[0].name : traceId}`;
    const facts = [`trace ${traceId}`];
    if (run) facts.push(`agent ${run.agent}`, `started ${D.when(run.start_ms)}`, `${D.ms(run.duration_ms)}`, `cost ${D.costText(run.cost_usd, run.unpriced_calls)}`);
    $("waterfall-facts").textContent = facts.join(" · ");
    const tbody = D.tbody("waterfall");
    if (!spans.length) {
      D.emptyRow(tbody, "no event of this run is in the buffer", 4);
      return;
    }
    const { start, total } = bounds(spans);
    for (const s of spans) spanRow(tbody, s, start, total);
    $("waterfall-note").hidden = !data.truncated;
    $("waterfall-note").textContent = data.truncated ? `Only the first ${spans.length} events of this run are shown.` : "";
  }

  async function turn(before) {
    const data = before ? await D.api("runs", D.query(D.state, { before })) : first;
    fillRuns(data, D.state);
  }
  for (const [id, cursor] of [["runs-older", () => page.next], ["runs-newest", () => null]]) {
    D.$(id).addEventListener("click", () => {
      turn(cursor()).catch((error) => {
        $("runs-note").textContent = `Could not load the runs: ${error.message}`;
      });
    });
  }

  D.views.runs = {
    render(d, state) {
      details.clear();
      first = d.runs || { runs: [], next: null };
      fillRuns(first, state);
    },
    async show(state, d, current) {
      for (const tr of document.querySelectorAll("#runs tr.run")) tr.classList.toggle("selected", tr.dataset.trace === state.run);
      if (!state.run) {
        $("waterfall-panel").hidden = true;
        return;
      }
      if (!details.has(state.run)) {
        // The run shown so far is not the one asked for: hidden, so that an error does
        // not stand above another run's spans.
        $("waterfall-panel").hidden = true;
        const data = await D.api(`run/${encodeURIComponent(state.run)}`, "");
        details.set(state.run, data);
      }
      if (current()) drawWaterfall(state.run, details.get(state.run));
    },
  };
})();
