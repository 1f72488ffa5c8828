"""In Chromium: an operator cancels from the task page and from a row; a viewer sees no buttons.

The sign-on proxy is played by the browser context's extra header (the app trusts one proxy).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from browser_support import ChromiumUnavailable, keep_offline, launch_chromium, serving_app
from conftest import SSO_HEADER, SSO_SETTINGS, make_app, reset_tables, unavailable

from app.clock import utcnow
from app.recorder import CancelRequested, Recorder

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # the browser fixture reports it: a skip on a laptop, a failure in CI
    expect = sync_playwright = None

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext

pytestmark = pytest.mark.browser

TIMEOUT_MS = 5_000
TRAINING_FIELDS = {
    "base_model": "mistralai/Mistral-7B-v0.3",
    "dataset_name": "support-tickets-2026",
    "method": "lora",
    "epochs": 2,
}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Recorder]]:
    """The app behind a (played) sign-on proxy, and a recorder standing in for a module."""
    url = f"sqlite:///{tmp_path_factory.mktemp('operate') / 'tasks.sqlite3'}"
    engine = sa.create_engine(url)
    reset_tables(engine)
    app = make_app(url, CLOCK=utcnow, LIVE_REFRESH_SECONDS=1, **SSO_SETTINGS)
    with serving_app(app) as base:
        yield base, Recorder(engine)
    with app.app_context():
        app.extensions["sqlalchemy"].engine.dispose()
    engine.dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if sync_playwright is None:
        unavailable("Playwright is not installed (pip install -e '.[dev]')")
    with sync_playwright() as playwright:
        try:
            chromium = launch_chromium(playwright)
        except ChromiumUnavailable as error:
            unavailable(str(error))
        yield chromium
        chromium.close()


def context_of(browser: Browser, user: str | None) -> BrowserContext:
    """A browser whose requests the proxy marks with `user` (none: not signed in)."""
    headers = {SSO_HEADER: user} if user else {}
    context = browser.new_context(extra_http_headers=headers)
    context.set_default_timeout(TIMEOUT_MS)
    keep_offline(context)
    return context


def task(recorder: Recorder, tag: str, running: bool) -> uuid.UUID:
    task_id = recorder.create("training", tag=tag, **TRAINING_FIELDS)
    if running:
        recorder.start("training", task_id)
        recorder.report_progress("training", task_id, 0.3)
    return task_id


def test_an_operator_cancels_a_running_task_and_its_module_confirms(served, browser):
    base, recorder = served
    task_id = task(recorder, "exp-browser-run", running=True)
    context = context_of(browser, "ops@example.com")
    page = context.new_page()
    page.goto(f"{base}/task/{task_id}")
    expect(page.locator("#who")).to_contain_text("ops@example.com · operator")
    page.locator(f"#cancel-{task_id}").click()
    expect(page.locator(".flash-done")).to_contain_text("Asked the task to stop")
    expect(page.locator("#cancelling")).to_have_text("Cancelling…")
    expect(page.locator(f"#cancel-{task_id}")).to_have_count(0)
    # The module learns it when it next reports, stops, and confirms.
    with pytest.raises(CancelRequested):
        recorder.report_progress("training", task_id, 0.5)
    recorder.cancel("training", task_id)
    page.reload()
    expect(page.locator(".task-headline .status-cancelled")).to_contain_text("Cancelled")
    expect(page.locator("#cancelling")).to_have_count(0)
    # A cancelled task may be retried: on to the new task, linked back.
    page.locator(f"#retry-{task_id}").click()
    expect(page.locator("#retry-of a")).to_have_attribute("href", f"/task/{task_id}")
    page.locator("#retry-of a").click()
    expect(page.locator("#retried-as")).to_be_visible()
    context.close()


def test_an_operator_cancels_a_queued_task_from_its_row(served, browser):
    base, recorder = served
    task_id = task(recorder, "exp-browser-row", running=False)
    context = context_of(browser, "ops@example.com")
    page = context.new_page()
    page.goto(f"{base}/?tag=exp-browser-row")
    row = page.locator(f"#task-{task_id}")
    row.locator(f"#cancel-{task_id}").click()
    expect(page.locator(".flash-done")).to_contain_text("Cancelled the task.")
    assert page.url == f"{base}/?tag=exp-browser-row"
    expect(page.locator(f"#task-{task_id} .col-status")).to_contain_text("Cancelled")
    context.close()


@pytest.mark.parametrize("user", [None, "carol@example.com"])
def test_a_viewer_sees_no_buttons(served, browser, user):
    base, recorder = served
    queued = task(recorder, "exp-browser-view", running=False)
    context = context_of(browser, user)
    page = context.new_page()
    page.goto(f"{base}/?tag=exp-browser-view")
    expect(page.locator(f"#task-{queued}")).to_be_visible()
    expect(page.locator("#who")).to_contain_text("viewer")
    expect(page.locator("form.action-form")).to_have_count(0)
    page.goto(f"{base}/task/{queued}")
    expect(page.locator("form.action-form")).to_have_count(0)
    context.close()
