// Runs right after the tag that loads htmx from its CDN. When the CDN cannot be reached, or
// served bytes that the integrity hash refused, window.htmx is missing: load this site's copy,
// under the same hash, before the page's own script. A file rather than an inline script, so
// that the Content-Security-Policy can forbid inline scripts.
(function () {
  "use strict";
  if (window.htmx) return;
  var tag = document.currentScript;

  function attribute(name) {
    return tag
      .getAttribute(name)
      .replace(/&/g, "&amp;")
      .replace(/"/g, "&quot;")
      .replace(/</g, "&lt;");
  }

  document.write(
    '<script src="' + attribute("data-src") + '" integrity="' + attribute("data-integrity") + '"><\/script>'
  );
})();
