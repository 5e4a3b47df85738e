/* Roost overview table: every node's summary arrives once as JSON; this script sorts and filters those, draws one
 * page of rows, keeps them live from the node events and draws sparklines of the last hour for the rows on screen.
 * 500 nodes cost the server one JSON document and the browser 100 rows. Every value is written with textContent.
 */
(function () {
  "use strict";

  var R = window.Roost;
  var dataEl = document.getElementById("overview-data");
  var table = document.getElementById("node-table");
  if (!R || !dataEl || !table) return;
  var F = R.format;
  var config = JSON.parse(dataEl.textContent);
  var figures = config.figures || [];
  var RANK = config.ranks || {};
  var PAGE_SIZE = 100;
  var SPARK_RANGE = "1h";
  var SPARK_REFRESH_MS = 60000;
  var SPARK_PARALLEL = 4;
  var TEXT_KEYS = { name: 1, version: 1 };

  var nodes = [];
  var byId = {};
  var order = []; // ids, sorted and filtered, of every page
  var state = { key: "rank", dir: 1, filter: "", page: 0 };
  var body = table.tBodies[0];
  var redrawTimer = null;
  var sparks = {}; // node id -> {at, series}

  function num(v) {
    if (v === null || v === undefined || v === "" || typeof v === "boolean") return null;
    var n = Number(v);
    return Number.isFinite(n) ? n : null;
  }

  // ------------------------------------------------------------ ranking
  // The same order as frontend/views.py problem_rank: offline, critical, warning, stale, other problems, well.

  function alertCounts(node) {
    var a = node.alerts && typeof node.alerts === "object" ? node.alerts : {};
    return { firing: Math.max(0, num(a.firing) || 0), critical: Math.max(0, num(a.critical) || 0), warning: Math.max(0, num(a.warning) || 0) };
  }

  function problemCount(node) {
    var headline = node.headline || {};
    var n = alertCounts(node).firing + (num((node.integrations_summary || {}).problems) || 0);
    figures.forEach(function (f) {
      var v = num(headline[f.key]);
      if (f.problem_above !== null && f.problem_above !== undefined && v !== null && v > f.problem_above) n += 1;
    });
    return n;
  }

  function rankOf(node) {
    if (node.status === "offline" || node.status === "revoked") return RANK.offline;
    var a = alertCounts(node);
    if (a.critical) return RANK.critical;
    if (a.warning) return RANK.warning;
    if (node.status === "stale") return RANK.stale;
    if (problemCount(node)) return RANK.problem;
    return RANK.well;
  }

  function remember(node) {
    node.rank = rankOf(node);
    node.problems = problemCount(node);
    node.alert_counts = alertCounts(node);
    var f = node.facts || {};
    node.search = [node.name, node.hostname, node.id, "status:" + node.status, "os:" + (f.os || ""), "arch:" + (f.arch || ""),
      "virt:" + (f.virtualization || ""), node.local ? "local" : "", "version:" + (node.agent_version || "")]
      .concat(Object.keys(node.labels || {}).map(function (k) { return k + "=" + node.labels[k]; })).join(" ").toLowerCase();
    if (!byId[node.id]) nodes.push(node);
    else nodes[nodes.indexOf(byId[node.id])] = node;
    byId[node.id] = node;
  }

  // ------------------------------------------------------------ sorting and filtering

  function sortValue(node, key) {
    if (key === "rank") return node.rank;
    if (key === "name") return String(node.name || node.hostname || node.id || "").toLowerCase();
    if (key === "version") return String(node.agent_version || "").toLowerCase() || null;
    if (key === "alerts") { var a = node.alert_counts; return a.critical * 1000000 + a.warning * 1000 + a.firing; }
    if (key === "problems") return node.problems;
    if (key === "seen") return num(node.last_seen);
    if (key.indexOf("f-") === 0) return num((node.headline || {})[key.slice(2)]);
    return null;
  }

  function compare(a, b, text, dir) {
    // Missing values go last whichever way the column is sorted.
    if (a === null && b === null) return 0;
    if (a === null) return 1;
    if (b === null) return -1;
    return (text ? a.localeCompare(b) : a - b) * dir;
  }

  function arrange() {
    var tokens = state.filter.toLowerCase().split(/\s+/).filter(Boolean);
    var text = !!TEXT_KEYS[state.key];
    var keyed = nodes.filter(function (n) {
      return tokens.every(function (t) { return n.search.indexOf(t) !== -1; });
    }).map(function (n, i) { return { n: n, v: sortValue(n, state.key), name: sortValue(n, "name"), i: i }; });
    keyed.sort(function (x, y) {
      return compare(x.v, y.v, text, state.dir) || compare(x.name, y.name, true, 1) || x.i - y.i;
    });
    order = keyed.map(function (k) { return k.n.id; });
  }

  // ------------------------------------------------------------ drawing

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function valued(span, field, fmt, value) {
    span.setAttribute("data-field", field);
    span.setAttribute("data-format", fmt);
    span.setAttribute("data-value", value === null || value === undefined ? "" : String(value));
    span.textContent = (F[fmt] || F.dash)(value);
    return span;
  }

  /* " (2 crit, 1 warn)", naming only what fires. */
  function splitText(a) {
    var parts = [];
    if (a.critical) parts.push(a.critical + " crit");
    if (a.warning) parts.push(a.warning + " warn");
    return parts.length ? " (" + parts.join(", ") + ")" : "";
  }

  function cell(col, cls) {
    var td = el("td", cls);
    td.setAttribute("data-col", col);
    return td;
  }

  function row(node) {
    var tr = el("tr", "node-row");
    tr.setAttribute("data-node-id", node.id);
    tr.setAttribute("data-status", node.status || "unknown");
    tr.setAttribute("data-rank", String(node.rank));
    var headline = node.headline || {};

    var status = cell("rank");
    var badge = el("span", "badge status");
    badge.setAttribute("data-status", node.status || "unknown");
    status.appendChild(valued(badge, "status", "status", node.status));
    badge.setAttribute("data-status", node.status || "unknown");
    tr.appendChild(status);

    var name = cell("name");
    var link = el("a", "node-name", node.name || node.hostname || node.id);
    link.href = "/nodes/" + encodeURIComponent(node.id);
    name.appendChild(link);
    if (node.local) { name.appendChild(document.createTextNode(" ")); name.appendChild(el("span", "tag", "this hub")); }
    name.appendChild(el("span", "muted small node-host", node.hostname || "\u2014"));
    tr.appendChild(name);

    figures.forEach(function (f) {
      var td = cell("f-" + f.key, "num fig");
      var fmt = f.unit === "percent" ? "percent" : (columnFormat[f.key] || "number");
      var value = valued(el("span", "fig-value"), "headline." + f.key, fmt, headline[f.key]);
      if (f.problem_above !== null && f.problem_above !== undefined) value.setAttribute("data-problem-above", String(f.problem_above));
      if (f.unit === "percent") {
        var wrap = el("span", "spark-cell");
        var canvas = el("canvas", "spark");
        canvas.width = 48;
        canvas.height = 18;
        canvas.setAttribute("aria-hidden", "true");
        canvas.setAttribute("data-series", f.metric);
        wrap.append(canvas, value);
        td.appendChild(wrap);
      } else {
        td.appendChild(value);
      }
      tr.appendChild(td);
    });

    var a = node.alert_counts;
    var alerts = cell("alerts", "num alerts-cell");
    alerts.appendChild(valued(el("span", "alert-count"), "alerts.firing", "zero", a.firing));
    var split = el("span", "muted small alert-split", splitText(a));
    split.hidden = !a.firing;
    alerts.appendChild(split);
    tr.appendChild(alerts);

    var problems = cell("problems", "num");
    var p = el("span", "problem-count", String(node.problems));
    p.setAttribute("data-problems", String(node.problems));
    problems.appendChild(p);
    tr.appendChild(problems);

    tr.appendChild(cell("version")).textContent = node.agent_version || "\u2014";

    var seen = cell("seen");
    var time = el("time");
    time.setAttribute("data-field", "last_seen");
    time.setAttribute("data-format", "ago");
    if (num(node.last_seen) !== null) time.setAttribute("data-ts", String(node.last_seen));
    time.textContent = F.ago(node.last_seen);
    seen.appendChild(time);
    tr.appendChild(seen);
    return tr;
  }

  // The format of each non-percent figure, as the server chose it from the unit (the header carries it).
  var columnFormat = {};
  table.querySelectorAll("th[data-figure][data-format]").forEach(function (th) {
    columnFormat[th.getAttribute("data-figure")] = th.getAttribute("data-format");
  });

  function draw() {
    var pages = Math.max(1, Math.ceil(order.length / PAGE_SIZE));
    state.page = Math.min(state.page, pages - 1);
    var first = state.page * PAGE_SIZE;
    var ids = order.slice(first, first + PAGE_SIZE);
    var current = Array.prototype.map.call(body.rows, function (r) { return r.getAttribute("data-node-id"); });
    if (current.join("\n") !== ids.join("\n")) {
      var frag = document.createDocumentFragment();
      ids.forEach(function (id) { frag.appendChild(row(byId[id])); });
      body.replaceChildren(frag);
      observeSparks();
    }
    table.querySelectorAll("th[data-col]").forEach(function (th) {
      if (th.getAttribute("data-col") === state.key) th.setAttribute("aria-sort", state.dir > 0 ? "ascending" : "descending");
      else th.removeAttribute("aria-sort");
    });
    var foot = document.getElementById("node-table-foot");
    if (foot) {
      foot.textContent = order.length === nodes.length
        ? nodes.length + (nodes.length === 1 ? " node" : " nodes")
        : order.length + " of " + nodes.length + " nodes match";
    }
    var pager = document.getElementById("node-pager");
    if (pager) {
      pager.hidden = pages <= 1;
      var text = document.getElementById("node-pager-text");
      if (text) text.textContent = order.length ? (first + 1) + "\u2013" + Math.min(first + PAGE_SIZE, order.length) + " of " + order.length : "";
      pager.querySelector('[data-page="prev"]').disabled = state.page === 0;
      pager.querySelector('[data-page="next"]').disabled = state.page >= pages - 1;
    }
    updateCounts();
  }

  function redraw() { arrange(); draw(); }

  function updateCounts() {
    var box = document.getElementById("status-counts");
    if (!box) return;
    var counts = {};
    nodes.forEach(function (n) { counts[n.status] = (counts[n.status] || 0) + 1; });
    box.querySelectorAll(".count[data-status]").forEach(function (c) {
      var n = counts[c.getAttribute("data-status")] || 0;
      c.setAttribute("data-count", String(n));
      var nEl = c.querySelector(".count-n");
      if (nEl) nEl.textContent = String(n);
    });
  }

  function saveState() {
    var url = new URL(window.location.href);
    if (state.key === "rank" && state.dir === 1) url.searchParams.delete("sort");
    else url.searchParams.set("sort", (state.dir < 0 ? "-" : "") + state.key);
    if (state.filter) url.searchParams.set("q", state.filter); else url.searchParams.delete("q");
    window.history.replaceState(null, "", url.toString());
  }

  function loadState() {
    var url = new URL(window.location.href);
    var sort = url.searchParams.get("sort");
    if (sort && table.querySelector('button.sort[data-sort="' + CSS.escape(sort.replace(/^-/, "")) + '"]')) {
      state.dir = sort.charAt(0) === "-" ? -1 : 1;
      state.key = sort.replace(/^-/, "");
    }
    state.filter = url.searchParams.get("q") || "";
    var input = document.getElementById("node-filter");
    if (input) input.value = state.filter;
  }

  // ------------------------------------------------------------ sparklines

  var observer = null;
  var visible = new Set();
  var queue = [];
  var running = 0;

  function sparkColor(value) {
    var style = getComputedStyle(document.documentElement);
    var name = value >= 90 ? "--meter-bad" : value >= 75 ? "--meter-warn" : "--accent";
    return style.getPropertyValue(name).trim() || "#2f6fdb";
  }

  function drawSpark(canvas, points) {
    var ratio = window.devicePixelRatio || 1;
    var w = canvas.clientWidth || 64;
    var h = canvas.clientHeight || 18;
    if (canvas.width !== Math.round(w * ratio)) { canvas.width = Math.round(w * ratio); canvas.height = Math.round(h * ratio); }
    var ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, w, h);
    var values = points.filter(function (p) { return typeof p[1] === "number"; });
    canvas.setAttribute("data-points", String(values.length));
    if (!values.length) return;
    var t0 = values[0][0];
    var span = Math.max(values[values.length - 1][0] - t0, 1);
    ctx.beginPath();
    values.forEach(function (p, i) {
      var x = values.length === 1 ? w - 1 : ((p[0] - t0) / span) * (w - 2) + 1;
      var y = h - 1 - (Math.max(0, Math.min(100, p[1])) / 100) * (h - 2);
      if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    ctx.lineWidth = 1.25;
    ctx.strokeStyle = sparkColor(values[values.length - 1][1]);
    ctx.stroke();
  }

  function paint(tr) {
    var cached = sparks[tr.getAttribute("data-node-id")];
    if (!cached) return;
    tr.querySelectorAll("canvas.spark[data-series]").forEach(function (c) { drawSpark(c, cached.series[c.getAttribute("data-series")] || []); });
  }

  function loadSparks(tr) {
    var id = tr.getAttribute("data-node-id");
    var canvases = tr.querySelectorAll("canvas.spark[data-series]");
    if (!canvases.length || tr.getAttribute("data-status") === "offline") return Promise.resolve();
    var names = Array.prototype.map.call(canvases, function (c) { return c.getAttribute("data-series"); });
    var url = "/api/v1/nodes/" + encodeURIComponent(id) + "/metrics?series=" + names.map(encodeURIComponent).join(",") +
      "&range=" + SPARK_RANGE + "&resolution=minute";
    return fetch(url, { cache: "no-store", credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (res) { R.checkSession(res); if (!res.ok) throw new Error("HTTP " + res.status); return res.json(); })
      .then(function (answer) {
        sparks[id] = { at: Date.now(), series: answer.series || {} };
        var now = body.querySelector('tr[data-node-id="' + CSS.escape(id) + '"]');
        if (now) paint(now);
      });
  }

  function pump() {
    while (running < SPARK_PARALLEL && queue.length) {
      var tr = queue.shift();
      tr.removeAttribute("data-spark-queued");
      if (!visible.has(tr) || !tr.isConnected) continue;
      running += 1;
      loadSparks(tr).catch(function () { /* the next pass tries again */ }).then(function () { running -= 1; pump(); });
    }
  }

  function want(tr) {
    var cached = sparks[tr.getAttribute("data-node-id")];
    if (cached) paint(tr);
    if ((cached && Date.now() - cached.at < SPARK_REFRESH_MS) || tr.hasAttribute("data-spark-queued")) return;
    tr.setAttribute("data-spark-queued", "");
    queue.push(tr);
    pump();
  }

  function observeSparks() {
    if (!window.IntersectionObserver || !figures.some(function (f) { return f.unit === "percent"; })) return;
    if (observer) observer.disconnect();
    visible.clear();
    observer = new IntersectionObserver(function (entries) {
      entries.forEach(function (e) {
        if (e.isIntersecting) { visible.add(e.target); want(e.target); } else visible.delete(e.target);
      });
    }, { rootMargin: "200px 0px" });
    Array.prototype.forEach.call(body.rows, function (tr) { observer.observe(tr); });
  }

  // ------------------------------------------------------------ live updates

  function onNode(node) {
    if (!node || node.id === undefined) return;
    var before = byId[node.id];
    remember(Object.assign({}, before || {}, node));
    var fresh = byId[node.id];
    var tr = body.querySelector('tr[data-node-id="' + CSS.escape(String(node.id)) + '"]');
    if (tr) {
      // roost.js has written the data-field values; these depend on more than one field.
      tr.setAttribute("data-rank", String(fresh.rank));
      var split = tr.querySelector(".alert-split");
      if (split) {
        split.textContent = splitText(fresh.alert_counts);
        split.hidden = !fresh.alert_counts.firing;
      }
      var p = tr.querySelector(".problem-count");
      p.textContent = String(fresh.problems);
      p.setAttribute("data-problems", String(fresh.problems));
      var link = tr.querySelector("a.node-name");
      var name = fresh.name || fresh.hostname || fresh.id;
      if (link && name && link.textContent !== name) link.textContent = name;
    }
    if (!redrawTimer) redrawTimer = setTimeout(function () { redrawTimer = null; redraw(); }, 800);
  }

  function init() {
    (config.nodes || []).forEach(remember);
    loadState();
    table.querySelector("thead").addEventListener("click", function (event) {
      var button = event.target.closest("button.sort");
      if (!button) return;
      var key = button.getAttribute("data-sort");
      if (state.key === key) state.dir = -state.dir;
      else { state.key = key; state.dir = key === "name" || key === "rank" || key === "version" ? 1 : -1; }
      state.page = 0;
      saveState();
      redraw();
    });
    var input = document.getElementById("node-filter");
    if (input) {
      input.addEventListener("input", function () {
        state.filter = input.value.trim();
        state.page = 0;
        saveState();
        redraw();
      });
    }
    var pager = document.getElementById("node-pager");
    if (pager) {
      pager.addEventListener("click", function (event) {
        var button = event.target.closest("button[data-page]");
        if (!button) return;
        state.page += button.getAttribute("data-page") === "next" ? 1 : -1;
        draw();
        table.scrollIntoView({ block: "start" });
      });
    }
    R.onNode(onNode);
    setInterval(function () { visible.forEach(want); }, SPARK_REFRESH_MS);
    redraw();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
