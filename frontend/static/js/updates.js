/* The Updates page: "Update" for one node or for all outdated ones, through POST /api/v1/updates (a job per node). */
(function () {
  "use strict";

  function show(text, bad) {
    var el = document.querySelector(".update-status");
    if (!el) return;
    el.textContent = text;
    el.classList.toggle("tone-bad", !!bad);
    el.hidden = !text;
  }

  function request(body, button) {
    if (button) button.disabled = true;
    return fetch("/api/v1/updates", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      credentials: "same-origin",
      body: JSON.stringify(body)
    }).then(function (res) {
      return res.json().then(function (data) {
        if (!res.ok) throw new Error(data && data.error ? String(data.error) : "the hub answered HTTP " + res.status);
        var started = (data.started || []).length;
        var skipped = (data.skipped || []).map(function (s) { return s.node_id + ": " + s.reason; });
        show("Started " + started + " update job(s)." + (skipped.length ? " Skipped " + skipped.join("; ") : "") + " Follow them under Jobs.", skipped.length > 0 && !started);
      });
    }).catch(function (err) {
      show("Not started: " + err.message, true);
      if (button) button.disabled = false;
    });
  }

  document.addEventListener("click", function (event) {
    var one = event.target.closest("[data-update-node]");
    if (one) request({ nodes: [one.getAttribute("data-update-node")] }, one);
    var all = event.target.closest("[data-update-all]");
    if (all) request({}, all);
  });
})();
