"""A live app server, portal pages on other origins, and Chromium driven by Playwright.

Used by the browser tests and by `docs/screenshots.py`, so it imports nothing from pytest.
"""

from __future__ import annotations

import html
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, quote, urlsplit

from flask import Flask
from werkzeug.serving import make_server

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Playwright, Route

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
# Chromium flags for a closed network, run as root: no sandbox, no calls home.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Every request that would leave this machine (the htmx CDN above all). Aborting them at once
# makes "the CDN cannot be reached" the same everywhere, with or without internet, and fast.
OFF_MACHINE = re.compile(r"^(?!(?:https?|wss?)://(?:127\.0\.0\.1|localhost)[:/])[a-z]+://", re.I)


class ChromiumUnavailable(RuntimeError):
    """Chromium is not installed here, or does not start."""


def launch_chromium(playwright: Playwright) -> Browser:
    """Start Debian's Chromium headless, or say why it cannot start."""
    if not CHROMIUM.exists():
        raise ChromiumUnavailable(f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    except Exception as error:  # Playwright raises its own Error with the browser's output
        raise ChromiumUnavailable(f"{CHROMIUM} does not start: {error}") from error


def keep_offline(context: BrowserContext) -> None:
    """Abort every request to another machine, as on a network without internet."""

    def abort(route: Route) -> None:
        route.abort("internetdisconnected")

    context.route(OFF_MACHINE, abort)


@contextmanager
def serving_app(app: Flask) -> Iterator[str]:
    """Serve `app` on a free loopback port in a thread; yield its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


PORTAL_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Portal</title>
<style>
  body {{ margin: 0; font-family: system-ui, sans-serif; background: #eef1f5; color: #1c2230; }}
  header {{ background: #26303f; color: #fff; padding: 10px 16px; font-weight: 600; }}
  main {{ padding: 12px 16px; }}
  h1 {{ font-size: 18px; margin: 0 0 4px; }}
  p {{ margin: 0 0 10px; color: #4a5566; font-size: 14px; }}
  iframe {{ width: {width}px; height: {height}px; border: 1px solid #b8c0cc;
            border-radius: 6px; background: #fff; }}
</style></head>
<body>
<header>Internal portal</header>
<main>
  <h1>Training runs</h1>
  <p>The platform's task list, embedded from another site.</p>
  <iframe id="tasks" title="Tasks" src="{src}" onload="window.frameLoads += 1"></iframe>
</main>
<script>window.frameLoads = window.frameLoads || 0;</script>
</body></html>
"""


class PortalServer:
    """A plain HTML page on its own origin that frames the URL in its `src` parameter."""

    def __init__(self, width: int = 600, height: int = 400) -> None:
        self.width, self.height = width, height
        portal = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = parse_qs(urlsplit(self.path).query)
                src = query.get("src", ["about:blank"])[0]
                body = PORTAL_PAGE.format(
                    src=html.escape(src), width=portal.width, height=portal.height
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def page_url(self, src: str) -> str:
        """The portal page that frames `src`."""
        return f"{self.origin}/?src={quote(src, safe='')}"

    def __enter__(self) -> PortalServer:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
