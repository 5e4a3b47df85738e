/* Roost shell: the light/dark choice (applied before the first paint), the theme button and the phone menu button.
 * The choice lives in this browser only (localStorage); "system" follows prefers-color-scheme.
 */
(function () {
  "use strict";

  var KEY = "roost-theme";
  var ORDER = ["system", "light", "dark"];
  var LABELS = { system: "Theme: follows the system", light: "Theme: light", dark: "Theme: dark" };

  function stored() {
    try {
      var v = window.localStorage.getItem(KEY);
      return ORDER.indexOf(v) === -1 ? "system" : v;
    } catch (err) {
      return "system"; // storage blocked: the system setting still works
    }
  }

  function apply(choice) {
    var root = document.documentElement;
    if (choice === "system") root.removeAttribute("data-theme");
    else root.setAttribute("data-theme", choice);
    var button = document.getElementById("theme-toggle");
    if (button) {
      button.setAttribute("data-theme-choice", choice);
      button.title = LABELS[choice];
      button.setAttribute("aria-label", LABELS[choice]);
    }
  }

  apply(stored());

  function wire() {
    apply(stored());
    var button = document.getElementById("theme-toggle");
    if (button) {
      button.addEventListener("click", function () {
        var next = ORDER[(ORDER.indexOf(stored()) + 1) % ORDER.length];
        try { window.localStorage.setItem(KEY, next); } catch (err) { /* this page only */ }
        apply(next);
        document.dispatchEvent(new CustomEvent("roost:theme", { detail: { theme: next } }));
      });
    }
    var toggle = document.getElementById("menu-toggle");
    var nav = document.getElementById("main-nav");
    if (toggle && nav) {
      toggle.addEventListener("click", function () {
        var open = toggle.getAttribute("aria-expanded") !== "true";
        toggle.setAttribute("aria-expanded", open ? "true" : "false");
        document.body.toggleAttribute("data-menu-open", open);
      });
      document.addEventListener("keydown", function (event) {
        if (event.key === "Escape" && toggle.getAttribute("aria-expanded") === "true") {
          toggle.setAttribute("aria-expanded", "false");
          document.body.removeAttribute("data-menu-open");
          toggle.focus();
        }
      });
    }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", wire);
  else wire();
})();
