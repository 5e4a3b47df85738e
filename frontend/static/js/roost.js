/* Roost dashboard: human units, live updates (Server-Sent Events with a polling fallback) and in-place refreshes.
 *
 * Every value coming from the hub is written with textContent or as an
 * attribute; fragments re-fetched from the hub are HTML the server rendered
 * with jinja2 autoescaping, the same HTML a page reload would give.
 */
(function () {
  "use strict";

  // ------------------------------------------------------------------ session
  // The hub wants the session's CSRF token on every request that changes
  // something. Every same-origin non-GET fetch gets it from the page's meta
  // tag, including fetches made by integrations' own scripts.

  var SAFE_METHODS = { GET: 1, HEAD: 1, OPTIONS: 1 };

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  if (window.fetch && !window.fetch.roostCsrf) {
    var plainFetch = window.fetch.bind(window);
    var csrfFetch = function (input, init) {
      var request = new Request(input, init);
      var token = csrfToken();
      if (token && !SAFE_METHODS[request.method.toUpperCase()] && new URL(request.url).origin === window.location.origin) {
        request.headers.set("X-CSRF-Token", token);
      }
      return plainFetch(request);
    };
    csrfFetch.roostCsrf = true;
    window.fetch = csrfFetch;
  }

  // Set once the page starts leaving (a link, a form such as Log out): the
  // hub may end the live stream then, and that is no reason to navigate.
  var leaving = false;

  /* A 401, or a redirect to the login page, means the session ended: go log in again. */
  function checkSession(res) {
    var ended = res.status === 401 || (res.redirected && new URL(res.url).pathname === "/login");
    if (ended) {
      if (!leaving) {
        var back = window.location.pathname + window.location.search;
        window.location.assign(back === "/" ? "/login" : "/login?next=" + encodeURIComponent(back));
      }
      throw new Error("logged out");
    }
    return res;
  }

  // ---------------------------------------------------------------- formats
  // Mirrors roost/frontend/formatting.py one for one (a browser test checks).

  var DASH = "\u2014";
  var BYTE_UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
  var STATUS_LABELS = { online: "Online", stale: "Stale", offline: "Offline", "new": "New", revoked: "Revoked" };

  function num(value) {
    if (value === null || value === undefined || typeof value === "boolean") return null;
    if (typeof value === "string" && value.trim() === "") return null;
    var n = typeof value === "number" ? value : Number(value);
    return Number.isFinite(n) ? n : null;
  }

  function fixed(n, decimals) {
    var text = n.toFixed(decimals);
    return text.charAt(0) === "-" && Number(text) === 0 ? text.slice(1) : text;
  }

  function bytes(value) {
    var n = num(value);
    if (n === null) return DASH;
    var sign = n <= -0.5 ? "-" : "";
    n = Math.abs(n);
    var unit = 0;
    while (n >= 1024 && unit < BYTE_UNITS.length - 1) { n /= 1024; unit += 1; }
    if (unit === 0) return sign + fixed(n, 0) + " B";
    if (Number(fixed(n, n >= 100 ? 0 : 1)) >= 1024 && unit < BYTE_UNITS.length - 1) { n /= 1024; unit += 1; }
    return sign + fixed(n, n >= 100 ? 0 : 1) + " " + BYTE_UNITS[unit];
  }

  function rate(value) {
    var text = bytes(value);
    return text === DASH ? DASH : text + "/s";
  }

  function percent(value) {
    var n = num(value);
    if (n === null) return DASH;
    return fixed(n, Math.abs(n) < 10 ? 1 : 0) + "%";
  }

  function number(value, decimals) {
    var n = num(value);
    if (n === null) return DASH;
    return fixed(n, decimals === undefined ? 2 : decimals);
  }

  function integer(value) {
    var n = num(value);
    if (n === null) return DASH;
    var text = fixed(n, 0);
    var negative = text.charAt(0) === "-";
    var digits = negative ? text.slice(1) : text;
    return (negative ? "-" : "") + digits.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  }

  function duration(value) {
    var n = num(value);
    if (n === null || n < 0) return DASH;
    var seconds = Math.trunc(n);
    if (seconds < 60) return seconds + " s";
    var minutes = Math.floor(seconds / 60);
    if (minutes < 60) return minutes + " min";
    var hours = Math.floor(minutes / 60);
    minutes = minutes % 60;
    if (hours < 24) return minutes ? hours + " h " + minutes + " min" : hours + " h";
    var days = Math.floor(hours / 24);
    hours = hours % 24;
    return hours ? days + " d " + hours + " h" : days + " d";
  }

  function ago(value, now) {
    var ts = num(value);
    if (ts === null) return "never";
    var age = (now === undefined ? Date.now() / 1000 : now) - ts;
    if (age < 2) return "just now";
    return duration(age) + " ago";
  }

  function pad(n) { return n < 10 ? "0" + n : String(n); }

  function datetime(value) {
    var ts = num(value);
    if (ts === null) return DASH;
    var d = new Date(ts * 1000);
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " + pad(d.getHours()) + ":" + pad(d.getMinutes());
  }

  function dash(value) {
    if (value === null || value === undefined || value === "") return DASH;
    if (Array.isArray(value) && value.length === 0) return DASH;
    return String(value);
  }

  function statusLabel(status) {
    if (!status) return "Unknown";
    if (Object.prototype.hasOwnProperty.call(STATUS_LABELS, status)) return STATUS_LABELS[status];
    var text = String(status).replace(/_/g, " ");
    return text.charAt(0).toUpperCase() + text.slice(1);
  }

  /* A count where a missing value means none (a hub without alerts): 0, not a dash. */
  function zero(value) {
    return integer(num(value) || 0);
  }

  function problems(value) {
    var n = num(value) || 0;
    return n + (n === 1 ? " problem" : " problems");
  }

  function celsius(value) {
    var n = num(value);
    return n === null ? DASH : number(n, 1) + " \u00b0C";
  }

  function alerts(value) {
    var n = num(value) || 0;
    return n + (n === 1 ? " alert" : " alerts");
  }

  var format = {
    bytes: bytes, rate: rate, percent: percent, number: number, integer: integer, celsius: celsius,
    duration: duration, ago: ago, datetime: datetime, dash: dash,
    status: statusLabel, problems: problems, zero: zero, alerts: alerts
  };

  // ------------------------------------------------------------ DOM helpers

  function getPath(obj, path) {
    var parts = path.split(".");
    var value = obj;
    for (var i = 0; i < parts.length; i++) {
      if (value === null || typeof value !== "object") return undefined;
      value = value[parts[i]];
    }
    return value;
  }

  function refreshTimes(root) {
    var now = Date.now() / 1000;
    (root || document).querySelectorAll("time[data-format]").forEach(function (el) {
      var ts = el.getAttribute("data-ts");
      if (el.dataset.format === "ago") {
        var text = ago(ts === null ? null : ts, now);
        if (el.textContent !== text) el.textContent = text;
      } else if (el.dataset.format === "datetime" && ts !== null && !el.dataset.local) {
        el.textContent = datetime(ts);
        el.dataset.local = "1";
      }
      if (ts !== null && !el.title) el.title = new Date(Number(ts) * 1000).toLocaleString();
    });
  }

  function setTime(el, value) {
    var ts = num(value);
    if (ts === null) {
      el.removeAttribute("data-ts");
      el.removeAttribute("datetime");
      el.removeAttribute("title");
    } else {
      el.setAttribute("data-ts", String(ts));
      el.setAttribute("datetime", new Date(ts * 1000).toISOString());
      el.title = new Date(ts * 1000).toLocaleString();
    }
    el.textContent = ago(ts);
  }

  /* Write a node summary into every [data-field] element under root. */
  function applyNode(root, node) {
    if (node.status) root.setAttribute("data-status", node.status);
    if (node.last_seen !== undefined) root.setAttribute("data-last-seen", node.last_seen === null ? "" : String(node.last_seen));
    root.querySelectorAll("[data-field]").forEach(function (el) {
      var value = getPath(node, el.dataset.field);
      var fmt = el.dataset.format;
      if (el.tagName === "METER") {
        var n = num(value);
        el.value = n === null ? 0 : Math.max(0, Math.min(100, n));
        el.toggleAttribute("data-missing", n === null);
        el.textContent = percent(n);
        return;
      }
      if (fmt === "ago") { setTime(el, value); return; }
      var formatter = format[fmt] || dash;
      el.textContent = formatter(value);
      if (fmt === "status") el.setAttribute("data-status", value || "unknown");
      el.setAttribute("data-value", value === null || value === undefined ? "" : String(value));
    });
  }

  function nodeElements(nodeId) {
    return document.querySelectorAll("[data-node-id=\"" + CSS.escape(String(nodeId)) + "\"]");
  }

  // -------------------------------------------------------------- fragments

  var fragments = {};

  /* Re-fetch a server-rendered part of this page (?fragment=NAME), at most once per minGap ms. */
  function refreshFragment(name, minGap) {
    var f = fragments[name] || (fragments[name] = { last: 0, timer: null, busy: false, again: false });
    var gap = minGap === undefined ? 3000 : minGap;
    if (f.busy) { f.again = true; return; }
    if (f.timer) return;
    var wait = Math.max(0, f.last + gap - Date.now());
    f.timer = setTimeout(function () {
      f.timer = null;
      f.busy = true;
      f.last = Date.now();
      loadFragment(name).catch(function () { /* the next event tries again */ }).then(function () {
        f.busy = false;
        if (f.again) { f.again = false; refreshFragment(name, gap); }
      });
    }, wait);
  }

  function loadFragment(name) {
    var target = document.querySelector("[data-fragment=\"" + CSS.escape(name) + "\"]");
    if (!target) return Promise.resolve();
    var url = new URL(window.location.href);
    url.searchParams.set("fragment", name);
    url.hash = "";
    return fetch(url.toString(), { headers: { Accept: "text/html" }, cache: "no-store", credentials: "same-origin" })
      .then(function (res) {
        checkSession(res);
        if (!res.ok) throw new Error("HTTP " + res.status);
        return res.text();
      })
      .then(function (html) {
        // Autoescaped server HTML, parsed inertly (scripts in it would not run).
        var doc = new DOMParser().parseFromString(html, "text/html");
        var keep = rememberView(target);
        target.replaceChildren.apply(target, Array.prototype.slice.call(doc.body.childNodes));
        restoreView(target, keep);
        refreshTimes(target);
        document.dispatchEvent(new CustomEvent("roost:fragment", { detail: { name: name } }));
      });
  }

  // Keep what the reader opened or scrolled across a refresh.
  function rememberView(root) {
    var open = [];
    root.querySelectorAll("details[open] > summary").forEach(function (s) { open.push(s.textContent); });
    var scrolls = [];
    root.querySelectorAll(".table-wrap").forEach(function (el, i) {
      if (el.scrollTop || el.scrollLeft) scrolls.push([i, el.scrollTop, el.scrollLeft]);
    });
    return { open: open, scrolls: scrolls };
  }

  function restoreView(root, keep) {
    root.querySelectorAll("details > summary").forEach(function (s) {
      if (keep.open.indexOf(s.textContent) !== -1) s.parentElement.open = true;
    });
    var wraps = root.querySelectorAll(".table-wrap");
    keep.scrolls.forEach(function (s) {
      var el = wraps[s[0]];
      if (el) { el.scrollTop = s[1]; el.scrollLeft = s[2]; }
    });
  }

  // ------------------------------------------------------------- live feed

  var EVENTS_URL = "/api/v1/events";
  var NODES_URL = "/api/v1/nodes";
  var POLL_MS = 10000;
  var SILENCE_MS = 45000; // the hub pings every 15 s; three missed pings mean a dead stream

  var handlers = [];
  var eventHandlers = {}; // other kinds of event (job, job_progress, …) -> handlers, see onEvent
  var resyncHandlers = [];
  var source = null;
  var lastMessage = 0;
  var pollTimer = null;
  var reconnectTimer = null;
  var backoff = 1000;
  var liveState = "";

  function setLive(state, text) {
    var el = document.getElementById("live-status");
    liveState = state;
    if (!el) return;
    el.hidden = state === "idle";
    el.setAttribute("data-live", state);
    el.textContent = text;
  }

  function onNode(fn) { handlers.push(fn); }

  /* Call fn(data) for every event of this kind on the page's one stream (a browser allows few connections per hub). */
  function onEvent(kind, fn) {
    if (!eventHandlers[kind]) {
      eventHandlers[kind] = [];
      if (source) listenFor(source, kind);
    }
    eventHandlers[kind].push(fn);
  }

  function listenFor(es, kind) {
    es.addEventListener(kind, function (event) {
      if (source !== es) return;
      lastMessage = Date.now();
      var data;
      try { data = JSON.parse(event.data); } catch (err) { return; }
      eventHandlers[kind].forEach(function (fn) {
        try { fn(data); } catch (err) { console.warn("roost: " + kind + " handler failed", err); }
      });
    });
  }

  /* Call fn() when events may have been missed: the stream (re)opened, or a poll while it is down. */
  function onResync(fn) { resyncHandlers.push(fn); }

  function resync() {
    resyncHandlers.forEach(function (fn) {
      try { fn(); } catch (err) { console.warn("roost: resync handler failed", err); }
    });
  }

  function emitNode(node) {
    if (!node || typeof node !== "object" || node.id === undefined) return;
    nodeElements(node.id).forEach(function (el) { applyNode(el, node); });
    handlers.forEach(function (fn) {
      try { fn(node); } catch (err) { console.warn("roost: live update handler failed", err); }
    });
  }

  function pollOnce() {
    return fetch(NODES_URL, { cache: "no-store", credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (res) {
        checkSession(res);
        if (!res.ok) throw new Error("HTTP " + res.status);
        return res.json();
      })
      .then(function (body) {
        (body.nodes || []).forEach(emitNode);
        resync();
        if (liveState !== "live") setLive("polling", "Polling");
      })
      .catch(function () {
        if (liveState !== "live") setLive("down", "Hub unreachable");
      });
  }

  function startPolling() {
    if (pollTimer) return;
    pollOnce();
    pollTimer = setInterval(pollOnce, POLL_MS);
  }

  function stopPolling() {
    if (pollTimer) { clearInterval(pollTimer); pollTimer = null; }
  }

  function scheduleReconnect() {
    if (reconnectTimer) return;
    var delay = backoff * (0.75 + Math.random() * 0.5);
    backoff = Math.min(backoff * 2, 60000);
    reconnectTimer = setTimeout(function () { reconnectTimer = null; connect(); }, delay);
  }

  function connect() {
    if (liveState === "") setLive("connecting", "Connecting\u2026");
    if (!window.EventSource) { startPolling(); return; }
    var es = new EventSource(EVENTS_URL);
    source = es;
    lastMessage = Date.now();
    Object.keys(eventHandlers).forEach(function (kind) { listenFor(es, kind); });
    es.addEventListener("open", function () {
      backoff = 1000;
      lastMessage = Date.now();
      setLive("live", "Live");
      stopPolling();
      // Catch up on what changed between rendering the page (or losing the stream) and now.
      pollOnce();
    });
    es.addEventListener("node", function (event) {
      lastMessage = Date.now();
      var node;
      try { node = JSON.parse(event.data); } catch (err) { return; }
      emitNode(node);
    });
    es.addEventListener("ping", function () { lastMessage = Date.now(); });
    es.addEventListener("message", function () { lastMessage = Date.now(); });
    es.addEventListener("error", function () {
      if (source !== es) return;
      startPolling();
      // CONNECTING means the browser retries on its own; CLOSED means it gave up.
      if (es.readyState === EventSource.CLOSED) { es.close(); source = null; scheduleReconnect(); }
    });
  }

  function watchdog() {
    if (source && source.readyState === EventSource.OPEN && Date.now() - lastMessage > SILENCE_MS) {
      source.close();
      source = null;
      setLive("polling", "Polling");
      startPolling();
      scheduleReconnect();
    }
  }

  // ------------------------------------------------------------------ pages

  function updateCounts() {
    var box = document.getElementById("status-counts");
    // The table's rows are one page of the nodes: js/overview.js counts from all of them.
    if (!box || document.getElementById("node-table")) return;
    var counts = {};
    document.querySelectorAll(".node-card[data-status], .node-row[data-status]").forEach(function (card) {
      var s = card.getAttribute("data-status");
      counts[s] = (counts[s] || 0) + 1;
    });
    box.querySelectorAll(".count[data-status]").forEach(function (el) {
      var n = counts[el.getAttribute("data-status")] || 0;
      el.setAttribute("data-count", String(n));
      var nEl = el.querySelector(".count-n");
      if (nEl) nEl.textContent = String(n);
    });
    // Problems: the firing alerts of every node, as their cards' badges show them.
    var problems = box.querySelector("[data-problems]");
    if (problems) {
      var total = 0;
      document.querySelectorAll(".node-card .badge.alerts").forEach(function (b) { total += Number(b.getAttribute("data-value")) || 0; });
      problems.setAttribute("data-count", String(total));
      var pEl = problems.querySelector(".count-n");
      if (pEl) pEl.textContent = String(total);
      var word = problems.querySelector(".count-word");
      if (word) word.textContent = total === 1 ? " problem" : " problems";
    }
  }

  function initOverview() {
    onNode(function (node) {
      if (document.getElementById("node-table")) return; // js/overview.js keeps the table, new nodes included
      var sel = "[data-node-id=\"" + CSS.escape(String(node.id)) + "\"]";
      var card = document.querySelector(".node-card" + sel);
      if (!card) { refreshFragment("nodes", 2000); return; }
      var link = card.querySelector(".node-name a");
      var name = node.name || node.hostname || node.id;
      if (link && name && link.textContent !== name) link.textContent = name;
      updateCounts();
    });
    document.addEventListener("roost:fragment", updateCounts);
  }

  function initIntegrations() {
    onNode(function () { refreshFragment("integrations", 5000); });
  }

  function init() {
    window.addEventListener("beforeunload", function () {
      leaving = true;
      if (source) { source.close(); source = null; }
      stopPolling();
    });
    refreshTimes(document);
    setInterval(function () { refreshTimes(document); }, 1000);
    var page = document.body.getAttribute("data-page");
    if (page === "overview") initOverview();
    if (page === "integrations") initIntegrations();
    if (page === "not_found" || document.body.hasAttribute("data-quiet")) { setLive("idle", ""); return; }
    connect();
    setInterval(watchdog, 5000);
  }

  /* Copy text to the clipboard; a promise. */
  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(text);
    // Plain http on a LAN address is not a secure context: the old way still works there.
    return new Promise(function (resolve, reject) {
      var area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.className = "visually-hidden";
      document.body.appendChild(area);
      area.select();
      var ok = false;
      try { ok = document.execCommand("copy"); } catch (err) { ok = false; }
      area.remove();
      if (ok) resolve(); else reject(new Error("copy refused"));
    });
  }
  /* A [data-copy-field=ID] button copies that field's value (an input) or text, and says so beside itself. */
  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("[data-copy-field]") : null;
    if (!button) return;
    var source = document.getElementById(button.getAttribute("data-copy-field"));
    if (!source) return;
    var status = button.parentElement.querySelector(".copy-status");
    var text = "value" in source ? source.value : source.textContent;
    copyText(text).then(function () {
      if (status) status.textContent = "Copied.";
    }, function () {
      if (source.select) source.select();
      if (status) status.textContent = "Selected: press Ctrl+C (or long-press and copy).";
    });
  });

  window.Roost = {
    format: format,
    onNode: onNode,
    onEvent: onEvent,
    onResync: onResync,
    applyNode: applyNode,
    refreshFragment: refreshFragment,
    refreshTimes: refreshTimes,
    checkSession: checkSession,
    csrfToken: csrfToken,
    copyText: copyText
  };

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
