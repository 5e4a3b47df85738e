/* Storage device detail: history charts of the attributes that matter, and acknowledge / un-acknowledge buttons. */
(function () {
  "use strict";

  var R = window.Roost;
  var editor = document.getElementById("st-manifest");
  var save = document.getElementById("st-manifest-save");
  if (R && editor && save) {
    save.addEventListener("click", function () {
      var status = document.getElementById("st-manifest-status");
      var body;
      try { body = JSON.parse(document.getElementById("st-manifest-text").value); }
      catch (err) { status.textContent = "Not JSON: " + err.message; return; }
      save.disabled = true;
      fetch("/api/v1/integrations/storage/manifests/" + encodeURIComponent(editor.getAttribute("data-node")), {
        method: "PUT", credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": R.csrfToken ? R.csrfToken() || "" : "" },
        body: JSON.stringify(body)
      }).then(function (res) {
        return res.json().catch(function () { return {}; }).then(function (answer) {
          save.disabled = false;
          if (!res.ok) { status.textContent = answer.error || ("HTTP " + res.status); status.setAttribute("data-outcome", "error"); return; }
          document.getElementById("st-manifest-text").value = JSON.stringify(answer, null, 2);
          status.textContent = "Saved; sent to the agent.";
          status.setAttribute("data-outcome", "saved");
        });
      }).catch(function (err) { save.disabled = false; status.textContent = "Could not save: " + err.message; });
    });
  }

  var root = document.getElementById("st-device");
  if (!R || !root) return;
  var nodeId = root.getAttribute("data-node");
  var device = root.getAttribute("data-device");
  var dataEl = root.querySelector(".st-chart-data");
  var spec = dataEl ? JSON.parse(dataEl.textContent) : { charts: [] };
  var range = spec.range || "24h";
  var plots = {};
  var CHART_HEIGHT = 180;

  function status(text) {
    var el = root.querySelector(".st-chart-status");
    if (el) { el.textContent = text; el.hidden = !text; }
  }

  function draw(chart, series, timeWindow) {
    var box = root.querySelector(".st-charts");
    var entry = plots[chart.key];
    if (!entry) {
      entry = plots[chart.key] = R.charts.figure(chart.key, chart.title);
      entry.plot = null;
      box.appendChild(entry.fig);
    }
    var result = R.charts.aligned(chart.series.map(function (s) { return s.name; }), series, false);
    entry.fig.setAttribute("data-points", String(result.points));
    entry.emptyEl.hidden = result.points > 0;
    entry.plotEl.hidden = result.points === 0;
    if (entry.plot) { entry.plot.destroy(); entry.plot = null; }
    if (result.points === 0) return;
    entry.plot = R.charts.plot(entry.plotEl, result.data, {
      unit: chart.unit,
      labels: chart.series.map(function (s) { return s.label; }),
      width: R.charts.plotWidth(entry.plotEl, box),
      height: CHART_HEIGHT,
      timeWindow: function () { return timeWindow; },
      axisSize: 84,
      fromZero: true
    });
  }

  function load() {
    if (!R.charts || !window.uPlot) { status(R.charts ? R.charts.NO_LIBRARY : "Charts are unavailable."); return; }
    var names = [];
    spec.charts.forEach(function (c) { c.series.forEach(function (s) { names.push(s.name); }); });
    R.charts.fetchMetrics(nodeId, names, range).then(function (body) {
      var win = typeof body.start === "number" ? [body.start, body.end] : null;
      spec.charts.forEach(function (c) { draw(c, body.series || {}, win); });
      status("");
      var note = root.querySelector(".st-chart-resolution");
      if (note) note.textContent = R.charts.resolutionText(body.resolution);
    }).catch(function (err) { status("Could not load history: " + err.message); });
  }

  root.querySelectorAll(".st-history .range[data-range]").forEach(function (b) {
    b.addEventListener("click", function () {
      range = b.getAttribute("data-range");
      root.querySelectorAll(".st-history .range[data-range]").forEach(function (o) { o.setAttribute("aria-pressed", o === b ? "true" : "false"); });
      load();
    });
  });

  root.querySelectorAll(".st-ack").forEach(function (button) {
    button.addEventListener("click", function () {
      var method = button.getAttribute("data-method");
      var params = { node_id: nodeId, device: device, attribute: button.getAttribute("data-attribute") };
      var url = "/api/v1/integrations/storage/acknowledgements";
      var init = { method: method, credentials: "same-origin", headers: { "X-CSRF-Token": R.csrfToken ? R.csrfToken() || "" : "" } };
      if (method === "DELETE") url += "?" + new URLSearchParams(params).toString();
      else { init.headers["Content-Type"] = "application/json"; init.body = JSON.stringify(params); }
      button.disabled = true;
      fetch(url, init).then(function (res) {
        return res.json().catch(function () { return {}; }).then(function (body) {
          if (!res.ok) throw new Error(body.error || ("HTTP " + res.status));
          window.location.reload();
        });
      }).catch(function (err) {
        button.disabled = false;
        var el = root.querySelector(".st-ack-status");
        if (el) el.textContent = "Could not change the acknowledgement: " + err.message;
      });
    });
  });

  load();
})();
