"""htmx: served from the CDN with a hash of the copy we ship, and configured once for every page."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path

from flask import Flask, request

HTMX_VERSION = "2.0.11"
HTMX_FILE = f"vendor/htmx-{HTMX_VERSION}.min.js"
HTMX_CDN_URL = f"https://cdn.jsdelivr.net/npm/htmx.org@{HTMX_VERSION}/dist/htmx.min.js"
# What htmx does with each answer: skip a 304 (the results have not changed) and swap the
# 503 page, so a database outage shows its message in the results region. History is never
# cached in the browser: Back asks the server, since the tasks may have moved on meanwhile.
# htmx evaluates no code and adds no inline style: the Content-Security-Policy forbids both
# (the indicator's style is in style.css).
HTMX_CONFIG = {
    "historyCacheSize": 0,
    "allowEval": False,
    "allowScriptTags": False,
    "includeIndicatorStyles": False,
    "responseHandling": [
        {"code": "204", "swap": False},
        {"code": "304", "swap": False},
        {"code": "[23]..", "swap": True},
        {"code": "503", "swap": True, "error": False},
        {"code": "[45]..", "swap": False, "error": True},
    ],
}


@dataclass(frozen=True)
class HtmxAsset:
    """Where htmx is loaded from, and the hash every copy must match."""

    cdn_url: str
    local_file: str
    integrity: str
    local_only: bool


def subresource_integrity(path: Path) -> str:
    """The `integrity` value of a file: its SHA-384, base64, as browsers check it."""
    digest = hashlib.sha384(path.read_bytes()).digest()
    return "sha384-" + base64.b64encode(digest).decode()


def htmx_asset(app: Flask) -> HtmxAsset:
    """Hash the vendored htmx once at start-up: the CDN serves the same bytes."""
    local = Path(app.static_folder or "static") / HTMX_FILE
    return HtmxAsset(
        cdn_url=HTMX_CDN_URL,
        local_file=HTMX_FILE,
        integrity=subresource_integrity(local),
        local_only=bool(app.config.get("HTMX_LOCAL_ONLY")),
    )


def swaps_only(target_id: str) -> bool:
    """An htmx request that swaps the element `target_id` alone; a history restore needs
    the whole page."""
    headers = request.headers
    return (
        headers.get("HX-Request") == "true"
        and headers.get("HX-Target") == target_id
        and headers.get("HX-History-Restore-Request") != "true"
    )
