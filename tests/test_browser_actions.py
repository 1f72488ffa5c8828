"""In Chromium: an operator cancels a running task from its page and sees the module confirm
without reloading, cancels a queued one from its row and many from a filtered list (the count
first); a viewer sees no buttons.

The sign-on proxy is played by the browser context's extra header (the app trusts one proxy).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from browser_support import ChromiumUnavailable, keep_offline, launch_chromium, serving_app
from conftest import SSO_HEADER, SSO_SETTINGS, make_app, reset_tables, unavailable

from app.clock import utcnow
from app.models import MODEL_FOR_TYPE
from app.recorder import CancelRequested, Recorder

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # the browser fixture reports it: a skip on a laptop, a failure in CI
    expect = sync_playwright = None

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Dialog, Page

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


def context_of(browser: Browser, user: str | None, script: bool = True) -> BrowserContext:
    """A browser whose requests the proxy marks with `user` (none: not signed in), with
    JavaScript on or off."""
    headers = {SSO_HEADER: user} if user else {}
    context = browser.new_context(extra_http_headers=headers, java_script_enabled=script)
    context.set_default_timeout(TIMEOUT_MS)
    keep_offline(context)
    return context


def task(recorder: Recorder, tag: str, running: bool) -> uuid.UUID:
    task_id = recorder.create("training", tag=tag, **TRAINING_FIELDS)
    if running:
        recorder.start("training", task_id)
        recorder.report_progress("training", task_id, 0.3)
    return task_id


def accept_the_question(page: Page) -> list[str]:
    """Answer "OK" to the next question the page asks (a Cancel button's); what it asked."""
    asked: list[str] = []

    def accept(dialog: Dialog) -> None:
        asked.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    return asked


def status_of(recorder: Recorder, task_id: uuid.UUID) -> str:
    """The training task's status as its table holds it."""
    table = MODEL_FOR_TYPE["training"].__table__
    with recorder.engine.connect() as connection:
        return connection.execute(sa.select(table.c.status).where(table.c.id == task_id)).scalar()


def test_an_operator_cancels_a_running_task_and_sees_its_module_confirm_without_reloading(
    served, browser
):
    base, recorder = served
    task_id = task(recorder, "exp-browser-run", running=True)
    context = context_of(browser, "ops@example.com")
    page = context.new_page()
    page.goto(f"{base}/task/{task_id}")
    expect(page.locator("#who")).to_contain_text("ops@example.com · operator")
    asked = accept_the_question(page)
    page.locator(f"#cancel-{task_id}").click()
    expect(page.locator(".flash-done")).to_contain_text("Asked the task to stop")
    assert asked and asked[0].startswith("Ask the running task") and "to stop?" in asked[0]
    cancelling = page.locator(f"#task-live #cancelling-{task_id}")
    expect(cancelling).to_contain_text("Cancelling…")
    expect(page.locator(f"#cancel-{task_id}")).to_have_count(0)

    # The page stays open, as it is: what follows arrives without a reload.
    page.evaluate("window.stillThisPage = true")
    # The module learns it when it next reports, stops, and confirms.
    with pytest.raises(CancelRequested):
        recorder.report_progress("training", task_id, 0.5)
    recorder.cancel("training", task_id)
    expect(page.locator("#task-live .task-headline .status-cancelled")).to_contain_text("Cancelled")
    expect(cancelling).to_have_count(0)
    expect(page.locator("#task-live")).not_to_have_attribute("hx-get", re.compile("."))
    expect(page.locator("#task-live-said")).to_have_text("Status: Cancelled")
    expect(page.locator("#events .event-cancelled .event-actor")).to_have_text("module")
    assert page.evaluate("window.stillThisPage") is True

    # A cancelled task may be retried (no question asked): on to the new task, linked back.
    page.locator(f"#retry-{task_id}").click()
    expect(page.locator("#retry-of a")).to_have_attribute("href", f"/task/{task_id}")
    page.locator("#retry-of a").click()
    expect(page.locator("#retried-as")).to_be_visible()
    context.close()


def test_without_javascript_cancel_posts_at_once_and_a_reload_shows_the_confirmation(
    served, browser
):
    base, recorder = served
    task_id = task(recorder, "exp-browser-plain", running=True)
    context = context_of(browser, "ops@example.com", script=False)
    page = context.new_page()
    page.goto(f"{base}/task/{task_id}")
    page.locator(f"#cancel-{task_id}").click()
    expect(page.locator(".flash-done")).to_contain_text("Asked the task to stop")
    expect(page.locator(f"#cancelling-{task_id}")).to_contain_text("Cancelling…")
    recorder.cancel("training", task_id)
    page.reload()
    expect(page.locator("#task-live .task-headline .status-cancelled")).to_contain_text("Cancelled")
    expect(page.locator(f"#cancelling-{task_id}")).to_have_count(0)
    context.close()


def test_an_operator_cancels_a_queued_task_from_its_row(served, browser):
    base, recorder = served
    task_id = task(recorder, "exp-browser-row", running=False)
    context = context_of(browser, "ops@example.com")
    page = context.new_page()
    page.goto(f"{base}/?tag=exp-browser-row")
    row = page.locator(f"#task-{task_id}")
    asked = accept_the_question(page)
    row.locator(f"#cancel-{task_id}").click()
    expect(page.locator(".flash-done")).to_contain_text("Cancelled the task.")
    assert asked and asked[0].startswith("Cancel the queued task")
    assert page.url == f"{base}/?tag=exp-browser-row"
    expect(page.locator(f"#task-{task_id} .col-status")).to_contain_text("Cancelled")
    context.close()


def test_bulk_cancel_from_a_filtered_list_shows_the_count_first(served, browser):
    base, recorder = served
    tag = "exp-browser-bulk"
    queued = [task(recorder, tag, running=False) for _ in range(3)]
    running = task(recorder, tag, running=True)
    elsewhere = task(recorder, "exp-browser-elsewhere", running=False)
    context = context_of(browser, "ops@example.com")
    page = context.new_page()
    page.goto(f"{base}/?tag={tag}")
    page.locator("#bulk-cancel").click()
    expect(page.locator("#bulk-question")).to_have_text(
        f"Cancel 4 queued and running tasks tagged {tag}?"
    )
    expect(page.locator("#bulk-confirm")).to_have_text("Cancel 4 tasks")
    # Asked, not done yet.
    assert [status_of(recorder, task_id) for task_id in queued] == ["queued"] * 3
    assert not recorder.cancel_requested("training", running)
    page.locator("#bulk-confirm").click()
    expect(page.locator("#bulk-done")).to_have_text("Cancel: 4 changed, 0 unchanged")
    page.locator("#back-to-list").click()
    for task_id in queued:
        expect(page.locator(f"#task-{task_id} .col-status")).to_contain_text("Cancelled")
    expect(page.locator(f"#cancelling-{running}")).to_contain_text("Cancelling…")
    assert recorder.cancel_requested("training", running)
    assert status_of(recorder, elsewhere) == "queued"
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
