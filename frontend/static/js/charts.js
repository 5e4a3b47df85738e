/* Roost history charts, shared by the node page and the integrations' pages: uPlot figures, series lined up
 * on one time axis, range buttons, and /metrics fetched in batches the hub accepts. Exposed as Roost.charts.
 */
(function () {
  "use strict";

  var R = window.Roost;
  if (!R) return;
  var F = R.format;

  // The hub answers at most this many series per /metrics request.
  var MAX_SERIES_PER_REQUEST = 20;
  var PALETTE = ["#3b7be0", "#2ea56f", "#e0912b", "#c4453a", "#8a63d2", "#1ba1b5", "#c2418a", "#7a9a1f"];
  // How stale a range's charts may get before a node report refreshes them (ms).
  var REFRESH_GAP = { "5m": 5000, "15m": 5000, "1h": 10000, "6h": 30000, "24h": 60000, "7d": 300000, "30d": 600000 };
  // Every chart of a page shares one crosshair and one zoom: drag across any of them to zoom all,
  // double-click (or Reset zoom) to go back to the range.
  var SYNC_KEY = "roost-page";
  var zoom = { window: null, plots: [], listeners: [] };
  var RESOLUTION_TEXT = { raw: "every sample", minute: "per-minute averages", hour: "hourly averages" };
  var NO_LIBRARY = "The chart library did not load; history is unavailable.";

  function formatter(unit) {
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

  /* Align the [[ts, avg, min, max], ...] lists of `names` on one time axis for uPlot: {data, points}. */
  function aligned(names, series, breakGaps) {
    var stamps = {};
    names.forEach(function (n) {
      (series[n] || []).forEach(function (row) { stamps[row[0]] = true; });
    });
    var xs = Object.keys(stamps).map(Number).sort(function (a, b) { return a - b; });
    if (breakGaps) xs = withGapBreaks(xs);
    var index = {};
    xs.forEach(function (x, i) { index[x] = i; });
    var points = 0;
    var ys = names.map(function (n) {
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

  /* An empty chart card: {fig, plotEl, emptyEl}; the caller places fig. */
  function figure(key, title) {
    var fig = document.createElement("figure");
    fig.className = "card chart";
    fig.setAttribute("data-chart", key);
    var cap = document.createElement("figcaption");
    cap.textContent = title;
    var plotEl = document.createElement("div");
    plotEl.className = "chart-plot";
    var emptyEl = document.createElement("p");
    emptyEl.className = "chart-empty";
    emptyEl.textContent = "No data in this range yet.";
    emptyEl.hidden = true;
    fig.append(cap, plotEl, emptyEl);
    return { fig: fig, plotEl: plotEl, emptyEl: emptyEl };
  }

  function cssVar(name, fallback) {
    var v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return v || fallback;
  }

  /* The width a plot gets in el, or in fallbackEl while el has none yet. */
  function plotWidth(el, fallbackEl) {
    return Math.max(200, Math.floor(el.clientWidth || (fallbackEl && fallbackEl.clientWidth) || 300));
  }

  /* A uPlot line chart in el.
   *
   * o.unit: formats the axis and legend; o.labels: one per series; o.width, o.height;
   * o.timeWindow(): the [start, end] to show, or null for the data's own extent;
   * o.axisSize: the y axis' width in px; o.fromZero: the y axis never goes below 0
   * (otherwise it goes down to the lowest value when that is negative).
   */
  function plot(el, data, o) {
    var fmt = formatter(o.unit);
    var axisColor = cssVar("--muted", "#667");
    var gridColor = cssVar("--border", "#ddd");
    var series = [{}];
    o.labels.forEach(function (label, i) {
      series.push({ label: label, stroke: PALETTE[i % PALETTE.length], width: 1.5, spanGaps: false, value: function (u, v) { return fmt(v); } });
    });
    var legendAtLatest = function (u) {
      // Until the pointer is over a chart, the legend reads the latest values instead of a dash.
      var xs = u.data[0] || [];
      if (u.cursor.idx === null || u.cursor.idx === undefined) {
        if (xs.length) u.setLegend({ idx: xs.length - 1 });
      }
    };
    // The time span on screen, on the figure, for tests and for anyone reading the page's markup.
    var markWindow = function (u) {
      var fig = u.root.closest("figure");
      if (!fig || u.scales.x.min === null || u.scales.x.min === undefined) return;
      fig.setAttribute("data-x-min", String(u.scales.x.min));
      fig.setAttribute("data-x-max", String(u.scales.x.max));
    };
    var yRange = o.unit === "percent"
      ? function (u, min, max) { return [0, Math.max(100, max || 0)]; }
      : function (u, min, max) { return [o.fromZero ? 0 : Math.min(0, min || 0), max > 0 ? max * 1.1 : 1]; };
    var u = new window.uPlot({
      width: o.width,
      height: o.height,
      series: series,
      scales: {
        x: { time: true, range: function (u, min, max) { return zoom.window || o.timeWindow() || [min, max]; } },
        y: { range: yRange }
      },
      axes: [
        { stroke: axisColor, grid: { stroke: gridColor, width: 1 }, ticks: { stroke: gridColor, width: 1 } },
        {
          stroke: axisColor,
          grid: { stroke: gridColor, width: 1 },
          ticks: { stroke: gridColor, width: 1 },
          size: o.axisSize,
          values: function (u, vals) { return vals.map(fmt); }
        }
      ],
      legend: { live: true },
      cursor: { drag: { x: true, y: false, setScale: false }, sync: { key: SYNC_KEY, setSeries: false } },
      hooks: {
        ready: [legendAtLatest, markWindow],
        setScale: [function (u, key) { if (key === "x") markWindow(u); }],
        setData: [legendAtLatest],
        setCursor: [legendAtLatest],
        setSelect: [function (u) {
          if (u.select.width < 4) return;
          var start = u.posToVal(u.select.left, "x");
          var end = u.posToVal(u.select.left + u.select.width, "x");
          u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
          setZoom([start, end]);
        }]
      }
    }, data, el);
    u.over.addEventListener("dblclick", function () { setZoom(null); });
    zoom.plots.push(u);
    var destroy = u.destroy.bind(u);
    u.destroy = function () {
      zoom.plots = zoom.plots.filter(function (p) { return p !== u; });
      destroy();
    };
    return u;
  }

  /* Zoom every chart of the page to [start, end] (unix seconds), or back to its range with null. */
  function setZoom(win) {
    zoom.window = win && win[1] > win[0] ? win : null;
    zoom.plots.forEach(function (p) {
      var xs = p.data[0] || [];
      var range = zoom.window || [xs.length ? xs[0] : 0, xs.length ? xs[xs.length - 1] : 1];
      // With no zoom the scale's range function brings back the page's time window.
      p.setScale("x", { min: range[0], max: range[1] });
    });
    zoom.listeners.forEach(function (fn) {
      try { fn(zoom.window); } catch (err) { console.warn("roost: zoom listener failed", err); }
    });
  }

  /* Call fn(window or null) whenever the page's charts zoom in or back out. */
  function onZoom(fn) { zoom.listeners.push(fn); }

  function getJSON(url) {
    return fetch(url, { cache: "no-store", credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (res) {
        R.checkSession(res);
        if (!res.ok) {
          return res.json().catch(function () { return {}; }).then(function (body) {
            throw new Error(body && body.error ? body.error : "HTTP " + res.status);
          });
        }
        return res.json();
      });
  }

  /* A node's history of `names` over `range`, asked for in batches the hub accepts and merged:
   * {series, resolution, start, end}. */
  function fetchMetrics(nodeId, names, range, resolution) {
    var base = "/api/v1/nodes/" + encodeURIComponent(nodeId) + "/metrics?series=";
    var requests = [];
    for (var i = 0; i < names.length; i += MAX_SERIES_PER_REQUEST) {
      var chunk = names.slice(i, i + MAX_SERIES_PER_REQUEST);
      requests.push(getJSON(base + chunk.map(encodeURIComponent).join(",") + "&range=" + encodeURIComponent(range) + "&resolution=" + encodeURIComponent(resolution || "auto")));
    }
    return Promise.all(requests).then(function (answers) {
      var first = answers[0] || {};
      var merged = { series: {}, resolution: first.resolution || "", start: first.start, end: first.end };
      answers.forEach(function (a) { Object.assign(merged.series, a.series || {}); });
      return merged;
    });
  }

  /* The note beside "History": which resolution the hub answered with. */
  function resolutionText(resolution) {
    return RESOLUTION_TEXT[resolution] ? "Showing " + RESOLUTION_TEXT[resolution] : "";
  }

  /* Wire a page's range buttons (.range[data-range]): a click on another allowed range presses it,
   * puts it in the address (?range=) and calls onChange(range). */
  function pageRanges(ranges, current, onChange) {
    var range = current;
    var buttons = document.querySelectorAll(".range[data-range]");
    buttons.forEach(function (button) {
      button.addEventListener("click", function () {
        var next = button.getAttribute("data-range");
        if (ranges.indexOf(next) === -1 || next === range) return;
        range = next;
        buttons.forEach(function (b) {
          b.setAttribute("aria-pressed", b.getAttribute("data-range") === range ? "true" : "false");
        });
        var url = new URL(window.location.href);
        url.searchParams.set("range", range);
        window.history.replaceState(null, "", url.toString());
        onChange(range);
      });
    });
  }

  /* Keep the plots of entries() ({key: {plot, plotEl}}) as wide as gridEl as it resizes. */
  function fitOnResize(gridEl, entries, height) {
    if (!window.ResizeObserver) return;
    var frame = 0;
    new ResizeObserver(function () {
      cancelAnimationFrame(frame);
      frame = requestAnimationFrame(function () {
        var all = entries();
        Object.keys(all).forEach(function (k) {
          var e = all[k];
          if (e.plot && !e.plotEl.hidden) e.plot.setSize({ width: plotWidth(e.plotEl, gridEl), height: height });
        });
      });
    }).observe(gridEl);
  }

  R.charts = {
    REFRESH_GAP: REFRESH_GAP,
    NO_LIBRARY: NO_LIBRARY,
    formatter: formatter,
    aligned: aligned,
    figure: figure,
    plot: plot,
    plotWidth: plotWidth,
    getJSON: getJSON,
    fetchMetrics: fetchMetrics,
    resolutionText: resolutionText,
    pageRanges: pageRanges,
    fitOnResize: fitOnResize,
    setZoom: setZoom,
    onZoom: onZoom,
    zoomWindow: function () { return zoom.window; }
  };
})();
