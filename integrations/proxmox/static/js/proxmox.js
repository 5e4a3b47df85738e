/* Roost Proxmox pages: keep the cluster sections current, and draw a guest's history charts (js/charts.js) with a range. */
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

  var C = R.charts;
  var chartsEl = document.getElementById("charts");
  var statusEl = document.getElementById("chart-status");
  if (!C || !chartsEl) return;
  var nodeId = String(page.id);
  var ranges = page.ranges || ["1h", "24h", "7d", "30d"];
  var range = page.range || "1h";
  var CHART_HEIGHT = 190;
  var charts = {};
  var timeWindow = null;
  var loadSeq = 0;
  var lastLoad = 0;
  var chartTimer = null;

  function setStatus(text) {
    if (!statusEl) return;
    statusEl.textContent = text;
    statusEl.hidden = !text;
  }

  function names(chart) {
    return chart.series.map(function (s) { return s.name; });
  }

  function entryFor(chart) {
    var entry = charts[chart.key];
    if (entry) return entry;
    entry = charts[chart.key] = C.figure(chart.key, chart.title);
    entry.plot = null;
    entry.points = 0;
    chartsEl.appendChild(entry.fig);
    return entry;
  }

  function makePlot(entry, chart, data) {
    return C.plot(entry.plotEl, data, {
      unit: chart.unit,
      labels: chart.series.map(function (s) { return s.label; }),
      width: C.plotWidth(entry.plotEl, chartsEl),
      height: CHART_HEIGHT,
      timeWindow: function () { return timeWindow; },
      axisSize: chart.unit === "percent" ? 60 : 84
    });
  }

  function draw(body) {
    var series = body.series || {};
    timeWindow = typeof body.start === "number" && typeof body.end === "number" ? [body.start, body.end] : null;
    (page.charts || []).forEach(function (chart) {
      var entry = entryFor(chart);
      var a = C.aligned(names(chart), series, true);
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
    var all = [];
    (page.charts || []).forEach(function (c) { all = all.concat(names(c)); });
    return C.fetchMetrics(nodeId, all, range)
      .then(function (body) {
        if (seq !== loadSeq) return;
        draw(body);
        setStatus("");
        chartsEl.setAttribute("data-resolution", body.resolution || "");
        var note = document.getElementById("chart-resolution");
        if (note) note.textContent = C.resolutionText(body.resolution);
      })
      .catch(function (err) {
        if (seq !== loadSeq) return;
        setStatus("Could not load history: " + err.message + ". Retrying with the next update.");
      });
  }

  function scheduleChartRefresh() {
    if (chartTimer) return;
    var empty = Object.keys(charts).some(function (k) { return charts[k].points === 0; });
    var gap = empty ? 2000 : C.REFRESH_GAP[range] || 60000;
    chartTimer = setTimeout(function () { chartTimer = null; loadCharts(); }, Math.max(0, lastLoad + gap - Date.now()));
  }

  C.pageRanges(ranges, range, function (next) {
    range = next;
    if (chartTimer) { clearTimeout(chartTimer); chartTimer = null; }
    loadCharts();
  });

  C.fitOnResize(chartsEl, function () { return charts; }, CHART_HEIGHT);

  R.onNode(function (node) {
    if (String(node.id) !== nodeId) return;
    R.refreshFragment("guest", 5000);
    scheduleChartRefresh();
  });

  if (!window.uPlot) { setStatus(C.NO_LIBRARY); return; }
  loadCharts();
})();
