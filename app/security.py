"""The names the server answers to, and what every response tells the browser.

Flask refuses a Host that is not in ALLOWED_HOSTS (its TRUSTED_HOSTS) before routing, so
every absolute URL the app writes (the Link header, the curl command) names an allowed host.
Every response, errors and static files included, carries the same headers: scripts only
from this site (and the htmx CDN), never inline; no content sniffing; no referrer outside
the site; a window of its own; framing by this site alone, or for the embed by the portal
origins configured; and HSTS once the request came over HTTPS.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from flask import Flask, Response, current_app, request

from app.config import allowed_hosts, frame_ancestor_sources
from app.pages.htmx import HTMX_CDN_URL
from app.pages.views import EMBED_ENDPOINTS

# Pages whose renderer draws images as data: URLs (Swagger UI's icons on /api).
DATA_IMAGE_ENDPOINTS = frozenset({"contract.api_page"})

HSTS_SECONDS = 365 * 24 * 60 * 60
# A path prefix as a proxy forwards it: segments of printable characters. "//evil.example" or
# "/\\evil.example" would make every link the app writes point at another host.
PLAIN_PREFIX = re.compile(r"(/[^/\\\x00-\x20\x7f]+)*")

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def plain_prefix(wsgi_app: WsgiApp) -> WsgiApp:
    """Serve under a forwarded path prefix (X-Forwarded-Prefix) only when it is a plain path."""

    def serve(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not PLAIN_PREFIX.fullmatch(environ.get("SCRIPT_NAME", "")):
            environ["SCRIPT_NAME"] = ""
        return wsgi_app(environ, start_response)

    return serve


def content_security_policy(
    script_sources: Sequence[str], frame_ancestors: Sequence[str], image_sources: Sequence[str] = ()
) -> str:
    """The policy: everything from this site only, scripts also from `script_sources`."""
    directives = {
        "default-src": ["'self'"],
        "script-src": ["'self'", *script_sources],
        "style-src": ["'self'"],
        "img-src": ["'self'", *image_sources],
        "connect-src": ["'self'"],
        "form-action": ["'self'"],
        "base-uri": ["'self'"],
        "object-src": ["'none'"],
        "frame-ancestors": list(frame_ancestors) or ["'none'"],
    }
    return "; ".join(f"{name} {' '.join(sources)}" for name, sources in directives.items())


def security_headers(response: Response) -> Response:
    """Add the headers every response carries, whatever route or error produced it."""
    config = current_app.config
    embed = request.endpoint in EMBED_ENDPOINTS
    # Only this site may frame its pages; the embed only the portal origins configured.
    ancestors = config["EMBED_FRAME_ANCESTORS"] if embed else ["'self'"]
    scripts = [] if config["HTMX_LOCAL_ONLY"] else [HTMX_CDN_URL]
    # The API page's renderer draws its icons as data: images.
    images = ["data:"] if request.endpoint in DATA_IMAGE_ENDPOINTS else []
    policy = content_security_policy(scripts, ancestors, images)
    response.headers["Content-Security-Policy"] = policy
    if embed:
        response.headers.pop("X-Frame-Options", None)
    else:
        # For browsers that predate CSP's frame-ancestors.
        response.headers["X-Frame-Options"] = "SAMEORIGIN"
    # Browsers must take our JSON, CSV and text for what we say they are.
    response.headers["X-Content-Type-Options"] = "nosniff"
    # Page URLs carry the filters (tags above all): they stay on this site.
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
    # Over HTTPS, as this server or its trusted proxy (TRUSTED_PROXIES) saw the request.
    if request.is_secure:
        response.headers["Strict-Transport-Security"] = f"max-age={HSTS_SECONDS}"
    return response


def init_app(app: Flask) -> None:
    """Check the allowed hosts and frame origins, and add the headers to every response."""
    app.config["ALLOWED_HOSTS"] = allowed_hosts(app.config["ALLOWED_HOSTS"])
    app.config["TRUSTED_HOSTS"] = app.config["ALLOWED_HOSTS"]
    app.config["EMBED_FRAME_ANCESTORS"] = frame_ancestor_sources(
        app.config.get("EMBED_FRAME_ANCESTORS", [])
    )
    app.after_request(security_headers)
