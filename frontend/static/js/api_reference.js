/* The API reference page: Swagger UI (vendored, static/vendor/swagger-ui) rendering this hub's /api/v1/openapi.json.
   "Try it out" requests go out with the session cookie; roost.js's fetch wrapper adds the CSRF token to changes. */
(function () {
  "use strict";
  var el = document.getElementById("api-reference");
  if (!el || typeof window.SwaggerUIBundle !== "function") return;
  window.SwaggerUIBundle({
    url: el.getAttribute("data-url"),
    domNode: el,
    deepLinking: true,
    docExpansion: "list",
    tryItOutEnabled: false,
    defaultModelsExpandDepth: 0,
    requestInterceptor: function (req) {
      var meta = document.querySelector('meta[name="csrf-token"]');
      if (meta && req.method && req.method.toUpperCase() !== "GET") req.headers["X-CSRF-Token"] = meta.getAttribute("content");
      req.credentials = "same-origin";
      return req;
    }
  });
})();
