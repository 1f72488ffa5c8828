"""The list page, the embed and the task page in Chromium, against a live server.

One browser for the module and a fresh context per test. The server runs the app over an
SQLite file with demo tasks from a fixed seed and the real clock, so relative times, live
refresh and time windows behave as in production; a test that needs a task in a given state
records it with the Recorder, while the page is open when the point is to see it change.
Expected rows come from the JSON API asked the same query string, never from the page.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit
from urllib.request import urlopen

import pytest
import sqlalchemy as sa
from browser_support import (
    ChromiumUnavailable,
    PortalServer,
    keep_offline,
    launch_chromium,
    serving_app,
)
from conftest import make_app, reset_tables, unavailable

from app.clock import utcnow
from app.demo import seed_demo
from app.pages.htmx import HTMX_CDN_URL, HTMX_FILE, HTMX_VERSION
from app.recorder import Recorder

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # the browser fixture reports it: a skip on a laptop, a failure in CI
    expect = sync_playwright = None

if TYPE_CHECKING:
    from playwright.sync_api import (
        Browser,
        BrowserContext,
        ConsoleMessage,
        Frame,
        Page,
        Request,
        Route,
    )

pytestmark = pytest.mark.browser

DEMO_TASKS = 600
DEMO_SEED = 20261128
TIMEOUT_MS = 5_000
# Long enough for two ticks of LIVE_REFRESH_SECONDS=1 to have fired, were polling still on.
QUIET_MS = 2_500
ROWS = "tr[data-task-id]"
TRAINING_FIELDS = {
    "base_model": "mistralai/Mistral-7B-v0.3",
    "dataset_name": "support-tickets-2026",
    "method": "lora",
    "epochs": 2,
}


@dataclass
class Site:
    """The live server, the portal allowed to frame it, another one, and a recorder."""

    base: str
    portal: PortalServer
    other_portal: PortalServer
    recorder: Recorder

    def url(self, path: str, args: list[tuple[str, str]] | None = None) -> str:
        return self.base + path + (f"?{urlencode(args)}" if args else "")

    def api_ids(self, query: str) -> list[str]:
        """The task ids the JSON API lists for a query string."""
        with urlopen(f"{self.base}/tasks?{query}") as response:
            return [item["id"] for item in json.load(response)["items"]]

    def running_task(self, tag: str) -> uuid.UUID:
        """Record a training task with this tag and move it to running, 40% done."""
        task_id = self.recorder.create("training", tag=tag, **TRAINING_FIELDS)
        self.recorder.start("training", task_id)
        self.recorder.report_progress("training", task_id, 0.4)
        return task_id

    def completed_task(self, tag: str) -> uuid.UUID:
        """Record a training task with this tag that ran and completed."""
        task_id = self.running_task(tag)
        self.recorder.complete("training", task_id, output_model="acme/mistral-support-lora")
        return task_id


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The app over demo tasks, with a fast live refresh and one portal allowed to frame it."""
    url = f"sqlite:///{tmp_path_factory.mktemp('browser') / 'tasks.sqlite3'}"
    engine = sa.create_engine(url)
    reset_tables(engine)
    seed_demo(engine, DEMO_TASKS, utcnow(), seed=DEMO_SEED)
    with PortalServer() as portal, PortalServer() as other_portal:
        app = make_app(
            url, CLOCK=utcnow, LIVE_REFRESH_SECONDS=1, EMBED_FRAME_ANCESTORS=[portal.origin]
        )
        with serving_app(app) as base:
            yield Site(base, portal, other_portal, Recorder(engine))
        with app.app_context():
            app.extensions["sqlalchemy"].engine.dispose()
    engine.dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One Chromium for the module; a skip on a laptop without it, a failure in CI."""
    if sync_playwright is None:
        unavailable("Playwright is not installed (pip install -e '.[dev]')")
    with sync_playwright() as playwright:
        try:
            chromium = launch_chromium(playwright)
        except ChromiumUnavailable as error:
            unavailable(str(error))
        yield chromium
        chromium.close()


def new_context(browser: Browser, **options: Any) -> BrowserContext:
    """A fresh context that cannot reach the internet, so htmx comes from the fallback."""
    options.setdefault("viewport", {"width": 1280, "height": 900})
    context = browser.new_context(**options)
    context.set_default_timeout(TIMEOUT_MS)
    keep_offline(context)
    return context


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = new_context(browser)
    yield context
    context.close()


@dataclass
class PageLog:
    """What happened to a page: its full loads, the dialogs it tried to open, and what the
    Content-Security-Policy refused."""

    loads: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


@pytest.fixture
def log() -> PageLog:
    return PageLog()


def refused_by_policy(message: ConsoleMessage) -> bool:
    """Whether Chromium reports that the page's own policy refused a script, style or request.

    A portal that may not frame the embed is refused too, on purpose: that is not counted.
    """
    text = message.text
    return "Content Security Policy" in text and "frame-ancestors" not in text


@pytest.fixture
def page(context: BrowserContext, log: PageLog) -> Iterator[Page]:
    """A page that logs its full loads and refuses every dialog: none may open, ever. Nothing
    it does may break its Content-Security-Policy either."""
    page = context.new_page()
    page.on("load", lambda loaded: log.loads.append(loaded.url))

    def note_refusal(message: ConsoleMessage) -> None:
        if refused_by_policy(message):
            log.refused.append(message.text)

    page.on("console", note_refusal)

    def refuse(dialog: Any) -> None:
        log.dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", refuse)
    yield page
    assert log.dialogs == [], f"the page opened a dialog: {log.dialogs}"
    assert log.refused == [], f"the policy refused: {log.refused}"


# -- helpers ---------------------------------------------------------------------------------


def row_ids(frame: Page | Frame) -> list[str]:
    """The task ids of the rows shown, in order."""
    return frame.eval_on_selector_all(ROWS, "rows => rows.map(row => row.dataset.taskId)")


def row_values(frame: Page | Frame, key: str) -> set[str]:
    """The distinct values of one data attribute (`status`, `taskType`) over the rows."""
    return set(frame.eval_on_selector_all(ROWS, f"rows => rows.map(row => row.dataset.{key})"))


def query_of(frame: Page | Frame) -> str:
    """The query string of the URL shown."""
    return urlsplit(frame.url).query


def args_of(frame: Page | Frame) -> dict[str, list[str]]:
    """The query string of the URL shown, by name (blank values kept)."""
    args: dict[str, list[str]] = {}
    for name, value in parse_qsl(query_of(frame), keep_blank_values=True):
        args.setdefault(name, []).append(value)
    return args


def wait_for_rows(frame: Page | Frame, ids: list[str]) -> None:
    """Wait until the table shows exactly these rows, in this order."""
    frame.wait_for_function(
        """ids => {
            const shown = [...document.querySelectorAll('tr[data-task-id]')];
            return shown.map(row => row.dataset.taskId).join() === ids.join();
        }""",
        arg=ids,
    )


def wait_for_api_rows(site: Site, frame: Page | Frame, query: str | None = None) -> list[str]:
    """Wait until the rows are the API's answer to `query` (or to the URL shown)."""
    ids = site.api_ids(query_of(frame) if query is None else query)
    assert ids, "the query should match some tasks"
    wait_for_rows(frame, ids)
    return ids


def open_list(page: Page, url: str) -> None:
    """Load a list page and wait until htmx has taken over its form and links."""
    page.goto(url)
    page.wait_for_function("window.htmx !== undefined")


def mark_document(frame: Page | Frame) -> None:
    """Tag the current document; a full page load would lose the tag."""
    frame.evaluate("window.__marker = 'same document'")


def same_document(frame: Page | Frame) -> bool:
    return frame.evaluate("window.__marker") == "same document"


def is_refresh_request(request: Request) -> bool:
    """A request of the live refresh."""
    return request.headers.get("hx-trigger") == "live-refresh"


def is_results_request(request: Request) -> bool:
    """A request htmx makes for the results region because of the user (not a refresh)."""
    return request.headers.get("hx-target") == "results" and not is_refresh_request(request)


def requests_from_now(page: Page, wanted: Callable[[Request], bool]) -> list[str]:
    """A list that collects the URLs of the wanted requests the page makes from now on."""
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url) if wanted(request) else None)
    return urls


def wait_until(page: Page, condition: Callable[[], Any]) -> None:
    """Let the page run until a condition on the test's side holds."""
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        page.wait_for_timeout(20)


def portal_frame(page: Page) -> Frame:
    """The portal's iframe, once it has loaded (or failed to)."""
    page.wait_for_function("window.frameLoads >= 1")
    frame = page.query_selector("#tasks").content_frame()
    assert frame is not None
    return frame


# -- filters, history, pager -----------------------------------------------------------------


def test_clicking_status_boxes_filters_in_place(site, page, log):
    open_list(page, site.url("/"))
    everything = row_ids(page)
    mark_document(page)

    page.check("#status-failed")
    expect(page).to_have_url(re.compile(r"/\?status=failed$"))
    assert wait_for_api_rows(site, page) != everything
    assert row_values(page, "status") == {"failed"}

    page.check("#status-cancelled")
    expect(page).to_have_url(re.compile(r"/\?status=failed&status=cancelled$"))
    wait_for_api_rows(site, page)
    assert row_values(page, "status") == {"failed", "cancelled"}
    expect(page.locator("#chip-status-cancelled")).to_have_class(re.compile(r"\bchip-on\b"))

    assert same_document(page), "the page was loaded again"
    assert len(log.loads) == 1


def test_back_and_forward_restore_each_view(site, page, log):
    open_list(page, site.url("/"))
    everything = row_ids(page)
    mark_document(page)
    page.check("#status-completed")
    expect(page).to_have_url(re.compile(r"/\?status=completed$"))
    completed = wait_for_api_rows(site, page)
    page.click("#page-next")
    expect(page).to_have_url(re.compile(r"/\?status=completed&offset=20$"))
    second_page = wait_for_api_rows(site, page)

    page.go_back()
    expect(page).to_have_url(re.compile(r"/\?status=completed$"))
    wait_for_rows(page, completed)
    page.go_back()
    expect(page).to_have_url(site.url("/"))
    wait_for_rows(page, everything)
    expect(page.locator("#status-completed")).not_to_be_checked()

    page.go_forward()
    expect(page).to_have_url(re.compile(r"/\?status=completed$"))
    wait_for_rows(page, completed)
    expect(page.locator("#status-completed")).to_be_checked()
    page.go_forward()
    expect(page).to_have_url(re.compile(r"/\?status=completed&offset=20$"))
    wait_for_rows(page, second_page)
    assert same_document(page), "Back or Forward loaded the page again"
    assert len(log.loads) == 1

    page.reload()
    assert row_ids(page) == second_page
    expect(page.locator("#status-completed")).to_be_checked()
    expect(page.locator("#page-2")).to_have_attribute("aria-current", "page")


def test_clicking_a_bar_narrows_the_list_and_back_restores_it(site, page, log):
    open_list(page, site.url("/"))
    everything = row_ids(page)
    mark_document(page)
    bar = page.locator("a.chart-bar").last
    label = bar.get_attribute("aria-label")
    assert re.match(r"\w{3} \d{2} \w{3} \d{2}:\d{2}\N{EN DASH}\d{2}:\d{2}: \d", label), label

    bar.click()
    expect(page).to_have_url(re.compile(r"/\?created_after=.+&created_before=.+$"))
    narrowed = wait_for_api_rows(site, page)
    assert narrowed != everything
    args = args_of(page)
    expect(page.locator("#created_after")).to_have_value(args["created_after"][0])
    total = sum(int(n) for n in re.findall(r"(\d+) \w+(?:,|$)", label.split(": ", 1)[1]))
    expect(page.locator("#showing")).to_contain_text(f"of {total:,}")
    # The chart of the narrowed list loads right after the list.
    expect(page.locator("#chart-caption")).to_contain_text(f": {total:,} in all")
    expect(page.locator("#insights[hx-get]")).to_have_count(0)

    page.go_back()
    expect(page).to_have_url(site.url("/"))
    wait_for_rows(page, everything)
    expect(page.locator("#created_after")).to_have_value("")
    assert same_document(page), "a bar or Back loaded the page again"
    assert len(log.loads) == 1


def test_a_top_error_lists_its_group(site, page, log):
    open_list(page, site.url("/"))
    page.click("#top-errors summary")
    link = page.locator("#error-link-1")
    count = int(page.locator("#error-group-1 .top-error-count").inner_text().split()[0])
    link.click()
    expect(page).to_have_url(re.compile(r"/\?error_group=.+$"))
    failed = wait_for_api_rows(site, page)
    assert row_values(page, "status") == {"failed"}
    assert len(failed) == min(count, 20)
    expect(page.locator("#showing")).to_contain_text(f"of {count:,}")
    assert len(log.loads) == 1


def test_pager_links_show_the_apis_pages(site, page, log):
    open_list(page, site.url("/", [("status", "completed"), ("limit", "10")]))
    mark_document(page)
    first = wait_for_api_rows(site, page)
    expect(page.locator("#showing")).to_contain_text("Showing 1\N{EN DASH}10 of")

    page.click("#page-next")
    expect(page).to_have_url(re.compile(r"/\?status=completed&limit=10&offset=10$"))
    wait_for_api_rows(site, page)
    expect(page.locator("#showing")).to_contain_text("Showing 11\N{EN DASH}20 of")

    page.click("#page-4")
    expect(page).to_have_url(re.compile(r"/\?status=completed&limit=10&offset=30$"))
    fourth = wait_for_api_rows(site, page)
    expect(page.locator("#page-4")).to_have_attribute("aria-current", "page")

    page.click("#page-prev")
    expect(page).to_have_url(re.compile(r"/\?status=completed&limit=10&offset=20$"))
    third = wait_for_api_rows(site, page)
    assert len({*first, *third, *fourth}) == 30, "pages overlap"
    assert same_document(page) and len(log.loads) == 1


def test_tag_box_waits_for_a_pause_before_filtering(site, page):
    # Only finished tasks on the page, so no live refresh runs meanwhile.
    open_list(page, site.url("/", [("status", "completed")]))
    sent = requests_from_now(page, is_results_request)

    page.locator("#tag").press_sequentially("exp-1", delay=40)
    expect(page).to_have_url(re.compile(r"/\?status=completed&tag=exp-1$"))
    wait_for_api_rows(site, page)
    page.wait_for_timeout(600)  # past the 400 ms pause: a late request would be out by now

    assert len(sent) == 1, sent
    assert dict(parse_qsl(urlsplit(sent[0]).query))["tag"] == "exp-1"
    tags = page.eval_on_selector_all(f"{ROWS} .col-tag", "cells => cells.map(c => c.innerText)")
    assert set(tags) == {"exp-1"}
    expect(page.locator("#tag")).to_be_focused()


def test_loading_indicator_shows_while_results_load(site, page):
    open_list(page, site.url("/", [("status", "completed")]))
    held: list[Route] = []

    def hold(route: Route) -> None:
        held.append(route)

    page.route(re.compile(r"/\?"), hold)
    loading = page.locator("#loading")
    expect(loading).to_be_hidden()

    page.check("#status-failed")
    wait_until(page, lambda: held)
    expect(loading).to_be_visible()
    held[0].continue_()
    expect(loading).to_be_hidden()
    wait_for_api_rows(site, page)


def test_focus_stays_on_a_chip_after_the_swap(site, page):
    open_list(page, site.url("/", [("status", "completed")]))
    page.focus("#chip-status-failed")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/\?status=completed&status=failed$"))
    wait_for_api_rows(site, page)
    expect(page.locator("#chip-status-failed")).to_be_focused()


# -- live refresh ----------------------------------------------------------------------------


def watch_for_loading_text(page: Page) -> None:
    """Note in window.sawLoadingText whether "Loading chart…" is ever left in the page after
    a change (checked before the browser paints)."""
    page.evaluate(
        """() => {
        window.sawLoadingText = false;
        new MutationObserver(() => {
            if (document.querySelector(".insights-loading")) window.sawLoadingText = true;
        }).observe(document.body, { childList: true, subtree: true });
    }"""
    )


def test_live_refresh_shows_a_task_finish_and_then_stops(site, page, log):
    tag = f"live-{uuid.uuid4().hex[:8]}"
    task_id = site.running_task(tag)
    open_list(page, site.url("/", [("tag", tag)]))
    row = page.locator(f"tr[data-task-id='{task_id}']")
    expect(row).to_have_attribute("data-status", "running")
    expect(row.locator("progress")).to_have_attribute("value", "40")
    expect(page.locator("#live-status")).to_be_visible()
    mark_document(page)
    watch_for_loading_text(page)

    site.recorder.complete("training", task_id, output_model="acme/mistral-support-lora")
    expect(row).to_have_attribute("data-status", "completed")
    expect(row.locator(".status")).to_contain_text("Completed")
    assert same_document(page) and len(log.loads) == 1
    # The chart refreshes right after the list: its one bar now counts a completed task.
    expect(page.locator("a.chart-bar")).to_have_attribute(
        "aria-label", re.compile(": 1 completed$")
    )
    assert not page.evaluate("window.sawLoadingText"), "the refresh blanked the chart"
    expect(page.locator("#insights[hx-get]")).to_have_count(0)

    expect(page.locator("#live-refresh")).to_have_count(0)
    refreshes = requests_from_now(page, is_refresh_request)
    page.wait_for_timeout(QUIET_MS)
    assert refreshes == [], "polling went on with no active task on the page"


def test_pause_button_stops_live_refresh(site, page):
    tag = f"pause-{uuid.uuid4().hex[:8]}"
    task_id = site.running_task(tag)
    try:
        open_list(page, site.url("/", [("tag", tag)]))
        with page.expect_request(is_refresh_request):
            pass  # polling is on while the task runs

        toggle = page.locator("#live-toggle")
        toggle.click()
        expect(toggle).to_have_attribute("aria-pressed", "true")
        expect(page.locator("#live-status")).to_have_text("Live updates paused")
        page.wait_for_timeout(300)  # a refresh already on its way when the button was pressed
        refreshes = requests_from_now(page, is_refresh_request)
        page.wait_for_timeout(QUIET_MS)
        assert refreshes == [], "polling went on while paused"

        with page.expect_request(is_refresh_request):
            toggle.click()
        expect(toggle).to_have_attribute("aria-pressed", "false")
    finally:
        site.recorder.cancel("training", task_id)


def test_a_refresh_sent_before_a_filter_change_does_not_overwrite_it(site, page):
    tag = f"race-{uuid.uuid4().hex[:8]}"
    running = site.running_task(tag)
    finished = str(site.completed_task(tag))
    held: list[Route] = []

    def hold_first_refresh(route: Route) -> None:
        if is_refresh_request(route.request) and not held:
            held.append(route)
        else:
            route.fallback()

    try:
        open_list(page, site.url("/", [("tag", tag)]))
        page.route(re.compile(r"/\?"), hold_first_refresh)
        wait_until(page, lambda: held)

        page.check("#status-completed")  # the user's view: the finished task alone
        wait_for_rows(page, [finished])
        site.recorder.report_progress("training", running, 0.7)  # the refresh's answer changes
        with page.expect_response(lambda response: response.request == held[0].request):
            held[0].continue_()
        page.wait_for_timeout(300)  # time for a swap, were one to happen
        assert row_ids(page) == [finished]
        assert args_of(page)["status"] == ["completed"]
    finally:
        site.recorder.cancel("training", running)


# -- without JavaScript ----------------------------------------------------------------------


def test_without_javascript_the_form_and_pager_still_work(site, browser):
    context = new_context(browser, java_script_enabled=False)
    try:
        page = context.new_page()
        loads: list[str] = []
        page.on("load", lambda loaded: loads.append(loaded.url))
        page.goto(site.url("/"))
        expect(page.locator("#filters button[type=submit]")).to_have_count(1)

        page.check("#status-failed")
        with page.expect_navigation():
            page.click("#apply-filters")
        submitted = args_of(page)
        assert submitted["status"] == ["failed"] and submitted["tag"] == [""]  # a plain GET
        failed = row_ids(page)
        assert failed == site.api_ids("status=failed")
        expect(page.locator("#status-failed")).to_be_checked()

        with page.expect_navigation():
            page.click("#page-next")
        assert query_of(page) == "status=failed&offset=20"
        assert row_ids(page) == site.api_ids("status=failed&offset=20")

        with page.expect_navigation():
            page.click("#page-1")
        assert row_ids(page) == failed

        with page.expect_navigation():
            page.locator("a.chart-bar").last.click()
        assert set(args_of(page)) == {"status", "created_after", "created_before"}
        assert row_ids(page) == site.api_ids(query_of(page))
        assert len(loads) == 5, "every step is a full page load"
    finally:
        context.close()


# -- the embed in the portal -----------------------------------------------------------------


def test_embed_renders_and_updates_inside_the_portal(site, context, page):
    embed_url = site.url("/embed", [("task_type", "training"), ("hide", "filters")])
    page.goto(site.portal.page_url(embed_url))
    portal_url = page.url
    frame = portal_frame(page)
    frame.wait_for_function("window.htmx !== undefined")
    wait_for_api_rows(site, frame, "task_type=training")
    assert row_values(frame, "taskType") == {"training"}
    expect(frame.locator("#filters")).to_have_count(0)
    mark_document(page)
    mark_document(frame)

    frame.click("#page-next")
    wait_for_api_rows(site, frame, "task_type=training&offset=20")
    frame.click("#chip-status-completed")
    completed = wait_for_api_rows(site, frame, "task_type=training&status=completed")
    assert row_values(frame, "status") == {"completed"}
    expect(frame.locator("#filters")).to_have_count(0)
    assert args_of(frame)["hide"] == ["filters"]
    # The chart loads after the list, and its bars stay inside the embed.
    expect(frame.locator("#insights[hx-get]")).to_have_count(0)
    bar = frame.locator("a.chart-bar").first
    expect(bar).to_have_attribute("href", re.compile(r"^/embed\?.*hide=filters"))

    assert page.url == portal_url, "the portal page navigated"
    assert same_document(page) and same_document(frame)
    assert page.evaluate("window.frameLoads") == 1, "the frame loaded a new document"

    full_view = frame.locator("#full-view-link")
    expect(full_view).to_have_attribute("target", "_blank")
    with context.expect_page() as opened:
        full_view.click()
    tab = opened.value
    tab.wait_for_load_state()
    assert urlsplit(tab.url).path == "/"
    assert args_of(tab) == {"task_type": ["training"], "status": ["completed"]}
    assert row_ids(tab) == completed
    assert page.url == portal_url


@pytest.mark.parametrize(
    ("portal", "path"),
    [("other_portal", "/embed?task_type=training"), ("portal", "/?task_type=training")],
    ids=["embed-in-a-portal-not-allowed", "page-in-the-allowed-portal"],
)
def test_framing_that_is_not_allowed_is_blocked(site, page, portal, path):
    blocked: list[str | None] = []

    def record(request: Request) -> None:
        if request.url == site.base + path:
            blocked.append(request.failure)

    page.on("requestfailed", record)
    page.goto(getattr(site, portal).page_url(site.base + path))
    frame = portal_frame(page)
    assert blocked == ["net::ERR_BLOCKED_BY_RESPONSE"]
    assert frame.url.startswith("chrome-error://")
    assert frame.locator(ROWS).count() == 0


# -- htmx and escaping -----------------------------------------------------------------------


def test_htmx_comes_from_the_local_copy_when_the_cdn_is_unreachable(site, page):
    requested = requests_from_now(page, lambda request: True)
    page.goto(site.url("/"))
    assert page.evaluate("window.htmx && window.htmx.version") == HTMX_VERSION
    assert HTMX_CDN_URL in requested, "the CDN is tried first"
    assert f"{site.base}/static/{HTMX_FILE}" in requested


def test_htmx_from_a_cdn_serving_other_bytes_is_refused(site, context, page):
    tampered = "window.htmx = {version: 'tampered'};"
    headers = {"Content-Type": "text/javascript", "Access-Control-Allow-Origin": "*"}
    context.route(HTMX_CDN_URL, lambda route: route.fulfill(body=tampered, headers=headers))
    page.goto(site.url("/"))
    assert page.evaluate("window.htmx && window.htmx.version") == HTMX_VERSION


def test_script_in_an_error_message_is_shown_as_text(site, page, log):
    tag = f"xss-{uuid.uuid4().hex[:8]}"
    message = "<script>alert('error')</script><img src=x onerror=\"alert('img')\"> & more"
    task_id = site.recorder.create("training", tag=tag, **TRAINING_FIELDS)
    site.recorder.fail("training", task_id, message)
    markup = ".col-error script, .col-error img, #error-message script, #error-message img"

    open_list(page, site.url("/", [("status", "failed")]))
    page.fill("#tag", tag)
    page.press("#tag", "Enter")  # the row arrives in an htmx fragment
    row = page.locator(f"tr[data-task-id='{task_id}']")
    expect(row.locator(".col-error")).to_have_text(message)
    assert page.locator(markup).count() == 0

    page.reload()  # the same row in a full page
    expect(row.locator(".col-error")).to_have_text(message)
    assert page.locator(markup).count() == 0

    page.click(f"#task-link-{task_id}")
    expect(page.locator("#error-message")).to_have_text(message)
    assert page.locator(markup).count() == 0
    page.wait_for_timeout(200)  # an onerror handler would have run by now
    assert log.dialogs == []


# -- the API's description -------------------------------------------------------------------


def test_api_page_renders_every_operation_under_its_policy(site, page):
    violations: list[str] = []
    page.on("console", lambda message: violations.append(message.text))
    page.on("pageerror", lambda error: violations.append(str(error)))
    requested = requests_from_now(page, lambda request: True)
    page.goto(site.url("/api"))
    with urlopen(f"{site.base}/openapi.json") as response:
        paths = json.load(response)["paths"]
    # One block per operation: a path may hold several (GET and POST /tasks).
    methods = {"get", "put", "post", "delete", "patch", "head", "options"}
    expected = [path for path, item in paths.items() for method in item if method in methods]
    operations = page.locator(".opblock-summary-path")
    expect(operations).to_have_count(len(expected))
    assert sorted(operations.all_inner_texts()) == sorted(expected)
    assert all(url.startswith(site.base) for url in requested), requested
    assert not [text for text in violations if "Content Security Policy" in text], violations
    assert not [text for text in violations if "Error" in text], violations
