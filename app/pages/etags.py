"""The ETag of a list's rendering, known before anything is listed or rendered: a digest of
everything the rendering depends on."""

from __future__ import annotations

import hashlib
from pathlib import Path

from flask import Flask, current_app, request

from app.identity import rendering_key
from app.pages.views import ListView
from app.query import DataVersion


def render_fingerprint(app: Flask) -> str:
    """What every rendering depends on besides the data and the request: the code, the
    templates, the static files and the settings the pages show. A deploy changes it."""
    digest = hashlib.sha256()
    folders = (app.root_path, app.template_folder, app.static_folder)
    for folder in (Path(str(name)) for name in folders):
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.suffix != ".pyc":
                digest.update(str(path.relative_to(folder)).encode() + b"\0")
                digest.update(path.read_bytes())
    # Pager cursors are signed with the secret key; the others show in the markup.
    settings = ("LIVE_REFRESH_SECONDS", "HTMX_LOCAL_ONLY", "SECRET_KEY", "STALL_LIMITS")
    digest.update(repr([app.config.get(name) for name in settings]).encode())
    return digest.hexdigest()


def list_etag(view: ListView, rendering: str, version: DataVersion) -> str:
    """The ETag of the list page, of its results region alone or of its chart and top
    errors (`rendering`), known before any is rendered: a digest of everything they are
    rendered from.

    The data (the tables' newest changes, the newest event and the minute), the request's
    full URL (host, path and query string: the filter, the form's values as typed, the
    embed's options), which rendering, who views it (their role, and an operator's session:
    forms carry its CSRF token), and the app's own fingerprint.
    """
    parts = (
        current_app.extensions["render_fingerprint"],
        rendering_key(),
        view.endpoint,
        rendering,
        request.url,
        version.token,
    )
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]
