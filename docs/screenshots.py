"""Save the README's screenshots to docs/screenshots/.

    .venv/bin/python docs/screenshots.py

Fills a throw-away SQLite database with demo tasks (fixed seed, the real clock), serves the
app on a loopback port and photographs it in Debian's Chromium (`/usr/bin/chromium`, or the
CHROMIUM environment variable): the list page light and dark, the list on a phone, a failed
task's page, a search with its chart and top errors, and the embed inside a portal page
served from another origin.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from datetime import timedelta
from pathlib import Path
from urllib.request import urlopen

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
# Before the app reads its settings: a fixed key, so nothing is written to instance/.
os.environ.setdefault("SECRET_KEY", "screenshots")

import sqlalchemy as sa  # noqa: E402
from browser_support import (  # noqa: E402
    ChromiumUnavailable,
    PortalServer,
    keep_offline,
    launch_chromium,
    serving_app,
)
from playwright.sync_api import Browser, Page, sync_playwright  # noqa: E402

from app import create_app  # noqa: E402
from app.clock import utcnow  # noqa: E402
from app.demo import seed_demo  # noqa: E402
from app.filters import format_timestamp  # noqa: E402
from app.schema import create_at_head  # noqa: E402

OUT = ROOT / "docs" / "screenshots"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
PORTAL = {"width": 680, "height": 540}


def ready(page: Page, base: str) -> None:
    """Wait until every document of the app (the page, or the portal's frame) is settled:
    htmx and the page's script have run and the fonts are in."""
    page.wait_for_load_state("networkidle")
    for frame in page.frames:
        frame.wait_for_function("document.fonts.status === 'loaded'")
        if frame.url.startswith(base):
            frame.wait_for_function("window.htmx !== undefined")


def shoot(
    browser: Browser,
    base: str,
    url: str,
    path: Path,
    *,
    full_page: bool = False,
    scroll_to: str | None = None,
    open_details: str | None = None,
    **options,
) -> None:
    """Open `url` in a fresh context and save a PNG of it (from `scroll_to` down, and with
    the `<details>` element `open_details` opened, if given)."""
    options.setdefault("viewport", DESKTOP)
    context = browser.new_context(**options)
    keep_offline(context)
    page = context.new_page()
    page.goto(url)
    ready(page, base)
    if scroll_to:
        page.eval_on_selector(scroll_to, "element => element.scrollIntoView()")
    if open_details:
        page.eval_on_selector(open_details, "element => { element.open = true; }")
    page.screenshot(path=path, full_page=full_page, animations="disabled")
    context.close()
    print(f"wrote {path.relative_to(ROOT)}")


def failed_task_id(base: str) -> str:
    """A failed training task: an error message and every training field to show."""
    query = "task_type=training&status=failed&limit=1"
    with urlopen(f"{base}/tasks?{query}") as response:
        return json.load(response)["items"][0]["id"]


def week_ago() -> str:
    """Seven days before now, to the minute, as the filter's `created_after` reads it."""
    moment = (utcnow() - timedelta(days=7)).replace(second=0, microsecond=0)
    return format_timestamp(moment).replace(":", "%3A")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=3000, help="demo tasks (default 3000)")
    parser.add_argument("--seed", type=int, default=2026, help="demo seed (default 2026)")
    parser.add_argument("--out", type=Path, default=OUT, help=f"folder (default {OUT})")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)

    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'tasks.sqlite3'}"
        engine = sa.create_engine(url)
        create_at_head(engine)
        seed_demo(engine, args.tasks, utcnow(), seed=args.seed)
        engine.dispose()
        with PortalServer() as portal:
            app = create_app(
                {"SQLALCHEMY_DATABASE_URI": url, "EMBED_FRAME_ANCESTORS": [portal.origin]}
            )
            with serving_app(app) as base, sync_playwright() as playwright:
                try:
                    browser = launch_chromium(playwright)
                except ChromiumUnavailable as error:
                    sys.exit(str(error))
                home = f"{base}/"
                # The tasks people watch: progress bars, errors, chips that are on.
                watched = f"{base}/?status=running&status=failed"
                task = f"{base}/task/{failed_task_id(base)}"
                embed = f"{base}/embed?task_type=training&hide=filters"
                out = args.out
                shoot(browser, base, home, out / "list-light.png")
                shoot(browser, base, watched, out / "list-dark.png", color_scheme="dark")
                shoot(
                    browser,
                    base,
                    home,
                    out / "list-phone.png",
                    viewport=PHONE,
                    scroll_to="#results",
                )
                shoot(browser, base, task, out / "task-page.png", full_page=True)
                # "Which runs failed with CUDA out of memory this week?": marks, chart, errors.
                search = f"{base}/?q=cuda+memory&status=failed&created_after={week_ago()}"
                shoot(
                    browser,
                    base,
                    search,
                    out / "search-chart-errors.png",
                    full_page=True,
                    open_details="#top-errors",
                )
                portal_page = portal.page_url(embed)
                shoot(browser, base, portal_page, out / "embed-in-portal.png", viewport=PORTAL)
                browser.close()


if __name__ == "__main__":
    main()
