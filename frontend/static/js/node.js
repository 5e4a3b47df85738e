/* Roost node page: history charts (uPlot) with a selectable range, and live refresh of the details below them. */
(function () {
  "use strict";

  var R = window.Roost;
  var dataEl = document.getElementById("node-data");
  var chartsEl = document.getElementById("charts");
  if (!R || !R.charts || !dataEl || !chartsEl) return;
  var F = R.format;

  var page = JSON.parse(dataEl.textContent);
  var nodeId = String(page.id);
  var fields = page.fields || {};
  var ranges = page.ranges || ["5m", "15m", "1h", "6h", "24h", "7d", "30d"];
  var range = page.range || "1h";
  var apiBase = "/api/v1/nodes/" + encodeURIComponent(nodeId);

  var C = R.charts;
  var CHART_HEIGHT = 190;
  var DETAILS_GAP = 5000;
  // Redundant beside the percentages, or not worth a chart.
  var SKIP = { "linux_host.uptime_s": true, "linux_host.mem_total_bytes": true, "linux_host.mem_used_bytes": true };

  // Known series grouped into charts, in this order; anything else gets one chart per base name.
  var GROUPS = [
    { key: "cpu", title: "CPU", unit: "percent", names: ["linux_host.cpu_percent"] },
    { key: "memory", title: "Memory and swap", unit: "percent", names: ["linux_host.mem_used_percent", "linux_host.swap_used_percent"] },
    { key: "load", title: "Load", unit: "", names: ["linux_host.load_1", "linux_host.load_5", "linux_host.load_15"] },
    { key: "disk", title: "Disk used", unit: "percent", base: "linux_host.disk_used_percent" },
    { key: "network", title: "Network", unit: "bytes_per_second", names: ["linux_host.net_rx_bytes_per_s", "linux_host.net_tx_bytes_per_s"] },
    { key: "net_rx_if", title: "Receive by interface", unit: "bytes_per_second", base: "linux_host.net_rx_bytes_per_s", labelled: true },
    { key: "net_tx_if", title: "Send by interface", unit: "bytes_per_second", base: "linux_host.net_tx_bytes_per_s", labelled: true },
    { key: "disk_io", title: "Disk I/O", unit: "bytes_per_second", names: ["linux_host.disk_read_bytes_per_s", "linux_host.disk_write_bytes_per_s"] }
  ];
  var SERIES_LABELS = {
    "linux_host.cpu_percent": "CPU",
    "linux_host.mem_used_percent": "Memory",
    "linux_host.swap_used_percent": "Swap",
    "linux_host.load_1": "1 min",
    "linux_host.load_5": "5 min",
    "linux_host.load_15": "15 min",
    "linux_host.disk_used_percent": "Root or fullest",
    "linux_host.net_rx_bytes_per_s": "Receive",
    "linux_host.net_tx_bytes_per_s": "Send",
    "linux_host.disk_read_bytes_per_s": "Read",
    "linux_host.disk_write_bytes_per_s": "Write"
  };
  var charts = {}; // group key -> {fig, plotEl, emptyEl, plot, names, points}
  var timeWindow = null; // [start, end] of the range shown, unix seconds
  var loadSeq = 0;
  var lastLoad = 0;
  var chartTimer = null;
  var statusEl = document.getElementById("chart-status");

  function baseName(name) {
    var i = name.indexOf("[");
    return i === -1 ? name : name.slice(0, i);
  }

  function labelOf(name) {
    var m = /\[(.*)\]$/.exec(name);
    if (m) return m[1];
    if (SERIES_LABELS[name]) return SERIES_LABELS[name];
    var meta = fields[name];
    if (meta && meta.label) return meta.label;
    return name.slice(name.indexOf(".") + 1).replace(/_/g, " ");
  }

  function unitOf(name) {
    var meta = fields[baseName(name)];
    return meta && typeof meta.unit === "string" ? meta.unit : null;
  }

  /* Sort the node's series into chart groups, in a stable order. */
  function buildGroups(names) {
    var wanted = names.filter(function (n) { return !SKIP[n]; }).sort();
    var used = {};
    var groups = [];
    GROUPS.forEach(function (g) {
      var members = wanted.filter(function (n) {
        if (used[n]) return false;
        if (!g.base) return g.names.indexOf(n) !== -1;
        return baseName(n) === g.base && (!g.labelled || n !== g.base);
      });
      if (g.names) members.sort(function (a, b) { return g.names.indexOf(a) - g.names.indexOf(b); });
      // Per-mount lines say more than the unlabelled "root or fullest" one, which repeats one of them.
      if (g.base && !g.labelled && members.length > 1) {
        members = members.filter(function (n) { return n !== g.base; });
        used[g.base] = true;
      }
      if (!members.length) return;
      members.forEach(function (n) { used[n] = true; });
      // The unit the metric's own metadata gives wins over the group's usual one.
      groups.push({ key: g.key, title: g.title, unit: unitOf(members[0]) || g.unit, names: members });
    });
    var rest = {};
    wanted.forEach(function (n) {
      if (used[n]) return;
      var b = baseName(n);
      (rest[b] = rest[b] || []).push(n);
    });
    Object.keys(rest).sort().forEach(function (b) {
      var meta = fields[b] || {};
      var title = meta.label || b.replace(/_/g, " ").replace(".", ": ");
      groups.push({ key: "x:" + b, title: title, unit: unitOf(b) || "", names: rest[b] });
    });
    return groups;
  }

  function chartEntry(group) {
    var entry = charts[group.key];
    if (entry && entry.names.join("\n") !== group.names.join("\n")) {
      if (entry.plot) entry.plot.destroy();
      entry.plot = null;
    }
    if (!entry) {
      entry = charts[group.key] = C.figure(group.key, group.title);
      entry.plot = null;
      entry.names = [];
      entry.points = 0;
      chartsEl.appendChild(entry.fig);
    }
    entry.names = group.names.slice();
    return entry;
  }

  function makePlot(entry, group, data) {
    return C.plot(entry.plotEl, data, {
      unit: group.unit,
      labels: group.names.map(labelOf),
      width: C.plotWidth(entry.plotEl, chartsEl),
      height: CHART_HEIGHT,
      timeWindow: function () { return timeWindow; },
      axisSize: group.unit === "bytes_per_second" || group.unit === "bytes" ? 84 : 60
    });
  }

  function draw(groups, body) {
    var series = body.series || {};
    // The range asked for, but a history shorter than that fills the chart from its first sample
    // (a young node's first minutes are a line, not a dot in the corner).
    timeWindow = typeof body.start === "number" && typeof body.end === "number" ? [body.start, body.end] : null;
    var first = firstSample(series);
    if (timeWindow && first !== null && first > timeWindow[0]) {
      timeWindow = [Math.min(first, timeWindow[1] - 5), timeWindow[1]];
    }
    chartsEl.setAttribute("data-window-start", timeWindow ? String(timeWindow[0]) : "");
    chartsEl.setAttribute("data-window-end", timeWindow ? String(timeWindow[1]) : "");
    var keep = {};
    groups.forEach(function (group) {
      keep[group.key] = true;
      var entry = chartEntry(group);
      var aligned = C.aligned(group.names, series, true);
      entry.points = aligned.points;
      if (entry.plot) entry.plot.setData(aligned.data);
      else entry.plot = makePlot(entry, group, aligned.data);
      entry.fig.setAttribute("data-points", String(aligned.points));
      entry.fig.setAttribute("data-range", range);
      entry.fig.removeAttribute("data-loading");
      entry.emptyEl.hidden = aligned.points > 0;
      entry.plotEl.hidden = aligned.points === 0;
      if (!entry.plotEl.hidden && Math.abs(entry.plot.width - C.plotWidth(entry.plotEl, chartsEl)) > 1) {
        entry.plot.setSize({ width: C.plotWidth(entry.plotEl, chartsEl), height: CHART_HEIGHT });
      }
    });
    Object.keys(charts).forEach(function (key) {
      if (keep[key]) return;
      if (charts[key].plot) charts[key].plot.destroy();
      charts[key].fig.remove();
      delete charts[key];
    });
    // Keep the figures in group order after series come and go.
    groups.forEach(function (group) { chartsEl.appendChild(charts[group.key].fig); });
  }

  function mostPoints(series) {
    var most = 0;
    Object.keys(series || {}).forEach(function (name) { most = Math.max(most, (series[name] || []).length); });
    return most;
  }

  function firstSample(series) {
    var first = null;
    Object.keys(series).forEach(function (name) {
      var rows = series[name] || [];
      if (rows.length && (first === null || rows[0][0] < first)) first = rows[0][0];
    });
    return first;
  }

  function setStatus(text) {
    if (!statusEl) return;
    statusEl.textContent = text;
    statusEl.hidden = !text;
  }

  function loadCharts() {
    var seq = ++loadSeq;
    var forRange = range;
    lastLoad = Date.now();
    Object.keys(charts).forEach(function (k) { charts[k].fig.setAttribute("data-loading", ""); });
    chartsEl.setAttribute("aria-busy", "true");
    return C.getJSON(apiBase + "/series")
      .then(function (body) {
        var groups = buildGroups(body.series || []);
        if (!groups.length) return { groups: groups, body: { series: {} } };
        var names = [];
        groups.forEach(function (g) { names = names.concat(g.names); });
        return C.fetchMetrics(nodeId, names, forRange).then(function (merged) {
          // A history of a few hours is one or two hourly averages: ask for every sample instead, so it draws a line.
          if (merged.resolution === "raw" || mostPoints(merged.series) >= 3) return { groups: groups, body: merged };
          return C.fetchMetrics(nodeId, names, forRange, "raw").then(function (raw) {
            return { groups: groups, body: mostPoints(raw.series) > mostPoints(merged.series) ? raw : merged };
          });
        });
      })
      .then(function (result) {
        if (seq !== loadSeq) return; // a newer request (another range) wins
        chartsEl.removeAttribute("aria-busy");
        if (!result.groups.length) { setStatus("No history recorded for this node yet."); return; }
        draw(result.groups, result.body);
        var res = result.body.resolution;
        setStatus("");
        chartsEl.setAttribute("data-resolution", res || "");
        var note = document.getElementById("chart-resolution");
        if (note) note.textContent = C.resolutionText(res);
      })
      .catch(function (err) {
        if (seq !== loadSeq) return;
        chartsEl.removeAttribute("aria-busy");
        setStatus("Could not load history: " + err.message + ". Retrying with the next update.");
      });
  }

  function hasEmptyChart() {
    var keys = Object.keys(charts);
    if (!keys.length) return true;
    return keys.some(function (k) { return charts[k].points === 0; });
  }

  function scheduleChartRefresh() {
    if (chartTimer) return;
    var gap = hasEmptyChart() ? 2000 : C.REFRESH_GAP[range] || 60000;
    var wait = Math.max(0, lastLoad + gap - Date.now());
    chartTimer = setTimeout(function () { chartTimer = null; loadCharts(); }, wait);
  }

  C.pageRanges(ranges, range, function (next) {
    range = next;
    C.setZoom(null);
    if (chartTimer) { clearTimeout(chartTimer); chartTimer = null; }
    loadCharts();
  });

  C.fitOnResize(chartsEl, function () { return charts; }, CHART_HEIGHT);

  var resetButton = document.getElementById("chart-zoom-reset");
  if (resetButton) resetButton.addEventListener("click", function () { C.setZoom(null); });
  C.onZoom(function (win) {
    chartsEl.setAttribute("data-zoom", win ? win[0].toFixed(0) + "-" + win[1].toFixed(0) : "");
    if (resetButton) resetButton.hidden = !win;
  });

  R.onNode(function (node) {
    if (String(node.id) !== nodeId) return;
    var title = document.querySelector(".node-title");
    var name = node.name || node.hostname || node.id;
    if (title && name && title.textContent !== name) title.textContent = name;
    R.refreshFragment("details", DETAILS_GAP);
    scheduleChartRefresh();
  });

  if (!window.uPlot) {
    setStatus(C.NO_LIBRARY);
    return;
  }
  loadCharts();
})();
