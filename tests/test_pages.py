"""The list page, its htmx fragment, the embed and the task page, through the test client."""

from __future__ import annotations

import base64
import hashlib
import uuid
from datetime import timedelta
from html.parser import HTMLParser
from urllib.parse import parse_qsl, urlsplit

import pytest
from conftest import csp_directives, make_app, only_the_version_was_read, statements_run
from oracle import NOW, expected, insert_tasks, known_tasks
from werkzeug.datastructures import MultiDict

from app.filters import TaskFilter, format_timestamp, parse_filter
from app.models import MODEL_FOR_TYPE
from app.pages.htmx import HTMX_CDN_URL, HTMX_FILE
from app.pages.words import duration_text, time_ago, total_text
from app.query import Total
from app.recorder import Recorder

FRAGMENT = {"HX-Request": "true", "HX-Target": "results"}
UNREACHABLE_DATABASE = "postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=2"


class Page(HTMLParser):
    """The elements of an HTML document, with their attributes, for the tests to query."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {name: value or "" for name, value in attrs}))

    def find(self, tag: str | None = None, **wanted: str) -> list[dict[str, str]]:
        """Elements of a tag (any when None) whose attributes have the wanted values."""
        wanted = {name.replace("_", "-"): value for name, value in wanted.items()}
        return [
            attrs
            for name, attrs in self.elements
            if (tag is None or name == tag)
            and all(attrs.get(key) == value for key, value in wanted.items())
        ]

    def by_id(self, element_id: str) -> dict[str, str]:
        """The one element with this id."""
        (found,) = [attrs for _, attrs in self.elements if attrs.get("id") == element_id]
        return found

    def has_id(self, element_id: str) -> bool:
        return any(attrs.get("id") == element_id for _, attrs in self.elements)

    @property
    def row_ids(self) -> list[str]:
        """The task ids of the table's rows, in order."""
        return [attrs["data-task-id"] for attrs in self.find("tr") if "data-task-id" in attrs]

    def checked(self, name: str) -> set[str]:
        """The values of the checked checkboxes of one name."""
        boxes = self.find("input", type="checkbox", name=name)
        return {box["value"] for box in boxes if "checked" in box}


def get_page(client, path="/", args=(), **headers):
    """A response and its parsed page; `path` may carry its own query string instead of args."""
    query = list(args) if args else None
    response = client.get(path, query_string=query, headers=headers)
    return response, Page(response.get_data(as_text=True))


def filter_of(url: str) -> TaskFilter:
    """The filter a page URL shows, read the way the page reads it."""
    query = MultiDict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
    parsed = parse_filter(query, secret_key="test-secret", strict=False)
    assert parsed.value is not None, parsed.errors
    return parsed.value


PAGE_FILTERS = {
    "nothing": ([], TaskFilter()),
    "two types": (
        [("task_type", "training"), ("task_type", "synthesis")],
        TaskFilter(task_types=("training", "synthesis")),
    ),
    "status and window": (
        [("status", "completed"), ("within_hours", "720")],
        TaskFilter(statuses=("completed",), within_hours=720),
    ),
    "tag with html": ([("tag", "<b>bold</b>")], TaskFilter(tags=("<b>bold</b>",))),
    "second page": ([("offset", "20"), ("limit", "10")], TaskFilter(offset=20, limit=10)),
    "oldest first": ([("order", "asc")], TaskFilter(order="asc")),
}


# -- rows, page and fragment -----------------------------------------------------------------


@pytest.mark.parametrize("name", PAGE_FILTERS)
def test_rows_are_the_oracles_page(client, tasks, name):
    args, task_filter = PAGE_FILTERS[name]
    response, page = get_page(client, "/", args)
    assert response.status_code == 200
    start, stop = task_filter.offset, task_filter.offset + task_filter.limit
    assert page.row_ids == expected(tasks, task_filter)[start:stop]


def test_rows_match_the_json_api(client):
    args = [("status", "failed"), ("status", "running"), ("limit", "50")]
    api_ids = [item["id"] for item in client.get("/tasks", query_string=args).json["items"]]
    assert get_page(client, "/", args)[1].row_ids == api_ids


def test_rows_carry_hooks_for_scripts_and_browsers(client, tasks):
    _, page = get_page(client, "/", [("limit", "100")])
    by_id = {str(task["id"]): task for task in tasks}
    for row in page.find("tr"):
        if "data-task-id" in row:
            task = by_id[row["data-task-id"]]
            assert row["data-status"] == task["status"]
            assert row["data-task-type"] == task["task_type"]


def asked_to_stop(tasks) -> set[str]:
    """The oracle's running tasks an operator asked to stop: shown as "Cancelling…"."""
    return {
        str(task["id"])
        for task in tasks
        if task["status"] == "running" and task["cancel_requested_at"] is not None
    }


LIST_RENDERINGS = {"page": ("/", {}), "region": ("/", FRAGMENT), "embed": ("/embed", {})}


@pytest.mark.parametrize(("path", "headers"), LIST_RENDERINGS.values(), ids=list(LIST_RENDERINGS))
def test_rows_of_tasks_asked_to_stop_say_cancelling_beside_their_status(
    client, tasks, path, headers
):
    _, page = get_page(client, path, [("status", "running"), ("limit", "100")], **headers)
    shown = set(page.row_ids)
    cancelling = {task_id for task_id in shown if page.has_id(f"cancelling-{task_id}")}
    assert cancelling == asked_to_stop(tasks) & shown
    assert cancelling, "the known tasks hold running tasks asked to stop"
    for task_id in cancelling:
        assert page.by_id(f"cancelling-{task_id}")["class"] == "status status-cancelling"


def test_htmx_request_for_the_results_gets_only_the_fragment(client, tasks):
    response, page = get_page(client, "/", [("status", "failed")], **FRAGMENT)
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "<html" not in html and "<form" not in html
    assert not page.has_id("results")  # the region's content, not the region itself
    assert page.row_ids == expected(tasks, TaskFilter(statuses=("failed",)))[:20]


def test_history_restore_gets_the_full_page(client):
    headers = {**FRAGMENT, "HX-History-Restore-Request": "true"}
    response, page = get_page(client, "/", [("status", "failed")], **headers)
    assert "<html" in response.get_data(as_text=True)
    assert page.has_id("filters") and page.has_id("results")


def test_htmx_request_for_another_target_gets_the_full_page(client):
    _, page = get_page(client, "/", **{"HX-Request": "true", "HX-Target": "page"})
    assert page.has_id("filters") and page.has_id("results")


@pytest.mark.parametrize("path", ["/", "/embed"])
@pytest.mark.parametrize("headers", [{}, FRAGMENT], ids=["page", "fragment"])
def test_every_response_varies_on_the_htmx_headers(client, path, headers):
    response = client.get(path, headers=headers)
    assert {"HX-Request", "HX-Target", "HX-History-Restore-Request"} <= set(response.vary)


def test_page_region_etag_is_the_fragments_etag(client):
    args = [("task_type", "training")]
    _, page = get_page(client, "/", args)
    fragment = client.get("/", query_string=args, headers=FRAGMENT)
    assert page.by_id("results")["data-etag"] == fragment.headers["ETag"]


def test_results_region_is_announced_politely(client):
    _, page = get_page(client)
    assert page.by_id("results")["aria-live"] == "polite"


# -- the form shows what is applied ----------------------------------------------------------


def test_every_filter_is_shown_as_applied(client):
    after = format_timestamp(NOW - timedelta(days=40))
    before = format_timestamp(NOW - timedelta(days=1))
    args = [
        ("task_type", "training"),
        ("task_type", "evaluation"),
        ("status", "F"),
        ("status", "running"),
        ("within_hours", "720"),
        ("created_after", after),
        ("created_before", before),
        ("tag", "exp-1"),
        ("tag", "nightly"),
        ("limit", "50"),
        ("order", "asc"),
    ]
    _, page = get_page(client, "/", args)
    assert page.checked("task_type") == {"training", "evaluation"}
    assert page.checked("status") == {"failed", "running"}
    assert page.find("option", value="720", selected="")
    assert page.by_id("within_hours")["value"] == ""
    assert page.by_id("created_after")["value"] == after
    assert page.by_id("created_before")["value"] == before
    assert page.by_id("tag")["value"] == "exp-1"
    assert [a["value"] for a in page.find("input", type="hidden", name="tag")] == ["nightly"]
    assert page.find("option", value="50", selected="")
    assert page.find("option", value="asc", selected="")


def test_custom_window_fills_the_hours_box(client):
    _, page = get_page(client, "/", [("within_hours", "48")])
    assert page.by_id("within_hours")["value"] == "48"
    custom = [o for o in page.find("option") if "data-custom" in o]
    assert custom and "selected" in custom[0]


def test_form_is_a_plain_get_form_enhanced_by_htmx(client):
    _, page = get_page(client)
    form = page.by_id("filters")
    assert form["method"] == "get" and form["action"] == "/"
    assert form["hx-get"] == "/" and form["hx-target"] == "#results"
    assert "keyup changed delay:400ms" in form["hx-trigger"] and "change" in form["hx-trigger"]
    assert form["hx-push-url"] == "true" and form["hx-indicator"] == "#loading"


def test_every_control_has_a_label(client):
    _, page = get_page(client)
    labelled = {a["for"] for a in page.find("label") if "for" in a}
    for tag in ("input", "select"):
        for control in page.find(tag):
            if control.get("type") in {"hidden", "checkbox"}:
                continue  # hidden ones are not shown; checkboxes sit inside their label
            assert control["id"] in labelled, control


def test_tag_suggestions_list_the_known_tags(client, tasks):
    _, page = get_page(client)
    suggested = {option["value"] for option in page.find("option") if "value" in option}
    assert {task["tag"] for task in tasks if task["tag"]} <= suggested


# -- links built from the filter -------------------------------------------------------------


def test_pager_links_keep_the_filters(client):
    args = [("status", "completed"), ("within_hours", "720"), ("limit", "5"), ("offset", "10")]
    _, page = get_page(client, "/", args)
    shown = TaskFilter(statuses=("completed",), within_hours=720, limit=5)
    links = [a for a in page.find("a") if a.get("id", "").startswith("page-")]
    assert {a["id"] for a in links} >= {"page-prev", "page-next", "page-1", "page-3"}
    for link in links:
        assert link["hx-get"] == link["href"]
        assert filter_of(link["href"]).first_page == shown


def test_showing_counts_the_rows_of_the_page(client, tasks):
    _, page = get_page(client, "/", [("offset", "40"), ("limit", "20")])
    html = client.get("/", query_string={"offset": 40}).get_data(as_text=True)
    assert f"Showing 41\N{EN DASH}60 of {len(tasks)}" in html
    assert page.by_id("page-3")["aria-current"] == "page"


def test_following_next_links_walks_every_task_once(client, tasks):
    url, ids = "/?status=completed&status=failed&limit=7", []
    while url:
        _, page = get_page(client, url)
        ids += page.row_ids
        url = page.by_id("page-next")["href"] if page.has_id("page-next") else None
    assert ids == expected(tasks, TaskFilter(statuses=("completed", "failed")))


def test_cursor_page_goes_on_by_cursor(client, tasks):
    cursor = client.get("/tasks", query_string={"limit": 30}).json["next_cursor"]
    _, page = get_page(client, "/", [("cursor", cursor)])
    assert page.row_ids == expected(tasks, TaskFilter())[30:50]
    older = page.by_id("page-next")["href"]
    assert "cursor" in dict(parse_qsl(urlsplit(older).query))
    assert get_page(client, older)[1].row_ids == expected(tasks, TaskFilter())[50:70]
    assert filter_of(page.by_id("page-first")["href"]) == TaskFilter()


@pytest.mark.parametrize(
    ("total", "text"), [(Total(1234, "eq"), "1,234"), (Total(10_000, "gte"), "10,000+")]
)
def test_total_reads_as_a_number_or_a_lower_bound(total, text):
    assert total_text(total) == text


def test_status_chips_count_facets_and_toggle(client, tasks):
    args = [("status", "failed"), ("task_type", "training")]
    _, page = get_page(client, "/", args)
    for status in ("queued", "failed"):
        chip = page.by_id(f"chip-status-{status}")
        chosen = filter_of(chip["href"])
        selected = status == "failed"
        assert chosen.statuses == (() if selected else ("queued", "failed"))
        assert chosen.task_types == ("training",)
    html = client.get("/", query_string=args).get_data(as_text=True)
    queued = len(expected(tasks, TaskFilter(task_types=("training",), statuses=("queued",))))
    assert f'<span class="chip-count">{queued}</span>' in html


def test_tag_links_filter_by_that_tag(client):
    _, page = get_page(client, "/", [("status", "completed")])
    tag_links = [a for a in page.find("a") if a.get("id", "").startswith("tag-link-")]
    assert tag_links
    for link in tag_links:
        chosen = filter_of(link["href"])
        assert chosen.statuses == ("completed",) and len(chosen.tags) == 1


def test_json_link_and_curl_run_the_same_query(client):
    args = [("status", "running"), ("tag", "exp-1"), ("limit", "5")]
    _, page = get_page(client, "/", args)
    json_url = urlsplit(page.by_id("json-link")["href"])
    assert json_url.path == "/tasks"
    api = client.get("/tasks", query_string=parse_qsl(json_url.query))
    assert [item["id"] for item in api.json["items"]] == page.row_ids
    curl = page.by_id("curl-command")["value"]
    assert curl.startswith("curl -sS 'http://localhost/tasks?") and json_url.query in curl


def test_csv_link_exports_the_same_filter(client):
    _, page = get_page(client, "/", [("status", "failed"), ("limit", "5"), ("offset", "5")])
    csv_url = urlsplit(page.by_id("csv-link")["href"])
    assert csv_url.path == "/tasks.csv" and csv_url.query == "status=failed"
    assert client.get(f"/tasks.csv?{csv_url.query}").status_code == 200


def test_task_links_carry_the_filter_for_the_way_back(client):
    args = [("status", "failed"), ("offset", "3")]
    _, page = get_page(client, "/", args)
    link = page.find("a", id=f"task-link-{page.row_ids[0]}")[0]["href"]
    assert urlsplit(link).path == f"/task/{page.row_ids[0]}"
    _, task_page = get_page(client, link)
    assert filter_of(task_page.by_id("back-to-list")["href"]) == TaskFilter(
        statuses=("failed",), offset=3
    )


# -- what the address bar shows --------------------------------------------------------------


def test_push_url_is_the_canonical_url(client):
    form_submission = "status=failed&tag=&within_hours=&within_hours=24&limit=20&order=desc"
    headers = {**FRAGMENT, "HX-Current-URL": "http://localhost/"}
    response = client.get(f"/?{form_submission}", headers=headers)
    assert response.headers["HX-Push-Url"] == "/?status=failed&within_hours=24"


def test_refreshing_the_shown_view_pushes_nothing(client):
    headers = {**FRAGMENT, "HX-Current-URL": "http://localhost/?status=running"}
    response = client.get("/?status=running", headers=headers)
    assert response.headers["HX-Push-Url"] == "false"


def test_same_filter_in_other_words_replaces_the_url(client):
    headers = {**FRAGMENT, "HX-Current-URL": "http://localhost/?status=R&tag="}
    response = client.get("/?status=running", headers=headers)
    assert response.headers["HX-Replace-Url"] == "/?status=running"
    assert "HX-Push-Url" not in response.headers


def test_embed_replaces_its_url_rather_than_pushing(client):
    headers = {**FRAGMENT, "HX-Current-URL": "http://localhost/embed?hide=filters"}
    response = client.get("/embed?status=failed&hide=filters", headers=headers)
    assert response.headers["HX-Replace-Url"] == "/embed?status=failed&hide=filters"


def test_pushed_url_renders_the_same_view_as_a_full_page(client, tasks):
    headers = {**FRAGMENT, "HX-Current-URL": "http://localhost/"}
    fragment = client.get("/?task_type=training&tag=&limit=10", headers=headers)
    _, page = get_page(client, fragment.headers["HX-Push-Url"])
    assert page.row_ids == Page(fragment.get_data(as_text=True)).row_ids
    assert page.checked("task_type") == {"training"}


# -- lenient reading of the query string -----------------------------------------------------


BAD_VALUES = {
    "hours not a number": ("within_hours", "abc", "is not a whole number"),
    "hours out of range": ("within_hours", "9000", "must be from 1 to 8760"),
    "unknown status": ("status", "done", "unknown value"),
    "page size zero": ("limit", "0", "must be from 1 to 100"),
    "timestamp garbage": ("created_after", "yesterday", "is not an ISO 8601 timestamp"),
    "tag too long": ("tag", "x" * 129, "at most 128 characters"),
}


@pytest.mark.parametrize("name", BAD_VALUES)
def test_bad_value_shows_a_message_beside_its_field(client, tasks, name):
    parameter, value, message = BAD_VALUES[name]
    args = [("task_type", "training"), (parameter, value)]
    response, page = get_page(client, "/", args)
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    errors_at = html.index(f'id="{parameter}-errors"')
    assert message in html[errors_at : html.index("</div>", errors_at)]
    assert page.has_id("filter-notice")
    # The list is shown for the other filters, with the bad one left out.
    assert page.row_ids == expected(tasks, TaskFilter(task_types=("training",)))[:20]


def test_bad_value_is_marked_invalid_and_kept_in_the_form(client):
    _, page = get_page(client, "/", [("within_hours", "abc")])
    hours = page.by_id("within_hours")
    assert hours["value"] == "abc" and hours["aria-invalid"] == "true"


def test_bad_value_in_a_fragment_is_200_so_htmx_swaps_it(client):
    response = client.get("/", query_string={"limit": "x"}, headers=FRAGMENT)
    assert response.status_code == 200
    assert "is not a whole number" in response.get_data(as_text=True)


def test_bad_value_stays_in_the_pushed_url(client):
    headers = {**FRAGMENT, "HX-Current-URL": "http://localhost/"}
    response = client.get("/?within_hours=abc&tag=", headers=headers)
    assert response.headers["HX-Push-Url"] == "/?within_hours=abc"


def test_unknown_parameters_and_empty_values_are_ignored(client, tasks):
    args = [("colour", "red"), ("tag", ""), ("within_hours", ""), ("status", "failed")]
    response, page = get_page(client, "/", args)
    assert response.status_code == 200
    assert not page.has_id("filter-notice")
    assert page.row_ids == expected(tasks, TaskFilter(statuses=("failed",)))[:20]


def test_api_stays_strict_about_what_the_page_ignores(client):
    assert client.get("/tasks", query_string={"colour": "red"}).status_code == 422


# -- empty results, live refresh, caching ----------------------------------------------------


def test_empty_result_names_the_filters_and_offers_to_clear_them(client):
    response, page = get_page(client, "/", [("tag", "no-such-tag"), ("status", "failed")])
    html = response.get_data(as_text=True)
    assert page.has_id("empty") and not page.row_ids
    assert "tag is “no-such-tag”" in html and "status is Failed" in html
    assert page.by_id("empty-clear")["href"] == "/"


def test_live_refresh_only_while_active_tasks_are_shown(client):
    _, running = get_page(client, "/", [("status", "running")])
    poller = running.by_id("live-refresh")
    assert poller["hx-get"] == "/?status=running" and poller["hx-target"] == "#results"
    assert poller["hx-trigger"] == "every 5s"
    assert running.has_id("live-toggle")
    _, finished = get_page(client, "/", [("status", "completed")])
    assert not finished.has_id("live-refresh")


def test_unchanged_results_answer_304(client):
    first = client.get("/", query_string={"status": "running"}, headers=FRAGMENT)
    etag = first.headers["ETag"]
    again = client.get(
        "/", query_string={"status": "running"}, headers={**FRAGMENT, "If-None-Match": etag}
    )
    assert again.status_code == 304 and again.data == b""
    assert "HX-Request" in again.vary


def test_page_has_an_etag_too(client):
    first = client.get("/")
    assert client.get("/", headers={"If-None-Match": first.headers["ETag"]}).status_code == 304


def refresh(client, args, etag=None):
    """A live refresh of the results region, as the page's script sends it."""
    headers = {**FRAGMENT, "HX-Current-URL": "http://localhost/"}
    if etag is not None:
        headers["If-None-Match"] = etag
    return client.get("/", query_string=args, headers=headers)


def test_an_unchanged_refresh_runs_the_version_query_alone(app, client):
    etag = refresh(client, {"status": "running"}).headers["ETag"]
    with statements_run(app) as sent:
        unchanged = refresh(client, {"status": "running"}, etag)
    assert unchanged.status_code == 304
    assert only_the_version_was_read(sent)
    with statements_run(app) as sent:
        assert refresh(client, {"status": "failed"}).status_code == 200
    assert len(sent) > 1  # a view not shown yet is listed and counted


def test_a_second_viewer_is_sent_the_first_viewers_rendering(app, client):
    first = refresh(client, {"status": "running"})
    with statements_run(app) as sent:
        second = app.test_client().get(
            "/", query_string={"status": "running"}, headers={**FRAGMENT, "HX-Current-URL": "/"}
        )
    assert only_the_version_was_read(sent)
    assert second.status_code == 200 and second.data == first.data
    assert second.headers["ETag"] == first.headers["ETag"]


def test_unchanged_refresh_keeps_the_headers_of_the_list(client):
    etag = refresh(client, {"status": "R"}).headers["ETag"]
    unchanged = refresh(client, {"status": "R"}, etag)
    assert unchanged.status_code == 304
    assert unchanged.headers["ETag"] == etag
    assert unchanged.headers["Cache-Control"] == "no-cache"
    assert unchanged.headers["HX-Push-Url"] == "/?status=running"
    assert set(unchanged.vary) >= {"HX-Request", "HX-Target"}


@pytest.mark.parametrize(
    "other",
    [
        {"path": "/", "args": {"status": "failed"}, "fragment": True},
        {"path": "/", "args": {"status": "running"}, "fragment": False},
        {"path": "/embed", "args": {"status": "running"}, "fragment": True},
        {"path": "/embed", "args": {"status": "running", "hide": "filters"}, "fragment": True},
    ],
)
def test_each_view_and_rendering_has_its_own_etag(client, other):
    shown = refresh(client, {"status": "running"}).headers["ETag"]
    headers = FRAGMENT if other["fragment"] else {}
    answer = client.get(
        other["path"], query_string=other["args"], headers={**headers, "If-None-Match": shown}
    )
    assert answer.status_code == 200 and answer.headers["ETag"] != shown


def test_a_new_minute_changes_the_etag(app, client):
    etag = refresh(client, {"status": "running"}).headers["ETag"]
    app.config["CLOCK"] = lambda: NOW + timedelta(seconds=59)
    assert refresh(client, {"status": "running"}, etag).status_code == 304
    app.config["CLOCK"] = lambda: NOW + timedelta(minutes=1)
    assert refresh(client, {"status": "running"}, etag).status_code == 200


@pytest.fixture
def live_client(scratch_app, scratch_engine):
    """A client over the known tasks in tables the test may change."""
    insert_tasks(scratch_engine, known_tasks())
    return scratch_app.test_client()


def test_a_task_recorded_changes_the_etag_and_the_region(live_client, scratch_engine):
    args = {"task_type": "training", "tag": "live-new"}
    before = refresh(live_client, args)
    assert Page(before.get_data(as_text=True)).row_ids == []
    task_id = Recorder(scratch_engine, clock=lambda: NOW).create(
        "training", tag="live-new", base_model="m", dataset_name="d", method="lora", epochs=1
    )
    after = refresh(live_client, args, before.headers["ETag"])
    assert after.status_code == 200 and after.headers["ETag"] != before.headers["ETag"]
    assert Page(after.get_data(as_text=True)).row_ids == [str(task_id)]


def test_a_change_written_in_sql_with_updated_at_changes_the_etag(live_client, scratch_engine):
    args = {"status": "running", "task_type": "training"}
    before = refresh(live_client, args)
    (shown, *_) = Page(before.get_data(as_text=True)).row_ids
    table = MODEL_FOR_TYPE["training"].__table__
    with scratch_engine.begin() as connection:
        connection.execute(
            table.update()
            .where(table.c.id == uuid.UUID(shown))
            .values(progress=0.75, updated_at=NOW)
        )
    after = refresh(live_client, args, before.headers["ETag"])
    assert after.status_code == 200
    assert 'value="75"' in after.get_data(as_text=True)


def test_a_deleted_task_leaves_the_region_within_a_minute(scratch_app, live_client, scratch_engine):
    args = {"status": "completed", "task_type": "synthesis"}
    before = refresh(live_client, args)
    (gone, *_) = Page(before.get_data(as_text=True)).row_ids
    table = MODEL_FOR_TYPE["synthesis"].__table__
    with scratch_engine.begin() as connection:
        connection.execute(table.delete().where(table.c.id == uuid.UUID(gone)))
    scratch_app.config["CLOCK"] = lambda: NOW + timedelta(minutes=1)
    after = refresh(live_client, args, before.headers["ETag"])
    assert after.status_code == 200
    assert gone not in Page(after.get_data(as_text=True)).row_ids


def test_relative_times_carry_the_exact_utc_instant(client, tasks):
    _, page = get_page(client)
    newest = next(t for t in tasks if str(t["id"]) == page.row_ids[0])
    times = page.find("time", datetime=format_timestamp(newest["created_at"]))
    assert times[0]["title"] == newest["created_at"].strftime("%Y-%m-%d %H:%M:%S UTC")


@pytest.mark.parametrize(
    ("ago", "text"),
    [
        (timedelta(seconds=20), "just now"),
        (timedelta(minutes=5, seconds=59), "5 min ago"),
        (timedelta(hours=3), "3 h ago"),
        (timedelta(days=12), "12 d ago"),
    ],
)
def test_time_ago_words(ago, text):
    assert time_ago(NOW - ago, NOW) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(42, "42 s"), (725, "12 min 5 s"), (12_000, "3 h 20 min"), (187_200, "2 d 4 h")],
)
def test_duration_words(seconds, text):
    assert duration_text(seconds) == text


# -- escaping --------------------------------------------------------------------------------


def test_tags_and_error_messages_with_html_are_shown_as_text(client):
    html = client.get("/", query_string={"status": "failed", "limit": 100}).get_data(as_text=True)
    assert "<script>alert(1)</script>" not in html
    assert "Traceback: &lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in html
    tagged = client.get("/", query_string={"tag": "<b>bold</b>"}).get_data(as_text=True)
    assert "<b>bold</b>" not in tagged
    assert "&lt;b&gt;bold&lt;/b&gt;" in tagged


def test_a_script_typed_into_the_url_is_shown_as_text(client):
    attack = '"><script>alert(2)</script>'
    html = client.get("/", query_string={"tag": attack, "within_hours": attack}).get_data(
        as_text=True
    )
    assert "<script>alert(2)" not in html


# -- framing ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/?status=nope", "/task/not-a-uuid"])
def test_pages_may_only_be_framed_by_this_site(client, path):
    response = client.get(path)
    assert csp_directives(response)["frame-ancestors"] == "'self'"
    assert response.headers["X-Frame-Options"] == "SAMEORIGIN"


def test_embed_may_be_framed_by_no_one_when_no_origin_is_set(client):
    response = client.get("/embed")
    assert csp_directives(response)["frame-ancestors"] == "'none'"
    assert "X-Frame-Options" not in response.headers


def test_embed_may_be_framed_by_the_configured_origins(known_database):
    origins = ["https://portal.example.com", "http://127.0.0.1:8081"]
    app = make_app(known_database[0], EMBED_FRAME_ANCESTORS=origins)
    for path in ("/embed", "/embed?hide=filters"):
        response = app.test_client().get(path)
        assert csp_directives(response)["frame-ancestors"] == " ".join(origins)
        assert "X-Frame-Options" not in response.headers
    page = app.test_client().get("/")
    assert csp_directives(page)["frame-ancestors"] == "'self'"


def test_frame_origins_from_the_environment_are_split_on_spaces(known_database):
    app = make_app(known_database[0], EMBED_FRAME_ANCESTORS="https://a.example https://b.example")
    response = app.test_client().get("/embed")
    assert csp_directives(response)["frame-ancestors"] == "https://a.example https://b.example"


def test_an_origin_that_could_inject_a_directive_is_refused(known_database):
    with pytest.raises(ValueError, match="EMBED_FRAME_ANCESTORS"):
        make_app(known_database[0], EMBED_FRAME_ANCESTORS=["https://a.example; script-src *"])


# -- the embed -------------------------------------------------------------------------------


def test_embed_has_no_site_header_and_can_hide_the_form(client, tasks):
    args = [("task_type", "training"), ("status", "running"), ("hide", "filters")]
    _, page = get_page(client, "/embed", args)
    assert not page.find("header") and not page.has_id("filters")
    chosen = TaskFilter(task_types=("training",), statuses=("running",))
    assert page.row_ids == expected(tasks, chosen)[:20]
    _, with_form = get_page(client, "/embed", args[:2])
    assert with_form.has_id("filters")


def test_embed_links_stay_inside_the_frame(client):
    args = [("status", "completed"), ("hide", "filters"), ("limit", "5")]
    _, page = get_page(client, "/embed", args)
    assert page.find("base", target="_self")
    for link in page.find("a"):
        if link.get("id") == "full-view-link":
            continue
        path = urlsplit(link["href"]).path
        assert path.startswith("/embed") or path.startswith("/static"), link
        assert "target" not in link
        if "hx-get" in link:
            assert dict(parse_qsl(urlsplit(link["href"]).query))["hide"] == "filters"


def test_embed_open_full_view_opens_the_page_in_a_new_tab(client):
    _, page = get_page(client, "/embed", [("status", "completed"), ("hide", "filters")])
    full = page.by_id("full-view-link")
    assert full["target"] == "_blank" and "noopener" in full["rel"]
    assert full["href"] == "/?status=completed"


def test_embed_task_page_stays_framable_and_returns_to_the_embed(client, tasks):
    task_id = tasks[0]["id"]
    response, page = get_page(client, f"/embed/task/{task_id}", [("hide", "filters")])
    assert csp_directives(response)["frame-ancestors"] == "'none'"
    assert page.by_id("back-to-list")["href"] == "/embed?hide=filters"


# -- the task page ---------------------------------------------------------------------------


def test_task_page_shows_every_field_and_the_full_error(client, tasks):
    task = next(t for t in tasks if t["status"] == "failed" and t["task_type"] == "training")
    response, page = get_page(client, f"/task/{task['id']}")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert str(task["id"]) in html and task["base_model"] in html and task["dataset_name"] in html
    assert "Traceback: &lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in html
    assert page.by_id("json-link")["href"] == f"/tasks/{task['id']}"
    assert page.by_id("back-to-list")["href"] == "/"


@pytest.mark.parametrize("path", ["/task", "/embed/task"])
def test_task_page_says_cancelling_only_for_a_running_task_asked_to_stop(client, tasks, path):
    stopping = asked_to_stop(tasks)
    running = [t for t in tasks if t["status"] == "running" and t["task_type"] == "evaluation"]
    for task in running:
        task_id = str(task["id"])
        response, page = get_page(client, f"{path}/{task_id}")
        assert page.has_id(f"cancelling-{task_id}") == (task_id in stopping)
        assert ("Cancelling…" in response.get_data(as_text=True)) == (task_id in stopping)


LIVE_PART = {"HX-Request": "true", "HX-Target": "task-live"}


@pytest.mark.parametrize("status", ["queued", "running", "completed", "failed", "cancelled"])
@pytest.mark.parametrize("path", ["/task", "/embed/task"])
def test_task_pages_live_part_asks_for_itself_only_while_the_task_is_active(
    client, tasks, status, path
):
    task = next(t for t in tasks if t["status"] == status)
    url = f"{path}/{task['id']}?tag=exp-7"
    part = get_page(client, url)[1].by_id("task-live")
    assert part["data-status"] == status
    if status in {"queued", "running"}:
        assert part["hx-get"] == url
        assert part["hx-trigger"] == "every 5s"  # LIVE_REFRESH_SECONDS
        assert (part["hx-target"], part["hx-swap"]) == ("this", "outerHTML")
    else:
        assert "hx-get" not in part and "hx-trigger" not in part


def test_htmx_request_for_the_live_part_gets_it_alone_with_the_etag_the_page_holds(client, tasks):
    task = next(t for t in tasks if t["status"] == "running")
    path = f"/task/{task['id']}"
    page_response, page = get_page(client, path)
    response, part = get_page(client, path, **LIVE_PART)
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert html.startswith('<div id="task-live"') and "<html" not in html
    assert part.by_id("task-live") == page.by_id("task-live")
    assert response.headers["ETag"] == page.by_id("main")["data-live-etag"]
    assert response.headers["ETag"] != page_response.headers["ETag"]
    assert {"HX-Request", "HX-Target"} <= set(response.vary)
    again = client.get(path, headers={**LIVE_PART, "If-None-Match": response.headers["ETag"]})
    assert again.status_code == 304


def test_history_restore_of_a_task_page_gets_the_whole_page(client, tasks):
    path = f"/task/{tasks[0]['id']}"
    restore = {**LIVE_PART, "HX-History-Restore-Request": "true"}
    assert "<html" in client.get(path, headers=restore).get_data(as_text=True)


@pytest.mark.parametrize("task_id", [str(uuid.UUID(int=0, version=4)), "not-a-uuid"])
def test_unknown_task_is_a_404_page(client, task_id):
    response = client.get(f"/task/{task_id}")
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert "Go to the task list" in response.get_data(as_text=True)


# -- htmx: CDN with integrity, local fallback ------------------------------------------------


def sri(body: bytes) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(body).digest()).decode()


def test_integrity_is_the_hash_of_the_served_file(client):
    served = client.get(f"/static/{HTMX_FILE}")
    assert served.status_code == 200
    html = client.get("/").get_data(as_text=True)
    cdn = Page(html).find("script", src=HTMX_CDN_URL)[0]
    assert cdn["integrity"] == sri(served.data)
    assert cdn["crossorigin"] == "anonymous"
    # The fallback loads our copy, under the same hash, when window.htmx is missing.
    fallback = Page(html).by_id("htmx-fallback")
    assert client.get(fallback["src"]).status_code == 200
    assert fallback["data-src"] == f"/static/{HTMX_FILE}"
    assert fallback["data-integrity"] == sri(served.data)


def test_htmx_local_only_serves_only_the_local_copy(known_database):
    app = make_app(known_database[0], HTMX_LOCAL_ONLY=True)
    client = app.test_client()
    html = client.get("/").get_data(as_text=True)
    assert "cdn.jsdelivr.net" not in html
    local = Page(html).find("script", src=f"/static/{HTMX_FILE}")[0]
    assert local["integrity"] == sri(client.get(f"/static/{HTMX_FILE}").data)


def test_htmx_config_swaps_the_503_and_skips_the_304(client):
    html = client.get("/").get_data(as_text=True)
    config = Page(html).find("meta", name="htmx-config")[0]["content"]
    assert '{"code": "304", "swap": false}' in config
    assert '"code": "503"' in config and '"historyCacheSize": 0' in config


# -- database down ---------------------------------------------------------------------------


@pytest.fixture
def unreachable_client():
    """A client of an app whose database cannot be reached."""
    return make_app(UNREACHABLE_DATABASE).test_client()


@pytest.mark.parametrize("path", ["/", "/embed"])
def test_database_down_is_a_friendly_503_page(unreachable_client, path):
    response, page = get_page(unreachable_client, path, [("status", "failed")])
    html = response.get_data(as_text=True)
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert page.has_id("unavailable") and page.has_id("filters")
    assert "Traceback" not in html and "psycopg" not in html
    assert page.checked("status") == {"failed"}


def test_database_down_shows_in_the_results_region_for_htmx(unreachable_client):
    response, page = get_page(unreachable_client, "/", **FRAGMENT)
    assert response.status_code == 503
    assert page.has_id("unavailable") and not page.has_id("filters")
    assert "HX-Request" in response.vary


def test_database_down_on_the_task_page_is_a_503_page(unreachable_client):
    response = unreachable_client.get(f"/task/{uuid.uuid4()}")
    assert response.status_code == 503
    assert response.mimetype == "text/html"
    assert "cannot be reached" in response.get_data(as_text=True)


def test_malformed_current_url_header_is_not_an_error(client):
    headers = {"HX-Request": "true", "HX-Target": "results", "HX-Current-URL": "http://[x/"}
    response = client.get("/", query_string={"status": "R"}, headers=headers)
    assert response.status_code == 200
    assert response.headers["HX-Push-Url"] == "/?status=running"


def test_custom_hours_typed_beside_a_preset_win(client):
    body = client.get("/?within_hours=24&within_hours=48").get_data(as_text=True)
    assert "active within the last 48 h" in body


def test_embed_error_page_leads_back_into_the_embed(client):
    response = client.get("/embed/task/not-a-task")
    assert response.status_code == 404
    body = response.get_data(as_text=True)
    assert 'href="/embed"' in body
    assert 'href="/"' not in body


def test_embed_task_page_opens_json_outside_the_frame(client, tasks):
    body = client.get(f"/embed/task/{tasks[0]['id']}").get_data(as_text=True)
    link = body[body.index('id="json-link"') :].split(">", 1)[0]
    assert 'target="_blank"' in link


def test_related_task_link_keeps_the_list_filter(scratch_app, scratch_engine):
    from app.recorder import Recorder

    recorder = Recorder(scratch_engine)
    training = recorder.create(
        "training", base_model="m", dataset_name="d", method="lora", epochs=1
    )
    evaluation = recorder.create(
        "evaluation",
        model_name="m",
        dataset_name="d",
        benchmark="mmlu",
        training_task_id=training,
    )
    client = scratch_app.test_client()
    body = client.get(f"/embed/task/{evaluation}?status=failed&hide=filters").get_data(True)
    href = body.split(f"<code>{training}</code>")[0].rsplit('href="', 1)[1].split('"')[0]
    assert href == f"/embed/task/{training}?status=failed&amp;hide=filters"


@pytest.mark.parametrize(
    ("offset", "total", "numbers"),
    [
        (0, Total(50_000, "eq"), ["1", "2", "3", None]),
        (9_980, Total(50_000, "eq"), ["1", None, "498", "499", "500", "501", None]),
        (0, Total(10_000, "gte"), ["1", "2", "3", None]),
        (80, Total(100, "eq"), ["1", None, "3", "4", "5"]),
    ],
)
def test_page_numbers_end_with_a_gap_while_more_pages_follow(app, offset, total, numbers):
    from app.pages.results import page_numbers
    from app.pages.views import FULL_VIEW

    with app.test_request_context("/"):
        links = page_numbers(FULL_VIEW, TaskFilter(offset=offset), total)
    assert [link.label if link else None for link in links] == numbers
