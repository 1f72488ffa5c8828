"""The chart and the top errors as the page renders them: one bar per bucket, links that
narrow the list to a bar or to an error group, words for every bar, and no inline style."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from conftest import only_the_version_was_read, statements_run
from oracle import NOW
from test_pages import FRAGMENT, Page, filter_of, get_page

from app.chart import bucket_label, step_text
from app.filters import TaskFilter, format_timestamp
from app.models import close_read_connection, read_connection
from app.query import ErrorGroup, Histogram, task_histogram, top_errors
from app.query.histogram import DAY, HOUR, MINUTE

CHART_ARGS = {
    "nothing": [],
    "status and window": [("status", "failed"), ("status", "completed"), ("within_hours", "48")],
    "a tag": [("tag", "exp-1")],
}


def histogram_of(client, args):
    return client.get("/tasks/histogram", query_string=args).get_json()


@pytest.mark.parametrize("name", list(CHART_ARGS))
def test_every_bucket_is_a_bar_and_every_bar_with_tasks_links_to_its_bucket(client, name):
    args = CHART_ARGS[name]
    buckets = histogram_of(client, args)["buckets"]
    _, page = get_page(client, "/", args)
    shown = filter_of("/?" + "&".join(f"{k}={v}" for k, v in args))
    for index, bucket in enumerate(buckets):
        bar = page.by_id(f"bar-{index}")
        if not bucket["total"]:
            assert "href" not in bar
            continue
        narrowed = filter_of(bar["href"])
        assert narrowed == replace(
            shown,
            created_after=datetime.fromisoformat(bucket["start"]),
            created_before=datetime.fromisoformat(bucket["end"]),
        )
        assert bar["hx-get"] == bar["href"] and bar["hx-push-url"] == "true"
        assert bar["aria-label"].endswith(
            ", ".join(f"{n} {s}" for s, n in bucket["counts"].items() if n)
        )
    assert not page.has_id(f"bar-{len(buckets)}")


def test_each_bar_has_a_tooltip_and_a_row_in_the_table_for_screen_readers(client):
    buckets = histogram_of(client, [])["buckets"]
    html = client.get("/").get_data(as_text=True)
    chart = html.split('id="chart"', 1)[1].split("</figure>", 1)[0]
    assert chart.count("<title>") == len(buckets)
    table = chart.split('id="chart-table"', 1)[1]
    assert table.count('<th scope="row">') == len(buckets)
    for bucket in buckets:
        assert f"<td>{bucket['total']}</td></tr>" in table


def insights_of(html: str) -> str:
    """The chart and top errors as a rendering shows them, from their wrapper's start to
    the end of the top errors."""
    start = html.index('<div class="insights" id="insights">')
    return html[start : html.index("</details>", start)]


def test_the_results_region_loads_the_chart_and_errors_right_after_it(client):
    args = [("within_hours", "24"), ("status", "failed")]
    response, page = get_page(client, "/", args, **FRAGMENT)
    html = response.get_data(as_text=True)
    assert "<svg" not in html and not page.has_id("chart") and not page.has_id("top-errors")
    placeholder = page.by_id("insights")
    assert placeholder["hx-get"] == "/insights?status=failed&within_hours=24"
    assert placeholder["hx-trigger"] == "load" and placeholder["hx-swap"] == "outerHTML"
    assert placeholder["hx-target"] == "this"
    assert "Loading chart…" in html
    _, second = get_page(client, "/", [*args, ("offset", "20")], **FRAGMENT)
    assert second.by_id("insights")["hx-get"] == placeholder["hx-get"]  # pages share them


def test_a_full_page_draws_the_chart_and_errors_in_place(client):
    response, page = get_page(client, "/", [("within_hours", "24")])
    html = response.get_data(as_text=True)
    assert "<svg" in html and page.has_id("chart") and page.has_id("top-errors")
    assert 'hx-trigger="load"' not in html


@pytest.mark.parametrize("path", ["/", "/embed"])
def test_the_insights_are_what_the_full_page_draws_for_the_same_filter(client, path):
    args = [("within_hours", "48"), ("status", "failed"), ("status", "completed")]
    if path == "/embed":
        args.append(("hide", "filters"))
    region, _ = get_page(client, path, args, **FRAGMENT)
    url = Page(region.get_data(as_text=True)).by_id("insights")["hx-get"]
    alone = client.get(url, headers=FRAGMENT)
    assert alone.status_code == 200 and "HX-Push-Url" not in alone.headers
    full = client.get(path, query_string=args).get_data(as_text=True)
    assert insights_of(alone.get_data(as_text=True)) == insights_of(full)
    assert 'id="chart"' in full and 'id="top-errors"' in full


def test_the_embed_draws_the_chart_and_its_bars_keep_the_embed(client):
    region, _ = get_page(client, "/embed", [("hide", "filters")], **FRAGMENT)
    url = Page(region.get_data(as_text=True)).by_id("insights")["hx-get"]
    assert url == "/embed/insights?hide=filters"
    for _, page in (get_page(client, "/embed", [("hide", "filters")]), get_page(client, url)):
        bars = page.find("a", **{"class": "chart-bar"})
        assert bars and page.by_id("error-link-1")["href"].startswith("/embed?")
        for bar in bars:
            assert bar["href"].startswith("/embed?") and "hide=filters" in bar["href"]


def test_unchanged_insights_answer_304_from_the_version_alone(app, client):
    first = client.get("/insights", query_string={"status": "failed"})
    etag = first.headers["ETag"]
    assert first.headers["Cache-Control"] == "no-cache"
    region = client.get("/", query_string={"status": "failed"}, headers=FRAGMENT)
    assert region.headers["ETag"] != etag
    with statements_run(app) as sent:
        again = client.get(
            "/insights", query_string={"status": "failed"}, headers={"If-None-Match": etag}
        )
    assert again.status_code == 304 and again.data == b""
    assert only_the_version_was_read(sent)


def test_the_region_no_longer_counts_the_chart_or_the_errors(app, client):
    with statements_run(app) as region:
        client.get("/", query_string={"status": "cancelled"}, headers=FRAGMENT)
    with statements_run(app) as insights:
        client.get("/insights", query_string={"status": "cancelled"})
    assert len(insights) > 1
    assert not set(insights[1:]) & set(region), "the region ran a chart or errors query"


def test_bad_input_on_the_insights_is_the_pages_inline_message(client):
    args = [("within_hours", "soon"), ("status", "failed")]
    response, page = get_page(client, "/insights", args)
    assert response.status_code == 200
    whole = client.get("/", query_string=args).get_data(as_text=True)
    assert notice_of(response.get_data(as_text=True)) == notice_of(whole)
    assert 'data-field="within_hours"' in notice_of(whole)
    assert page.has_id("chart")  # drawn for the parameters that are fine


def notice_of(html: str) -> str:
    """The message about bad filters, as rendered."""
    start = html.index('<div class="notice notice-warning" id="filter-notice">')
    return html[start : html.index("</div>", start)]


def test_the_page_has_no_inline_style(client):
    html = client.get("/").get_data(as_text=True)
    assert " style=" not in html and "<style" not in html


def test_a_window_after_now_draws_no_chart(client):
    _, page = get_page(client, "/", [("created_after", "2099-01-01T00:00:00Z")])
    assert not page.has_id("chart")


def test_each_top_error_links_to_its_group(client, tasks):
    groups = client.get("/tasks/errors", query_string={"limit": "5"}).get_json()["groups"]
    _, page = get_page(client, "/")
    for index, group in enumerate(groups, start=1):
        link = page.by_id(f"error-link-{index}")
        assert filter_of(link["href"]) == TaskFilter(error_group=group["error_group"])


def test_a_group_shown_is_an_applied_filter_and_a_field_of_the_form(client):
    key = "row <n>: expected <n> columns, found <n>"
    response, page = get_page(client, "/", [("error_group", key)])
    html = response.get_data(as_text=True)
    assert "error is “row &lt;n&gt;: expected &lt;n&gt; columns, found &lt;n&gt;”" in html
    assert page.by_id("error_group")["value"] == key
    assert "disabled" not in page.by_id("error_group")
    _, plain = get_page(client, "/")
    assert "disabled" in plain.by_id("error_group")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (MINUTE, "minute"),
        (15 * MINUTE, "15 minutes"),
        (HOUR, "hour"),
        (3 * HOUR, "3 hours"),
        (DAY, "day"),
        (5 * DAY, "5 days"),
    ],
)
def test_a_step_in_words(seconds, text):
    assert step_text(seconds) == text


def test_a_bar_in_words():
    start = datetime(2026, 11, 24, 14, tzinfo=UTC)
    end = datetime(2026, 11, 24, 15, tzinfo=UTC)
    assert bucket_label(start, end, HOUR) == "Tue 24 Nov 14:00\N{EN DASH}15:00"
    assert bucket_label(start.replace(hour=0), start.replace(day=25, hour=0), DAY) == (
        "Tue 24 Nov 2026"
    )
    assert format_timestamp(start) == "2026-11-24T14:00:00Z"


def test_a_chart_and_its_errors_travel_through_the_shared_cache_unchanged(app):
    # Outside a request nothing gives the connection back: MariaDB would keep its
    # transaction, and the database could not be dropped at the end of the session.
    with app.app_context():
        try:
            connection = read_connection()
            histograms = [
                task_histogram(connection, task_filter, NOW)
                for task_filter in (
                    TaskFilter(),
                    TaskFilter(within_hours=24, statuses=("failed",)),
                )
            ]
            groups = top_errors(connection, TaskFilter(), NOW, 5)
        finally:
            close_read_connection()
        for histogram in histograms:
            assert Histogram.from_json(json.loads(json.dumps(histogram.as_json()))) == histogram
        assert groups
        assert [ErrorGroup.from_json(json.loads(json.dumps(g.as_json()))) for g in groups] == groups
