/* Roost Proxmox pages: keep the cluster sections current, and draw a guest's history charts (uPlot) with a range. */
(function () {
  "use strict";

  var R = window.Roost;
  var dataEl = document.getElementById("proxmox-data");
  if (!R || !dataEl) return;
  var F = R.format;
  var page = JSON.parse(dataEl.textContent);
  var kind = document.body.getAttribute("data-page");

  // ------------------------------------------------------------ the list page

  if (kind === "proxmox") {
    var reporting = {};
    (page.nodes || []).forEach(function (id) { reporting[String(id)] = true; });
    R.onNode(function (node) {
      // A node that reads Proxmox sent a report; any other node may have just started to.
      R.refreshFragment("clusters", reporting[String(node.id)] ? 5000 : 15000);
    });
    document.addEventListener("roost:fragment", function () {
      document.querySelectorAll(".pve-cluster[data-roost-node]").forEach(function (el) {
        reporting[el.getAttribute("data-roost-node")] = true;
      });
    });
    return;
  }

  if (kind !== "proxmox_guest") return;

  // ----------------------------------------------------------- the guest page

  var chartsEl = document.getElementById("charts");
  var statusEl = document.getElementById("chart-status");
  var nodeId = String(page.id);
  var ranges = page.ranges || ["1h", "24h", "7d", "30d"];
  var range = page.range || "1h";
  var CHART_HEIGHT = 190;
  var REFRESH_GAP = { "1h": 10000, "24h": 60000, "7d": 300000, "30d": 600000 };
  var PALETTE = ["#3b7be0", "#2ea56f", "#e0912b", "#c4453a"];
  var RESOLUTION_TEXT = { raw: "every sample", minute: "per-minute averages", hour: "hourly averages" };
  var charts = {};
  var timeWindow = null;
  var loadSeq = 0;
  var lastLoad = 0;
  var chartTimer = null;

  function formatterFor(unit) {
    if (unit === "percent") return F.percent;
    if (unit === "bytes") return F.bytes;
    if (unit === "bytes_per_second") return F.rate;
    return function (v) { return v === null || v === undefined ? "\u2014" : F.number(v, 2); };
  }

  function setStatus(text) {
    if (!statusEl) return;
    statusEl.textContent = text;
    statusEl.hidden = !text;
  }

  function cssVar(name, fallback) {
    var v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return v || fallback;
  }

  function plotWidth(el) {
    return Math.max(200, Math.floor(el.clientWidth || chartsEl.clientWidth || 300));
  }

  /* Line up the chart's series on one time axis, breaking lines where the node went silent. */
  function aligned(chart, series) {
    var stamps = {};
    chart.series.forEach(function (s) { (series[s.name] || []).forEach(function (row) { stamps[row[0]] = true; }); });
    var xs = Object.keys(stamps).map(Number).sort(function (a, b) { return a - b; });
    if (xs.length > 2) {
      var steps = [];
      for (var i = 1; i < xs.length; i++) steps.push(xs[i] - xs[i - 1]);
      steps.sort(function (a, b) { return a - b; });
      var limit = Math.max(steps[Math.floor(steps.length / 2)] * 5, 1);
      var withGaps = [xs[0]];
      for (var j = 1; j < xs.length; j++) {
        if (xs[j] - xs[j - 1] > limit) withGaps.push(xs[j - 1] + limit / 5);
        withGaps.push(xs[j]);
      }
      xs = withGaps;
    }
    var index = {};
    xs.forEach(function (x, k) { index[x] = k; });
    var points = 0;
    var ys = chart.series.map(function (s) {
      var col = new Array(xs.length).fill(null);
      var rows = series[s.name] || [];
      rows.forEach(function (row) {
        if (typeof row[1] === "number" && Number.isFinite(row[1])) col[index[row[0]]] = row[1];
      });
      points = Math.max(points, rows.length);
      return col;
    });
    return { data: [xs].concat(ys), points: points };
  }

  function entryFor(chart) {
    var entry = charts[chart.key];
    if (entry) return entry;
    var fig = document.createElement("figure");
    fig.className = "card chart";
    fig.setAttribute("data-chart", chart.key);
    var cap = document.createElement("figcaption");
    cap.textContent = chart.title;
    var plotEl = document.createElement("div");
    plotEl.className = "chart-plot";
    var emptyEl = document.createElement("p");
    emptyEl.className = "chart-empty";
    emptyEl.textContent = "No data in this range yet.";
    emptyEl.hidden = true;
    fig.append(cap, plotEl, emptyEl);
    chartsEl.appendChild(fig);
    entry = charts[chart.key] = { fig: fig, plotEl: plotEl, emptyEl: emptyEl, plot: null, points: 0 };
    return entry;
  }

  function makePlot(entry, chart, data) {
    var fmt = formatterFor(chart.unit);
    var axisColor = cssVar("--muted", "#667");
    var gridColor = cssVar("--border", "#ddd");
    var series = [{}];
    chart.series.forEach(function (s, i) {
      series.push({ label: s.label, stroke: PALETTE[i % PALETTE.length], width: 1.5, spanGaps: false,
        value: function (u, v) { return fmt(v); } });
    });
    var yRange = chart.unit === "percent"
      ? function (u, min, max) { return [0, Math.max(100, max || 0)]; }
      : function (u, min, max) { return [Math.min(0, min || 0), max > 0 ? max * 1.1 : 1]; };
    return new window.uPlot({
      width: plotWidth(entry.plotEl),
      height: CHART_HEIGHT,
      series: series,
      scales: { x: { time: true, range: function (u, min, max) { return timeWindow || [min, max]; } }, y: { range: yRange } },
      axes: [
        { stroke: axisColor, grid: { stroke: gridColor, width: 1 }, ticks: { stroke: gridColor, width: 1 } },
        { stroke: axisColor, grid: { stroke: gridColor, width: 1 }, ticks: { stroke: gridColor, width: 1 },
          size: chart.unit === "percent" ? 60 : 84, values: function (u, vals) { return vals.map(fmt); } }
      ],
      legend: { live: true },
      cursor: { drag: { x: false, y: false } }
    }, data, entry.plotEl);
  }

  function draw(body) {
    var series = body.series || {};
    timeWindow = typeof body.start === "number" && typeof body.end === "number" ? [body.start, body.end] : null;
    (page.charts || []).forEach(function (chart) {
      var entry = entryFor(chart);
      var a = aligned(chart, series);
      entry.points = a.points;
      if (entry.plot) entry.plot.setData(a.data);
      else entry.plot = makePlot(entry, chart, a.data);
      entry.fig.setAttribute("data-points", String(a.points));
      entry.fig.setAttribute("data-range", range);
      entry.fig.removeAttribute("data-loading");
      entry.emptyEl.hidden = a.points > 0;
      entry.plotEl.hidden = a.points === 0;
    });
  }

  function loadCharts() {
    var seq = ++loadSeq;
    lastLoad = Date.now();
    Object.keys(charts).forEach(function (k) { charts[k].fig.setAttribute("data-loading", ""); });
    var names = [];
    (page.charts || []).forEach(function (c) { c.series.forEach(function (s) { names.push(s.name); }); });
    var url = "/api/v1/nodes/" + encodeURIComponent(nodeId) + "/metrics?series=" + names.map(encodeURIComponent).join(",") +
      "&range=" + encodeURIComponent(range) + "&resolution=auto";
    return fetch(url, { cache: "no-store", credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (res) {
        R.checkSession(res);
        if (!res.ok) {
          return res.json().catch(function () { return {}; }).then(function (b) { throw new Error(b && b.error ? b.error : "HTTP " + res.status); });
        }
        return res.json();
      })
      .then(function (body) {
        if (seq !== loadSeq) return;
        draw(body);
        setStatus("");
        chartsEl.setAttribute("data-resolution", body.resolution || "");
        var note = document.getElementById("chart-resolution");
        if (note) note.textContent = RESOLUTION_TEXT[body.resolution] ? "Showing " + RESOLUTION_TEXT[body.resolution] : "";
      })
      .catch(function (err) {
        if (seq !== loadSeq) return;
        setStatus("Could not load history: " + err.message + ". Retrying with the next update.");
      });
  }

  function scheduleChartRefresh() {
    if (chartTimer) return;
    var empty = Object.keys(charts).some(function (k) { return charts[k].points === 0; });
    var gap = empty ? 2000 : REFRESH_GAP[range] || 60000;
    chartTimer = setTimeout(function () { chartTimer = null; loadCharts(); }, Math.max(0, lastLoad + gap - Date.now()));
  }

  document.querySelectorAll(".range[data-range]").forEach(function (button) {
    button.addEventListener("click", function () {
      var next = button.getAttribute("data-range");
      if (ranges.indexOf(next) === -1 || next === range) return;
      range = next;
      document.querySelectorAll(".range[data-range]").forEach(function (b) {
        b.setAttribute("aria-pressed", b.getAttribute("data-range") === range ? "true" : "false");
      });
      var url = new URL(window.location.href);
      url.searchParams.set("range", range);
      window.history.replaceState(null, "", url.toString());
      if (chartTimer) { clearTimeout(chartTimer); chartTimer = null; }
      loadCharts();
    });
  });

  if (window.ResizeObserver) {
    var frame = 0;
    new ResizeObserver(function () {
      cancelAnimationFrame(frame);
      frame = requestAnimationFrame(function () {
        Object.keys(charts).forEach(function (k) {
          var e = charts[k];
          if (e.plot && !e.plotEl.hidden) e.plot.setSize({ width: plotWidth(e.plotEl), height: CHART_HEIGHT });
        });
      });
    }).observe(chartsEl);
  }

  R.onNode(function (node) {
    if (String(node.id) !== nodeId) return;
    R.refreshFragment("guest", 5000);
    scheduleChartRefresh();
  });

  if (!window.uPlot) { setStatus("The chart library did not load; history is unavailable."); return; }
  loadCharts();
})();
