// cascade game-day dashboard: reads the run's stream (server-sent events,
// one snapshot a second) and redraws the report's charts with the report's
// own script (window.cascadeReport.draw) plus the live tables. It changes
// nothing: actions go through the cascade CLI with the token.
// body[data-updates] counts the snapshots drawn, for the browser test.
(function () {
  "use strict";

  function $(id) { return document.getElementById(id); }
  function secs(v) { return v == null ? "–" : (+v).toFixed(1) + " s"; }
  function cell(tr, text, cls) {
    var td = document.createElement("td");
    td.textContent = text == null ? "" : String(text);
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }
  function fill(bodyId, emptyId, rows, build) {
    var body = $(bodyId);
    body.textContent = "";
    rows.forEach(function (r) {
      var tr = document.createElement("tr");
      build(tr, r);
      body.appendChild(tr);
    });
    $(emptyId).hidden = rows.length > 0;
  }

  var updates = 0;
  function render(s) {
    var st = $("state");
    st.textContent = s.state.toUpperCase();
    st.className = "verdict v-" + s.state;
    document.body.dataset.state = s.state;
    var clock = "run clock " + secs(s.t) + " · scenario clock " + secs(s.script_t);
    if (s.progress) {
      clock += " · planned " + secs(s.progress.planned_s) + " · target " + (+s.progress.target_rate).toFixed(1) + "/s · sent " +
        s.progress.scheduled + " · errors " + s.progress.errors + " · in flight " + s.progress.in_flight;
    }
    if (s.stopped_by) clock += " · stopped by " + s.stopped_by;
    $("clock").textContent = clock;

    var gate = $("gate");
    if (s.gate) {
      gate.hidden = false;
      gate.textContent = "Gate " + s.gate.name + " is closed since " + secs(s.gate.since_s) + ": the load holds " +
        (+s.gate.rate).toFixed(1) + "/s and the fault timeline waits. Open it with `cascade phase next` (it opens by itself at " +
        secs(s.gate.opens_by_s) + ").";
    } else if (s.next_gate) {
      gate.hidden = false;
      gate.textContent = "Next gate: " + s.next_gate.name + " at " + secs(s.next_gate.script_s) + " on the scenario's clock.";
    } else {
      gate.hidden = true;
    }

    fill("faults-body", "faults-empty", s.faults || [], function (tr, f) {
      cell(tr, f.name); cell(tr, f.kind); cell(tr, f.target + (f.replicas && f.replicas !== f.target ? " (" + f.replicas + ")" : ""));
      cell(tr, secs(f.since_s) + (f.ends_s ? " → " + secs(f.ends_s) : ""));
      cell(tr, f.manual ? f.by : "scenario"); cell(tr, f.fired + " times");
    });
    fill("safety-body", "safety-empty", s.safety || [], function (tr, c) {
      var state = c.no_data ? "pending" : (c.pass ? "pass" : "fail");
      cell(tr, c.no_data ? "NO DATA" : (c.pass ? "OK" : "BREACHED"), "st-" + state);
      cell(tr, c.name); cell(tr, c.measured || "–"); cell(tr, c.bound || "–"); cell(tr, secs(c.window_s)); cell(tr, c.on_breach);
      cell(tr, c.evidence || "");
    });
    var halts = $("halts");
    halts.textContent = "";
    (s.halts || []).forEach(function (h) {
      var d = document.createElement("div");
      d.className = "halt";
      d.textContent = "HALT at " + secs(h.t) + ": " + h.objective + " measured " + h.measured + " over " + secs(h.window_s) +
        " (bound " + h.bound + "); removed " + (h.removed.length ? h.removed.join(", ") : "no fault") + "; " + (h.stop ? "the run stopped" : "the run continued");
      halts.appendChild(d);
    });
    fill("slo-body", "slo-empty", s.slo || [], function (tr, o) {
      cell(tr, o.state.toUpperCase(), "st-" + o.state); cell(tr, o.name); cell(tr, o.phase); cell(tr, o.measured || "–");
      cell(tr, o.bound); cell(tr, o.evidence);
    });
    $("log").textContent = (s.log || []).join("\n");
    if (s.charts) window.cascadeReport.draw(s.charts);
    if (s.error) console.warn("cascade dashboard: " + s.error);
    updates++;
    document.body.dataset.updates = String(updates);
    document.body.dataset.t = String(s.t);
  }

  function handle(ev) {
    try {
      render(JSON.parse(ev.data));
    } catch (err) {
      console.error("cascade dashboard: " + (err && err.stack || err));
    }
  }

  var es = new EventSource("/v1/stream");
  es.addEventListener("snapshot", handle);
  es.addEventListener("end", function (ev) {
    handle(ev);
    document.body.dataset.ended = "1";
    es.close();
  });
  es.onerror = function () {
    if (document.body.dataset.ended !== "1") $("state").textContent = "DISCONNECTED";
  };
})();
