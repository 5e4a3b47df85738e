/* The Notifications page: add, test and delete receivers, retry dead notifications, through /api/v1/alerts/receivers and /outbox. */
(function () {
  "use strict";

  function show(text, bad) {
    var el = document.querySelector(".notify-status");
    if (!el) return;
    el.textContent = text;
    el.classList.toggle("tone-bad", !!bad);
    el.hidden = !text;
  }

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") || "" : "";
  }

  function call(method, url, body) {
    var headers = { Accept: "application/json", "X-CSRF-Token": csrfToken() };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    return fetch(url, { method: method, headers: headers, credentials: "same-origin", body: body === undefined ? undefined : JSON.stringify(body) })
      .then(function (res) {
        return res.json().then(function (data) {
          if (!res.ok) throw new Error(data && data.error ? String(data.error) : "the hub answered HTTP " + res.status);
          return data;
        });
      });
  }

  function json(text, what) {
    if (!text.trim()) return undefined;
    try { return JSON.parse(text); } catch (err) { throw new Error(what + " is not valid JSON: " + err.message); }
  }

  document.addEventListener("click", function (event) {
    var test = event.target.closest("[data-test-receiver]");
    if (test) {
      var name = test.getAttribute("data-test-receiver");
      test.disabled = true;
      show("Sending a test to " + name + "…");
      call("POST", "/api/v1/alerts/receivers/" + encodeURIComponent(name) + "/test").then(function (data) {
        if (data.ok) show("Test delivered to " + name + " in " + data.seconds + " s.");
        else show("Test to " + name + " failed: " + data.error, true);
      }).catch(function (err) { show("Test not sent: " + err.message, true); }).then(function () { test.disabled = false; });
    }
    var del = event.target.closest("[data-delete-receiver]");
    if (del) {
      var which = del.getAttribute("data-delete-receiver");
      if (!window.confirm("Delete receiver " + which + "? Its pending notifications are dropped.")) return;
      call("DELETE", "/api/v1/alerts/receivers/" + encodeURIComponent(which)).then(function () { window.location.reload(); })
        .catch(function (err) { show("Not deleted: " + err.message, true); });
    }
    var retry = event.target.closest("[data-retry]");
    if (retry) {
      call("POST", "/api/v1/alerts/outbox/" + encodeURIComponent(retry.getAttribute("data-retry")) + "/retry").then(function () { window.location.reload(); })
        .catch(function (err) { show("Not retried: " + err.message, true); });
    }
  });

  var form = document.getElementById("receiver-form");
  if (form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var body;
      try {
        body = {
          name: form.elements.name.value.trim(),
          kind: form.elements.kind.value,
          settings: json(form.elements.settings.value, "Settings") || {},
          is_default: form.elements.is_default.checked,
          allow_private: form.elements.allow_private.checked
        };
        var route = json(form.elements.route.value, "Route");
        if (route !== undefined) body.route = route;
      } catch (err) { show(err.message, true); return; }
      call("POST", "/api/v1/alerts/receivers", body).then(function () { window.location.reload(); })
        .catch(function (err) { show("Not added: " + err.message, true); });
    });
  }
})();
