/* Roost in-page menu: one link per [data-section] of the page (integration panels included), kept in step when a
 * fragment refresh adds or removes sections, the one in view marked. Sections without an id get one. */
(function () {
  "use strict";

  var menu = document.getElementById("section-menu");
  if (!menu) return;
  var list = menu.querySelector("ol");
  var current = "";
  var frame = 0;
  // A section counts as the one being read once its top passes this line (below the sticky top bar).
  var READING_LINE = 120;

  function sections() {
    return Array.prototype.slice.call(document.querySelectorAll("main [data-section]"));
  }

  function idOf(section) {
    if (!section.id) section.id = "section-" + section.getAttribute("data-section").replace(/[^A-Za-z0-9_-]/g, "-");
    section.classList.add("node-section");
    return section.id;
  }

  function mark(id) {
    current = id;
    list.querySelectorAll("a").forEach(function (a) {
      if (a.getAttribute("href") === "#" + id) a.setAttribute("aria-current", "true");
      else a.removeAttribute("aria-current");
    });
  }

  function build() {
    var found = sections();
    var wanted = found.map(function (s) { return idOf(s) + "\n" + s.getAttribute("data-section-title"); }).join("\n\n");
    if (list.getAttribute("data-built") === wanted) return;
    list.setAttribute("data-built", wanted);
    list.replaceChildren();
    found.forEach(function (s) {
      var li = document.createElement("li");
      var a = document.createElement("a");
      a.href = "#" + s.id;
      a.textContent = s.getAttribute("data-section-title") || s.getAttribute("data-section");
      a.setAttribute("data-section-link", s.getAttribute("data-section"));
      li.appendChild(a);
      list.appendChild(li);
    });
    if (current) mark(current);
  }

  /* The last section whose top has passed the reading line; the first one at the top of the page. */
  function inView() {
    var found = sections();
    var pick = found.length ? found[0] : null;
    found.forEach(function (s) { if (s.getBoundingClientRect().top <= READING_LINE) pick = s; });
    if (window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 2 && found.length) {
      pick = found[found.length - 1]; // the bottom of the page: the last section, however short
    }
    if (pick && pick.id !== current) mark(pick.id);
  }

  build();
  inView();
  window.addEventListener("scroll", function () {
    cancelAnimationFrame(frame);
    frame = requestAnimationFrame(inView);
  }, { passive: true });
  document.addEventListener("roost:fragment", function () { build(); inView(); });
})();
