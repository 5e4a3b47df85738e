/* Roost node page: history charts (uPlot) with a selectable range, and live refresh of the details below them. */
(function () {
  "use strict";

  var R = window.Roost;
  var dataEl = document.getElementById("node-data");
  var chartsEl = document.getElementById("charts");
  if (!R || !dataEl || !chartsEl) return;
  var F = R.format;

  var page = JSON.parse(dataEl.textContent);
  var nodeId = String(page.id);
  var fields = page.fields || {};
  var ranges = page.ranges || ["1h", "24h", "7d", "30d"];
  var range = page.range || "1h";
  var apiBase = "/api/v1/nodes/" + encodeURIComponent(nodeId);

  var CHART_HEIGHT = 190;
  var MAX_SERIES_PER_REQUEST = 20;
  // How stale a range's charts may get before a node report refreshes them (ms).
  var REFRESH_GAP = { "1h": 10000, "24h": 60000, "7d": 300000, "30d": 600000 };
  var DETAILS_GAP = 5000;
  var PALETTE = ["#3b7be0", "#2ea56f", "#e0912b", "#c4453a", "#8a63d2", "#1ba1b5", "#c2418a", "#7a9a1f"];
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
  var RESOLUTION_TEXT = { raw: "every sample", minute: "per-minute averages", hour: "hourly averages" };

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

  function formatterFor(unit) {
    switch (unit) {
      case "percent": return F.percent;
      case "bytes": return F.bytes;
      case "bytes_per_second": return F.rate;
      case "seconds": return F.duration;
      case "celsius": return function (v) { return v === null || v === undefined ? "\u2014" : F.number(v, 1) + " \u00b0C"; };
      case "rpm": return function (v) { return v === null || v === undefined ? "\u2014" : F.integer(v) + " rpm"; };
      default:
        return function (v) {
          if (v === null || v === undefined) return "\u2014";
          var a = Math.abs(v);
          return F.number(v, a >= 100 ? 0 : a >= 10 ? 1 : 2);
        };
    }
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
      groups.push({ key: g.key, title: g.title, unit: g.unit, names: members });
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

  /* Add an empty time slot inside every silence much longer than the usual step,
   * so a line breaks where the node did not report instead of bridging the gap. */
  function withGapBreaks(xs) {
    if (xs.length < 3) return xs;
    var steps = [];
    for (var i = 1; i < xs.length; i++) steps.push(xs[i] - xs[i - 1]);
    steps.sort(function (a, b) { return a - b; });
    var limit = Math.max(steps[Math.floor(steps.length / 2)] * 5, 1);
    var out = [xs[0]];
    for (var j = 1; j < xs.length; j++) {
      if (xs[j] - xs[j - 1] > limit) out.push(xs[j - 1] + limit / 5);
      out.push(xs[j]);
    }
    return out;
  }

  /* Align several [[ts, avg, min, max], ...] lists on one time axis for uPlot. */
  function alignedData(group, series) {
    var stamps = {};
    group.names.forEach(function (n) {
      (series[n] || []).forEach(function (row) { stamps[row[0]] = true; });
    });
    var xs = Object.keys(stamps).map(Number).sort(function (a, b) { return a - b; });
    xs = withGapBreaks(xs);
    var index = {};
    xs.forEach(function (x, i) { index[x] = i; });
    var points = 0;
    var ys = group.names.map(function (n) {
      var col = new Array(xs.length).fill(null);
      var rows = series[n] || [];
      rows.forEach(function (row) {
        var v = row[1];
        if (typeof v === "number" && Number.isFinite(v)) col[index[row[0]]] = v;
      });
      points = Math.max(points, rows.length);
      return col;
    });
    return { data: [xs].concat(ys), points: points };
  }

  function cssVar(name, fallback) {
    var v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return v || fallback;
  }

  function plotWidth(el) {
    return Math.max(200, Math.floor(el.clientWidth || chartsEl.clientWidth || 300));
  }

  function makePlot(entry, group, data) {
    var fmt = formatterFor(group.unit);
    var axisColor = cssVar("--muted", "#667");
    var gridColor = cssVar("--border", "#ddd");
    var series = [{}];
    group.names.forEach(function (n, i) {
      series.push({
        label: labelOf(n),
        stroke: PALETTE[i % PALETTE.length],
        width: 1.5,
        spanGaps: false,
        value: function (u, v) { return fmt(v); }
      });
    });
    var yRange = group.unit === "percent"
      ? function (u, min, max) { return [0, Math.max(100, max || 0)]; }
      : function (u, min, max) { return [Math.min(0, min || 0), max > 0 ? max * 1.1 : 1]; };
    var opts = {
      width: plotWidth(entry.plotEl),
      height: CHART_HEIGHT,
      series: series,
      scales: {
        x: { time: true, range: function (u, min, max) { return timeWindow || [min, max]; } },
        y: { range: yRange }
      },
      axes: [
        { stroke: axisColor, grid: { stroke: gridColor, width: 1 }, ticks: { stroke: gridColor, width: 1 } },
        {
          stroke: axisColor,
          grid: { stroke: gridColor, width: 1 },
          ticks: { stroke: gridColor, width: 1 },
          size: group.unit === "bytes_per_second" || group.unit === "bytes" ? 84 : 60,
          values: function (u, vals) { return vals.map(fmt); }
        }
      ],
      legend: { live: true },
      cursor: { drag: { x: false, y: false } }
    };
    return new window.uPlot(opts, data, entry.plotEl);
  }

  function chartEntry(group) {
    var entry = charts[group.key];
    if (entry && entry.names.join("\n") !== group.names.join("\n")) {
      if (entry.plot) entry.plot.destroy();
      entry.plot = null;
    }
    if (!entry) {
      var fig = document.createElement("figure");
      fig.className = "card chart";
      fig.setAttribute("data-chart", group.key);
      var cap = document.createElement("figcaption");
      cap.textContent = group.title;
      var plotEl = document.createElement("div");
      plotEl.className = "chart-plot";
      var emptyEl = document.createElement("p");
      emptyEl.className = "chart-empty";
      emptyEl.textContent = "No data in this range yet.";
      emptyEl.hidden = true;
      fig.append(cap, plotEl, emptyEl);
      chartsEl.appendChild(fig);
      entry = charts[group.key] = { fig: fig, plotEl: plotEl, emptyEl: emptyEl, plot: null, names: [], points: 0 };
    }
    entry.names = group.names.slice();
    return entry;
  }

  function draw(groups, body) {
    var series = body.series || {};
    // Show the whole range asked for, so a young node's history sits at the right edge.
    timeWindow = typeof body.start === "number" && typeof body.end === "number" ? [body.start, body.end] : null;
    var keep = {};
    groups.forEach(function (group) {
      keep[group.key] = true;
      var entry = chartEntry(group);
      var aligned = alignedData(group, series);
      entry.points = aligned.points;
      if (entry.plot) entry.plot.setData(aligned.data);
      else entry.plot = makePlot(entry, group, aligned.data);
      entry.fig.setAttribute("data-points", String(aligned.points));
      entry.fig.setAttribute("data-range", range);
      entry.fig.removeAttribute("data-loading");
      entry.emptyEl.hidden = aligned.points > 0;
      entry.plotEl.hidden = aligned.points === 0;
      if (!entry.plotEl.hidden && Math.abs(entry.plot.width - plotWidth(entry.plotEl)) > 1) {
        entry.plot.setSize({ width: plotWidth(entry.plotEl), height: CHART_HEIGHT });
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

  function setStatus(text) {
    if (!statusEl) return;
    statusEl.textContent = text;
    statusEl.hidden = !text;
  }

  function getJSON(url) {
    return fetch(url, { cache: "no-store", credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (res) {
        if (!res.ok) {
          return res.json().catch(function () { return {}; }).then(function (body) {
            throw new Error(body && body.error ? body.error : "HTTP " + res.status);
          });
        }
        return res.json();
      });
  }

  function loadCharts() {
    var seq = ++loadSeq;
    var forRange = range;
    lastLoad = Date.now();
    Object.keys(charts).forEach(function (k) { charts[k].fig.setAttribute("data-loading", ""); });
    chartsEl.setAttribute("aria-busy", "true");
    return getJSON(apiBase + "/series")
      .then(function (body) {
        var groups = buildGroups(body.series || []);
        if (!groups.length) return { groups: groups, body: { series: {} } };
        var names = [];
        groups.forEach(function (g) { names = names.concat(g.names); });
        // The hub answers at most MAX_SERIES_PER_REQUEST series per request.
        var requests = [];
        for (var i = 0; i < names.length; i += MAX_SERIES_PER_REQUEST) {
          var chunk = names.slice(i, i + MAX_SERIES_PER_REQUEST);
          requests.push(getJSON(apiBase + "/metrics?series=" + chunk.map(encodeURIComponent).join(",") +
            "&range=" + encodeURIComponent(forRange) + "&resolution=auto"));
        }
        return Promise.all(requests).then(function (answers) {
          var first = answers[0] || {};
          var merged = { series: {}, resolution: first.resolution || "", start: first.start, end: first.end };
          answers.forEach(function (a) { Object.assign(merged.series, a.series || {}); });
          return { groups: groups, body: merged };
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
        if (note) note.textContent = RESOLUTION_TEXT[res] ? "Showing " + RESOLUTION_TEXT[res] : "";
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
    var gap = hasEmptyChart() ? 2000 : REFRESH_GAP[range] || 60000;
    var wait = Math.max(0, lastLoad + gap - Date.now());
    chartTimer = setTimeout(function () { chartTimer = null; loadCharts(); }, wait);
  }

  function selectRange(next) {
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
  }

  document.querySelectorAll(".range[data-range]").forEach(function (button) {
    button.addEventListener("click", function () { selectRange(button.getAttribute("data-range")); });
  });

  var resizeFrame = 0;
  if (window.ResizeObserver) {
    new ResizeObserver(function () {
      cancelAnimationFrame(resizeFrame);
      resizeFrame = requestAnimationFrame(function () {
        Object.keys(charts).forEach(function (k) {
          var e = charts[k];
          if (e.plot && !e.plotEl.hidden) e.plot.setSize({ width: plotWidth(e.plotEl), height: CHART_HEIGHT });
        });
      });
    }).observe(chartsEl);
  }

  R.onNode(function (node) {
    if (String(node.id) !== nodeId) return;
    var title = document.querySelector(".node-title");
    var name = node.name || node.hostname || node.id;
    if (title && name && title.textContent !== name) title.textContent = name;
    R.refreshFragment("details", DETAILS_GAP);
    scheduleChartRefresh();
  });

  if (!window.uPlot) {
    setStatus("The chart library did not load; history is unavailable.");
    return;
  }
  loadCharts();
})();
