/* Roost containers pages: sort, filter and group the table; open containers in closeable tabs with history charts,
 * actions and logs (through the hub's jobs API); keep everything current from the live node events.
 *
 * Hub data reaches the page as server-rendered, autoescaped HTML fragments (parsed inertly) or as JSON written
 * with textContent and attributes only.
 */
(function () {
  "use strict";

  var R = window.Roost;
  if (!R) return;
  var F = R.format;
  var DASH = "\u2014";

  var listData = document.getElementById("containers-data");
  var single = document.getElementById("ct-single");
  if (!listData && !single) return;

  var CHART_HEIGHT = 170;
  var INFO_GAP = 5000;
  var LIST_GAP = 5000;
  var JOB_POLL_MS = 1000;
  var FOLLOW_SECONDS = 600;
  var FINAL = { succeeded: 1, failed: 1, timed_out: 1, cancelled: 1, refused: 1 };

  // ----------------------------------------------------------------- helpers

  function getJSON(url, options) {
    var init = Object.assign({ cache: "no-store", credentials: "same-origin", headers: { Accept: "application/json" } }, options || {});
    return fetch(url, init).then(function (res) {
      R.checkSession(res);
      return res.json().catch(function () { return {}; }).then(function (body) {
        if (!res.ok) {
          var err = new Error(body && body.error ? body.error : "HTTP " + res.status);
          err.status = res.status;
          throw err;
        }
        return body;
      });
    });
  }

  function postJSON(url, body) {
    return getJSON(url, { method: "POST", headers: { Accept: "application/json", "Content-Type": "application/json" }, body: JSON.stringify(body || {}) });
  }

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function fetchFragment(url) {
    return fetch(url, { headers: { Accept: "text/html" }, cache: "no-store", credentials: "same-origin" })
      .then(function (res) {
        R.checkSession(res);
        if (!res.ok) throw new Error(res.status === 404 ? "this container is gone" : "HTTP " + res.status);
        return res.text();
      })
      .then(function (html) { return new DOMParser().parseFromString(html, "text/html"); });
  }

  function detailUrl(nodeId, name) {
    return "/containers/" + encodeURIComponent(nodeId) + "/" + encodeURIComponent(name);
  }

  // ------------------------------------------------------ the table: sort, filter, group

  var sortState = { key: "", dir: 1 };
  var NUMERIC = { cpu: 1, mem: 1, exit: 1, uptime: 1 };

  function sortValue(row, key) {
    if (key === "state") return Number(row.getAttribute("data-state-rank"));
    var raw = row.getAttribute("data-" + key) || "";
    if (NUMERIC[key]) return raw === "" ? null : Number(raw);
    return raw.toLowerCase();
  }

  function compare(a, b, key, dir) {
    var va = sortValue(a, key);
    var vb = sortValue(b, key);
    // Missing values sort last whichever the direction.
    if (va === null || va === "") return vb === null || vb === "" ? 0 : 1;
    if (vb === null || vb === "") return -1;
    var c = typeof va === "number" ? va - vb : String(va).localeCompare(String(vb), undefined, { numeric: true });
    if (c === 0) c = (a.getAttribute("data-name") || "").localeCompare(b.getAttribute("data-name") || "");
    return c * dir;
  }

  function applySort() {
    var table = document.getElementById("ct-table");
    if (!table) return;
    table.querySelectorAll("th[data-sort]").forEach(function (th) {
      var key = th.getAttribute("data-sort");
      th.setAttribute("aria-sort", key === sortState.key ? (sortState.dir > 0 ? "ascending" : "descending") : "none");
    });
    if (!sortState.key) return;
    table.querySelectorAll("tbody.ct-group").forEach(function (tbody) {
      var rows = Array.prototype.slice.call(tbody.querySelectorAll("tr.ct-row"));
      rows.sort(function (a, b) { return compare(a, b, sortState.key, sortState.dir); });
      rows.forEach(function (row) { tbody.appendChild(row); });
    });
  }

  function applyFilter() {
    var table = document.getElementById("ct-table");
    var count = document.getElementById("ct-count");
    var input = document.getElementById("ct-filter");
    var stateSel = document.getElementById("ct-state");
    var terms = input ? input.value.toLowerCase().split(/\s+/).filter(Boolean) : [];
    var state = stateSel ? stateSel.value : "";
    if (!table) { if (count) count.textContent = ""; return; }
    var shown = 0;
    var total = 0;
    table.querySelectorAll("tbody.ct-group").forEach(function (tbody) {
      var visible = 0;
      tbody.querySelectorAll("tr.ct-row").forEach(function (row) {
        total += 1;
        var text = ["name", "host", "image", "project", "ports", "state", "health"]
          .map(function (k) { return row.getAttribute("data-" + k) || ""; }).join(" ").toLowerCase();
        var ok = terms.every(function (t) { return text.indexOf(t) !== -1; });
        if (ok && state) ok = state === "unhealthy" ? row.getAttribute("data-health") === "unhealthy" : row.getAttribute("data-state") === state;
        row.hidden = !ok;
        if (ok) { visible += 1; shown += 1; }
      });
      tbody.hidden = visible === 0;
    });
    var none = document.getElementById("ct-none");
    if (none) none.hidden = shown !== 0;
    if (count) count.textContent = shown === total ? total + (total === 1 ? " container" : " containers") : "Showing " + shown + " of " + total + " containers";
  }

  function rememberQuery() {
    var url = new URL(window.location.href);
    var input = document.getElementById("ct-filter");
    var stateSel = document.getElementById("ct-state");
    var group = document.getElementById("ct-group");
    function set(name, value) { if (value) url.searchParams.set(name, value); else url.searchParams.delete(name); }
    set("q", input ? input.value : "");
    set("state", stateSel ? stateSel.value : "");
    set("group", group && group.checked ? "project" : "");
    set("sort", sortState.key ? (sortState.dir > 0 ? "" : "-") + sortState.key : "");
    window.history.replaceState(null, "", url.toString());
  }

  function initList() {
    var url = new URL(window.location.href);
    var input = document.getElementById("ct-filter");
    var stateSel = document.getElementById("ct-state");
    var group = document.getElementById("ct-group");
    if (input && url.searchParams.get("q")) input.value = url.searchParams.get("q");
    if (stateSel && url.searchParams.get("state")) stateSel.value = url.searchParams.get("state");
    var sort = url.searchParams.get("sort") || "";
    if (sort) sortState = { key: sort.replace(/^-/, ""), dir: sort.charAt(0) === "-" ? -1 : 1 };
    var form = document.getElementById("ct-toolbar");
    if (form) form.addEventListener("submit", function (e) { e.preventDefault(); });
    if (input) input.addEventListener("input", function () { applyFilter(); rememberQuery(); });
    if (stateSel) stateSel.addEventListener("change", function () { applyFilter(); rememberQuery(); });
    if (group) {
      group.addEventListener("change", function () {
        rememberQuery();
        R.refreshFragment("containers", 0);
      });
    }
    document.addEventListener("click", function (e) {
      var button = e.target.closest && e.target.closest("button.ct-sort");
      if (!button) return;
      var key = button.getAttribute("data-sort");
      sortState = sortState.key === key ? { key: key, dir: -sortState.dir } : { key: key, dir: 1 };
      applySort();
      rememberQuery();
    });
    document.addEventListener("roost:fragment", function (e) {
      if (e.detail && e.detail.name === "containers") { applySort(); applyFilter(); }
    });
    applySort();
    applyFilter();
  }

  // ------------------------------------------------------------------- tabs

  var tabs = {}; // key -> {tab, close, wrap, panel, detail}
  var tabSeq = 0;

  function tablist() { return document.getElementById("ct-tabs"); }

  function selectTab(key) {
    var list = tablist();
    if (!list) return;
    list.querySelectorAll("[role=tab]").forEach(function (t) {
      var mine = t.getAttribute("data-tab") === key;
      t.setAttribute("aria-selected", mine ? "true" : "false");
      t.tabIndex = mine ? 0 : -1;
    });
    document.querySelectorAll("[role=tabpanel][data-panel]").forEach(function (p) { p.hidden = p.getAttribute("data-panel") !== key; });
    var entry = tabs[key];
    if (entry && entry.detail) entry.detail.shown();
    rememberTabs();
  }

  /* The open tabs and the one shown live in the address (?open=node/name,…&tab=node/name): a link or a reload
   * opens the same containers. */
  function rememberTabs() {
    var url = new URL(window.location.href);
    var keys = Object.keys(tabs);
    var shown = "";
    keys.forEach(function (k) { if (tabs[k].tab.getAttribute("aria-selected") === "true") shown = k; });
    if (keys.length) url.searchParams.set("open", keys.join(",")); else url.searchParams.delete("open");
    if (shown) url.searchParams.set("tab", shown); else url.searchParams.delete("tab");
    if (url.toString() !== window.location.href) window.history.replaceState(null, "", url.toString());
  }

  function restoreTabs() {
    var url = new URL(window.location.href);
    var keys = (url.searchParams.get("open") || "").split(",").filter(Boolean);
    var shown = url.searchParams.get("tab") || "";
    if (shown && keys.indexOf(shown) === -1) keys.push(shown);
    keys.forEach(function (key) {
      var cut = key.indexOf("/");
      if (cut > 0 && cut < key.length - 1) openTab(key.slice(0, cut), key.slice(cut + 1), false);
    });
    selectTab(shown && tabs[shown] ? shown : "list");
  }

  function openTab(nodeId, name, focus) {
    var key = nodeId + "/" + name;
    if (tabs[key]) { selectTab(key); if (focus) tabs[key].tab.focus(); return tabs[key]; }
    tabSeq += 1;
    var id = "ct-tab-" + tabSeq;
    var wrap = el("span", { class: "ct-tab-wrap", "data-tab-wrap": key });
    var tab = el("button", { type: "button", role: "tab", class: "ct-tab", id: id, "aria-controls": id + "-panel", "aria-selected": "false", "data-tab": key, title: name }, name);
    var close = el("button", { type: "button", class: "ct-tab-close", "aria-label": "Close " + name, title: "Close", "data-close": key }, "\u00d7");
    wrap.append(tab, close);
    tablist().appendChild(wrap);
    var panel = el("section", { role: "tabpanel", class: "ct-panel", id: id + "-panel", "aria-labelledby": id, "data-panel": key });
    panel.appendChild(el("p", { class: "muted", role: "status" }, "Loading " + name + "\u2026"));
    document.getElementById("ct-detail-panels").appendChild(panel);
    var entry = tabs[key] = { tab: tab, close: close, wrap: wrap, panel: panel, detail: null, nodeId: nodeId, name: name };
    tab.addEventListener("click", function () { selectTab(key); });
    close.addEventListener("click", function () { closeTab(key); });
    selectTab(key);
    if (focus) tab.focus();
    fetchFragment(detailUrl(nodeId, name) + "?fragment=detail")
      .then(function (doc) {
        if (tabs[key] !== entry) return;
        panel.replaceChildren.apply(panel, Array.prototype.slice.call(doc.body.childNodes));
        R.refreshTimes(panel);
        var article = panel.querySelector(".ct-detail");
        if (article) entry.detail = new Detail(article);
        if (!panel.hidden && entry.detail) entry.detail.shown();
      })
      .catch(function (err) {
        panel.replaceChildren(el("p", { class: "notice tone-warn", role: "alert" }, "Cannot open " + name + ": " + err.message));
      });
    return entry;
  }

  function closeTab(key) {
    var entry = tabs[key];
    if (!entry) return;
    var wasSelected = entry.tab.getAttribute("aria-selected") === "true";
    if (entry.detail) entry.detail.destroy();
    entry.wrap.remove();
    entry.panel.remove();
    delete tabs[key];
    if (wasSelected) {
      selectTab("list");
      var listTab = document.getElementById("ct-tab-list");
      if (listTab) listTab.focus();
    }
    rememberTabs();
  }

  function initTabs() {
    var list = tablist();
    if (!list) return;
    var listTab = document.getElementById("ct-tab-list");
    listTab.addEventListener("click", function () { selectTab("list"); });
    list.addEventListener("keydown", function (e) {
      if (e.key !== "ArrowRight" && e.key !== "ArrowLeft" && e.key !== "Delete") return;
      var all = Array.prototype.slice.call(list.querySelectorAll("[role=tab]"));
      var i = all.indexOf(document.activeElement);
      if (i === -1) return;
      if (e.key === "Delete") {
        var key = all[i].getAttribute("data-tab");
        if (key !== "list") { e.preventDefault(); closeTab(key); }
        return;
      }
      e.preventDefault();
      var next = all[(i + (e.key === "ArrowRight" ? 1 : all.length - 1)) % all.length];
      selectTab(next.getAttribute("data-tab"));
      next.focus();
    });
    document.addEventListener("click", function (e) {
      var link = e.target.closest && e.target.closest("a.ct-open");
      if (!link || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
      e.preventDefault();
      openTab(link.getAttribute("data-node"), link.getAttribute("data-container"), true);
    });
  }

  // ------------------------------------------------- actions on ticked rows, with a confirmation

  var picked = {}; // "node/name" -> true, kept across the table's live refreshes
  var pending = null; // {action, targets} waiting for Yes

  function rowKey(row) { return row.getAttribute("data-node-id") + "/" + row.getAttribute("data-name"); }

  function pickedRows() {
    return Array.prototype.filter.call(document.querySelectorAll("#ct-table tr.ct-row"), function (row) { return picked[rowKey(row)]; });
  }

  function updateBulk() {
    var bar = document.getElementById("ct-bulk");
    if (!bar) return;
    document.querySelectorAll("#ct-table tr.ct-row").forEach(function (row) {
      var box = row.querySelector(".ct-pick-row");
      if (box) box.checked = !!picked[rowKey(row)];
    });
    var rows = pickedRows();
    bar.hidden = rows.length === 0;
    document.getElementById("ct-bulk-count").textContent = rows.length + (rows.length === 1 ? " container selected" : " containers selected");
    bar.querySelectorAll("[data-bulk-action]").forEach(function (b) {
      var action = b.getAttribute("data-bulk-action");
      b.disabled = !rows.some(function (r) { return (r.getAttribute("data-actions") || "").split(" ").indexOf(action) !== -1; });
    });
  }

  function label(action) { return (page.actions && page.actions[action]) || action; }

  function askFirst(action, rows) {
    var can = rows.filter(function (r) { return (r.getAttribute("data-actions") || "").split(" ").indexOf(action) !== -1; });
    var skipped = rows.length - can.length;
    if (!can.length) return;
    var hosts = {};
    can.forEach(function (r) { hosts[r.getAttribute("data-host")] = true; });
    var names = can.map(function (r) { return r.getAttribute("data-name"); });
    var what = can.length === 1 ? names[0] + " on " + can[0].getAttribute("data-host")
      : can.length + " containers on " + Object.keys(hosts).length + (Object.keys(hosts).length === 1 ? " host" : " hosts") + " (" + names.slice(0, 5).join(", ") + (names.length > 5 ? ", \u2026" : "") + ")";
    var text = label(action) + " " + what + "?";
    if (skipped) text += " " + skipped + " selected " + (skipped === 1 ? "is" : "are") + " not in a state to " + label(action).toLowerCase() + " and will be left alone.";
    pending = { action: action, targets: can.map(function (r) { return { node: r.getAttribute("data-node-id"), name: r.getAttribute("data-name"), host: r.getAttribute("data-host") }; }) };
    var box = document.getElementById("ct-confirm");
    document.getElementById("ct-confirm-text").textContent = text;
    box.hidden = false;
    document.getElementById("ct-confirm-yes").focus();
  }

  function result(target, action) {
    var li = el("li", { class: "ct-result", "data-key": target.node + "/" + target.name, "data-action": action });
    li.appendChild(el("strong", {}, label(action) + " " + target.name));
    li.appendChild(document.createTextNode(" on " + target.host + ": "));
    var state = el("span", { class: "ct-result-state" }, "queued");
    li.appendChild(state);
    document.getElementById("ct-results").prepend(li);
    return state;
  }

  function confirmed() {
    var job = pending;
    pending = null;
    document.getElementById("ct-confirm").hidden = true;
    if (!job) return;
    job.targets.forEach(function (t) {
      var state = result(t, job.action);
      runJob(t.node, job.action, { container: t.name }, function (now) { state.textContent = String(now.state).replace(/_/g, " "); })
        .then(function (done) {
          state.textContent = done.state === "succeeded" ? "done" : String(done.state).replace(/_/g, " ") + (done.error ? ": " + done.error : "");
          state.setAttribute("data-state", done.state);
          R.refreshFragment("containers", 0);
        })
        .catch(function (err) { state.textContent = "not started: " + err.message; state.setAttribute("data-state", "refused"); });
    });
    picked = {};
    updateBulk();
  }

  function initBulk() {
    var bar = document.getElementById("ct-bulk");
    if (!bar) return;
    document.addEventListener("change", function (e) {
      var t = e.target;
      if (t.classList && t.classList.contains("ct-pick-row")) {
        var key = rowKey(t.closest("tr.ct-row"));
        if (t.checked) picked[key] = true; else delete picked[key];
        updateBulk();
      } else if (t.id === "ct-pick-all") {
        document.querySelectorAll("#ct-table tr.ct-row").forEach(function (row) {
          if (row.hidden || row.closest("tbody").hidden) return;
          if (t.checked) picked[rowKey(row)] = true; else delete picked[rowKey(row)];
        });
        updateBulk();
      }
    });
    document.addEventListener("click", function (e) {
      var rowButton = e.target.closest && e.target.closest("[data-row-action]");
      if (rowButton) { askFirst(rowButton.getAttribute("data-row-action"), [rowButton.closest("tr.ct-row")]); return; }
      var bulk = e.target.closest && e.target.closest("[data-bulk-action]");
      if (bulk && !bulk.disabled) { askFirst(bulk.getAttribute("data-bulk-action"), pickedRows()); return; }
      if (e.target.closest && e.target.closest("[data-bulk-clear]")) { picked = {}; updateBulk(); }
    });
    document.getElementById("ct-confirm-yes").addEventListener("click", confirmed);
    document.getElementById("ct-confirm-no").addEventListener("click", function () {
      pending = null;
      document.getElementById("ct-confirm").hidden = true;
    });
    document.addEventListener("roost:fragment", function (e) { if (e.detail && e.detail.name === "containers") updateBulk(); });
  }

  // ---------------------------------------------------- one container's detail

  var actionsCache = {}; // node id -> {at, promise}

  function nodeActions(nodeId) {
    var cached = actionsCache[nodeId];
    if (cached && Date.now() - cached.at < 30000) return cached.promise;
    var promise = getJSON("/api/v1/nodes/" + encodeURIComponent(nodeId) + "/actions").then(function (body) {
      var byName = {};
      (body.actions || []).forEach(function (a) { byName[a.name] = a; });
      return { online: body.online !== false, actions: byName };
    });
    actionsCache[nodeId] = { at: Date.now(), promise: promise };
    promise.catch(function () { delete actionsCache[nodeId]; });
    return promise;
  }

  function whyNot(info, action) {
    if (!info) return "this hub cannot run actions on this host";
    var a = info.actions[action];
    if (!a) return "this host does not offer " + action;
    if (!a.allowed) return a.reason || "not allowed on this host";
    return "";
  }

  function runJob(nodeId, action, params, onUpdate) {
    return postJSON("/api/v1/nodes/" + encodeURIComponent(nodeId) + "/actions/" + encodeURIComponent(action), { params: params })
      .then(function (job) {
        onUpdate(job);
        return new Promise(function (resolve, reject) {
          function poll() {
            getJSON("/api/v1/jobs/" + encodeURIComponent(job.id)).then(function (now) {
              onUpdate(now);
              if (FINAL[now.state]) resolve(now);
              else setTimeout(poll, JOB_POLL_MS);
            }).catch(reject);
          }
          if (FINAL[job.state]) resolve(job); else setTimeout(poll, JOB_POLL_MS);
        });
      });
  }

  function Detail(root) {
    this.root = root;
    this.nodeId = root.getAttribute("data-node-id");
    this.name = root.getAttribute("data-container");
    this.plots = {};
    this.range = "1h";
    this.loadSeq = 0;
    this.lastCharts = 0;
    this.lastInfo = Date.now();
    this.followJob = null;
    this.dead = false;
    var dataEl = root.querySelector(".ct-chart-data");
    this.chartSpec = dataEl ? JSON.parse(dataEl.textContent) : { charts: [] };
    this.range = this.chartSpec.range || "1h";
    this.initRanges();
    this.initActions();
    this.initLogs();
  }

  Detail.prototype.shown = function () {
    if (!this.lastCharts) this.loadCharts();
    else this.resize();
  };

  Detail.prototype.destroy = function () {
    this.dead = true;
    var self = this;
    Object.keys(this.plots).forEach(function (k) { if (self.plots[k].plot) self.plots[k].plot.destroy(); });
    this.plots = {};
    if (this.followJob) this.cancelFollow();
  };

  // Charts ---------------------------------------------------------------

  Detail.prototype.initRanges = function () {
    var self = this;
    this.root.querySelectorAll(".ct-history .range[data-range]").forEach(function (b) {
      b.addEventListener("click", function () {
        self.range = b.getAttribute("data-range");
        self.root.querySelectorAll(".ct-history .range[data-range]").forEach(function (o) {
          o.setAttribute("aria-pressed", o === b ? "true" : "false");
        });
        self.loadCharts();
      });
    });
  };

  Detail.prototype.chartsEl = function () { return this.root.querySelector(".ct-charts"); };

  Detail.prototype.setChartStatus = function (text) {
    var status = this.root.querySelector(".ct-chart-status");
    if (status) { status.textContent = text; status.hidden = !text; }
  };

  Detail.prototype.loadCharts = function () {
    var self = this;
    var charts = this.chartSpec.charts || [];
    if (!charts.length || this.dead) return;
    if (!window.uPlot) { this.setChartStatus(R.charts.NO_LIBRARY); return; }
    var names = [];
    charts.forEach(function (c) { c.series.forEach(function (s) { names.push(s.name); }); });
    var seq = ++this.loadSeq;
    this.lastCharts = Date.now();
    R.charts.fetchMetrics(this.nodeId, names, this.range).then(function (body) {
      if (seq !== self.loadSeq || self.dead) return;
      var window_ = typeof body.start === "number" ? [body.start, body.end] : null;
      charts.forEach(function (chart) { self.drawChart(chart, body.series || {}, window_); });
      self.setChartStatus("");
      var note = self.root.querySelector(".ct-chart-resolution");
      if (note) note.textContent = R.charts.resolutionText(body.resolution);
    }).catch(function (err) {
      if (seq === self.loadSeq) self.setChartStatus("Could not load history: " + err.message);
    });
  };

  Detail.prototype.drawChart = function (chart, series, timeWindow) {
    var entry = this.plots[chart.key];
    var box = this.chartsEl();
    if (!entry) {
      entry = this.plots[chart.key] = R.charts.figure(chart.key, chart.title);
      entry.plot = null;
      box.appendChild(entry.fig);
    }
    var result = R.charts.aligned(chart.series.map(function (s) { return s.name; }), series, false);
    entry.fig.setAttribute("data-points", String(result.points));
    entry.fig.setAttribute("data-range", this.range);
    entry.emptyEl.hidden = result.points > 0;
    entry.plotEl.hidden = result.points === 0;
    if (entry.plot) { entry.plot.destroy(); entry.plot = null; }
    if (result.points === 0 || entry.plotEl.hidden) return;
    entry.plot = R.charts.plot(entry.plotEl, result.data, {
      unit: chart.unit,
      labels: chart.series.map(function (s) { return s.label; }),
      width: R.charts.plotWidth(entry.plotEl, box),
      height: CHART_HEIGHT,
      timeWindow: function () { return timeWindow; },
      axisSize: 84,
      fromZero: true
    });
  };

  Detail.prototype.resize = function () {
    var self = this;
    Object.keys(this.plots).forEach(function (k) {
      var e = self.plots[k];
      if (e.plot && !e.plotEl.hidden) e.plot.setSize({ width: R.charts.plotWidth(e.plotEl), height: CHART_HEIGHT });
    });
  };

  // Live refresh of the facts above the charts ---------------------------

  Detail.prototype.refreshInfo = function () {
    var self = this;
    if (this.dead || Date.now() - this.lastInfo < INFO_GAP) return;
    this.lastInfo = Date.now();
    fetchFragment(detailUrl(this.nodeId, this.name) + "?fragment=detail").then(function (doc) {
      if (self.dead) return;
      var fresh = doc.querySelector(".ct-info");
      var old = self.root.querySelector(".ct-info");
      if (fresh && old) { old.replaceWith(fresh); R.refreshTimes(fresh); }
      var head = doc.querySelector(".ct-detail-head");
      var oldHead = self.root.querySelector(".ct-detail-head");
      if (head && oldHead) { oldHead.replaceWith(head); R.refreshTimes(head); }
      // The state decides which lifecycle buttons make sense.
      doc.querySelectorAll(".ct-action[data-action]").forEach(function (b) {
        var mine = self.root.querySelector('.ct-action[data-action="' + b.getAttribute("data-action") + '"]');
        if (mine) mine.setAttribute("data-state-ok", b.getAttribute("data-state-ok"));
      });
      self.updateActions();
    }).catch(function () { /* the next event tries again */ });
    if (Date.now() - this.lastCharts > 10000 && !this.root.closest("[hidden]")) this.loadCharts();
  };

  // Actions ------------------------------------------------------------------

  Detail.prototype.initActions = function () {
    var self = this;
    var bar = this.root.querySelector(".ct-actions");
    this.actionStatus = bar ? bar.querySelector(".ct-action-status") : null;
    this.busy = false;
    this.info = null;
    if (!bar || bar.hasAttribute("data-push")) return;
    bar.addEventListener("click", function (e) {
      var button = e.target.closest && e.target.closest("button.ct-action");
      if (!button || button.disabled) return;
      self.run(button.getAttribute("data-action"), button.textContent);
    });
    nodeActions(this.nodeId).then(function (info) {
      self.info = info;
      self.updateActions();
      self.updateLogs();
    }).catch(function (err) {
      self.info = null;
      var why = err.status === 404 ? "this hub cannot run actions yet" : err.message;
      if (self.actionStatus) self.actionStatus.textContent = "Actions unavailable: " + why + ".";
      self.updateLogs(why);
    });
  };

  Detail.prototype.updateActions = function () {
    var self = this;
    var reasons = [];
    this.root.querySelectorAll(".ct-action[data-action]").forEach(function (b) {
      var action = b.getAttribute("data-action");
      var why = self.info ? whyNot(self.info, action) : "no actions";
      if (why && reasons.indexOf(why) === -1 && self.info) reasons.push(why);
      b.disabled = self.busy || !!why || b.getAttribute("data-state-ok") !== "true";
      b.title = why || "";
    });
    if (this.info && !this.busy && this.actionStatus && reasons.length && !this.actionStatus.dataset.job) {
      this.actionStatus.textContent = reasons[0].charAt(0).toUpperCase() + reasons[0].slice(1) + ".";
    }
  };

  Detail.prototype.run = function (action, label) {
    var self = this;
    this.busy = true;
    this.updateActions();
    var status = this.actionStatus;
    status.dataset.job = "1";
    status.textContent = label + ": queued\u2026";
    runJob(this.nodeId, action, { container: this.name }, function (job) {
      status.textContent = label + ": " + job.state.replace("_", " ") + (job.progress ? " \u2014 " + job.progress : "") + "\u2026";
    }).then(function (job) {
      var result = job.result || {};
      status.textContent = job.state === "succeeded" ? (result.output || label + " done") : label + " " + job.state.replace("_", " ") + ": " + (job.error || "no reason given");
    }).catch(function (err) {
      status.textContent = label + " failed: " + err.message;
    }).then(function () {
      self.busy = false;
      delete status.dataset.job;
      self.lastInfo = 0;
      self.refreshInfo();
      self.updateActions();
    });
  };

  // Logs -----------------------------------------------------------------------

  Detail.prototype.initLogs = function () {
    var self = this;
    var box = this.root.querySelector(".ct-logs");
    if (!box) return;
    this.logBox = box;
    this.logPre = box.querySelector(".ct-log");
    this.logStatus = box.querySelector(".ct-log-status");
    this.logLoad = box.querySelector(".ct-log-load");
    this.logFollow = box.querySelector(".ct-log-follow");
    this.logTail = box.querySelector(".ct-log-tail");
    if (this.logLoad) this.logLoad.addEventListener("click", function () { self.loadLogs(); });
    if (this.logFollow) this.logFollow.addEventListener("click", function () {
      if (self.followJob) self.cancelFollow(); else self.follow();
    });
  };

  Detail.prototype.updateLogs = function (failure) {
    if (!this.logBox) return;
    var why = failure || (this.info ? whyNot(this.info, "docker.container.logs") : "");
    var ok = !why && !this.root.querySelector(".ct-actions[data-push]");
    this.logLoad.disabled = !ok;
    this.logFollow.disabled = !ok;
    if (!ok && why) this.logStatus.textContent = "Logs unavailable: " + why + ".";
    else if (ok) this.logStatus.textContent = "Read on the host when you ask; follow streams new lines for up to " + FOLLOW_SECONDS / 60 + " minutes.";
  };

  Detail.prototype.showLog = function (text) {
    var pre = this.logPre;
    var atEnd = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 30;
    pre.hidden = false;
    pre.textContent = text;
    if (atEnd) pre.scrollTop = pre.scrollHeight;
  };

  Detail.prototype.loadLogs = function () {
    var self = this;
    this.logLoad.disabled = true;
    this.logStatus.textContent = "Reading the last " + this.logTail.value + " lines\u2026";
    runJob(this.nodeId, "docker.container.logs", { container: this.name, tail: Number(this.logTail.value) }, function () {})
      .then(function (job) {
        if (job.state !== "succeeded") throw new Error(job.error || job.state);
        var result = job.result || {};
        self.showLog(result.output || job.output || "");
        self.logStatus.textContent = (result.lines || 0) + " lines" + (result.truncated ? " (the start was cut)" : "") + ", read " + new Date().toLocaleTimeString() + ".";
      })
      .catch(function (err) { self.logStatus.textContent = "Cannot read the log: " + err.message; })
      .then(function () { self.logLoad.disabled = false; });
  };

  Detail.prototype.follow = function () {
    var self = this;
    this.logFollow.setAttribute("aria-pressed", "true");
    this.logFollow.textContent = "Stop";
    this.logStatus.textContent = "Following\u2026";
    this.followJob = { id: null };
    var mine = this.followJob;
    runJob(this.nodeId, "docker.container.logs", { container: this.name, tail: Number(this.logTail.value), follow: true, follow_seconds: FOLLOW_SECONDS }, function (job) {
      mine.id = job.id;
      if (self.dead || self.followJob !== mine) return;
      if (job.output) self.showLog(job.output);
      if (job.state === "running") self.logStatus.textContent = "Following (live)\u2026";
    }).then(function (job) {
      if (self.followJob !== mine) return;
      self.logStatus.textContent = job.state === "succeeded" ? "Stopped following: " + ((job.result || {}).ended ? "the container stopped." : "time is up.") : "Follow " + job.state.replace("_", " ") + ": " + (job.error || "");
    }).catch(function (err) {
      if (self.followJob === mine) self.logStatus.textContent = "Cannot follow the log: " + err.message;
    }).then(function () {
      if (self.followJob === mine) self.stopFollowUi();
    });
  };

  Detail.prototype.cancelFollow = function () {
    var job = this.followJob;
    this.stopFollowUi();
    if (this.logStatus) this.logStatus.textContent = "Stopped following.";
    if (job && job.id) postJSON("/api/v1/jobs/" + encodeURIComponent(job.id) + "/cancel").catch(function () {});
  };

  Detail.prototype.stopFollowUi = function () {
    this.followJob = null;
    if (this.logFollow) { this.logFollow.setAttribute("aria-pressed", "false"); this.logFollow.textContent = "Follow"; }
  };

  // ------------------------------------------------------------------- live

  var page = listData ? JSON.parse(listData.textContent) : {};
  var singleDetail = null;

  R.onNode(function (node) {
    var id = String(node.id);
    if (listData) R.refreshFragment("containers", LIST_GAP);
    Object.keys(tabs).forEach(function (key) {
      var entry = tabs[key];
      if (entry.detail && entry.nodeId === id) entry.detail.refreshInfo();
    });
    if (singleDetail && singleDetail.nodeId === id) singleDetail.refreshInfo();
  });

  var resizeFrame = 0;
  window.addEventListener("resize", function () {
    cancelAnimationFrame(resizeFrame);
    resizeFrame = requestAnimationFrame(function () {
      Object.keys(tabs).forEach(function (k) { if (tabs[k].detail && !tabs[k].panel.hidden) tabs[k].detail.resize(); });
      if (singleDetail) singleDetail.resize();
    });
  });

  if (listData) {
    initList();
    initTabs();
    initBulk();
    restoreTabs();
    window.RoostContainers = { openTab: openTab, closeTab: closeTab, tabs: tabs, page: page };
  }
  if (single) {
    var article = single.querySelector(".ct-detail");
    if (article) { singleDetail = new Detail(article); singleDetail.shown(); }
  }
})();
