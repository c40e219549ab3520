// The events explorer: the latest events under the filters, newest first, a page at a
// time, each with its properties and, for an error, its type and message.
(function () {
  "use strict";
  const D = window.agentTelemetry;
  const $ = D.$;
  let loadedKey = null;
  let first = null;
  let page = null;

  function errorCell(tr, e) {
    const td = D.cell(tr, "");
    if (!e.error) return;
    td.className = "bad";
    td.appendChild(D.el("b", e.error_type || "error"));
    if (e.error_message) td.appendChild(D.el("div", e.error_message, "error-message"));
  }

  function fill(data) {
    page = data;
    const tbody = D.tbody("explore");
    for (const e of data.events) {
      const tr = tbody.appendChild(D.el("tr", null, e.error ? "event error" : "event"));
      tr.dataset.id = String(e.id);
      tr.dataset.uuid = e.uuid;
      tr.dataset.event = e.event;
      const received = D.cell(tr, D.when(Date.parse(e.received_at)));
      received.title = `received ${e.received_at}; sent as of ${e.timestamp}`;
      const name = D.cell(tr, e.event);
      if (e.trace_id) {
        const run = name.appendChild(D.el("div", null, "note"));
        run.appendChild(D.link("its run", { view: "runs", run: e.trace_id }));
      }
      D.cell(tr, e.agent);
      errorCell(tr, e);
      D.cell(tr, "").appendChild(D.propertyList(e.properties));
    }
    if (!data.events.length) D.emptyRow(tbody, "no event matches these filters", 5);
    const report = D.mode === "report";
    $("explore-older").hidden = report || !data.next;
    $("explore-newest").hidden = report || data === first;
    $("explore-note").textContent = report && data.next ? `This report holds the latest ${data.events.length} events.` : "";
  }

  async function turn(before) {
    fill(before ? await D.api("explore", D.query(D.state, { before })) : first);
  }
  for (const [id, cursor] of [["explore-older", () => page.next], ["explore-newest", () => null]]) {
    $(id).addEventListener("click", () => {
      turn(cursor()).catch((error) => {
        $("explore-note").textContent = `Could not load the events: ${error.message}`;
      });
    });
  }

  D.views.explore = {
    // The first page is asked for when the view is first shown under these filters.
    async show(state, d, current) {
      const key = D.filterKey(state);
      if (key === loadedKey) return;
      const data = await D.api("explore", D.query(state));
      if (!current()) return;
      loadedKey = key;
      first = data;
      fill(data);
    },
  };
})();
