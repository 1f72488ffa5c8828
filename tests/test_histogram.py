"""The chart's numbers: tasks per bucket of created_at and status, on every engine, against
the oracle; the bucket size each window gets; and bars that narrow the list to themselves."""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta
from urllib.parse import urlencode

import flask_migrate
import pytest
import sqlalchemy as sa
from conftest import statements_run
from hypothesis import given
from hypothesis import strategies as st
from oracle import EPOCH, KNOWN_TAGS, NOW, histogram, insert_tasks, known_tasks, matches
from test_api import FILTERS

from app.filters import MAX_TAGS, TaskFilter, format_timestamp
from app.models import MODEL_FOR_TYPE
from app.query import task_histogram
from app.query.histogram import DAY, HOUR, MINUTE, chart_window
from app.schema import MIGRATIONS
from app.search import parse_search

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


# -- a search's chart: on SQLite, counted from the search index between rowids -------------

SEARCH_CHARTS = {
    "a word": [("q", "llama")],
    "a word, failed and running": [("q", "llama"), ("status", "failed"), ("status", "running")],
    "two words, 60 days": [("q", "llama mmlu"), ("within_hours", "1440")],
    "a phrase, 48 hours": [("q", '"support tickets"'), ("within_hours", "48")],
    "a word, created in 20 days": [
        ("q", "script"),
        ("created_after", format_timestamp(NOW - timedelta(days=20, minutes=-41))),
        ("created_before", format_timestamp(NOW - timedelta(days=2, minutes=13))),
    ],
    "a word, within 24 hours, created in 3 days": [
        ("q", "llama"),
        ("within_hours", "24"),
        ("created_after", format_timestamp(NOW - timedelta(days=3))),
    ],
    "unicode, one type": [("q", "ÜNÏCODE"), ("task_type", "training")],
    "no match": [("q", "zzzzzz")],
}


def chart_filter(args: list[tuple[str, str]]) -> TaskFilter:
    """The filter of a chart's arguments, as the oracle takes it."""
    fields: dict = {"statuses": (), "task_types": ()}
    for key, value in args:
        if key == "q":
            fields["search"] = parse_search(value)
        elif key in {"status", "task_type"}:
            fields[f"{key}es" if key == "status" else f"{key}s"] += (value,)
        elif key == "within_hours":
            fields[key] = int(value)
        else:
            fields[key] = datetime.fromisoformat(value)
    return TaskFilter(**{key: value for key, value in fields.items() if value != ()})


@pytest.mark.parametrize("name", list(SEARCH_CHARTS))
def test_a_search_s_chart_is_the_oracle_s(client, tasks, name):
    """On every engine. The known tasks are written in no time order: on SQLite most of
    them are kept apart as out of order, and counted from their rows."""
    args = SEARCH_CHARTS[name]
    response = client.get("/tasks/histogram", query_string=args)
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == histogram(tasks, chart_filter(args))


def out_of_order(engine: sa.Engine) -> dict[str, set[int]]:
    """The rowids each SQLite task table keeps apart (revision 0015)."""
    with engine.connect() as connection:
        return {
            model.__tablename__: set(
                connection.exec_driver_sql(
                    f"SELECT task_rowid FROM {model.__tablename__}_out_of_order"
                ).scalars()
            )
            for model in MODEL_FOR_TYPE.values()
        }


def in_created_order(engine: sa.Engine) -> bool:
    """Whether the tasks not kept apart have a created_at that never decreases as their
    rowid grows, in every table: what counting between rowids relies on."""
    kept = out_of_order(engine)
    with engine.connect() as connection:
        for model in MODEL_FOR_TYPE.values():
            table = model.__tablename__
            rows = connection.exec_driver_sql(
                f"SELECT rowid, created_at FROM {table} ORDER BY rowid"
            )
            times = [at for rowid, at in rows if rowid not in kept[table]]
            if times != sorted(times):
                return False
    return True


def charts_are_the_oracle_s(app, tasks: list[dict]) -> None:
    """Every search chart equals the oracle's, counted from the search index: between rowids
    on SQLite, from the words tables elsewhere; the task tables are not read but for the
    tasks SQLite keeps apart, and a time window's hours before its start."""
    client = app.test_client()
    with app.app_context():
        dialect = app.extensions["sqlalchemy"].engine.dialect.name
    index = "_out_of_order" if dialect == "sqlite" else "_words"
    for name, args in SEARCH_CHARTS.items():
        with statements_run(app) as sent:
            answer = client.get("/tasks/histogram", query_string=args).get_json()
        assert answer == histogram(tasks, chart_filter(args)), name
        if name != "no match":
            assert any(index in statement for statement in sent), name


@pytest.mark.parametrize("engine_kind", ["sqlite"], indirect=True)
def test_tasks_written_as_they_are_created_are_kept_in_order(scratch_app, scratch_engine):
    """Written in created order, no SQLite task is kept apart."""
    tasks = sorted(known_tasks(), key=lambda task: task["created_at"])
    insert_tasks(scratch_engine, tasks)
    assert out_of_order(scratch_engine) == {
        model.__tablename__: set() for model in MODEL_FOR_TYPE.values()
    }
    charts_are_the_oracle_s(scratch_app, tasks)


def test_a_search_s_chart_follows_tasks_written_moved_and_deleted_in_plain_sql(
    scratch_app, scratch_engine, engine_kind
):
    """Tasks written in created order, then tasks written late with an earlier created_at,
    created_at changed and tasks deleted in plain SQL: the triggers keep SQLite's tasks out
    of order apart (and let the deleted go) and the words tables' created_at in step, and
    the charts stay the oracle's."""
    tasks = sorted(known_tasks(), key=lambda task: task["created_at"])
    insert_tasks(scratch_engine, tasks)
    rng = random.Random(15)
    late = [dict(task, id=uuid.uuid4()) for task in rng.sample(tasks, 40)]
    insert_tasks(scratch_engine, late)
    tasks += late
    searched = [
        task
        for task in tasks
        if any(matches(task, chart_filter(args), NOW) for args in SEARCH_CHARTS.values())
    ]
    moved = rng.sample(searched, 25) + rng.sample(tasks, 5)
    gone = rng.sample([task for task in tasks if task not in moved], 30)
    with scratch_engine.begin() as connection:
        for task in moved:
            task["created_at"] += timedelta(hours=rng.choice([-50, -7, 3, 26]))
            table = MODEL_FOR_TYPE[task["task_type"]].__table__
            connection.execute(
                sa.update(table)
                .where(table.c.id == task["id"])
                .values(created_at=task["created_at"])
            )
        for task in gone:
            table = MODEL_FOR_TYPE[task["task_type"]].__table__
            connection.execute(sa.delete(table).where(table.c.id == task["id"]))
    tasks = [task for task in tasks if task not in gone]
    if engine_kind == "sqlite":
        kept = out_of_order(scratch_engine)
        assert 0 < sum(len(rowids) for rowids in kept.values()) <= len(late) + len(moved)
        assert in_created_order(scratch_engine)
    charts_are_the_oracle_s(scratch_app, tasks)


@pytest.mark.parametrize("engine_kind", ["sqlite"], indirect=True)
def test_an_upgrade_keeps_apart_the_tasks_already_out_of_order(scratch_app, scratch_engine):
    """Revision 0015 sorts the tasks already there: after a downgrade and an upgrade over
    tasks written in no order, what is kept apart is what the triggers kept."""
    insert_tasks(scratch_engine, known_tasks())
    written = out_of_order(scratch_engine)
    with scratch_app.app_context():
        flask_migrate.downgrade(directory=str(MIGRATIONS), revision="0014")
        flask_migrate.upgrade(directory=str(MIGRATIONS))
    assert out_of_order(scratch_engine) == written
    assert in_created_order(scratch_engine)
    charts_are_the_oracle_s(scratch_app, known_tasks())
