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
  var kinds = { triggers: [], actions: [] };
  var CONTROL = ["delay", "wait_for_approval", "wait_for_trigger", "choose", "if", "stop", "variables"];

  function format() { var f = document.querySelector('input[name="au-format"]:checked'); return f ? f.value : "yaml"; }

  function showErrors(errors) {
    var ul = document.getElementById("au-errors");
    ul.textContent = "";
    document.querySelectorAll("#au-form .au-bad").forEach(function (n) { n.classList.remove("au-bad"); n.removeAttribute("title"); });
    (errors || []).forEach(function (e) {
      ul.appendChild(el("li", e.path + ": " + e.message));
      var target = document.querySelector('#au-form [data-path="' + e.path.replace(/"/g, "") + '"]');
      if (target) { target.classList.add("au-bad"); target.title = e.message; }
    });
  }

  // ------------------------------------------------------------- the form

  function kindFields(list, name) {
    for (var i = 0; i < list.length; i++) if (list[i].name === name) return list[i].fields || [];
    return [];
  }

  function short(name) { return name.indexOf("automation.") === 0 ? name.slice(11) : name; }

  function input(path, field, value) {
    var label = el("label", field.name + (field.required ? " *" : ""));
    var box;
    if (field.type === "select") {
      box = document.createElement("select");
      (field.required ? [] : [""]).concat(field.options).forEach(function (o) { var opt = el("option", o); opt.value = o; box.appendChild(opt); });
      box.value = value === undefined ? "" : String(value);
    } else if (field.type === "boolean") {
      box = document.createElement("input"); box.type = "checkbox"; box.checked = !!value;
    } else {
      box = document.createElement("input"); box.type = "text";
      if (value !== undefined && value !== null) box.value = (field.type === "mapping" || field.type === "list") ? JSON.stringify(value) : String(value);
      if (field.default !== undefined) box.placeholder = typeof field.default === "object" ? JSON.stringify(field.default) : String(field.default);
    }
    box.dataset.path = path;
    box.dataset.field = field.name;
    box.dataset.type = field.type;
    box.addEventListener("change", formChanged);
    label.appendChild(box);
    return label;
  }

  function readInputs(row) {
    var out = {};
    row.querySelectorAll("[data-field]").forEach(function (box) {
      var v;
      if (box.dataset.type === "boolean") v = box.checked;
      else if (box.value === "") return;
      else if (box.dataset.type === "number") v = isNaN(Number(box.value)) ? box.value : Number(box.value);
      else if (box.dataset.type === "mapping" || box.dataset.type === "list") { try { v = JSON.parse(box.value); } catch (e) { v = box.value; } }
      else v = box.value;
      out[box.dataset.field] = v;
    });
    return out;
  }

  function triggerRow(trigger, index) {
    var row = el("div", null, "au-row au-trigger");
    var select = document.createElement("select");
    select.className = "au-kind";
    select.dataset.path = "triggers[" + index + "].kind";
    kinds.triggers.forEach(function (k) { var o = el("option", short(k.name)); o.value = k.name; select.appendChild(o); });
    var kind = trigger.kind && trigger.kind.indexOf(".") < 0 ? "automation." + trigger.kind : (trigger.kind || "automation.manual");
    select.value = kind;
    select.addEventListener("change", function () { rebuild(collect()); formChanged(); });
    var label = el("label", "kind"); label.appendChild(select); row.appendChild(label);
    kindFields(kinds.triggers, kind).forEach(function (f) { row.appendChild(input("triggers[" + index + "]." + f.name, f, trigger[f.name])); });
    var remove = el("button", "Remove"); remove.type = "button";
    remove.addEventListener("click", function () { var d = collect(); d.triggers.splice(index, 1); rebuild(d); formChanged(); });
    row.appendChild(remove);
    return row;
  }

  function stepKind(step) {
    if (step.action) return step.action.indexOf(".") < 0 ? "automation." + step.action : step.action;
    for (var i = 0; i < CONTROL.length; i++) if (step[CONTROL[i]] !== undefined) return CONTROL[i];
    return "automation.job";
  }

  function stepRow(step, index) {
    var row = el("div", null, "au-row au-step");
    var kind = stepKind(step);
    var select = document.createElement("select");
    select.className = "au-kind";
    kinds.actions.map(function (k) { return k.name; }).concat(CONTROL).forEach(function (name) { var o = el("option", short(name)); o.value = name; select.appendChild(o); });
    select.value = kind;
    select.addEventListener("change", function () { rebuild(collect()); formChanged(); });
    var label = el("label", "step"); label.appendChild(select); row.appendChild(label);
    row.appendChild(input("steps[" + index + "].id", { name: "id", type: "string" }, step.id));
    if (CONTROL.indexOf(kind) >= 0) {
      var extra = {}; Object.keys(step).forEach(function (k) { if (k !== "id" && k !== "name") extra[k] = step[k]; });
      var value = extra[kind] !== undefined ? extra : {};
      var box = el("textarea", Object.keys(value).length ? JSON.stringify(value) : "", "au-code au-control");
      box.dataset.path = "steps[" + index + "]." + kind;
      box.rows = 2;
      box.placeholder = kind === "delay" ? '{"delay": "10m"}' : '{"' + kind + '": ...}';
      box.addEventListener("change", formChanged);
      var wrap = el("label", kind + " (JSON)"); wrap.appendChild(box); row.appendChild(wrap);
    } else {
      kindFields(kinds.actions, kind).forEach(function (f) { row.appendChild(input("steps[" + index + "].with." + f.name, f, (step.with || {})[f.name])); });
    }
    var remove = el("button", "Remove"); remove.type = "button";
    remove.addEventListener("click", function () { var d = collect(); d.steps.splice(index, 1); rebuild(d); formChanged(); });
    row.appendChild(remove);
    return row;
  }

  function rebuild(definition) {
    document.getElementById("au-f-name").value = definition.name || "";
    document.getElementById("au-f-description").value = definition.description || "";
    document.getElementById("au-f-mode").value = definition.mode || "single";
    document.getElementById("au-f-max").value = definition.max || "";
    var throttle = definition.throttle || {};
    document.getElementById("au-f-throttle").value = throttle.period || "";
    document.getElementById("au-f-throttle-max").value = throttle.max || "";
    document.getElementById("au-f-conditions").value = (definition.conditions || []).length ? JSON.stringify(definition.conditions) : "";
    var triggers = document.getElementById("au-f-triggers"); triggers.textContent = "";
    (definition.triggers || []).forEach(function (t, i) { triggers.appendChild(triggerRow(t, i)); });
    var steps = document.getElementById("au-f-steps"); steps.textContent = "";
    (definition.steps || []).forEach(function (st, i) { steps.appendChild(stepRow(st, i)); });
    document.getElementById("au-form").dataset.base = JSON.stringify(definition);
  }

  function collect() {
    var base = JSON.parse(document.getElementById("au-form").dataset.base || "{}");
    var d = {};
    Object.keys(base).forEach(function (k) { if (["name", "description", "mode", "max", "throttle", "conditions", "triggers", "steps"].indexOf(k) < 0) d[k] = base[k]; });
    d.name = document.getElementById("au-f-name").value;
    var description = document.getElementById("au-f-description").value; if (description) d.description = description;
    d.mode = document.getElementById("au-f-mode").value;
    var max = document.getElementById("au-f-max").value; if (max) d.max = Number(max);
    var period = document.getElementById("au-f-throttle").value;
    if (period) { d.throttle = { period: period }; var tmax = document.getElementById("au-f-throttle-max").value; if (tmax) d.throttle.max = Number(tmax); if (base.throttle && base.throttle.per) d.throttle.per = base.throttle.per; }
    var conditions = document.getElementById("au-f-conditions").value.trim();
    if (conditions) { try { d.conditions = JSON.parse(conditions); } catch (e) { d.conditions = conditions; } }
    d.triggers = [];
    document.querySelectorAll("#au-f-triggers .au-trigger").forEach(function (row) {
      var t = readInputs(row); t.kind = short(row.querySelector(".au-kind").value); d.triggers.push(t);
    });
    d.steps = [];
    document.querySelectorAll("#au-f-steps .au-step").forEach(function (row, i) {
      var kind = row.querySelector(".au-kind").value;
      var fields = readInputs(row);
      var step = {};
      if (fields.id) step.id = fields.id;
      delete fields.id;
      if (CONTROL.indexOf(kind) >= 0) {
        var text = row.querySelector(".au-control").value.trim();
        var value = {}; if (text) { try { value = JSON.parse(text); } catch (e) { value = {}; value[kind] = text; } }
        if (value[kind] === undefined) value[kind] = kind === "stop" ? "" : {};
        Object.keys(value).forEach(function (k) { step[k] = value[k]; });
      } else {
        var old = (base.steps || [])[i] || {};
        step.action = short(kind);
        step["with"] = fields;
        ["name", "save_as", "continue_on_error"].forEach(function (k) { if (old[k] !== undefined && stepKind(old) === kind) step[k] = old[k]; });
      }
      d.steps.push(step);
    });
    return d;
  }

  // Only the answer to the newest check counts: an older one arriving late must not undo a later edit.
  var checks = 0;

  function formChanged() {
    var definition = collect();
    document.getElementById("au-form").dataset.base = JSON.stringify(definition);
    var mine = ++checks;
    api("POST", "/api/v1/automations/validate", { definition: definition }).then(function (res) {
      if (mine !== checks) return;
      if (res.data.texts && res.data.texts[format()]) document.getElementById("au-text").value = res.data.texts[format()];
      showErrors(res.data.errors);
      document.getElementById("au-message").textContent = res.data.ok ? "Valid." : "Not valid.";
    });
  }

  function textChanged() {
    var text = document.getElementById("au-text");
    var mine = ++checks;
    return api("POST", "/api/v1/automations/validate", { text: text.value, format: format() }).then(function (res) {
      if (mine !== checks) return res;
      if (res.data.raw && typeof res.data.raw === "object") rebuild(res.data.raw);
      showErrors(res.data.errors);
      document.getElementById("au-message").textContent = res.data.ok ? "Valid." : "Not valid.";
      return res;
    });
  }

  function loadEdit() {
    var id = root.dataset.automationId;
    var text = document.getElementById("au-text");
    var message = document.getElementById("au-message");
    document.querySelectorAll('input[name="au-format"]').forEach(function (radio) {
      radio.addEventListener("change", function () {
        api("POST", "/api/v1/automations/validate", { text: text.value, format: radio.value === "yaml" ? "toml" : "yaml" }).then(function (res) {
          if (res.data.texts && res.data.texts[radio.value]) { text.value = res.data.texts[radio.value]; showErrors(res.data.errors); }
          else { showErrors(res.data.errors.length ? res.data.errors : [{ path: "(text)", message: res.data.texts && res.data.texts.toml_error || "cannot convert" }]); }
        });
      });
    });
    document.getElementById("au-validate").addEventListener("click", textChanged);
    text.addEventListener("change", textChanged);
    document.getElementById("au-f-add-trigger").addEventListener("click", function () { var d = collect(); d.triggers.push({ kind: "manual" }); rebuild(d); formChanged(); });
    document.getElementById("au-f-add-step").addEventListener("click", function () { var d = collect(); d.steps.push({ stop: "done" }); rebuild(d); formChanged(); });
    ["au-f-name", "au-f-description", "au-f-mode", "au-f-max", "au-f-throttle", "au-f-throttle-max", "au-f-conditions"].forEach(function (fid) {
      document.getElementById(fid).addEventListener("change", formChanged);
    });
    api("GET", "/api/v1/automations/kinds").then(function (res) {
      kinds = res.data;
      if (id === "new") {
        document.getElementById("au-edit-title").textContent = "New automation";
        text.value = "name: My automation\ntriggers:\n  - kind: manual\nsteps:\n  - stop: done\n";
        textChanged();
        return;
      }
      api("GET", "/api/v1/automations/" + encodeURIComponent(id)).then(function (res) {
        if (!res.ok) { message.textContent = res.data.error; return; }
        current = res.data;
        document.getElementById("au-edit-title").textContent = current.name;
        text.value = current.texts[format()];
        rebuild(current.definition);
        showErrors(current.errors);
        var toggle = document.getElementById("au-toggle");
        if (toggle) toggle.textContent = current.enabled ? "Disable" : "Enable";
        if (current.webhook_url) fill("au-webhook", el("p", "Webhook: POST " + location.origin + current.webhook_url));
      });
      api("GET", "/api/v1/automations/" + encodeURIComponent(id) + "/runs?limit=20").then(function (res) {
        fill("au-runs", table(["Run", "Automation", "State", "Started", "Message"], runRows(res.data.runs || [])));
      });
    });
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
