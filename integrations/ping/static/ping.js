/* The Pings page: full ping URLs from the address the browser reached the hub at, Copy buttons, and the New check form
   (POST /api/v1/integrations/ping/checks). */
(function () {
  "use strict";

  function full(path) { return window.location.origin + path; }

  function show(text, bad) {
    var el = document.querySelector(".ping-status");
    if (!el) return;
    el.textContent = text;
    el.classList.toggle("tone-bad", !!bad);
    el.hidden = !text;
  }

  document.querySelectorAll("[data-ping-path]").forEach(function (el) { el.textContent = full(el.getAttribute("data-ping-path")); });

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy-ping]");
    if (!button) return;
    var url = full(button.getAttribute("data-copy-ping"));
    if (navigator.clipboard) {
      navigator.clipboard.writeText(url).then(function () { show("Copied " + url); }, function () { show("Select the URL and copy it: " + url); });
    } else {
      show("Select the URL and copy it: " + url);
    }
  });

  var form = document.querySelector("form.ping-create");
  if (form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var data = new FormData(form);
      var body = { name: data.get("name"), node_id: data.get("node_id"), kind: data.get("kind"), grace: Number(data.get("grace")) };
      if (body.kind === "cron") body.schedule = data.get("schedule"); else body.period = Number(data.get("period"));
      fetch("/api/v1/integrations/ping/checks", {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        credentials: "same-origin",
        body: JSON.stringify(body)
      }).then(function (res) {
        return res.json().then(function (answer) {
          if (!res.ok) throw new Error(answer && answer.error ? String(answer.error) : "the hub answered HTTP " + res.status);
          window.location.reload();
        });
      }).catch(function (err) { show("Not created: " + err.message, true); });
    });
  }
})();
