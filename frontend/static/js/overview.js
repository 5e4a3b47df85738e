/* Roost overview table: sort by any column, filter by text or key:value, problems first, pages of rows, and
 * sparklines of the last hour drawn only for the rows on screen (so 500 nodes cost what 30 do).
 */
(function () {
  "use strict";

  var R = window.Roost;
  var dataEl = document.getElementById("overview-data");
  if (!R || !dataEl) return;
  var config = JSON.parse(dataEl.textContent);
  var figures = config.figures || [];
  var RANK = config.ranks || {};
  var PAGE_SIZE = 100;
  var SPARK_RANGE = "1h";
  var SPARK_REFRESH_MS = 60000;
  var SPARK_PARALLEL = 4;

  var state = { key: "rank", dir: 1, filter: "", page: 0 };
  var resortTimer = null;

  function table() { return document.getElementById("node-table"); }

  function num(v) {
    if (v === null || v === undefined || v === "") return null;
    var n = Number(v);
    return Number.isFinite(n) ? n : null;
  }

  // ------------------------------------------------------------ ranking
  // The same order as frontend/views.py problem_rank: offline, critical, warning, stale, other problems, well.

  function alertCounts(node) {
    var a = node.alerts && typeof node.alerts === "object" ? node.alerts : {};
    return { firing: num(a.firing) || 0, critical: num(a.critical) || 0, warning: num(a.warning) || 0 };
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

  // ------------------------------------------------------------ sorting and filtering

  function cellValue(row, key, type) {
    var cell = row.querySelector('td[data-col="' + key + '"]');
    if (!cell) return null;
    var raw = cell.dataset.sort;
    if (raw === undefined) {
      var valued = cell.querySelector("[data-value]");
      if (valued) raw = valued.getAttribute("data-value");
      else {
        var timed = cell.querySelector("[data-ts]");
        raw = timed ? timed.getAttribute("data-ts") : cell.textContent.trim();
      }
    }
    return type === "num" ? num(raw) : String(raw || "").toLowerCase();
  }

  function compare(a, b, type, dir) {
    // Missing values go last whichever way the column is sorted.
    if (a === null && b === null) return 0;
    if (a === null) return 1;
    if (b === null) return -1;
    if (type === "num") return (a - b) * dir;
    return a.localeCompare(b) * dir;
  }

  function rows() {
    var t = table();
    return t ? Array.prototype.slice.call(t.tBodies[0].rows) : [];
  }

  function sortRows() {
    var t = table();
    if (!t) return;
    var button = t.querySelector('button.sort[data-sort="' + state.key + '"]');
    var type = button ? button.getAttribute("data-type") : "num";
    var keyed = rows().map(function (row, i) {
      return {
        row: row,
        value: cellValue(row, state.key, type),
        name: cellValue(row, "name", "text"),
        i: i
      };
    });
    keyed.sort(function (x, y) {
      return compare(x.value, y.value, type, state.dir) || compare(x.name, y.name, "text", 1) || x.i - y.i;
    });
    var body = t.tBodies[0];
    var changed = keyed.some(function (k, i) { return body.rows[i] !== k.row; });
    if (changed) {
      var frag = document.createDocumentFragment();
      keyed.forEach(function (k) { frag.appendChild(k.row); });
      body.appendChild(frag);
    }
    t.querySelectorAll("th[data-col]").forEach(function (th) {
      var col = th.getAttribute("data-col");
      if (col === state.key) th.setAttribute("aria-sort", state.dir > 0 ? "ascending" : "descending");
      else th.removeAttribute("aria-sort");
    });
    paginate();
  }

  function matches(row, tokens) {
    var text = row.getAttribute("data-search") || "";
    return tokens.every(function (t) { return text.indexOf(t) !== -1; });
  }

  function paginate() {
    var t = table();
    if (!t) return;
    var tokens = state.filter.toLowerCase().split(/\s+/).filter(Boolean);
    var shown = rows().filter(function (row) {
      var ok = matches(row, tokens);
      row.toggleAttribute("data-filtered-out", !ok);
      return ok;
    });
    var pages = Math.max(1, Math.ceil(shown.length / PAGE_SIZE));
    state.page = Math.min(state.page, pages - 1);
    var first = state.page * PAGE_SIZE;
    shown.forEach(function (row, i) {
      row.hidden = i < first || i >= first + PAGE_SIZE;
    });
    rows().forEach(function (row) { if (row.hasAttribute("data-filtered-out")) row.hidden = true; });
    var foot = document.getElementById("node-table-foot");
    var total = rows().length;
    if (foot) {
      foot.textContent = shown.length === total
        ? total + (total === 1 ? " node" : " nodes")
        : shown.length + " of " + total + " nodes match";
    }
    var pager = document.getElementById("node-pager");
    if (pager) {
      pager.hidden = pages <= 1;
      var text = document.getElementById("node-pager-text");
      if (text) text.textContent = shown.length ? (first + 1) + "\u2013" + Math.min(first + PAGE_SIZE, shown.length) + " of " + shown.length : "";
      pager.querySelector('[data-page="prev"]').disabled = state.page === 0;
      pager.querySelector('[data-page="next"]').disabled = state.page >= pages - 1;
    }
    observeSparks();
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
    if (sort) {
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
    var t1 = values[values.length - 1][0];
    var span = Math.max(t1 - t0, 1);
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

  function loadSparks(row) {
    var canvases = row.querySelectorAll("canvas.spark[data-series]");
    if (!canvases.length || row.getAttribute("data-status") === "offline") return Promise.resolve();
    var names = Array.prototype.map.call(canvases, function (c) { return c.getAttribute("data-series"); });
    var url = "/api/v1/nodes/" + encodeURIComponent(row.getAttribute("data-node-id")) + "/metrics?series=" +
      names.map(encodeURIComponent).join(",") + "&range=" + SPARK_RANGE + "&resolution=minute";
    return fetch(url, { cache: "no-store", credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (res) { R.checkSession(res); if (!res.ok) throw new Error("HTTP " + res.status); return res.json(); })
      .then(function (body) {
        var series = body.series || {};
        canvases.forEach(function (c) { drawSpark(c, series[c.getAttribute("data-series")] || []); });
        row.setAttribute("data-spark-at", String(Date.now()));
      });
  }

  function pump() {
    while (running < SPARK_PARALLEL && queue.length) {
      var row = queue.shift();
      row.removeAttribute("data-spark-queued");
      if (!visible.has(row) || !row.isConnected) continue;
      running += 1;
      loadSparks(row).catch(function () { /* the next pass tries again */ }).then(function () { running -= 1; pump(); });
    }
  }

  function want(row) {
    var at = Number(row.getAttribute("data-spark-at") || 0);
    if (Date.now() - at < SPARK_REFRESH_MS || row.hasAttribute("data-spark-queued")) return;
    row.setAttribute("data-spark-queued", "");
    queue.push(row);
    pump();
  }

  function observeSparks() {
    var t = table();
    if (!t || !t.querySelector("canvas.spark")) return;
    if (!observer && window.IntersectionObserver) {
      observer = new IntersectionObserver(function (entries) {
        entries.forEach(function (e) {
          if (e.isIntersecting) { visible.add(e.target); want(e.target); } else visible.delete(e.target);
        });
      }, { rootMargin: "200px 0px" });
    }
    rows().forEach(function (row) {
      if (row.hasAttribute("data-observed") || !observer) return;
      row.setAttribute("data-observed", "");
      observer.observe(row);
    });
  }

  // ------------------------------------------------------------ live updates

  function scheduleResort() {
    if (resortTimer) return;
    resortTimer = setTimeout(function () { resortTimer = null; sortRows(); }, 800);
  }

  function onNode(node) {
    var row = document.querySelector('tr.node-row[data-node-id="' + CSS.escape(String(node.id)) + '"]');
    if (!row) return; // roost.js refreshes the fragment for a node the page does not have yet
    var rank = rankOf(node);
    var a = alertCounts(node);
    var problems = problemCount(node);
    row.setAttribute("data-rank", String(rank));
    row.querySelector('td[data-col="rank"]').dataset.sort = String(rank);
    var alertsCell = row.querySelector('td[data-col="alerts"]');
    if (alertsCell) {
      alertsCell.dataset.sort = String(a.critical * 1000000 + a.warning * 1000 + a.firing);
      var split = alertsCell.querySelector(".alert-split");
      if (split) split.hidden = !a.firing;
    }
    var problemsCell = row.querySelector('td[data-col="problems"]');
    if (problemsCell) {
      problemsCell.dataset.sort = String(problems);
      var p = problemsCell.querySelector(".problem-count");
      p.textContent = String(problems);
      p.setAttribute("data-problems", String(problems));
    }
    var link = row.querySelector("a.node-name");
    var name = node.name || node.hostname || node.id;
    if (link && name && link.textContent !== name) link.textContent = name;
    scheduleResort();
  }

  function init() {
    loadState();
    var t = table();
    if (t) {
      t.querySelector("thead").addEventListener("click", function (event) {
        var button = event.target.closest("button.sort");
        if (!button) return;
        var key = button.getAttribute("data-sort");
        if (state.key === key) state.dir = -state.dir;
        else { state.key = key; state.dir = key === "name" || key === "rank" || key === "version" ? 1 : -1; }
        state.page = 0;
        saveState();
        sortRows();
      });
    }
    var input = document.getElementById("node-filter");
    if (input) {
      input.addEventListener("input", function () {
        state.filter = input.value.trim();
        state.page = 0;
        saveState();
        paginate();
      });
    }
    var pager = document.getElementById("node-pager");
    if (pager) {
      pager.addEventListener("click", function (event) {
        var button = event.target.closest("button[data-page]");
        if (!button) return;
        state.page += button.getAttribute("data-page") === "next" ? 1 : -1;
        paginate();
        table().scrollIntoView({ block: "start" });
      });
    }
    R.onNode(onNode);
    document.addEventListener("roost:fragment", function (event) {
      if (event.detail && event.detail.name === "nodes") {
        observer = null;
        visible.clear();
        sortRows();
      }
    });
    setInterval(function () { visible.forEach(want); }, SPARK_REFRESH_MS);
    sortRows();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
