// cascade report: draws the run's charts with uPlot from the JSON embedded
// in the page. Every chart marks itself with data-rendered = the number of
// data points (or timeline segments) it drew, and the body gets
// data-charts-done="1" when all are drawn, so a headless browser can check
// that each chart rendered with data. Any failure is logged with
// console.error, which the browser test treats as a failure.
//
// The live dashboard of a game day draws with this same script: it calls
// window.cascadeReport.draw(data) with fresh data every second, which
// redraws every chart.
(function () {
  "use strict";

  var D = null;
  function prepare(raw) {
    var d = raw;
    d.faults = d.faults || [];
    d.causes = d.causes || [];
    d.x = d.x || [];
    // Points sit in the middle of their intervals; empty points at the
    // start (0, or where a live window starts) and at the end make every
    // chart span the whole run by itself, so zooming stays free (a range
    // function that forced [0, end] would undo every zoom).
    if (d.x.length > 0) {
      var pad = function (a) { return a ? [null].concat(a, [null]) : a; };
      d.x = [d.start || 0].concat(d.x, [d.end]);
      ["p50", "p90", "p99", "max"].forEach(function (k) { d.latency[k] = pad(d.latency[k]); });
      d.target = pad(d.target);
      d.achieved = pad(d.achieved);
      d.errorRate = pad(d.errorRate);
      d.causes.forEach(function (c) { c.rate = pad(c.rate); });
    }
    return d;
  }
  var SYNC = "cascade";
  var charts = [];
  var FAULT_FILLS = ["rgba(250,82,82,0.13)", "rgba(121,80,242,0.13)", "rgba(253,126,20,0.15)", "rgba(34,139,230,0.13)", "rgba(64,192,87,0.13)"];
  var FAULT_TEXT = ["#c92a2a", "#5f3dc4", "#d9480f", "#1864ab", "#2b8a3e"];

  function fmt(v, digits) {
    if (v == null || isNaN(v)) return "–";
    return (+v).toFixed(digits);
  }
  function fmtMs(v) {
    if (v == null || isNaN(v)) return "–";
    if (v >= 1000) return (v / 1000).toFixed(3) + " s";
    if (v >= 100) return v.toFixed(0) + " ms";
    if (v >= 10) return v.toFixed(1) + " ms";
    return v.toFixed(2) + " ms";
  }
  function countDefined(arr) {
    var n = 0;
    for (var i = 0; i < arr.length; i++) if (arr[i] != null) n++;
    return n;
  }

  // Fault windows: shaded under the series, labelled on top, on every chart.
  // overlay also tints over the series, for charts whose opaque fills would
  // hide the shading underneath.
  function faultPlugin(el, overlay) {
    function x(u, v) { return u.valToPos(v, "x", true); }
    function shade(u) {
      var ctx = u.ctx, b = u.bbox, shaded = 0;
      ctx.save();
      D.faults.forEach(function (f, i) {
        var l = Math.max(x(u, f.start), b.left), r = Math.min(x(u, f.end), b.left + b.width);
        if (r <= l) return;
        ctx.fillStyle = FAULT_FILLS[i % FAULT_FILLS.length];
        ctx.fillRect(l, b.top, r - l, b.height);
        shaded++;
      });
      ctx.restore();
      // How many windows are visible on this chart now: tests read it.
      el.dataset.faults = String(shaded);
    }
    return {
      hooks: {
        drawClear: [function (u) { shade(u); }],
        draw: [function (u) {
          if (overlay) shade(u);
          labels(u);
        }]
      }
    };
    function labels(u) {
      var ctx = u.ctx, b = u.bbox, dpr = window.devicePixelRatio || 1;
      ctx.save();
      ctx.font = (11 * dpr) + "px system-ui, sans-serif";
      ctx.textBaseline = "top";
      ctx.textAlign = "left";
      ctx.lineJoin = "round";
      D.faults.forEach(function (f, i) {
        var l = Math.max(x(u, f.start), b.left), r = Math.min(x(u, f.end), b.left + b.width);
        if (r <= l) return;
        var label = f.name + " (" + f.kind + " on " + f.target + (f.open ? (D.live ? ", active now" : ", still active at the end") : "") + ")";
        var y = b.top + (2 + 14 * (i % 4)) * dpr, maxW = Math.max(r - l - 6 * dpr, 40 * dpr);
        halo(ctx, label, l + 4 * dpr, y, maxW, FAULT_TEXT[i % FAULT_TEXT.length], dpr);
      });
      ctx.restore();
    }
  }

  // halo writes text with a white outline, legible over lines and fills.
  function halo(ctx, text, x, y, maxW, colour, dpr) {
    ctx.strokeStyle = "rgba(255,255,255,0.9)";
    ctx.lineWidth = 3 * dpr;
    ctx.strokeText(text, x, y, maxW);
    ctx.fillStyle = colour;
    ctx.fillText(text, x, y, maxW);
  }

  // Zooming one chart zooms them all.
  var zooming = false;
  function syncZoom(u, key) {
    if (key !== "x" || zooming) return;
    zooming = true;
    var min = u.scales.x.min, max = u.scales.x.max;
    charts.forEach(function (c) { if (c.u !== u) c.u.setScale("x", { min: min, max: max }); });
    zooming = false;
  }

  function width(el) { return Math.max(el.clientWidth || 0, 320); }

  function make(el, opts, data, rendered) {
    opts.width = width(el);
    opts.height = opts.height || 260;
    opts.cursor = Object.assign({ sync: { key: SYNC }, drag: { x: true, y: false } }, opts.cursor || {});
    opts.plugins = (opts.plugins || []).concat([faultPlugin(el, opts.faultOverlay)]);
    opts.hooks = Object.assign({ setScale: [syncZoom] }, opts.hooks || {});
    opts.scales = Object.assign({ x: { time: false } }, opts.scales || {});
    opts.axes = opts.axes || [];
    opts.axes[0] = Object.assign({ label: "seconds into the run", values: function (u, vs) { return vs.map(function (v) { return v + "s"; }); } }, opts.axes[0] || {});
    // Same gutters on every chart, so one instant sits at the same x on all
    // of them: a left axis 90 px wide, and a right one 50 px wide (blank where
    // the chart has no second scale).
    if (opts.axes[1]) opts.axes[1].size = 90;
    if (!opts.axes.some(function (a) { return a && a.side === 1; })) {
      opts.axes.push({ side: 1, scale: (opts.axes[1] && opts.axes[1].scale) || "y", size: 50, label: " ", grid: { show: false }, ticks: { show: false },
        values: function (u, vs) { return vs.map(function () { return ""; }); } });
    }
    opts.series[0] = Object.assign({ label: "t", value: function (u, v) { return v == null ? "–" : fmt(v, 1) + " s"; } }, opts.series[0] || {});
    var u = new uPlot(opts, data, el);
    charts.push({ u: u, el: el });
    el.dataset.rendered = String(rendered);
    return u;
  }

  function latencyChart(el) {
    var L = D.latency;
    var series = [{},
      { label: "p50", stroke: "#1c7ed6", width: 1.5, value: function (u, v) { return fmtMs(v); } },
      { label: "p90", stroke: "#7048e8", width: 1.5, value: function (u, v) { return fmtMs(v); } },
      { label: "p99", stroke: "#e8590c", width: 2, value: function (u, v) { return fmtMs(v); } },
      { label: "max", stroke: "#868e96", width: 1, dash: [4, 4], value: function (u, v) { return fmtMs(v); } }];
    var data = [D.x, L.p50, L.p90, L.p99, L.max];
    make(el, {
      series: series,
      scales: { y: { range: function (u, min, max) { return [0, max > 0 ? max * 1.08 : 1]; } } },
      axes: [{}, { label: "latency", size: 70, values: function (u, vs) { return vs.map(fmtMs); } }]
    }, data, countDefined(L.p50) + countDefined(L.p90) + countDefined(L.p99) + countDefined(L.max));
  }

  function rateChart(el) {
    var series = [{}], data = [D.x], n = 0;
    if (D.target) {
      series.push({ label: "target", stroke: "#495057", width: 1.5, dash: [6, 4], value: function (u, v) { return fmt(v, 1) + "/s"; } });
      data.push(D.target);
      n += countDefined(D.target);
    }
    series.push({ label: "achieved", stroke: "#1971c2", width: 2, fill: "rgba(25,113,194,0.08)", value: function (u, v) { return fmt(v, 1) + "/s"; } });
    data.push(D.achieved);
    n += countDefined(D.achieved);
    make(el, {
      series: series,
      scales: { y: { range: function (u, min, max) { return [0, max > 0 ? max * 1.1 : 1]; } } },
      axes: [{}, { label: "requests/s", size: 60 }]
    }, data, n);
  }

  // Stacked by painting: series go from the top of the stack down, each
  // filled to zero with an opaque colour over the ones above it, so no band
  // arithmetic is needed; the legend shows each cause's own rate.
  function outcomesChart(el) {
    var causes = D.causes.slice().reverse();
    var cum = [], acc = D.x.map(function () { return 0; });
    var bottomUp = D.causes.map(function (c) {
      acc = acc.map(function (a, i) { return a + (c.rate[i] || 0); });
      return acc.map(function (a, i) { return c.rate[i] == null ? null : a; });
    });
    cum = bottomUp.reverse();
    var series = [{}], data = [D.x], n = 0;
    causes.forEach(function (c, k) {
      series.push({
        label: c.name + (c.layer && c.name !== "ok" ? " [" + c.layer + "]" : ""),
        stroke: c.color, fill: c.color, width: 1,
        value: function (u, v, si, i) { return i == null ? "–" : fmt(c.rate[i], 1) + "/s"; }
      });
      data.push(cum[k]);
      n += countDefined(c.rate);
    });
    series.push({ label: "error rate", stroke: "#212529", width: 1.5, dash: [3, 3], scale: "pct", value: function (u, v) { return v == null ? "–" : fmt(v, 2) + "%"; } });
    data.push(D.errorRate);
    make(el, {
      series: series,
      scales: {
        y: { range: function (u, min, max) { return [0, max > 0 ? max * 1.1 : 1]; } },
        pct: { range: function (u, min, max) { return [0, Math.min(100, Math.max(1, (max || 0) * 1.25))]; } }
      },
      faultOverlay: true,
      axes: [{}, { label: "requests/s", size: 60 },
        { side: 1, scale: "pct", label: "error rate", size: 50, grid: { show: false }, values: function (u, vs) { return vs.map(function (v) { return v + "%"; }); } }]
    }, data, n);
  }

  // State timeline: one lane per breaker, a coloured segment per state.
  var STATE_COLOURS = { closed: "#69db7c", half_open: "#ffd43b", open: "#fa5252", forced_open: "#c92a2a", disabled: "#adb5bd", unknown: "#868e96" };
  function stateName(level) { return level >= 0 && level < D.breakerStates.length ? D.breakerStates[level] : "unknown"; }

  // runs merges neighbouring steps in the same state: [{from, to, level}].
  function runs(xs, levels) {
    var out = [];
    for (var k = 0; k + 1 < xs.length; k++) {
      if (!(xs[k + 1] > xs[k])) continue;
      var last = out[out.length - 1];
      if (last && last.level === levels[k] && last.to === xs[k]) last.to = xs[k + 1];
      else out.push({ from: xs[k], to: xs[k + 1], level: levels[k] });
    }
    return out;
  }

  function breakersChart(el) {
    var B = D.breakers, lanes = B.names.length, segments = 0;
    var data = [B.x];
    var series = [{}];
    var laneRuns = B.names.map(function (name, lane) { return runs(B.x, B.values[lane]); });
    B.names.forEach(function (name, lane) {
      data.push(B.values[lane].map(function () { return lane; }));
      series.push({
        label: name, stroke: "#495057", width: 0, points: { show: false },
        paths: function () { return null; },
        value: function (u, v, si, i) { return i == null ? "–" : stateName(B.values[lane][i]).replace("_", "-"); }
      });
      segments += laneRuns[lane].length;
    });
    var drawLanes = function (u) {
      var ctx = u.ctx, b = u.bbox, dpr = window.devicePixelRatio || 1;
      var laneH = b.height / lanes, pad = Math.min(6 * dpr, laneH * 0.15);
      ctx.save();
      ctx.font = (11 * dpr) + "px system-ui, sans-serif";
      ctx.textBaseline = "middle";
      ctx.textAlign = "left";
      laneRuns.forEach(function (rs, lane) {
        var top = b.top + lane * laneH + pad, h = laneH - 2 * pad;
        rs.forEach(function (r0) {
          var l = Math.max(u.valToPos(r0.from, "x", true), b.left), r = Math.min(u.valToPos(r0.to, "x", true), b.left + b.width);
          if (r <= l) return;
          var st = stateName(r0.level);
          ctx.fillStyle = STATE_COLOURS[st] || STATE_COLOURS.unknown;
          ctx.fillRect(l, top, r - l, h);
          if (r - l > 50 * dpr) halo(ctx, st.replace("_", "-"), l + 4 * dpr, top + h / 2, r - l - 8 * dpr, "#212529", dpr);
        });
      });
      ctx.restore();
    };
    make(el, {
      height: 56 * lanes + 100,
      series: series,
      scales: { y: { range: [-0.5, lanes - 0.5], dir: -1 } },
      hooks: { draw: [drawLanes] },
      axes: [{}, {
        label: "breaker", grid: { show: false },
        splits: function () { return B.names.map(function (_, i) { return i; }); },
        values: function (u, vs) { return vs.map(function (v) { return B.names[v] || ""; }); }
      }]
    }, data, segments);
  }

  function replicasChart(el) {
    var R = D.replicas, series = [{}], data = [R.x], n = 0, maxV = 1;
    var palette = ["#1971c2", "#2f9e44", "#7048e8", "#e8590c", "#0c8599", "#862e9c"];
    var upIdx = {};
    R.names.forEach(function (name, i) {
      var up = R.upstreams[i];
      if (!(up in upIdx)) upIdx[up] = Object.keys(upIdx).length;
      var colour = palette[upIdx[up] % palette.length];
      var kind = R.kinds[i];
      series.push({
        label: name, stroke: kind === "replicas" ? colour : (kind === "ejected" ? "#e03131" : "#f08c00"),
        width: kind === "replicas" ? 2 : 1.5, dash: kind === "replicas" ? undefined : (kind === "ejected" ? [6, 3] : [2, 3]),
        paths: uPlot.paths.stepped({ align: 1 }), points: { show: false },
        value: function (u, v) { return v == null ? "–" : String(v); }
      });
      data.push(R.values[i]);
      n += R.values[i].length;
      R.values[i].forEach(function (v) { if (v > maxV) maxV = v; });
    });
    make(el, {
      height: 220,
      series: series,
      scales: { y: { range: [0, maxV + 1] } },
      axes: [{}, { label: "replicas", size: 60, incrs: [1, 2, 5, 10, 20, 50, 100] }]
    }, data, n);
  }

  var builders = { latency: latencyChart, rate: rateChart, outcomes: outcomesChart, breakers: breakersChart, replicas: replicasChart };
  // Notes for charts a run has no data for yet (the live page has every
  // chart; the report leaves these out instead).
  var missing = {
    breakers: function () { return !D.breakers && "No breaker has changed state."; },
    replicas: function () { return !D.replicas && "No replica events."; }
  };

  function draw(raw) {
    charts.forEach(function (c) { c.u.destroy(); });
    charts.length = 0;
    D = prepare(raw);
    var done = 0;
    document.querySelectorAll("[data-chart]").forEach(function (el) {
      var name = el.dataset.chart, build = builders[name];
      el.textContent = "";
      el.classList.remove("chart-error");
      try {
        if (!build) throw new Error("no chart named " + name);
        var why = !D.x || D.x.length === 0 ? "No intervals were recorded in this run." : (missing[name] && missing[name]());
        if (why) {
          el.dataset.rendered = "0";
          el.dataset.faults = "0";
          var p = document.createElement("p");
          p.className = "empty";
          p.textContent = why;
          el.appendChild(p);
          return;
        }
        build(el);
        done++;
      } catch (err) {
        el.dataset.rendered = "0";
        el.classList.add("chart-error");
        el.textContent = "This chart could not be drawn: " + err;
        console.error("cascade report: chart " + name + ": " + (err && err.stack || err));
      }
    });
    var note = document.getElementById("merged-note");
    if (note) {
      note.textContent = D.mergedWidth ? "This run is long: each point merges " + fmt(D.mergedWidth, 0) + " s of intervals (percentiles from the merged histograms)." : "";
    }
    // For scripting the page (and for the browser test): the uPlot instances.
    window.cascadeReport.charts = charts.map(function (c) { return { name: c.el.dataset.chart, uplot: c.u }; });
    document.body.dataset.charts = String(done);
    document.body.dataset.chartsDone = "1";
  }

  var resizeTimer = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(function () {
      charts.forEach(function (c) { c.u.setSize({ width: width(c.el), height: c.u.height }); });
    }, 100);
  });
  window.cascadeReport = { charts: [], draw: draw };
  var embedded = document.getElementById("cascade-data");
  if (embedded && embedded.textContent.trim() !== "") draw(JSON.parse(embedded.textContent));
})();
