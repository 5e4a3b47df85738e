/* Roost automations pages: lists, an approval to decide, a run's trace, the YAML/TOML editor. Everything comes from
 * the automations API and is written with textContent only; changes go through the same API (CSRF header added by
 * roost.js's fetch).
 */
(function () {
  "use strict";

  var root = document.getElementById("au-root");
  if (!root) return;
  var view = root.dataset.view;
  var canOperate = root.dataset.canOperate === "1";

  function api(method, url, body) {
    var init = { method: method, credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" } };
    if (body !== undefined) { init.headers["Content-Type"] = "application/json"; init.body = JSON.stringify(body); }
    return fetch(url, init).then(function (res) {
      if (window.Roost && window.Roost.checkSession) window.Roost.checkSession(res);
      return res.json().catch(function () { return {}; }).then(function (data) { return { ok: res.ok, status: res.status, data: data }; });
    });
  }

  function el(tag, text, cls) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }

  function link(href, text) { var a = el("a", text); a.href = href; return a; }

  function when(ts) { return ts ? new Date(ts * 1000).toLocaleString() : "—"; }

  function pre(value) {
    if (value === undefined || value === null || value === "") return el("span", "");
    return el("pre", typeof value === "string" ? value : JSON.stringify(value, null, 1));
  }

  function table(headers, rows) {
    var t = el("table", null, "table");
    var head = t.createTHead().insertRow();
    headers.forEach(function (h) { head.appendChild(el("th", h)); });
    var body = t.createTBody();
    rows.forEach(function (cells) {
      var tr = body.insertRow();
      cells.forEach(function (c) { var td = tr.insertCell(); if (c instanceof Node) td.appendChild(c); else td.textContent = c === undefined || c === null ? "" : String(c); });
    });
    return t;
  }

  function stateCell(state) { return el("span", state, "au-state-" + state); }

  function fill(id, node) { var box = document.getElementById(id); if (!box) return; box.textContent = ""; box.appendChild(node); }

  function runRows(runs) {
    return runs.map(function (r) {
      return [link("/automations/runs/" + r.id, r.id), r.automation_id, stateCell(r.state), when(r.started_at), r.error || ""];
    });
  }

  function loadList() {
    api("GET", "/api/v1/approvals?state=pending").then(function (res) {
      var items = (res.data.approvals || []);
      fill("au-approvals", items.length ? table(["Approval", "Automation", "What", "Expires"], items.map(function (a) {
        return [link(a.url, a.id), a.automation_id, a.summary, when(a.expires_at)];
      })) : el("p", "Nothing is waiting for approval.", "muted"));
    });
    api("GET", "/api/v1/automations").then(function (res) {
      var items = res.data.automations || [];
      fill("au-list", items.length ? table(["Name", "Id", "Triggers", "Mode", "Enabled", "Source"], items.map(function (a) {
        return [link("/automations/edit/" + encodeURIComponent(a.id), a.name), a.id, (a.triggers || []).join(", "), a.mode, a.enabled ? "yes" : "no", a.source];
      })) : el("p", "No automations yet.", "muted"));
      var errors = res.data.file_errors || [];
      if (errors.length) {
        var ul = el("ul", null, "au-errors");
        errors.forEach(function (f) { f.errors.forEach(function (e) { ul.appendChild(el("li", f.source + ": " + e.path + ": " + e.message)); }); });
        fill("au-file-errors", ul);
      }
    });
    api("GET", "/api/v1/automation-runs?limit=30").then(function (res) {
      fill("au-runs", table(["Run", "Automation", "State", "Started", "Message"], runRows(res.data.runs || [])));
    });
  }

  function loadApproval() {
    var id = root.dataset.approvalId;
    api("GET", "/api/v1/approvals/" + encodeURIComponent(id)).then(function (res) {
      var box = document.getElementById("au-approval");
      box.textContent = "";
      if (!res.ok) { box.appendChild(el("p", res.data.error || "not found")); return; }
      var a = res.data;
      box.appendChild(el("h2", a.summary));
      var dl = el("dl");
      [["State", a.state], ["Automation", a.automation_id], ["Node", a.node_id], ["Asked", when(a.created_at)], ["Expires", when(a.expires_at)],
       ["Decided by", a.decided_by || "—"]].forEach(function (pair) { dl.appendChild(el("dt", pair[0])); dl.appendChild(el("dd", pair[1])); });
      box.appendChild(dl);
      box.querySelector("dd").id = "au-approval-state";
      box.appendChild(pre(a.details));
      box.appendChild(link("/automations/runs/" + a.run_id, "The run's trace"));
      var decide = document.getElementById("au-decide");
      if (decide) decide.hidden = a.state !== "pending";
    });
  }

  function decide(decision) {
    var id = root.dataset.approvalId;
    var body = { decision: decision, note: document.getElementById("au-note").value };
    var envelopeText = document.getElementById("au-envelope").value.trim();
    var message = document.getElementById("au-message");
    if (envelopeText) {
      try { body.envelope = JSON.parse(envelopeText); } catch (e) { message.textContent = "The envelope is not JSON: " + e.message; return; }
    }
    api("POST", "/api/v1/approvals/" + encodeURIComponent(id), body).then(function (res) {
      message.textContent = res.ok ? (decision === "approve" ? "Approved." : "Denied.") : (res.data.error || "HTTP " + res.status);
      loadApproval();
    });
  }

  function loadRun() {
    var id = root.dataset.runId;
    api("GET", "/api/v1/automation-runs/" + encodeURIComponent(id)).then(function (res) {
      var box = document.getElementById("au-run");
      box.textContent = "";
      if (!res.ok) { box.appendChild(el("p", res.data.error || "not found")); return; }
      var r = res.data;
      var dl = el("dl");
      [["State", r.state], ["Automation", r.automation_id], ["Started", when(r.started_at)], ["Finished", when(r.finished_at)],
       ["Message", r.error || "—"], ["Depth", r.depth], ["Dry run", r.dry_run ? "yes" : "no"]].forEach(function (pair) {
        dl.appendChild(el("dt", pair[0])); var dd = el("dd", pair[1]); if (pair[0] === "State") dd.id = "au-run-state"; dl.appendChild(dd);
      });
      box.appendChild(dl);
      box.appendChild(el("h3", "Trigger"));
      box.appendChild(pre(r.trigger));
      (r.approvals || []).forEach(function (a) { if (a.state === "pending") { var p = el("p"); p.appendChild(link(a.url, "Decide the pending approval")); box.appendChild(p); } });
      var body = document.querySelector("#au-trace tbody");
      body.textContent = "";
      (r.trace || []).forEach(function (t) {
        var tr = body.insertRow();
        tr.dataset.path = t.path;
        [t.name || t.path, t.kind, stateCell(t.state || ""), pre(t.input), pre(t.message ? (t.result ? t.message + "\n" + JSON.stringify(t.result, null, 1) : t.message) : t.result),
         t.duration_s !== undefined ? t.duration_s + " s" : ""].forEach(function (c) { var td = tr.insertCell(); if (c instanceof Node) td.appendChild(c); else td.textContent = c; });
      });
      if (r.state === "running" || r.state === "waiting" || r.state === "queued") setTimeout(loadRun, 2000);
    });
  }

  var current = null;

  function format() { var f = document.querySelector('input[name="au-format"]:checked'); return f ? f.value : "yaml"; }

  function showErrors(errors) {
    var ul = document.getElementById("au-errors");
    ul.textContent = "";
    (errors || []).forEach(function (e) { ul.appendChild(el("li", e.path + ": " + e.message)); });
  }

  function loadEdit() {
    var id = root.dataset.automationId;
    var text = document.getElementById("au-text");
    var message = document.getElementById("au-message");
    document.querySelectorAll('input[name="au-format"]').forEach(function (radio) {
      radio.addEventListener("change", function () {
        api("POST", "/api/v1/automations/validate", { text: text.value, format: radio.value === "yaml" ? "toml" : "yaml" }).then(function (res) {
          if (res.data.ok) { text.value = res.data.texts[radio.value]; showErrors([]); } else { showErrors(res.data.errors); radio.checked = false; }
        });
      });
    });
    document.getElementById("au-validate").addEventListener("click", function () {
      api("POST", "/api/v1/automations/validate", { text: text.value, format: format() }).then(function (res) {
        showErrors(res.data.errors); message.textContent = res.data.ok ? "Valid." : "Not valid.";
      });
    });
    if (id === "new") {
      document.getElementById("au-edit-title").textContent = "New automation";
      text.value = "name: My automation\ntriggers:\n  - kind: manual\nsteps:\n  - action: notify\n    with:\n      title: Hello from Roost\n";
    } else {
      api("GET", "/api/v1/automations/" + encodeURIComponent(id)).then(function (res) {
        if (!res.ok) { message.textContent = res.data.error; return; }
        current = res.data;
        document.getElementById("au-edit-title").textContent = current.name;
        text.value = current.texts[format()];
        showErrors(current.errors);
        var toggle = document.getElementById("au-toggle");
        if (toggle) toggle.textContent = current.enabled ? "Disable" : "Enable";
        if (current.webhook_url) fill("au-webhook", el("p", "Webhook: POST " + location.origin + current.webhook_url));
      });
      api("GET", "/api/v1/automations/" + encodeURIComponent(id) + "/runs?limit=20").then(function (res) {
        fill("au-runs", table(["Run", "Automation", "State", "Started", "Message"], runRows(res.data.runs || [])));
      });
    }
    if (!canOperate) return;
    document.getElementById("au-save").addEventListener("click", function () {
      var body = { text: text.value, format: format() };
      var req = id === "new" ? api("POST", "/api/v1/automations", body) : api("PUT", "/api/v1/automations/" + encodeURIComponent(id), body);
      req.then(function (res) {
        showErrors(res.data.errors);
        message.textContent = res.ok ? "Saved." : (res.data.error || "HTTP " + res.status);
        if (res.ok && id === "new") location.href = "/automations/edit/" + encodeURIComponent(res.data.id);
      });
    });
    function run(dry) {
      api("POST", "/api/v1/automations/" + encodeURIComponent(id) + "/run", { dry_run: dry }).then(function (res) {
        if (res.ok) location.href = "/automations/runs/" + res.data.id; else message.textContent = res.data.error || "HTTP " + res.status;
      });
    }
    document.getElementById("au-dry-run").addEventListener("click", function () { run(true); });
    document.getElementById("au-run-now").addEventListener("click", function () { run(false); });
    document.getElementById("au-toggle").addEventListener("click", function () {
      if (!current) return;
      api("POST", "/api/v1/automations/" + encodeURIComponent(id) + (current.enabled ? "/disable" : "/enable")).then(function (res) {
        if (res.ok) { current.enabled = res.data.enabled; document.getElementById("au-toggle").textContent = current.enabled ? "Disable" : "Enable"; }
        message.textContent = res.ok ? (current.enabled ? "Enabled." : "Disabled.") : (res.data.error || "");
      });
    });
  }

  if (view === "list") loadList();
  if (view === "approval") {
    loadApproval();
    if (canOperate) {
      document.getElementById("au-approve").addEventListener("click", function () { decide("approve"); });
      document.getElementById("au-deny").addEventListener("click", function () { decide("deny"); });
    }
  }
  if (view === "run") loadRun();
  if (view === "edit") loadEdit();
})();
