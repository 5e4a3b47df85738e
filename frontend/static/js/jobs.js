/* Roost dashboard: a node's actions (run, sign, wake), the jobs list, one job with live output, and schedules.
 *
 * Changes go to the hub's JSON API (/api/v1/nodes/ID/actions/NAME,
 * /api/v1/nodes/ID/actions/NAME/envelope, /api/v1/nodes/ID/wake,
 * /api/v1/jobs/ID/cancel, /api/v1/schedules) with the session's CSRF token
 * in the X-CSRF-Token header; the hub checks the role again. Live changes
 * arrive as `job` and `job_progress` events on roost.js's one stream. Hub
 * data is written with textContent; tables and the job's details are
 * re-fetched as server-rendered fragments (?fragment=NAME).
 */
(function () {
  "use strict";

  // roost.js loads after this file on the node page (which includes it mid-body): read it once the page is parsed.
  var R = null;
  var DASH = "\u2014";
  var ACTIVE = { queued: 1, dispatched: 1, running: 1 };
  var STATES = {
    queued: ["Queued", "muted"],
    dispatched: ["Dispatched", "info"],
    running: ["Running", "info"],
    succeeded: ["Succeeded", "ok"],
    failed: ["Failed", "bad"],
    timed_out: ["Timed out", "bad"],
    cancelled: ["Cancelled", "warn"],
    refused: ["Refused", "bad"]
  };
  // The hub keeps the newest 256 KiB of a job's output; the page keeps as much.
  var MAX_OUTPUT_CHARS = 256 * 1024;

  // ------------------------------------------------------------------ the API

  /* A JSON request to the hub; resolves with the parsed body, rejects with the hub's own error message. */
  function api(method, url, body) {
    var headers = { Accept: "application/json" };
    if (method !== "GET" && method !== "HEAD") headers["X-CSRF-Token"] = R.csrfToken() || "";
    var init = { method: method, headers: headers, credentials: "same-origin", cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(url, init).then(function (res) {
      R.checkSession(res);
      return res.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (err) { data = null; }
        if (!res.ok) {
          var message = data && data.error ? String(data.error) : "the hub answered HTTP " + res.status;
          if (res.status === 404 && !(data && data.error)) message = "the hub does not offer this yet (HTTP 404)";
          var error = new Error(message);
          error.status = res.status;
          throw error;
        }
        return data;
      });
    }, function () {
      throw new Error("cannot reach the hub; check the connection and try again");
    });
  }

  function segment(value) { return encodeURIComponent(String(value)); }

  function pageData(id) {
    var el = document.getElementById(id);
    if (!el) return null;
    try { return JSON.parse(el.textContent); } catch (err) { return null; }
  }

  function showMessage(el, text, tone) {
    if (!el) return;
    el.textContent = text || "";
    el.hidden = !text;
    if (tone) {
      el.classList.remove("tone-ok", "tone-bad", "tone-warn", "tone-muted");
      el.classList.add(tone);
    }
  }

  function setBusy(root, busy) {
    root.querySelectorAll("button, input, select, textarea").forEach(function (el) {
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

  /* Rewrite a job state badge in place. */
  function setStateBadge(badge, state) {
    if (!badge) return;
    var known = STATES[state] || [String(state || "unknown").replace(/_/g, " "), "muted"];
    badge.textContent = known[0];
    badge.setAttribute("data-state", state);
    badge.className = "badge job-state tone-" + known[1];
  }

  function selectContents(el) {
    var range = document.createRange();
    range.selectNodeContents(el);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  // ------------------------------------------------------- parameter forms

  /* The parameters a form's inputs describe, typed as the action's schema says; throws with a message for the user. */
  function collectParams(root) {
    var params = {};
    var inputs = root.querySelectorAll("[data-param]");
    for (var i = 0; i < inputs.length; i++) {
      var el = inputs[i];
      var name = el.getAttribute("data-param");
      var kind = el.getAttribute("data-kind");
      var label = labelOf(el);
      if (kind === "boolean") { params[name] = el.checked; continue; }
      var raw = el.value;
      if (kind !== "json") raw = raw.trim();
      if (raw === "") {
        if (el.required) throw fieldError(el, label + " is required.");
        continue;
      }
      if (kind === "integer") {
        if (!/^[+-]?\d+$/.test(raw)) throw fieldError(el, label + " must be a whole number.");
        params[name] = parseInt(raw, 10);
      } else if (kind === "float") {
        var n = Number(raw);
        if (!Number.isFinite(n)) throw fieldError(el, label + " must be a number.");
        params[name] = n;
      } else if (kind === "select") {
        try { params[name] = JSON.parse(raw); } catch (err) { params[name] = raw; }
      } else if (kind === "json") {
        var value;
        try { value = JSON.parse(raw); } catch (err) { throw fieldError(el, label + " is not valid JSON: " + err.message); }
        if (el.hasAttribute("data-whole")) {
          if (!value || typeof value !== "object" || Array.isArray(value)) throw fieldError(el, label + " must be a JSON object.");
          return value;
        }
        params[name] = value;
      } else {
        params[name] = raw;
      }
    }
    return params;
  }

  function labelOf(el) {
    var label = el.id ? document.querySelector('label[for="' + CSS.escape(el.id) + '"]') : null;
    if (!label) return el.getAttribute("data-param");
    var text = label.cloneNode(true);
    text.querySelectorAll(".req, .optional, .visually-hidden").forEach(function (n) { n.remove(); });
    return text.textContent.trim() || el.getAttribute("data-param");
  }

  function fieldError(el, message) {
    var error = new Error(message);
    error.field = el;
    return error;
  }

  /* Browser checks first (required, pattern, min and max), then our own typing. */
  function validParams(root, errorEl) {
    var inputs = root.querySelectorAll("[data-param]");
    for (var i = 0; i < inputs.length; i++) {
      if (!inputs[i].disabled && !inputs[i].checkValidity()) {
        inputs[i].reportValidity();
        return null;
      }
    }
    try {
      return collectParams(root);
    } catch (err) {
      showMessage(errorEl, err.message);
      if (err.field) err.field.focus();
      return null;
    }
  }

  // ------------------------------------------------------------ node page

  function actionUrl(form) {
    return "/api/v1/nodes/" + segment(form.getAttribute("data-node-id-run")) + "/actions/" + segment(form.getAttribute("data-action-name"));
  }

  function runAction(form) {
    var error = form.querySelector(".action-error");
    showMessage(error, "");
    var card = form.closest(".action-card");
    var destructive = card && card.hasAttribute("data-destructive");
    var body;
    if (destructive) {
      if (!form.roostEnvelope) { showMessage(error, "Prepare the envelope and sign it first."); return; }
      // roost sign prints the signed JSON on one line, then a "# signed with …" note: take the JSON.
      var pasted = form.querySelector(".signed-envelope").value.split(/\r?\n/).filter(function (line) {
        return line.trim().charAt(0) !== "#";
      }).join("\n").trim();
      if (!pasted) { showMessage(error, "Paste the signed envelope that roost sign printed."); return; }
      var signed;
      try { signed = JSON.parse(pasted); } catch (err) {
        showMessage(error, "That is not the JSON roost sign prints: " + err.message);
        return;
      }
      if (!signed || typeof signed !== "object" || Array.isArray(signed)) {
        showMessage(error, "The signed envelope must be a JSON object, as roost sign prints it.");
        return;
      }
      body = { params: form.roostEnvelope.params, envelope: signed };
    } else {
      var params = validParams(form, error);
      if (params === null) return;
      body = { params: params };
    }
    setBusy(form, true);
    api("POST", actionUrl(form), body)
      .then(function (job) {
        window.location.assign("/jobs/" + segment(job.id));
      })
      .catch(function (err) {
        setBusy(form, false);
        showMessage(error, "Not started: " + err.message);
      });
  }

  function prepareEnvelope(form) {
    var error = form.querySelector(".action-error");
    showMessage(error, "");
    var params = validParams(form, error);
    if (params === null) return;
    var ttlSelect = form.querySelector('select[name="ttl"]');
    var ttl = ttlSelect ? parseInt(ttlSelect.value, 10) : 900;
    setBusy(form, true);
    api("POST", actionUrl(form) + "/envelope", { params: params, ttl: ttl })
      .then(function (answer) {
        setBusy(form, false);
        answer = answer || {};
        var envelope = answer.envelope || answer.unsigned || answer;
        form.roostEnvelope = { params: params, envelope: envelope };
        var step = form.querySelector(".envelope-step");
        form.querySelector(".envelope-command").textContent = String(answer.command || "roost sign");
        form.querySelector(".envelope-json").textContent = JSON.stringify(envelope, null, 2);
        var summary = form.querySelector(".envelope-summary");
        summary.textContent = answer.summary ? String(answer.summary) : "";
        summary.hidden = !answer.summary;
        var expires = typeof answer.expires_at === "number" ? answer.expires_at : envelope.expires_at;
        var expiry = form.querySelector(".envelope-expiry");
        expiry.hidden = typeof expires !== "number";
        if (!expiry.hidden) {
          var at = expiry.querySelector(".envelope-expires");
          at.textContent = R.format.datetime(expires);
          at.setAttribute("datetime", new Date(expires * 1000).toISOString());
          var left = expiry.querySelector(".envelope-left");
          left.setAttribute("data-until", String(expires));
          left.textContent = until(expires);
        }
        form.querySelector(".copy-status").textContent = "";
        // The signature binds these exact parameters: lock them until the operator starts over.
        form.querySelector("fieldset.params").disabled = true;
        form.querySelector(".envelope-prepare").hidden = true;
        step.hidden = false;
        form.querySelector(".signed-envelope").focus();
      })
      .catch(function (err) {
        setBusy(form, false);
        showMessage(error, "No envelope: " + err.message);
      });
  }

  function startOver(form) {
    form.roostEnvelope = null;
    form.querySelector(".envelope-step").hidden = true;
    form.querySelector(".envelope-prepare").hidden = false;
    form.querySelector("fieldset.params").disabled = false;
    form.querySelector(".signed-envelope").value = "";
    showMessage(form.querySelector(".action-error"), "");
  }

  function copyCommand(form) {
    var source = form.querySelector(".envelope-command");
    var status = form.querySelector(".copy-status");
    Roost.copyText(source.textContent).then(function () {
      status.textContent = "Copied.";
    }, function () {
      selectContents(source);
      status.textContent = "Selected: press Ctrl+C (or long-press and copy).";
    });
  }

  function wake(card) {
    var nodeId = card.getAttribute("data-node-id-wake");
    var result = card.querySelector(".wake-result");
    var via = card.querySelector('select[name="via"]');
    var body = via && via.value ? { via: via.value } : {};
    result.className = "wake-result small";
    result.textContent = "Sending\u2026";
    setBusy(card, true);
    api("POST", "/api/v1/nodes/" + segment(nodeId) + "/wake", body)
      .then(function (answer) {
        answer = answer || {};
        result.className = "wake-result small tone-ok-text";
        result.replaceChildren();
        var macs = (answer.macs || []).map(String).join(", ");
        var jobs = answer.jobs || [];
        if (jobs.length) {
          // Relayed: one wol.send job per MAC on the relay's agent.
          result.appendChild(document.createTextNode("Asked " + (via && via.selectedOptions[0] ? via.selectedOptions[0].textContent : "the relay") + " to send the magic packet" + (macs ? " for " + macs : "") + ": "));
          jobs.forEach(function (job, i) {
            var a = document.createElement("a");
            a.href = "/jobs/" + segment(job.id);
            a.textContent = jobs.length > 1 ? "job " + (i + 1) : "see the job";
            if (i) result.appendChild(document.createTextNode(", "));
            result.appendChild(a);
          });
          result.appendChild(document.createTextNode("."));
        } else {
          var where = answer.broadcast ? " through " + answer.broadcast + (answer.port ? ":" + answer.port : "") : "";
          result.textContent = "Magic packet sent" + (macs ? " for " + macs : "") + where + ". The node shows as online once its agent reports.";
        }
      })
      .catch(function (err) {
        result.className = "wake-result small tone-bad-text";
        result.textContent = "Not sent: " + err.message;
      })
      .then(function () { setBusy(card, false); });
  }

  function initNodeActions(section) {
    var nodeId = section.getAttribute("data-actions-node");
    section.addEventListener("submit", function (event) {
      var form = event.target.closest(".action-form");
      if (!form) return;
      event.preventDefault();
      runAction(form);
    });
    section.addEventListener("click", function (event) {
      var button = event.target.closest && event.target.closest("button[data-job-action]");
      if (!button || button.disabled) return;
      var kind = button.getAttribute("data-job-action");
      var form = button.closest(".action-form");
      if (kind === "prepare" && form) prepareEnvelope(form);
      else if (kind === "start-over" && form) startOver(form);
      else if (kind === "copy-command" && form) copyCommand(form);
      else if (kind === "wake") wake(button.closest(".wake-card"));
    });
    section.addEventListener("input", function (event) {
      var form = event.target.closest && event.target.closest(".action-form");
      if (form && event.target.matches("[data-param], .signed-envelope")) showMessage(form.querySelector(".action-error"), "");
    });
    R.onNode(function (node) {
      if (String(node.id) !== nodeId || !node.status) return;
      section.setAttribute("data-status", node.status);
      var quiet = node.status === "offline" || node.status === "stale";
      var wakeCard = section.querySelector(".wake-card");
      if (wakeCard) wakeCard.hidden = !quiet;
      var offline = section.querySelector(".actions-offline");
      if (offline && node.status === "online") offline.hidden = true;
    });
    R.onEvent("job", function (job) {
      if (String(job.node_id) !== nodeId) return;
      var item = section.querySelector('.job-mini-list li[data-job-id="' + CSS.escape(String(job.id)) + '"]');
      if (item) setStateBadge(item.querySelector(".job-state"), job.state);
    });
  }

  // -------------------------------------------------------------- jobs list

  function initJobsList() {
    var data = pageData("jobs-data") || {};
    var filters = data.filters || {};
    // A page of older jobs stays as it is; the first page follows new ones.
    var follow = !data.paged;
    R.onEvent("job", function (job) {
      var row = document.querySelector('#jobs tr[data-job-id="' + CSS.escape(String(job.id)) + '"]');
      if (row && !filters.state) {
        row.setAttribute("data-state", job.state);
        setStateBadge(row.querySelector(".job-state"), job.state);
        var took = row.querySelector(".job-took");
        if (took && typeof job.finished_at === "number" && typeof job.started_at === "number") {
          took.textContent = R.format.duration(job.finished_at - job.started_at);
        }
        return;
      }
      if (!follow) return;
      if (filters.node && String(job.node_id) !== filters.node) return;
      if (filters.action && String(job.action).indexOf(filters.action) !== 0) return;
      if (filters.schedule && String(job.schedule_id) !== filters.schedule) return;
      R.refreshFragment("jobs", 1000);
    });
    R.onResync(function () { if (follow) R.refreshFragment("jobs", 5000); });
  }

  // ---------------------------------------------------------------- one job

  function initJob() {
    var data = pageData("job-data") || {};
    var jobId = String(data.id);
    var state = data.state;
    var output = document.getElementById("job-output");
    var noOutput = document.getElementById("job-no-output");

    function atBottom() {
      return output.scrollHeight - output.scrollTop - output.clientHeight < 24;
    }

    function setOutput(text) {
      var follow = atBottom();
      output.textContent = text;
      output.hidden = !text;
      noOutput.hidden = !!text;
      if (follow) output.scrollTop = output.scrollHeight;
    }

    function appendOutput(text) {
      if (!text) return;
      var follow = atBottom();
      var current = output.textContent + text;
      if (current.length > MAX_OUTPUT_CHARS) current = current.slice(current.length - MAX_OUTPUT_CHARS);
      output.textContent = current;
      output.hidden = false;
      noOutput.hidden = true;
      if (follow) output.scrollTop = output.scrollHeight;
    }

    function setProgress(percent, message) {
      var box = document.querySelector("#job-detail .job-progress");
      if (!box) return;
      box.hidden = false;
      var bar = box.querySelector("progress");
      var number = typeof percent === "number" && Number.isFinite(percent) ? Math.max(0, Math.min(100, percent)) : null;
      if (number !== null) {
        bar.value = number;
        bar.textContent = R.format.percent(number);
        box.querySelector(".job-percent").textContent = R.format.percent(number);
      }
      if (message) box.querySelector(".job-progress-message").textContent = String(message);
    }

    /* The whole job from the hub: output, result and state, after a gap in the stream or at the end. */
    function reload() {
      return api("GET", "/api/v1/jobs/" + segment(jobId)).then(function (job) {
        setOutput(String(job.output || ""));
        if (job.state !== state) { state = job.state; R.refreshFragment("detail", 0); }
      }).catch(function () { /* the next event or resync tries again */ });
    }

    R.onEvent("job_progress", function (event) {
      if (String(event.id) !== jobId) return;
      appendOutput(event.output ? String(event.output) : "");
      setProgress(event.percent, event.message);
    });
    R.onEvent("job", function (job) {
      if (String(job.id) !== jobId) return;
      var changed = job.state !== state;
      state = job.state;
      var badge = document.querySelector("#job-detail .job-status-head .job-state");
      setStateBadge(badge, job.state);
      if (!ACTIVE[job.state]) {
        var cancel = document.querySelector('#job-detail button[data-job-action="cancel"]');
        if (cancel) cancel.remove();
      }
      if (changed) R.refreshFragment("detail", 0);
      // The result's output is only in the stored job; fetch it once the job is over.
      if (!ACTIVE[job.state]) reload();
    });
    R.onResync(function () { if (ACTIVE[state]) reload(); });

    document.addEventListener("click", function (event) {
      var button = event.target.closest && event.target.closest('button[data-job-action="cancel"]');
      if (!button || button.disabled) return;
      var status = document.querySelector("#job-detail .cancel-result");
      button.disabled = true;
      status.className = "cancel-result small";
      status.textContent = "Asking the node to stop\u2026";
      api("POST", "/api/v1/jobs/" + segment(jobId) + "/cancel", {})
        .then(function (job) {
          status.textContent = job && job.state === "cancelled" ? "Cancelled." : "Cancel sent; the node stops the job and reports back.";
          if (job && job.state && job.state !== state) { state = job.state; R.refreshFragment("detail", 0); }
        })
        .catch(function (err) {
          button.disabled = false;
          status.className = "cancel-result small tone-bad-text";
          status.textContent = "Not cancelled: " + err.message;
        });
    });
    if (output.textContent) output.scrollTop = output.scrollHeight;
  }

  // -------------------------------------------------------------- schedules

  function initSchedules() {
    var data = pageData("schedules-data") || {};
    var nodes = data.nodes || {};
    var form = document.getElementById("schedule-form");

    R.onEvent("job", function (job) {
      if (!job.schedule_id) return;
      var row = document.querySelector('#schedules tr[data-schedule-id="' + CSS.escape(String(job.schedule_id)) + '"]');
      if (row) R.refreshFragment("schedules", 2000);
    });
    R.onResync(function () { R.refreshFragment("schedules", 10000); });

    document.addEventListener("change", function (event) {
      var box = event.target;
      if (!box.matches || !box.matches("input[data-schedule-toggle]")) return;
      var row = box.closest("tr[data-schedule-id]");
      var enabled = box.checked;
      setBusy(row, true);
      api("PATCH", "/api/v1/schedules/" + segment(row.getAttribute("data-schedule-id")), { enabled: enabled })
        .then(function () { return refreshSchedules(); })
        .catch(function (err) {
          box.checked = !enabled;
          setBusy(row, false);
          scheduleListError("Not changed: " + err.message);
        });
    });

    document.addEventListener("click", function (event) {
      var button = event.target.closest && event.target.closest("button[data-job-action]");
      if (!button || button.disabled) return;
      var row = button.closest("tr[data-schedule-id]");
      var kind = button.getAttribute("data-job-action");
      if (!row) return;
      var confirm = row.querySelector('[data-confirm="delete-schedule"]');
      var trigger = row.querySelector('[data-job-action="delete-schedule"]');
      if (kind === "delete-schedule") {
        trigger.hidden = true;
        trigger.setAttribute("aria-expanded", "true");
        confirm.hidden = false;
        confirm.querySelector("button").focus();
      } else if (kind === "keep-schedule") {
        confirm.hidden = true;
        trigger.hidden = false;
        trigger.setAttribute("aria-expanded", "false");
        trigger.focus();
      } else if (kind === "confirm-delete-schedule") {
        setBusy(row, true);
        api("DELETE", "/api/v1/schedules/" + segment(row.getAttribute("data-schedule-id")))
          .then(function () { return refreshSchedules(); })
          .catch(function (err) {
            setBusy(row, false);
            scheduleListError("Not deleted: " + err.message);
          });
      }
    });

    if (form) initScheduleForm(form, nodes);
  }

  function refreshSchedules() {
    return new Promise(function (resolve) {
      var done = function () { document.removeEventListener("roost:fragment", done); resolve(); };
      document.addEventListener("roost:fragment", done);
      R.refreshFragment("schedules", 0);
      setTimeout(done, 5000);
    });
  }

  function scheduleListError(message) {
    var el = document.querySelector("#schedules .schedules-error");
    showMessage(el, message);
  }

  function initScheduleForm(form, nodes) {
    var nodeSelect = form.querySelector("#schedule-node");
    var actionSelect = form.querySelector("#schedule-action");
    var paramsBox = form.querySelector("#schedule-params");
    var cron = form.querySelector("#schedule-cron");
    var error = form.querySelector(".schedule-error");
    if (!nodeSelect) return;
    var loading = 0;

    function fillActions(nodeId, chosen) {
      actionSelect.replaceChildren();
      var first = document.createElement("option");
      first.value = "";
      first.textContent = nodeId ? "Choose an action\u2026" : "Choose a node first";
      actionSelect.appendChild(first);
      (nodes[nodeId] || []).forEach(function (action) {
        var option = document.createElement("option");
        option.value = action.name;
        option.textContent = action.disabled ? action.name + " (" + action.disabled + ")" : action.name;
        option.disabled = !!action.disabled;
        if (action.name === chosen && !action.disabled) option.selected = true;
        actionSelect.appendChild(option);
      });
      actionSelect.disabled = !nodeId;
      loadParams();
    }

    function loadParams() {
      var nodeId = nodeSelect.value;
      var action = actionSelect.value;
      var target = form.querySelector("#params-fields");
      if (!nodeId || !action) {
        paramsBox.hidden = true;
        target.replaceChildren();
        return;
      }
      var ticket = ++loading;
      var url = "/schedules?fragment=params&node=" + segment(nodeId) + "&action=" + segment(action);
      fetch(url, { headers: { Accept: "text/html" }, credentials: "same-origin", cache: "no-store" })
        .then(function (res) {
          R.checkSession(res);
          if (!res.ok) throw new Error("HTTP " + res.status);
          return res.text();
        })
        .then(function (html) {
          if (ticket !== loading) return;
          // Autoescaped server HTML, parsed inertly.
          var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("params-fields");
          target.replaceChildren.apply(target, Array.prototype.slice.call(fresh ? fresh.childNodes : []).map(function (n) {
            return document.importNode(n, true);
          }));
          paramsBox.hidden = false;
        })
        .catch(function (err) { showMessage(error, "Could not load the action's parameters: " + err.message); });
    }

    nodeSelect.addEventListener("change", function () { fillActions(nodeSelect.value, ""); showMessage(error, ""); });
    actionSelect.addEventListener("change", function () { loadParams(); showMessage(error, ""); });
    form.addEventListener("click", function (event) {
      var preset = event.target.closest && event.target.closest("button[data-cron]");
      if (!preset) return;
      cron.value = preset.getAttribute("data-cron");
      cron.focus();
      showMessage(error, "");
    });
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      showMessage(error, "");
      if (!nodeSelect.value) { showMessage(error, "Choose a node."); nodeSelect.focus(); return; }
      if (!actionSelect.value) { showMessage(error, "Choose an action."); actionSelect.focus(); return; }
      if (!cron.value.trim()) { showMessage(error, "Say when: a cron expression such as 0 3 * * * (03:00 UTC daily), or pick one of the presets."); cron.focus(); return; }
      var params = validParams(paramsBox, error);
      if (params === null) return;
      var body = {
        node_id: nodeSelect.value,
        action: actionSelect.value,
        params: params,
        cron: cron.value.trim(),
        note: form.querySelector("#schedule-note").value.trim()
      };
      setBusy(form, true);
      api("POST", "/api/v1/schedules", body)
        .then(function (schedule) {
          setBusy(form, false);
          addResult(schedule);
          cron.value = "";
          form.querySelector("#schedule-note").value = "";
          return refreshSchedules();
        })
        .catch(function (err) {
          setBusy(form, false);
          showMessage(error, "Not created: " + err.message);
        });
    });

    // Arriving from a node's action card: /schedules?node=ID&action=NAME
    var query = new URLSearchParams(window.location.search);
    var wanted = query.get("node");
    if (wanted && nodes[wanted]) {
      nodeSelect.value = wanted;
      fillActions(wanted, query.get("action") || "");
    }
  }

  function addResult(schedule) {
    var box = document.getElementById("schedule-results");
    if (!box || !schedule) return;
    var p = document.createElement("p");
    p.className = "notice tone-ok";
    p.appendChild(document.createTextNode("Scheduled " + schedule.action + " (" + schedule.cron + "). Next run: "));
    var when = document.createElement("time");
    if (typeof schedule.next_run === "number") {
      when.textContent = R.format.datetime(schedule.next_run) + " (" + until(schedule.next_run) + ")";
      when.setAttribute("datetime", new Date(schedule.next_run * 1000).toISOString());
    } else {
      when.textContent = DASH;
    }
    p.appendChild(when);
    p.appendChild(document.createTextNode("."));
    box.replaceChildren(p);
  }

  // ---------------------------------------------------------------- times

  function until(ts, now) {
    var delta = Number(ts) - (now === undefined ? Date.now() / 1000 : now);
    if (!Number.isFinite(delta)) return DASH;
    if (Math.abs(delta) < 2) return "now";
    return delta > 0 ? "in " + R.format.duration(delta) : R.format.duration(-delta) + " ago";
  }

  function tickUntil() {
    var now = Date.now() / 1000;
    document.querySelectorAll("time[data-until]").forEach(function (el) {
      var text = until(el.getAttribute("data-until"), now);
      if (el.textContent !== text) el.textContent = text;
    });
  }

  // ------------------------------------------------------------------ start

  function init() {
    R = window.Roost;
    if (!R) return;
    var page = document.body.getAttribute("data-page");
    var section = document.getElementById("actions");
    if (section && section.hasAttribute("data-actions-node")) initNodeActions(section);
    if (page === "jobs") initJobsList();
    if (page === "job") initJob();
    if (page === "schedules") initSchedules();
    tickUntil();
    setInterval(tickUntil, 1000);
  }

  window.RoostJobs = { collectParams: collectParams, until: until };

  // A deferred script runs while the document is "interactive", before roost.js when it comes later in the
  // page: wait for DOMContentLoaded, which follows every deferred script (load, in case that has passed).
  var started = false;
  function start() {
    if (started) return;
    started = true;
    init();
  }
  if (document.readyState === "complete") start();
  else {
    document.addEventListener("DOMContentLoaded", start);
    window.addEventListener("load", start);
  }
})();
