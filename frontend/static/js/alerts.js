/* The Alerts page: acknowledge, snooze, rules (edit, preview, delete), silences and maintenance windows, all through /api/v1/alerts. */
(function () {
  "use strict";

  function show(text, bad) {
    var el = document.querySelector(".alert-status");
    if (!el) return;
    el.textContent = text;
    el.classList.toggle("tone-bad", !!bad);
    el.hidden = !text;
  }

  function api(method, url, body) {
    return fetch(url, {
      method: method,
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body)
    }).then(function (res) {
      return res.json().catch(function () { return {}; }).then(function (data) {
        if (!res.ok) throw new Error(data && data.error ? String(data.error) : "the hub answered HTTP " + res.status);
        return data;
      });
    });
  }

  function done(text) {
    show(text, false);
    window.setTimeout(function () { window.location.reload(); }, 400);
  }

  /* "a=b, c~d*" -> [{name, op, value}] */
  function parseMatchers(text) {
    var out = [];
    String(text || "").split(",").forEach(function (part) {
      part = part.trim();
      if (!part) return;
      var m = /^([A-Za-z_][A-Za-z0-9_.-]*)\s*(!=|!~|=|~)\s*(.*)$/.exec(part);
      if (!m) throw new Error("cannot read matcher " + JSON.stringify(part) + ": write name=value, name!=value, name~glob or name!~glob");
      out.push({ name: m[1], op: m[2], value: m[3].trim() });
    });
    return out;
  }

  function parseLabels(text) {
    var out = {};
    parseMatchers(text).forEach(function (m) {
      if (m.op !== "=") throw new Error("node labels are name=value");
      out[m.name] = m.value;
    });
    return out;
  }

  function listOf(text) {
    return String(text || "").split(",").map(function (s) { return s.trim(); }).filter(Boolean);
  }

  function ruleBody(form) {
    var settings;
    try { settings = JSON.parse(form.elements.settings.value || "{}"); } catch (err) { throw new Error("settings is not valid JSON: " + err.message); }
    return {
      name: form.elements.name.value,
      kind: form.elements.kind.value,
      severity: form.elements.severity.value,
      "for": Number(form.elements["for"].value || 0),
      clear_for: Number(form.elements.clear_for.value || 0),
      enabled: form.elements.enabled.checked,
      selector: { name: form.elements.sel_name.value, labels: parseLabels(form.elements.sel_labels.value), nodes: listOf(form.elements.sel_nodes.value) },
      settings: settings
    };
  }

  function rules() {
    var el = document.getElementById("alert-rules-data");
    try { return el ? JSON.parse(el.textContent) : []; } catch (err) { return []; }
  }

  function fillRule(rule) {
    var editor = document.getElementById("rule-editor");
    var form = editor && editor.querySelector("[data-rule-form]");
    if (!form) return;
    var sel = rule.selector || {};
    form.elements.id.value = rule.id;
    form.elements.name.value = rule.name;
    form.elements.kind.value = rule.kind;
    form.elements.severity.value = rule.severity;
    form.elements["for"].value = rule["for"] || 0;
    form.elements.clear_for.value = rule.clear_for || 0;
    form.elements.enabled.checked = !!rule.enabled;
    form.elements.sel_name.value = sel.name || "";
    form.elements.sel_labels.value = Object.keys(sel.labels || {}).map(function (k) { return k + "=" + sel.labels[k]; }).join(", ");
    form.elements.sel_nodes.value = (sel.nodes || []).join(", ");
    form.elements.settings.value = JSON.stringify(rule.settings || {}, null, 1);
    editor.querySelector("summary").textContent = "Edit rule: " + rule.name;
    editor.open = true;
    editor.scrollIntoView({ block: "start" });
  }

  function renderPreview(box, data) {
    box.hidden = false;
    box.textContent = "";
    var head = document.createElement("p");
    head.textContent = "Selects " + data.nodes_selected + " node(s); matches " + data.matches.length + " right now" + (data.error ? " (error: " + data.error + ")" : "") + ".";
    box.appendChild(head);
    if (!data.matches.length) return;
    var ul = document.createElement("ul");
    data.matches.forEach(function (m) {
      var li = document.createElement("li");
      var labels = Object.keys(m.labels || {}).map(function (k) { return k + "=" + m.labels[k]; }).join(" ");
      li.textContent = m.node_name + (labels ? " [" + labels + "]" : "") + ": " + m.severity + " — " + m.summary;
      ul.appendChild(li);
    });
    box.appendChild(ul);
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    var handled = true;
    try {
      if (form.matches("[data-alert-ack]")) {
        api("POST", "/api/v1/alerts/instances/" + encodeURIComponent(form.getAttribute("data-alert-ack")) + "/ack", { note: form.elements.note.value })
          .then(function () { done("Acknowledged."); }, function (err) { show("Not acknowledged: " + err.message, true); });
      } else if (form.matches("[data-alert-snooze]")) {
        api("POST", "/api/v1/alerts/instances/" + encodeURIComponent(form.getAttribute("data-alert-snooze")) + "/snooze", { "for": Number(form.elements["for"].value) })
          .then(function () { done("Snoozed."); }, function (err) { show("Not snoozed: " + err.message, true); });
      } else if (form.matches("[data-rule-form]")) {
        var id = form.elements.id.value;
        api(id ? "PUT" : "POST", "/api/v1/alerts/rules" + (id ? "/" + encodeURIComponent(id) : ""), ruleBody(form))
          .then(function () { done("Rule saved."); }, function (err) { show("Rule not saved: " + err.message, true); });
      } else if (form.matches("[data-silence-form]")) {
        var hours = Number(form.elements.hours.value);
        api("POST", "/api/v1/alerts/silences", { matchers: parseMatchers(form.elements.matchers.value), ends_at: Date.now() / 1000 + hours * 3600, reason: form.elements.reason.value })
          .then(function () { done("Silence added."); }, function (err) { show("Silence not added: " + err.message, true); });
      } else if (form.matches("[data-window-form]")) {
        api("POST", "/api/v1/alerts/maintenance", { name: form.elements.name.value, cron: form.elements.cron.value, duration: Number(form.elements.minutes.value) * 60, matchers: parseMatchers(form.elements.matchers.value) })
          .then(function () { done("Maintenance window added."); }, function (err) { show("Window not added: " + err.message, true); });
      } else if (form.matches("[data-labels-form]")) {
        api("PUT", "/api/v1/nodes/" + encodeURIComponent(form.getAttribute("data-labels-form")) + "/labels", { labels: parseLabels(form.elements.labels.value) })
          .then(function () { done("Labels saved."); }, function (err) { show("Labels not saved: " + err.message, true); });
      } else {
        handled = false;
      }
    } catch (err) {
      show(err.message, true);
    }
    if (handled) event.preventDefault();
  });

  document.addEventListener("click", function (event) {
    var edit = event.target.closest("[data-rule-edit]");
    if (edit) {
      var id = edit.getAttribute("data-rule-edit");
      var rule = rules().filter(function (r) { return r.id === id; })[0];
      if (rule) fillRule(rule);
      return;
    }
    var del = event.target.closest("[data-rule-delete]");
    if (del) {
      if (!window.confirm("Delete the rule " + del.getAttribute("data-rule-name") + "? Its firing alerts resolve; a default rule is not made again.")) return;
      api("DELETE", "/api/v1/alerts/rules/" + encodeURIComponent(del.getAttribute("data-rule-delete")))
        .then(function () { done("Rule deleted."); }, function (err) { show("Not deleted: " + err.message, true); });
      return;
    }
    var preview = event.target.closest("[data-rule-preview]");
    if (preview) {
      var form = preview.closest("form");
      var box = form.querySelector(".preview");
      try {
        api("POST", "/api/v1/alerts/rules/preview", ruleBody(form))
          .then(function (data) { renderPreview(box, data); show("", false); }, function (err) { show("No preview: " + err.message, true); });
      } catch (err) { show(err.message, true); }
      return;
    }
    var expire = event.target.closest("[data-silence-expire]");
    if (expire) {
      api("DELETE", "/api/v1/alerts/silences/" + encodeURIComponent(expire.getAttribute("data-silence-expire")))
        .then(function () { done("Silence expired."); }, function (err) { show("Not expired: " + err.message, true); });
      return;
    }
    var wdel = event.target.closest("[data-window-delete]");
    if (wdel) {
      api("DELETE", "/api/v1/alerts/maintenance/" + encodeURIComponent(wdel.getAttribute("data-window-delete")))
        .then(function () { done("Window deleted."); }, function (err) { show("Not deleted: " + err.message, true); });
    }
  });

  // Live: a change of any alert re-fetches the "now" tables (at most every 2 s).
  if (window.Roost && window.Roost.onEvent) {
    ["alert.pending", "alert.firing", "alert.resolved", "alert.acknowledged"].forEach(function (kind) {
      window.Roost.onEvent(kind, function () { if (window.Roost.refreshFragment) window.Roost.refreshFragment("now", 2000); });
    });
  }
})();
