/* Roost Backups pages: live progress of backup jobs, the repository's actions, the retention dry run and the signing
 * round trip for prune, rule approval and overwriting restores (the hub issues the envelope, `roost sign` signs it,
 * the agent checks it). Hub data is written with textContent only.
 */
(function () {
  "use strict";

  var R = window.Roost;
  var FINAL = { succeeded: 1, failed: 1, timed_out: 1, cancelled: 1, refused: 1 };
  var POLL_MS = 1000;

  function request(method, url, body) {
    var headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (method !== "GET") headers["X-CSRF-Token"] = (R && R.csrfToken && R.csrfToken()) || "";
    return fetch(url, { method: method, headers: headers, credentials: "same-origin", cache: "no-store", body: body === undefined ? undefined : JSON.stringify(body) })
      .then(function (res) {
        if (R && R.checkSession) R.checkSession(res);
        return res.json().catch(function () { return {}; }).then(function (data) {
          if (!res.ok) throw new Error(data && data.error ? data.error : "HTTP " + res.status);
          return data;
        });
      });
  }

  function text(el, value) { if (el) el.textContent = value; }

  function describe(job) {
    var parts = [job.state];
    if (job.progress) parts.push(job.progress);
    if (typeof job.percent === "number") parts.push(Math.round(job.percent) + "%");
    if (job.error) parts.push(job.error);
    return parts.join(" · ");
  }

  // Follow one job until it ends, writing its progress into el; resolves with the final job.
  function follow(jobId, el) {
    return new Promise(function (resolve) {
      function poll() {
        request("GET", "/api/v1/jobs/" + encodeURIComponent(jobId)).then(function (job) {
          text(el, describe(job));
          if (FINAL[job.state]) resolve(job); else setTimeout(poll, POLL_MS);
        }).catch(function (err) { text(el, err.message); setTimeout(poll, POLL_MS * 3); });
      }
      poll();
    });
  }

  document.querySelectorAll("[data-progress-for]").forEach(function (el) { follow(el.getAttribute("data-progress-for"), el); });

  var dataEl = document.getElementById("bk-repo-data");
  if (!dataEl) return;
  var repo = JSON.parse(dataEl.textContent);
  var status = document.getElementById("bk-job");

  function start(path, body) {
    text(status, "queueing…");
    return request("POST", repo.base + path, body || {}).then(function (answer) {
      text(status, "job " + answer.job.id + " queued");
      return follow(answer.job.id, status);
    }).catch(function (err) { text(status, err.message); throw err; });
  }

  var ACTIONS = { run: ["/run", {}], verify: ["/verify", {}], "verify-data": ["/verify", { read_data: true }], "restore-test": ["/restore-test", {}] };
  document.querySelectorAll("[data-bk-action]").forEach(function (button) {
    button.addEventListener("click", function () {
      var spec = ACTIONS[button.getAttribute("data-bk-action")];
      start(spec[0], spec[1]).catch(function () {});
    });
  });

  function retentionRule(form) {
    var rule = {};
    Array.prototype.forEach.call(form.querySelectorAll("input[type=number]"), function (input) {
      var n = parseInt(input.value, 10);
      if (n > 0) rule[input.name] = n;
    });
    return rule;
  }

  function list(title, snaps) {
    var box = document.createElement("div");
    var h = document.createElement("h3");
    h.textContent = title + " (" + snaps.length + ")";
    box.appendChild(h);
    var ul = document.createElement("ul");
    snaps.forEach(function (s) {
      var li = document.createElement("li");
      li.textContent = (s.name || s.short_id) + (s.time ? " · " + new Date(s.time * 1000).toLocaleString() : "");
      ul.appendChild(li);
    });
    box.appendChild(ul);
    return box;
  }

  var signBox = document.getElementById("bk-sign");
  var pending = null;

  function envelopeFor(action, params) {
    return request("POST", "/api/v1/nodes/" + encodeURIComponent(repo.node_id) + "/actions/" + action + "/envelope", { params: params });
  }

  var form = document.getElementById("bk-retention-form");
  if (form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var rule = retentionRule(form);
      var out = document.getElementById("bk-dry-run");
      text(out, "dry run…");
      start("/prune/preview", { retention: rule }).then(function (job) {
        out.textContent = "";
        if (job.state !== "succeeded") { text(out, job.error || job.state); return; }
        out.appendChild(list("Kept", job.result.keep || []));
        out.appendChild(list("Removed", job.result.remove || []));
        pending = { rule: rule };
        signBox.hidden = false;
        return envelopeFor("backup.prune", { repository: repo.repository, retention: rule }).then(function (answer) {
          pending.prune = answer;
          text(document.getElementById("bk-sign-command"), answer.command);
        });
      }).catch(function (err) { text(out, err.message); });
    });
    document.getElementById("bk-sign-approve").addEventListener("click", function () {
      if (!pending) return;
      envelopeFor("backup.retention.approve", { repository: repo.repository, retention: pending.rule }).then(function (answer) {
        text(document.getElementById("bk-sign-command"), answer.command);
        pending.approving = true;
      }).catch(function (err) { text(status, err.message); });
    });
    document.getElementById("bk-sign-prune").addEventListener("click", function () {
      if (!pending) return;
      var envelope;
      try { envelope = JSON.parse(document.getElementById("bk-signed").value); } catch (e) { text(status, "the signed envelope is not JSON: paste the one line `roost sign` printed"); return; }
      var path = envelope.action === "backup.retention.approve" ? "/retention/approve" : "/prune";
      start(path, { retention: pending.rule, envelope: envelope }).catch(function () {});
    });
  }

  var restoreForm = document.getElementById("bk-restore-form");
  document.querySelectorAll("[data-bk-restore]").forEach(function (button) {
    button.addEventListener("click", function () {
      restoreForm.hidden = false;
      restoreForm.setAttribute("data-snapshot", button.getAttribute("data-bk-restore"));
      text(document.getElementById("bk-restore-snapshot"), button.getAttribute("data-bk-restore"));
    });
  });
  if (restoreForm) {
    restoreForm.addEventListener("submit", function (event) {
      event.preventDefault();
      // form.target is the form's own target attribute: read the fields through elements.
      var fields = restoreForm.elements;
      var params = { snapshot: restoreForm.getAttribute("data-snapshot"), target: fields.namedItem("target").value };
      if (!fields.namedItem("overwrite").checked) { start("/restore", params).catch(function () {}); return; }
      envelopeFor("backup.restore.overwrite", { repository: repo.repository, snapshot: params.snapshot, target: params.target, include: [] }).then(function (answer) {
        signBox.hidden = false;
        text(document.getElementById("bk-sign-command"), answer.command);
        var signed = window.prompt("Paste the signed envelope `roost sign` printed");
        if (!signed) return;
        start("/restore", Object.assign(params, { overwrite: true, envelope: JSON.parse(signed) })).catch(function () {});
      }).catch(function (err) { text(status, err.message); });
    });
  }
})();
