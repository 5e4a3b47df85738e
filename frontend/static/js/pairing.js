/* Roost dashboard: pairing requests, a node's grants, join tokens, and the pending-requests badge in the menu.
 *
 * Changes go to the hub's JSON API (/api/v1/pairing, /api/v1/nodes/ID/grants,
 * /api/v1/nodes/ID/revoke, /api/v1/join-tokens) with the session's CSRF token
 * from the page's csrf-token meta tag in the X-CSRF-Token header. The hub
 * checks the role again; the buttons are only rendered for admins. Hub data
 * is written with textContent; lists are re-fetched as server-rendered
 * fragments (?fragment=NAME), parsed inertly.
 */
(function () {
  "use strict";

  var PAIRING_API = "/api/v1/pairing";
  var PAIRING_PAGE = "/pairing";
  var EVENTS_URL = "/api/v1/events";
  var REFRESH_MS = 15000; // backstop for decisions made elsewhere (CLI, another browser) and expiries
  var MAX_RESULTS = 5;

  // ------------------------------------------------------------------ the API

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") || "" : "";
  }

  /* A JSON request to the hub; resolves with the parsed body, rejects with the hub's own error message. */
  function api(method, url, body) {
    var headers = { Accept: "application/json" };
    if (method !== "GET" && method !== "HEAD") headers["X-CSRF-Token"] = csrfToken();
    var init = { method: method, headers: headers, credentials: "same-origin", cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(url, init).then(function (res) {
      if (window.Roost && window.Roost.checkSession) window.Roost.checkSession(res);
      return res.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (err) { data = null; }
        if (!res.ok) {
          var error = new Error(data && data.error ? String(data.error) : "the hub answered HTTP " + res.status);
          error.status = res.status;
          throw error;
        }
        return data;
      });
    }, function () {
      throw new Error("cannot reach the hub; check the connection and try again");
    });
  }

  function fetchFragment(name) {
    var url = new URL(window.location.href);
    url.searchParams.set("fragment", name);
    url.hash = "";
    return fetch(url.toString(), { headers: { Accept: "text/html" }, cache: "no-store", credentials: "same-origin" })
      .then(function (res) {
        if (window.Roost && window.Roost.checkSession) window.Roost.checkSession(res);
        if (!res.ok) throw new Error("HTTP " + res.status);
        return res.text();
      })
      .then(function (html) { return new DOMParser().parseFromString(html, "text/html"); });
  }

  // -------------------------------------------------------------- small bits

  function showError(el, message) {
    if (!el) return;
    el.textContent = message || "";
    el.hidden = !message;
  }

  function checkedValues(root) {
    var out = [];
    root.querySelectorAll('input[type="checkbox"][name="grant"]').forEach(function (box) {
      if (box.checked) out.push(box.value);
    });
    return out.sort();
  }

  function setBusy(root, busy) {
    root.querySelectorAll("button, input").forEach(function (el) {
      if (busy) {
        if (!el.disabled) { el.disabled = true; el.dataset.busyDisabled = "1"; }
      } else if (el.dataset.busyDisabled) {
        el.disabled = false;
        delete el.dataset.busyDisabled;
      }
    });
    if (busy) root.setAttribute("aria-busy", "true");
    else root.removeAttribute("aria-busy");
  }

  /* Confirm steps: a [data-action=X] button opens the [data-confirm=X] box in the same scope. */
  var SCOPES = ".pair-card, .danger-zone, tr[data-token-id]";

  function closeConfirms(scope) {
    scope.querySelectorAll("[data-confirm]").forEach(function (box) { box.hidden = true; });
    scope.querySelectorAll("[aria-expanded]").forEach(function (el) {
      el.setAttribute("aria-expanded", "false");
      if (el.dataset.hideWhileConfirming) { el.hidden = false; }
    });
  }

  function openConfirm(scope, trigger, name) {
    closeConfirms(scope);
    var box = scope.querySelector('[data-confirm="' + name + '"]');
    if (!box) return null;
    box.hidden = false;
    trigger.setAttribute("aria-expanded", "true");
    scope.roostTrigger = trigger;
    if (box.classList.contains("inline-confirm")) {
      trigger.dataset.hideWhileConfirming = "1";
      trigger.hidden = true;
    }
    var first = box.querySelector("input, button");
    if (first) first.focus();
    return box;
  }

  function countdownText(seconds) {
    if (seconds <= 0) return "expired";
    if (seconds >= 3600) return window.Roost ? window.Roost.format.duration(seconds) : Math.floor(seconds / 60) + " min";
    var minutes = Math.floor(seconds / 60);
    var rest = Math.floor(seconds % 60);
    return minutes ? minutes + " min " + rest + " s" : rest + " s";
  }

  // ------------------------------------------------------------ menu badge

  function setBadge(count) {
    var badge = document.getElementById("pairing-count");
    if (!badge) return;
    var n = Number(count) || 0;
    badge.hidden = n <= 0;
    badge.setAttribute("data-count", String(n));
    var number = badge.querySelector(".nav-count-n");
    if (number) number.textContent = String(n);
  }

  function loadBadge() {
    if (!document.getElementById("pairing-count")) return;
    // The pairing page's own count fragment: viewers may see it, and a failure stays quiet
    // (a badge must not move anyone to the login page).
    fetch(PAIRING_PAGE + "?fragment=count", { headers: { Accept: "text/html" }, cache: "no-store", credentials: "same-origin" })
      .then(function (res) { return res.ok ? res.text() : ""; })
      .then(function (html) {
        var el = html && new DOMParser().parseFromString(html, "text/html").getElementById("pending-count-value");
        if (el) setBadge(el.getAttribute("data-count"));
      })
      .catch(function () { /* the next page load tries again */ });
  }

  // ----------------------------------------------------------- pairing page

  // decided: requests this page approved or rejected, so a refresh that raced the decision cannot bring them back.
  var pairing = { busy: false, again: false, source: null, decided: {} };

  function cardHostname(card) {
    var h = card.querySelector(".pair-host");
    return h ? h.textContent : card.getAttribute("data-request-id");
  }

  function addResult(parts, tone) {
    var box = document.getElementById("pair-results");
    if (!box) return;
    var p = document.createElement("p");
    p.className = "notice " + (tone || "tone-ok");
    parts.forEach(function (part) {
      if (typeof part === "string") { p.appendChild(document.createTextNode(part)); return; }
      var a = document.createElement("a");
      a.href = part.href;
      a.textContent = part.text;
      p.appendChild(a);
    });
    box.insertBefore(p, box.firstChild);
    while (box.children.length > MAX_RESULTS) box.removeChild(box.lastChild);
  }

  function updatePendingCount() {
    var list = document.getElementById("pair-list");
    if (!list) return;
    var n = list.querySelectorAll(":scope > .pair-card").length;
    list.setAttribute("data-count", String(n));
    var empty = document.getElementById("no-pending");
    if (empty) empty.hidden = n > 0;
    var head = document.getElementById("pending-count");
    if (head) { head.textContent = n + " pending"; head.setAttribute("data-count", String(n)); }
    setBadge(n);
  }

  function tickCountdowns() {
    var now = Date.now() / 1000;
    document.querySelectorAll(".pair-card time.countdown[data-expires]").forEach(function (el) {
      var left = Number(el.getAttribute("data-expires")) - now;
      var text = countdownText(left);
      if (el.textContent !== text) el.textContent = text;
      var card = el.closest(".pair-card");
      if (left <= 0 && card && !card.hasAttribute("data-expired")) {
        card.setAttribute("data-expired", "");
        card.querySelectorAll('[data-action="approve"], [data-action="confirm-approve"]').forEach(function (b) { b.disabled = true; });
        var error = card.querySelector(".pair-error");
        showError(error, "This request has expired. The agent asks again with a new code when it is restarted.");
      }
    });
  }

  /* Add new cards and drop decided ones; a card someone is working on is left as it is. */
  function mergePending(doc) {
    var list = document.getElementById("pair-list");
    var fresh = doc.getElementById("pair-list");
    if (!list || !fresh) return;
    var order = [];
    var incoming = {};
    fresh.querySelectorAll(":scope > .pair-card").forEach(function (card) {
      var id = card.getAttribute("data-request-id");
      order.push(id);
      incoming[id] = card;
    });
    list.querySelectorAll(":scope > .pair-card").forEach(function (card) {
      var id = card.getAttribute("data-request-id");
      if (Object.prototype.hasOwnProperty.call(incoming, id) || card.hasAttribute("aria-busy")) return;
      addResult(["The request from " + cardHostname(card) + " is no longer pending (decided elsewhere, or it expired)."], "tone-muted");
      card.remove();
    });
    var previous = null;
    order.forEach(function (id) {
      if (pairing.decided[id]) return;
      var existing = list.querySelector(':scope > .pair-card[data-request-id="' + CSS.escape(id) + '"]');
      if (existing) { previous = existing; return; }
      var card = document.importNode(incoming[id], true);
      card.classList.add("is-new");
      list.insertBefore(card, previous ? previous.nextSibling : list.firstChild);
      previous = card;
    });
    var discovered = document.getElementById("discovered");
    var freshDiscovered = doc.getElementById("discovered");
    if (discovered && freshDiscovered) discovered.replaceWith(document.importNode(freshDiscovered, true));
    updatePendingCount();
    tickCountdowns();
    if (window.Roost) window.Roost.refreshTimes(list);
  }

  function refreshPending() {
    if (pairing.busy) { pairing.again = true; return; }
    pairing.busy = true;
    fetchFragment("pending")
      .then(mergePending)
      .catch(function () { /* the next event or the backstop timer tries again */ })
      .then(function () {
        pairing.busy = false;
        if (pairing.again) { pairing.again = false; refreshPending(); }
      });
  }

  function listenForRequests() {
    if (!window.EventSource) return;
    // The page's own stream: roost.js's listens for node events only.
    var source = new EventSource(EVENTS_URL);
    pairing.source = source;
    source.addEventListener("open", refreshPending);
    source.addEventListener("pairing", function (event) {
      try { setBadge(JSON.parse(event.data).pending); } catch (err) { /* the refresh sets it */ }
      refreshPending();
    });
    window.addEventListener("pagehide", function () { source.close(); });
  }

  function approve(card) {
    var id = card.getAttribute("data-request-id");
    var body = { grants: checkedValues(card) };
    var nameInput = card.querySelector('input[name="name"]');
    var name = nameInput ? nameInput.value.trim() : "";
    if (name) body.name = name;
    var error = card.querySelector(".pair-error");
    showError(error, "");
    setBusy(card, true);
    api("POST", PAIRING_API + "/" + encodeURIComponent(id) + "/approve", body)
      .then(function (answer) {
        pairing.decided[id] = true;
        var nodeId = String(answer && answer.node_id || "");
        addResult(["Approved " + cardHostname(card) + " as node ", { href: "/nodes/" + encodeURIComponent(nodeId), text: name || nodeId }, ". Its agent finishes pairing and starts reporting."]);
        card.remove();
        updatePendingCount();
      })
      .catch(function (err) {
        setBusy(card, false);
        showError(error, "Not approved: " + err.message);
      });
  }

  function reject(card) {
    var id = card.getAttribute("data-request-id");
    var reasonInput = card.querySelector('input[name="reason"]');
    var reason = reasonInput ? reasonInput.value.trim() : "";
    var error = card.querySelector(".pair-error");
    showError(error, "");
    setBusy(card, true);
    api("POST", PAIRING_API + "/" + encodeURIComponent(id) + "/reject", reason ? { reason: reason } : {})
      .then(function () {
        pairing.decided[id] = true;
        addResult(["Rejected the request from " + cardHostname(card) + "."], "tone-muted");
        card.remove();
        updatePendingCount();
      })
      .catch(function (err) {
        setBusy(card, false);
        showError(error, "Not rejected: " + err.message);
      });
  }

  function initPairingPage() {
    document.addEventListener("change", function (event) {
      var card = event.target.closest && event.target.closest(".pair-card");
      if (card && event.target.name === "grant") showChosen(card);
    });
    tickCountdowns();
    setInterval(tickCountdowns, 1000);
    updatePendingCount();
    listenForRequests();
    setInterval(refreshPending, REFRESH_MS);
  }

  function showChosen(card) {
    var out = card.querySelector(".chosen-grants");
    if (!out) return;
    var chosen = checkedValues(card);
    out.textContent = chosen.length ? chosen.join(", ") : "nothing (it can connect, but do nothing until you grant something)";
  }

  // --------------------------------------------------------------- node page

  function rowState(row, granted, permitted, effective) {
    row.setAttribute("data-granted", String(granted));
    row.setAttribute("data-permitted", String(permitted));
    row.setAttribute("data-effective", String(effective));
    var box = row.querySelector('input[name="grant"]');
    if (box) box.checked = granted;
    var grantedText = row.querySelector(".granted-text");
    if (grantedText) grantedText.textContent = granted ? "granted" : "not granted";
    var permittedText = row.querySelector(".permitted .yes-no");
    if (permittedText) {
      permittedText.textContent = permitted ? "permits" : "refuses";
      permittedText.className = "yes-no " + (permitted ? "tone-ok-text" : "tone-bad-text");
    }
    var effectiveText = row.querySelector(".effective .yes-no");
    if (effectiveText) {
      effectiveText.textContent = effective ? "runs" : "\u2014";
      effectiveText.className = "yes-no " + (effective ? "tone-ok-text" : "muted");
    }
  }

  function applyGrants(form, view) {
    var offered = {};
    (view.offered || []).forEach(function (c) { offered[c.name] = c; });
    var effective = view.effective || [];
    form.querySelectorAll("tr[data-capability]").forEach(function (row) {
      var name = row.getAttribute("data-capability");
      var c = offered[name] || { granted: (view.grants || []).indexOf(name) !== -1, permitted: row.getAttribute("data-permitted") === "true" };
      rowState(row, !!c.granted, !!c.permitted, effective.indexOf(name) !== -1);
    });
  }

  function initGrants(form) {
    var result = form.querySelector(".grants-result");
    var dirty = form.querySelector(".grants-dirty");
    form.addEventListener("change", function (event) {
      if (event.target.name !== "grant") return;
      var row = event.target.closest("tr");
      var text = row && row.querySelector(".granted-text");
      if (text) text.textContent = event.target.checked ? "granted" : "not granted";
      if (dirty) dirty.hidden = false;
      result.textContent = "";
    });
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var nodeId = form.getAttribute("data-node-id");
      var grants = checkedValues(form);
      result.className = "grants-result small";
      result.textContent = "Saving\u2026";
      setBusy(form, true);
      api("PUT", "/api/v1/nodes/" + encodeURIComponent(nodeId) + "/grants", { grants: grants })
        .then(function (view) {
          applyGrants(form, view || {});
          if (dirty) dirty.hidden = true;
          var effective = (view && view.effective) || [];
          var refused = ((view && view.grants) || []).filter(function (c) { return effective.indexOf(c) === -1; });
          var text = "Saved. Runs now: " + (effective.length ? effective.join(", ") : "nothing") + ".";
          if (refused.length) text += " Granted but refused by the agent's ceiling: " + refused.join(", ") + ".";
          result.className = "grants-result small tone-ok-text";
          result.textContent = text;
        })
        .catch(function (err) {
          result.className = "grants-result small tone-bad-text";
          result.textContent = "Not saved: " + err.message;
        })
        .then(function () { setBusy(form, false); });
    });
  }

  function revokeNode(zone) {
    var nodeId = document.getElementById("grants").getAttribute("data-node-id");
    var error = zone.querySelector(".revoke-error");
    showError(error, "");
    setBusy(zone, true);
    api("POST", "/api/v1/nodes/" + encodeURIComponent(nodeId) + "/revoke", {})
      .then(function () { window.location.reload(); })
      .catch(function (err) {
        setBusy(zone, false);
        showError(error, "Not revoked: " + err.message);
      });
  }

  // --------------------------------------------------------- join tokens page

  function refreshTokens() {
    return fetchFragment("tokens").then(function (doc) {
      var target = document.getElementById("tokens");
      if (!target) return;
      target.replaceChildren.apply(target, Array.prototype.slice.call(doc.body.childNodes).map(function (n) {
        return document.importNode(n, true);
      }));
      if (window.Roost) window.Roost.refreshTimes(target);
    });
  }

  function initTokenForm(form) {
    var caps = document.getElementById("token-caps");
    var error = form.querySelector(".token-error");
    form.addEventListener("change", function (event) {
      if (event.target.name === "grants-mode" && caps) caps.hidden = event.target.value !== "chosen";
    });
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var mode = form.querySelector('input[name="grants-mode"]:checked');
      var uses = parseInt(form.elements.uses.value, 10);
      var body = {
        expires: form.elements.expires.value,
        uses: Number.isFinite(uses) ? uses : 1,
        note: form.elements.note.value.trim(),
        grants: mode && mode.value === "chosen" ? checkedValues(caps || form) : null
      };
      showError(error, "");
      setBusy(form, true);
      api("POST", "/api/v1/join-tokens", body)
        .then(function (answer) {
          var box = document.getElementById("new-token");
          document.getElementById("new-token-command").textContent = String(answer.command || "");
          var hasRelease = Array.isArray(answer.releases) && answer.releases.length > 0;
          document.getElementById("new-token-install").textContent = hasRelease ? String(answer.install_command || "") : "";
          box.querySelector(".install-line").hidden = !hasRelease;
          box.querySelector(".install-missing").hidden = hasRelease;
          document.getElementById("new-token-compose").textContent = String(answer.compose || "");
          document.getElementById("new-token-value").textContent = String(answer.token || "");
          box.querySelector(".copy-status").textContent = "";
          box.hidden = false;
          box.focus();
          form.elements.note.value = "";
          return refreshTokens();
        })
        .catch(function (err) { showError(error, "Not created: " + err.message); })
        .then(function () { setBusy(form, false); });
    });
  }

  function copyFrom(button) {
    var source = document.getElementById(button.getAttribute("data-copy"));
    var status = document.querySelector("#new-token .copy-status");
    if (!source) return;
    Roost.copyText(source.textContent).then(function () {
      if (status) status.textContent = "Copied.";
    }, function () {
      // Select it so a long press or Ctrl+C does the rest.
      var range = document.createRange();
      range.selectNodeContents(source);
      var selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      if (status) status.textContent = "Selected: press Ctrl+C (or long-press and copy).";
    });
  }

  function revokeToken(row) {
    var id = row.getAttribute("data-token-id");
    setBusy(row, true);
    api("DELETE", "/api/v1/join-tokens/" + encodeURIComponent(id))
      .then(refreshTokens)
      .catch(function (err) {
        setBusy(row, false);
        showError(document.querySelector("#tokens .tokens-error"), "Not revoked: " + err.message);
      });
  }

  // ---------------------------------------------------------------- clicks

  var ACTIONS = {
    approve: function (button, scope) {
      showChosen(scope);
      openConfirm(scope, button, "approve");
    },
    reject: function (button, scope) { openConfirm(scope, button, "reject"); },
    "confirm-approve": function (button, scope) { approve(scope); },
    "confirm-reject": function (button, scope) { reject(scope); },
    "revoke-node": function (button, scope) { openConfirm(scope, button, "revoke-node"); },
    "confirm-revoke-node": function (button, scope) { revokeNode(scope); },
    "revoke-token": function (button, scope) { openConfirm(scope, button, "revoke-token"); },
    "confirm-revoke-token": function (button, scope) { revokeToken(scope); },
    cancel: function (button, scope) {
      closeConfirms(scope);
      if (scope.roostTrigger) scope.roostTrigger.focus();
    }
  };

  function onClick(event) {
    var target = event.target;
    if (!target.closest) return;
    var copy = target.closest("[data-copy]");
    if (copy) { copyFrom(copy); return; }
    var button = target.closest("button[data-action]");
    if (!button || button.disabled) return;
    var action = ACTIONS[button.getAttribute("data-action")];
    var scope = button.closest(SCOPES);
    if (!action || !scope) return;
    event.preventDefault();
    action(button, scope);
  }

  function init() {
    document.addEventListener("click", onClick);
    var page = document.body.getAttribute("data-page");
    if (page === "pairing") initPairingPage();
    else loadBadge();
    var grants = document.getElementById("grants-form");
    if (grants) initGrants(grants);
    var tokenForm = document.getElementById("token-form");
    if (tokenForm) initTokenForm(tokenForm);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
