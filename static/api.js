// Renders the API's OpenAPI description with the vendored Swagger UI. A file of its own, not
// an inline script, so the page runs under a Content-Security-Policy without 'unsafe-inline'.
(function () {
  "use strict";

  var holder = document.getElementById("api-description");
  if (!holder || !window.SwaggerUIBundle) return;
  window.SwaggerUIBundle({
    url: holder.getAttribute("data-url"),
    domNode: holder,
    deepLinking: true,
    // Nothing is sent to an outside validator: the page talks to this server alone.
    validatorUrl: null,
    tryItOutEnabled: true,
  });
})();
