"""The chart's numbers: tasks per bucket of created_at and status, on every engine, against
the oracle; the bucket size each window gets; and bars that narrow the list to themselves."""

from __future__ import annotations

from datetime import datetime, timedelta
from urllib.parse import urlencode

import pytest
from conftest import statements_run
from hypothesis import given
from hypothesis import strategies as st
from oracle import EPOCH, KNOWN_TAGS, NOW, histogram
from test_api import FILTERS

from app.filters import MAX_TAGS, TaskFilter, format_timestamp
from app.models import MODEL_FOR_TYPE
from app.query import task_histogram
from app.query.histogram import DAY, HOUR, MINUTE, chart_window

# As many tags as a filter takes: every count of every bar repeats them.
TWENTY_TAGS = [*KNOWN_TAGS, *(f"other-{n}" for n in range(MAX_TAGS - len(KNOWN_TAGS)))]
CHART_FILTERS = {
    **FILTERS,
    "one error group": (
        [("error_group", "row <n>: expected <n> columns, found <n>")],
        TaskFilter(error_group="row <n>: expected <n> columns, found <n>"),
    ),
    "twenty tags": (
        [("tag", tag) for tag in TWENTY_TAGS],
        TaskFilter(tags=tuple(sorted(TWENTY_TAGS))),
    ),
    "within 48 hours": ([("within_hours", "48")], TaskFilter(within_hours=48)),
    "within 60 days": ([("within_hours", "1440")], TaskFilter(within_hours=1440)),
    "created after alone": (
        [("created_after", format_timestamp(NOW - timedelta(days=3, minutes=17)))],
        TaskFilter(created_after=NOW - timedelta(days=3, minutes=17)),
    ),
    # Before the window's start a task matches only if active or finished since.
    "within 24 hours, created in 3 days": (
        [("within_hours", "24"), ("created_after", format_timestamp(NOW - timedelta(days=3)))],
        TaskFilter(within_hours=24, created_after=NOW - timedelta(days=3)),
    ),
}
# Filters the hourly summary counts alone (their bars are whole hours), those it counts
# but for a range's edge inside an hour or the hours before a time window's start, and
# filters it cannot count.
SUMMARY_FILTERS = ["nothing", "two types", "two statuses", "within 24 hours", "created range"]
MIXED_FILTERS = ["created after alone", "within 24 hours, created in 3 days"]
TABLE_FILTERS = ["within 1 hour", "one tag", "one error group", "everything at once"]


@pytest.mark.parametrize("name", list(CHART_FILTERS))
def test_buckets_match_the_oracle(client, tasks, name):
    args, task_filter = CHART_FILTERS[name]
    response = client.get("/tasks/histogram", query_string=args)
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == histogram(tasks, task_filter)


def reads(app, args) -> tuple[bool, bool]:
    """Whether a chart's statements read the hourly summary, and the task tables."""
    with statements_run(app) as sent:
        assert app.test_client().get("/tasks/histogram", query_string=args).status_code == 200
    text = " ".join(sent)
    tables = (model.__tablename__ for model in MODEL_FOR_TYPE.values())
    return "task_hourly_count" in text, any(f"FROM {table}" in text for table in tables)


@pytest.mark.parametrize("name", SUMMARY_FILTERS + MIXED_FILTERS + TABLE_FILTERS)
def test_types_statuses_and_time_are_counted_from_the_hourly_summary(app, name):
    summary, tables = reads(app, CHART_FILTERS[name][0])
    assert summary == (name not in TABLE_FILTERS)
    assert tables == (name not in SUMMARY_FILTERS)


def edges_inside_hours(tasks: list[dict]) -> tuple[datetime, datetime]:
    """A created range whose ends both fall between two tasks of one hour: the first and
    last hours that hold tasks at two instants, each cut after its first."""
    instants: dict[int, set[datetime]] = {}
    for task in tasks:
        instants.setdefault((task["created_at"] - EPOCH) // timedelta(hours=1), set()).add(
            task["created_at"]
        )
    crowded = [sorted(times) for _, times in sorted(instants.items()) if len(times) > 1]
    return crowded[0][1], crowded[-1][1]


@pytest.mark.parametrize("now_minutes", [0, 23])
@pytest.mark.parametrize("span", ["whole", "inside hours", "window", "failed in window"])
def test_a_chart_from_the_summary_and_the_tables_matches_the_oracle(app, tasks, span, now_minutes):
    now = NOW + timedelta(minutes=now_minutes)
    after, before = edges_inside_hours(tasks)
    task_filter = {
        "whole": TaskFilter(),
        "inside hours": TaskFilter(created_after=after, created_before=before),
        "window": TaskFilter(within_hours=30, created_after=after),
        "failed in window": TaskFilter(statuses=("failed",), within_hours=100),
    }[span]
    with app.app_context(), app.extensions["sqlalchemy"].engine.connect() as connection:
        answer = task_histogram(connection, task_filter, now).as_json()
    assert answer == histogram(tasks, task_filter, now)


def test_the_default_window_is_the_last_seven_days_with_the_current_bucket(client, tasks):
    answer = client.get("/tasks/histogram").get_json()
    assert answer["bucket_seconds"] == 3 * HOUR
    assert answer["buckets"][-1]["start"] <= format_timestamp(NOW) < answer["end"]
    assert answer["start"] == format_timestamp(NOW - timedelta(days=7))
    assert answer["total"] > 0


@pytest.mark.parametrize(
    ("span", "step", "bars"),
    [
        (timedelta(hours=1), MINUTE, 60),
        (timedelta(hours=24), HOUR, 24),
        (timedelta(hours=48), HOUR, 48),
        (timedelta(days=7), 3 * HOUR, 56),
        (timedelta(days=60), DAY, 60),
    ],
)
def test_each_window_gets_its_bucket_size(span, step, bars):
    start = NOW - timedelta(days=90, hours=12)  # midnight: whole days fit
    window = chart_window(TaskFilter(created_after=start, created_before=start + span), NOW)
    assert (window.step, window.bars) == (step, bars)


@given(
    start=st.integers(0, 50 * 365 * 24 * 60),
    minutes=st.integers(25, 60 * 24 * 365 * 20),
)
def test_a_window_over_24_minutes_gets_24_to_60_bars(start, minutes):
    after = NOW - timedelta(days=60 * 365) + timedelta(minutes=start)
    window = chart_window(
        TaskFilter(created_after=after, created_before=after + timedelta(minutes=minutes)), NOW
    )
    assert 24 <= window.bars <= 60


def test_a_window_after_now_has_no_bars(client):
    after = format_timestamp(NOW + timedelta(days=1))
    answer = client.get("/tasks/histogram", query_string={"created_after": after}).get_json()
    assert answer == {"start": None, "end": None, "bucket_seconds": None, "buckets": [], "total": 0}


@pytest.mark.parametrize("name", ["nothing", "within 24 hours", "one tag", "status and window"])
def test_each_bar_narrows_the_list_to_its_own_tasks(client, name):
    args, _ = CHART_FILTERS[name]
    buckets = client.get("/tasks/histogram", query_string=args).get_json()["buckets"]
    for bucket in [b for b in buckets if b["total"]][:6]:
        narrowed = [*args, ("created_after", bucket["start"]), ("created_before", bucket["end"])]
        counts = client.get("/tasks/counts?" + urlencode(narrowed)).get_json()
        assert counts["total"]["value"] == bucket["total"]
        if not any(key == "status" for key, _ in args):  # else status counts ignore it
            assert {s: c["value"] for s, c in counts["status"].items()} == bucket["counts"]


@pytest.mark.parametrize(
    ("args", "parameter"),
    [
        ({"limit": "5"}, "limit"),
        ({"offset": "20"}, "offset"),
        ({"within_hours": "abc"}, "within_hours"),
        ({"error_group": "x\x00y"}, "error_group"),
        ({"statuss": "failed"}, "statuss"),
    ],
)
def test_bad_input_is_422_naming_the_parameter(client, args, parameter):
    response = client.get("/tasks/histogram", query_string=args)
    assert response.status_code == 422
    assert parameter in {error["parameter"] for error in response.get_json()["errors"]}
