"""The plans the engines choose for the query module's statements, and why shapes differ.

Each engine gets its own database of demo tasks, enough rows per table for the planners to
prefer indexes, analysed after seeding. The tests read EXPLAIN output, not timings.
"""

from __future__ import annotations

import json
import random
import re
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import psycopg.sql
import pytest
import sqlalchemy as sa
from conftest import database, make_app, reset_tables
from oracle import expected, insert_tasks, make_task
from sqlalchemy.dialects import mysql, postgresql, sqlite

from app import plan_once
from app.demo import seed_demo
from app.filters import Cursor, TaskFilter
from app.models import MODEL_FOR_TYPE, TaskEvent, db
from app.query.actors import ActorTasks
from app.query.counts import (
    TOTAL_EXACT_UP_TO,
    Total,
    capped_count_templates,
    count_facets,
    count_tasks,
    exact_count_template,
    facet_template,
    gathered_facet_template,
)
from app.query.created_order import (
    first_rowids_template,
    out_of_order_template,
    rowid_bars_template,
)
from app.query.gauges import silent_template
from app.query.histogram import EPOCH, grouped_template, words_template
from app.query.lookups import with_lookups
from app.query.pages import (
    fetch_page,
    iter_tasks,
    keys_template,
    page_statement,
    page_template,
    page_values,
)
from app.query.rollup import hourly_template
from app.query.search import SearchReach
from app.query.shapes import TERMINAL, page_shape_of, shape_of, tables_with_matches
from app.query.versions import version_statement
from app.schema import refresh_statistics
from app.search import parse_search

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
TASKS = 20_000
FAILED = TaskFilter(statuses=("failed",))
# A page of tasks completed in the last day, after a cursor three days back: past its last
# match, a walk without a floor on created_at would read every older completed task.
PAST_THE_WINDOW = TaskFilter(
    statuses=("completed",),
    within_hours=24,
    cursor=Cursor(NOW - timedelta(days=3), uuid.UUID(int=0)),
)
# The same past a window over every status: only queued and running tasks, of any age, are
# left to find there.
ANY_STATUS_PAST_THE_WINDOW = TaskFilter(
    within_hours=24, cursor=Cursor(NOW - timedelta(days=3), uuid.UUID(int=0))
)


@pytest.fixture(scope="module")
def seeded(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[sa.Engine]:
    """An engine (named by the test's parameter) over freshly seeded, analysed demo tasks."""
    for url in database(request.param, tmp_path_factory):
        engine = sa.create_engine(url)
        reset_tables(engine)
        seed_demo(engine, TASKS, NOW, seed=11)
        yield engine
        engine.dispose()


def sql_of(engine: sa.Engine, statement: Any) -> str:
    """The statement as the engine would run it, values written in."""
    compiled = statement.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True})
    return str(compiled)


def template_sql(engine: sa.Engine, template: Any, values: dict[str, Any]) -> str:
    """A cached template with its parameter values written in."""
    return sql_of(engine, template.params(values))


# -- which tables a statement reads ----------------------------------------------------------

TWO_TYPES = TaskFilter(task_types=("training", "synthesis"), statuses=("failed",), within_hours=24)


def statements_of(task_filter: TaskFilter) -> list[Any]:
    """Every statement a listing of the filter may run: pages of each shape, and its totals."""
    page_shape, _ = page_shape_of(task_filter, NOW)
    count_shape, _ = shape_of(task_filter, NOW)
    return [
        page_template(page_shape, True),
        page_template(page_shape, False),
        keys_template(page_shape),
        *capped_count_templates(count_shape, True),
        *capped_count_templates(count_shape, False),
        exact_count_template(count_shape),
    ]


@pytest.mark.parametrize("url", ["sqlite://", "postgresql+psycopg://", "mariadb+pymysql://"])
def test_tables_whose_type_is_not_asked_for_are_not_read(url):
    dialect = sa.create_engine(url).dialect
    read = set()
    for statement in statements_of(TWO_TYPES):
        tables = set(re.findall(r"\b\w+_task\b", str(statement.compile(dialect=dialect))))
        assert tables <= {"training_task", "synthesis_task"}
        read |= tables
    assert read == {"training_task", "synthesis_task"}


# -- SQLite ----------------------------------------------------------------------------------


def sqlite_plan(engine: sa.Engine, sql: str) -> list[str]:
    """The detail column of EXPLAIN QUERY PLAN."""
    with engine.connect() as connection:
        return [row[-1] for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}")]


@pytest.mark.parametrize("seeded", ["sqlite"], indirect=True)
def test_sqlite_first_page_by_status_walks_status_indexes_without_sorting(seeded):
    plan = sqlite_plan(seeded, sql_of(seeded, page_statement(FAILED, NOW, dialect="sqlite")))
    searches = [step for step in plan if step.startswith("SEARCH")]
    assert len(searches) == 5
    assert all("_status_created" in step and "(status=?)" in step for step in searches)
    assert not any("TEMP B-TREE" in step for step in plan)
    assert any("MERGE (UNION ALL)" in step for step in plan)


@pytest.mark.parametrize("seeded", ["sqlite"], indirect=True)
def test_sqlite_walk_past_a_window_is_bounded_by_its_floor(seeded):
    plan = sqlite_plan(seeded, sql_of(seeded, page_statement(PAST_THE_WINDOW, NOW)))
    searches = [step for step in plan if "_status_created" in step]
    assert len(searches) == 5
    assert all("created_at>? AND created_at<?" in step for step in searches)


@pytest.mark.parametrize("seeded", ["sqlite"], indirect=True)
def test_sqlite_window_over_every_status_walks_active_statuses_apart_and_finished_to_a_floor(
    seeded,
):
    statement = page_statement(ANY_STATUS_PAST_THE_WINDOW, NOW, dialect="sqlite")
    plan = sqlite_plan(seeded, sql_of(seeded, statement))
    active = [step for step in plan if "_status_created" in step]
    finished = [step for step in plan if "_created (" in step and "_status_created" not in step]
    assert len(active) == 10
    assert all("(status=?" in step for step in active)
    assert len(finished) == 5
    assert all("created_at>? AND created_at<?" in step for step in finished)
    assert not any("TEMP B-TREE" in step for step in plan)


@pytest.mark.parametrize("seeded", ["sqlite"], indirect=True)
def test_sqlite_counts_beside_created_before_read_from_the_window_floor(seeded):
    """Given created_at < :before, SQLite reads the (status, created_at) index: from the floor."""
    task_filter = TaskFilter(within_hours=1, created_before=NOW - timedelta(days=7))
    shape, values = shape_of(task_filter, NOW)
    plan = sqlite_plan(seeded, template_sql(seeded, facet_template(shape), values))
    finished = [step for step in plan if "_status_created" in step and "created_at>?" in step]
    assert len(finished) == 15  # three finished statuses in each of five tables
    assert all("created_at>? AND created_at<?" in step for step in finished)
    for status in TERMINAL:
        (capped,) = capped_count_templates(replace(shape, statuses=(status,)), True)
        plan = sqlite_plan(seeded, template_sql(seeded, capped, {**values, "cap": 1}))
        finished = [step for step in plan if "_status_created" in step and "created_at>?" in step]
        assert len(finished) == 10  # the probe and the exact count, in each of five tables
        assert all("created_at>? AND created_at<?" in step for step in finished)


@pytest.mark.parametrize("seeded", ["sqlite"], indirect=True)
def test_sqlite_sorts_each_member_again_when_members_are_limited(seeded):
    """Why SQLite gets the merged shape: the limited one adds a sort per member."""
    shape, values = shape_of(FAILED, NOW)
    values |= page_values(FAILED)
    merged = sqlite_plan(seeded, template_sql(seeded, page_template(shape, True), values))
    limited = sqlite_plan(seeded, template_sql(seeded, page_template(shape, False), values))
    assert sum("TEMP B-TREE FOR ORDER BY" in step for step in merged) == 0
    assert sum("TEMP B-TREE FOR ORDER BY" in step for step in limited) == 5


# -- PostgreSQL ------------------------------------------------------------------------------


def postgresql_plan(engine: sa.Engine, sql: str) -> dict[str, Any]:
    """The root node of EXPLAIN (FORMAT JSON)."""
    with engine.connect() as connection:
        return plan_root(connection.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {sql}").scalar_one())


def plan_root(document: Any) -> dict[str, Any]:
    """The root node of an EXPLAIN (FORMAT JSON) document, parsed or not."""
    if isinstance(document, str):
        document = json.loads(document)
    return document[0]["Plan"]


PARAMETER = re.compile(r"%\((\w+)\)s")


def postgresql_generic_plan(engine: sa.Engine, statement: Any) -> dict[str, Any]:
    """The one plan PostgreSQL keeps for the statement prepared, as the app's connections do.

    Planned without its values (`plan_cache_mode = force_generic_plan`, see app/__init__.py),
    so a member must walk its index whatever the time window or cursor turns out to be.
    """
    expanded = statement.compile(dialect=engine.dialect).construct_expanded_state()
    names = list(dict.fromkeys(PARAMETER.findall(expanded.statement)))
    sql = PARAMETER.sub(lambda match: f"${names.index(match.group(1)) + 1}", expanded.statement)
    values = tuple(expanded.parameters[name] for name in names)

    with engine.connect() as connection:
        driver = connection.connection.driver_connection
        plan_once(driver, None)
        # Sent as a simple query: a parameter-less extended query would claim $1 as its own.
        driver.pgconn.exec_(f"DEALLOCATE ALL; PREPARE page AS {sql}".encode())
        # EXPLAIN takes no parameters of its own: the values are written in as literals.
        literals = [psycopg.sql.Literal(value).as_string(driver) for value in values]
        arguments = f"({', '.join(literals)})" if literals else ""
        document = connection.exec_driver_sql(
            f"EXPLAIN (FORMAT JSON) EXECUTE page{arguments}"
        ).scalar_one()
        connection.exec_driver_sql("DEALLOCATE page")
    return plan_root(document)


def nodes(plan: dict[str, Any], above: tuple[str, ...] = ()) -> Iterator[tuple[dict, tuple]]:
    """Every node of a plan, with the node types above it."""
    yield plan, above
    for child in plan.get("Plans", ()):
        yield from nodes(child, (*above, plan["Node Type"]))


def table_scans(plan: dict[str, Any]) -> list[tuple[dict, tuple]]:
    """The nodes that read a task table, with what is above each."""
    return [(node, above) for node, above in nodes(plan) if node.get("Relation Name")]


def below_nearest_limit(above: tuple[str, ...]) -> tuple[str, ...]:
    """The nodes between a scan and the nearest Limit above it (all of them if none)."""
    if "Limit" not in above:
        return above
    return above[len(above) - above[::-1].index("Limit") :]


@pytest.mark.parametrize("seeded", ["postgresql"], indirect=True)
def test_postgresql_first_page_by_status_walks_status_indexes_without_sorting(seeded):
    statement = page_statement(FAILED, NOW, dialect="postgresql")
    scans = table_scans(postgresql_generic_plan(seeded, statement))
    assert len(scans) == 5
    for node, above in scans:
        assert node["Node Type"] in {"Index Scan", "Index Only Scan"}
        assert node["Index Name"].endswith("_status_created")
        # A page's worth of rows is cut from the index walk before anything is sorted.
        assert "Limit" in above
        assert "Sort" not in below_nearest_limit(above)


@pytest.mark.parametrize("seeded", ["postgresql"], indirect=True)
def test_postgresql_walk_past_a_window_is_bounded_by_its_floor(seeded):
    """Each table's walk is a range of created_at from the floor up to the cursor, whichever
    of the two indexes that lead with it (or with the status, then it) the planner takes."""
    statement = page_statement(PAST_THE_WINDOW, NOW, dialect="postgresql")
    scans = [
        node
        for node, _ in table_scans(postgresql_generic_plan(seeded, statement))
        if node.get("Index Name", "").endswith("_created")
    ]
    assert len(scans) == 5
    for node in scans:
        assert "created_at >=" in node["Index Cond"]
        assert "created_at <=" in node["Index Cond"]


@pytest.mark.parametrize("seeded", ["postgresql"], indirect=True)
def test_postgresql_window_over_every_status_walks_finished_tasks_to_a_floor(seeded):
    statement = page_statement(ANY_STATUS_PAST_THE_WINDOW, NOW, dialect="postgresql")
    scans = table_scans(postgresql_generic_plan(seeded, statement))
    walks = [(node, above) for node, above in scans if not node["Index Name"].endswith("_seconds")]
    active = [node for node, _ in walks if node["Index Name"].endswith("_status_created")]
    finished = [node for node, _ in walks if node["Index Name"].endswith("_task_created")]
    assert len(active) == 10
    assert len(finished) == 5
    for node in finished:
        assert "created_at >=" in node["Index Cond"]
        assert "created_at <=" in node["Index Cond"]
    for _, above in walks:
        assert "Sort" not in below_nearest_limit(above)


@pytest.mark.parametrize("seeded", ["postgresql"], indirect=True)
def test_postgresql_sorts_every_match_of_plain_filtered_members(seeded):
    """Why PostgreSQL gets limited members: plain ones with a WHERE are sorted whole."""
    shape, values = shape_of(FAILED, NOW)
    values |= page_values(FAILED)
    scans = table_scans(
        postgresql_plan(seeded, template_sql(seeded, page_template(shape, True), values))
    )
    assert scans
    for _, above in scans:
        assert "Sort" in below_nearest_limit(above)


# -- MariaDB ---------------------------------------------------------------------------------


def mariadb_tables(engine: sa.Engine, sql: str) -> list[dict[str, Any]]:
    """The table accesses of ANALYZE FORMAT=JSON (the statement really runs)."""
    with engine.connect() as connection:
        document = json.loads(connection.exec_driver_sql(f"ANALYZE FORMAT=JSON {sql}").scalar())
    found: list[dict[str, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "table_name" in node and not node["table_name"].startswith("<"):
                found.append(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)
    return found


@pytest.mark.parametrize("seeded", ["mariadb"], indirect=True)
def test_mariadb_reads_a_whole_union_before_its_limit(seeded):
    """Why MariaDB counts one member at a time: a union's LIMIT does not stop the reading.

    The one-statement count looks for a match past the threshold (half the tasks here),
    and MariaDB reads every task to find it.
    """
    shape, values = shape_of(TaskFilter(), NOW)
    values["cap"] = 100
    (union,) = capped_count_templates(shape, True)
    per_member = capped_count_templates(shape, False)
    union_rows = sum(
        table.get("r_rows") or 0
        for table in mariadb_tables(seeded, template_sql(seeded, union, values))
    )
    member_rows = [
        table["r_rows"]
        for member in per_member
        for table in mariadb_tables(seeded, template_sql(seeded, member, values))
    ]
    assert union_rows == TASKS
    assert all(rows <= 100 for rows in member_rows)


@pytest.mark.parametrize("seeded", ["mariadb"], indirect=True)
def test_mariadb_finds_a_page_in_the_indexes_alone(seeded):
    """Why MariaDB reads keys first: the limited walk over keys never touches a row."""
    task_filter = TaskFilter(statuses=("failed",), within_hours=24)
    shape, values = shape_of(task_filter, NOW)
    values |= page_values(task_filter)
    tables = mariadb_tables(seeded, template_sql(seeded, keys_template(shape), values))
    assert len(tables) == 5
    for table in tables:
        assert table["key"].endswith("_status_created")
        assert table.get("using_index") is True


# Pages well past their first, each member's walk on a different index; the cursor lies among
# the older half of the tasks, so a walk from the newest entry reads thousands before it.
DEEP_PAGES = [
    TaskFilter(statuses=("completed",)),
    TaskFilter(statuses=("failed", "cancelled")),
    TaskFilter(tags=("exp-7",)),
    TaskFilter(task_types=("training", "evaluation")),
    TaskFilter(statuses=("completed",), within_hours=24 * 30),
]


@pytest.mark.parametrize("seeded", ["mariadb"], indirect=True)
@pytest.mark.parametrize("task_filter", DEEP_PAGES, ids=lambda f: urlencode(f.to_args()))
def test_mariadb_deep_page_reads_a_range_below_its_cursor(seeded, task_filter):
    """Why members are pinned to their index: MariaDB may read it from its newest entry."""
    deep = replace(task_filter, cursor=Cursor(NOW - timedelta(days=21), uuid.UUID(int=0)))
    shape, values = page_shape_of(deep, NOW)
    sql = template_sql(seeded, keys_template(shape), values | page_values(deep))
    walks = [t for t in mariadb_tables(seeded, sql) if not t["key"].endswith("_seconds")]
    assert walks
    for table in walks:
        assert table["access_type"] == "range"
        assert table["key"].endswith("_created")
        assert table["r_rows"] <= deep.limit + 1


def mariadb_rows_walked(engine: sa.Engine, task_filter: TaskFilter) -> dict[str, int]:
    """Index entries a page's key walk reads, as a page reads it and as a count's shape would.

    The count's shape (these filters have no created_at bound) has neither floors nor the
    split of a window over every status; the `max` steps that find the floors are left out.
    """
    values = page_values(task_filter)
    walked = {}
    for name, (shape, shape_values) in (
        ("page", page_shape_of(task_filter, NOW)),
        ("plain", shape_of(task_filter, NOW)),
    ):
        sql = template_sql(engine, keys_template(shape), shape_values | values)
        tables = mariadb_tables(engine, sql)
        walked[name] = sum(t["r_rows"] for t in tables if not t.get("key", "").endswith("_seconds"))
    return walked


@pytest.mark.parametrize("seeded", ["mariadb"], indirect=True)
def test_mariadb_walk_past_a_window_stops_at_its_floor(seeded):
    """Why pages get floors: past a window's last match, a walk reads every older task."""
    walked = mariadb_rows_walked(seeded, PAST_THE_WINDOW)
    assert walked["page"] < 50
    assert walked["plain"] > 1000


@pytest.mark.parametrize("seeded", ["mariadb"], indirect=True)
def test_mariadb_walk_past_a_window_over_every_status_reads_only_active_tasks(seeded):
    """Why a window over every status is read as three walks: one walks every older task."""
    walked = mariadb_rows_walked(seeded, ANY_STATUS_PAST_THE_WINDOW)
    with seeded.connect() as connection:
        older = sum(
            connection.execute(
                sa.select(sa.func.count()).where(model.created_at < NOW - timedelta(days=3))
            ).scalar_one()
            for model in MODEL_FOR_TYPE.values()
        )
    assert walked["page"] < 50
    assert walked["plain"] >= older > 1000


# -- the data version: each table's newest change, one index step --------------------------

UPDATED_INDEXES = {f"ix_{model.__tablename__}_updated" for model in MODEL_FOR_TYPE.values()}


@pytest.mark.parametrize("seeded", ["sqlite"], indirect=True)
def test_sqlite_reads_each_newest_change_from_the_end_of_its_index(seeded):
    plan = sqlite_plan(seeded, sql_of(seeded, version_statement()))
    reads = [step for step in plan if step.startswith(("SEARCH", "SCAN")) and "_task" in step]
    assert len(reads) == 5
    assert {step.split(" USING COVERING INDEX ")[1] for step in reads} == UPDATED_INDEXES
    # The newest event: max() of the rowid, the last entry of the table's b-tree.
    assert [step for step in plan if "task_event" in step] == ["SEARCH task_event"], plan


@pytest.mark.parametrize("seeded", ["postgresql"], indirect=True)
def test_postgresql_reads_each_newest_change_from_the_end_of_its_index(seeded):
    scans = table_scans(postgresql_generic_plan(seeded, version_statement()))
    # task_event is empty here, and PostgreSQL reads an empty table whole.
    scans = [(node, above) for node, above in scans if node["Relation Name"] != "task_event"]
    assert {node["Index Name"] for node, _ in scans} == UPDATED_INDEXES
    for node, above in scans:
        assert node["Node Type"] == "Index Only Scan"
        assert node["Scan Direction"] == "Backward"
        assert above[-1] == "Limit"


@pytest.mark.parametrize("seeded", ["mariadb"], indirect=True)
def test_mariadb_reads_each_newest_change_from_the_end_of_its_index(seeded):
    """MariaDB reads a MIN or MAX of an indexed column from the index while planning."""
    with seeded.connect() as connection:
        sql = sql_of(seeded, version_statement())
        document = json.loads(connection.exec_driver_sql(f"EXPLAIN FORMAT=JSON {sql}").scalar())
    subqueries = document["query_block"]["subqueries"]
    assert len(subqueries) == 6  # five tables and the events
    answered = ({"message": "Select tables optimized away"}, {"message": "No matching min/max row"})
    for subquery in subqueries:  # (the second: task_event is empty here)
        assert subquery["query_block"]["table"] in answered


# -- time-window floors never lose a match, on every engine -----------------------------------


def window_tasks() -> list[dict[str, Any]]:
    """Finished tasks around a day's window, and tasks created long before it ended in it."""
    rng = random.Random(3)
    tasks = [
        make_task(
            task_type,
            status,
            NOW - timedelta(hours=hours),
            tag=("a", None)[hours % 2],
            finished_after=timedelta(minutes=30),
            rng=rng,
        )
        for task_type in ("training", "evaluation")
        for hours in range(1, 60, 3)
        for status in ("queued", "running", "completed", "failed", "cancelled")
    ]
    long_ago = [
        ("training", "completed", timedelta(days=30), timedelta(hours=2), "a"),
        ("training", "failed", timedelta(days=12), timedelta(hours=30), "a"),  # before: none
        ("evaluation", "failed", timedelta(days=9), timedelta(hours=24), None),  # at since
        ("evaluation", "cancelled", timedelta(days=5), timedelta(seconds=1), "a"),
        ("training", "completed", timedelta(days=8), timedelta(minutes=30), None),  # 1 h, 7 d
    ]
    for task_type, status, age, before_now, tag in long_ago:
        created = NOW - age
        finished_after = NOW - before_now - created
        tasks.append(
            make_task(task_type, status, created, tag=tag, finished_after=finished_after, rng=rng)
        )
    return tasks


WINDOW_FILTERS = [
    TaskFilter(statuses=("completed", "failed"), within_hours=24),
    TaskFilter(statuses=("failed", "cancelled"), tags=("a",), within_hours=24),
    TaskFilter(statuses=("completed",), within_hours=24, created_after=NOW - timedelta(days=40)),
    TaskFilter(statuses=("failed",), within_hours=24, created_after=NOW - timedelta(days=10)),
    TaskFilter(statuses=("completed",), within_hours=24, created_after=NOW - timedelta(hours=20)),
    TaskFilter(within_hours=24),
    TaskFilter(within_hours=24, task_types=("evaluation",), created_before=NOW - timedelta(days=2)),
    TaskFilter(statuses=("running", "completed", "failed", "cancelled"), within_hours=24),
    TaskFilter(statuses=("completed", "failed", "cancelled"), within_hours=24),
    TaskFilter(within_hours=1, created_before=NOW - timedelta(days=7)),
]


@pytest.mark.parametrize("order", ["desc", "asc"])
@pytest.mark.parametrize("task_filter", WINDOW_FILTERS)
def test_window_pages_keep_tasks_created_long_before_the_window(empty_engine, task_filter, order):
    tasks = window_tasks()
    insert_tasks(empty_engine, tasks)
    task_filter = replace(task_filter, order=order)
    want = expected(tasks, task_filter)
    with empty_engine.connect() as connection:
        walked = [str(row.id) for row in iter_tasks(connection, task_filter, NOW, batch=4)]
        page = replace(task_filter, limit=4, offset=max(0, len(want) - 3))
        last = [str(row.id) for row in fetch_page(connection, page, NOW)]
    assert walked == want
    assert last == want[-3:]


@pytest.mark.parametrize("task_filter", WINDOW_FILTERS)
def test_window_counts_keep_tasks_created_long_before_the_window(empty_engine, task_filter):
    tasks = window_tasks()
    insert_tasks(empty_engine, tasks)
    want = len(expected(tasks, task_filter))
    with empty_engine.connect() as connection:
        capped = count_tasks(connection, task_filter, NOW)
        exact = count_tasks(connection, replace(task_filter, exact_count=True), NOW)
        facets = count_facets(connection, task_filter, NOW)
    assert (capped.value, exact.value, facets.total.value) == (want, want, want)


# -- what a statement sends apart from its text -------------------------------------------

FILTER_VALUES = {"since", "after", "before", "cursor_at", "cursor_id", "actor"} | {
    f"heard_before_{task_type}" for task_type in MODEL_FOR_TYPE
}
LIMITS = {"member_rows", "page_rows", "page_offset", "cap"}
EVERY_KIND_OF_FILTER = [
    TaskFilter(),
    TaskFilter(statuses=("failed", "cancelled")),
    TaskFilter(within_hours=24),
    TaskFilter(statuses=("completed",), within_hours=24, created_after=NOW - timedelta(days=9)),
    TaskFilter(task_types=("training",), tags=("exp-7", "nightly"), within_hours=168),
    ANY_STATUS_PAST_THE_WINDOW,
    TaskFilter(stalled=True, actor="trainer", tags=("exp-7",)),
]


def parameter_names(statement: Any) -> set[str]:
    """The names of the parameters PostgreSQL's driver is sent for a statement."""
    return set(statement.compile(dialect=postgresql.psycopg.dialect()).params)


def filter_statements(task_filter: TaskFilter) -> list[Any]:
    """A filter's pages (both shapes), its keys, its facets and its capped counts."""
    shape, _ = page_shape_of(task_filter, NOW)
    count_shape, _ = shape_of(task_filter, NOW)
    return [
        page_template(shape, merged=False),
        page_template(shape, merged=True),
        keys_template(shape),
        facet_template(count_shape),
        *capped_count_templates(count_shape, one_statement=True),
        *capped_count_templates(count_shape, one_statement=False),
    ]


@pytest.mark.parametrize("task_filter", EVERY_KIND_OF_FILTER)
def test_statements_send_only_the_filters_values_as_parameters(task_filter):
    """Statuses, separators and numbers of the code's own are written into the SQL.

    PostgreSQL then plans a member knowing the status it reads, and psycopg keeps the
    parsed form of a statement only while it has at most 50 parameters.
    """
    tags = {f"tag_{index}" for index in range(len(task_filter.tags))}
    for statement in filter_statements(task_filter):
        assert parameter_names(statement) <= FILTER_VALUES | LIMITS | tags


@pytest.mark.parametrize("dialect", [sqlite.dialect(), mysql.dialect()], ids=["sqlite", "mysql"])
def test_conditions_are_written_as_conditions_where_there_is_no_boolean_type(dialect):
    """A condition of the code's own typed Boolean is written `(…) = 1` on SQLite and
    MariaDB unless it says it is one already, and neither engine reads that on an index
    (a stalled task's moment once read every running task)."""
    silent = silent_template()
    for statement in [*(s for f in EVERY_KIND_OF_FILTER for s in filter_statements(f)), silent]:
        sql = str(statement.compile(dialect=dialect))
        assert not re.search(r"\) = 1\b", sql), sql


# -- totals past the threshold ---------------------------------------------------------------

TOTAL_FILTERS = [
    TaskFilter(),
    TaskFilter(statuses=("completed",)),
    TaskFilter(statuses=("failed", "cancelled")),
    TaskFilter(task_types=("training", "evaluation")),
    TaskFilter(task_types=("training", "evaluation", "synthesis")),
    TaskFilter(within_hours=24 * 14),
    TaskFilter(within_hours=24),
    TaskFilter(statuses=("completed",), created_after=NOW - timedelta(days=20)),
    TaskFilter(tags=("exp-7",)),
]


@pytest.mark.parametrize("seeded", ["sqlite", "postgresql", "mariadb"], indirect=True)
def test_capped_totals_are_exact_up_to_the_threshold_and_at_least_it_beyond(seeded):
    """The capped count, in one statement or member by member, against the exact count."""
    relations = set()
    with seeded.connect() as connection:
        for task_filter in TOTAL_FILTERS:
            exact = count_tasks(connection, replace(task_filter, exact_count=True), NOW)
            capped = count_tasks(connection, task_filter, NOW)
            if exact.value > TOTAL_EXACT_UP_TO:
                assert capped == Total(TOTAL_EXACT_UP_TO, "gte"), task_filter
            else:
                assert capped == exact, task_filter
            relations.add(capped.relation)
    assert relations == {"eq", "gte"}  # the filters fall on both sides of the threshold


@pytest.mark.parametrize("seeded", ["sqlite", "postgresql", "mariadb"], indirect=True)
def test_capped_facets_are_exact_up_to_the_threshold_and_at_least_it_beyond(seeded):
    """Every chip's capped count against the exact count of the selection it predicts."""
    relations = set()
    with seeded.connect() as connection:
        for task_filter in TOTAL_FILTERS:
            capped = count_facets(connection, task_filter, NOW)
            exact = count_facets(connection, replace(task_filter, exact_count=True), NOW)
            for dimension, field in (("status", "statuses"), ("task_type", "task_types")):
                for value, count in getattr(capped, dimension).items():
                    chosen = replace(task_filter, **{field: (value,)}, exact_count=True)
                    truth = count_tasks(connection, chosen, NOW).value
                    assert getattr(exact, dimension)[value] == Total(truth, "eq")
                    assert count == Total.capped(truth), (task_filter, value)
                    relations.add(count.relation)
            every = count_tasks(connection, replace(task_filter, exact_count=True), NOW)
            assert capped.total == Total.capped(every.value)
    assert relations == {"eq", "gte"}


EDGE = parse_search("edge")


@pytest.fixture(scope="module")
def at_the_threshold(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[sa.Engine]:
    """Exactly TOTAL_EXACT_UP_TO failed tasks over two tables, and one completed task, all
    tagged with the one word `edge`."""
    rng = random.Random(5)
    training = 6_000
    created = [NOW - timedelta(minutes=index) for index in range(TOTAL_EXACT_UP_TO + 1)]
    tasks = [
        make_task("training" if index < training else "evaluation", "failed", moment, rng=rng)
        for index, moment in enumerate(created[:TOTAL_EXACT_UP_TO])
    ]
    tasks.append(make_task("synthesis", "completed", created[-1], rng=rng))
    for task in tasks:
        task["tag"] = "edge"
    for url in database(request.param, tmp_path_factory):
        engine = sa.create_engine(url)
        reset_tables(engine)
        insert_tasks(engine, tasks)
        yield engine
        engine.dispose()


@pytest.mark.parametrize("at_the_threshold", ["sqlite", "postgresql", "mariadb"], indirect=True)
@pytest.mark.parametrize(
    ("task_filter", "total"),
    [
        (TaskFilter(statuses=("failed",)), Total(TOTAL_EXACT_UP_TO, "eq")),
        (TaskFilter(task_types=("training", "evaluation")), Total(TOTAL_EXACT_UP_TO, "eq")),
        (TaskFilter(), Total(TOTAL_EXACT_UP_TO, "gte")),
        (TaskFilter(statuses=("failed", "completed")), Total(TOTAL_EXACT_UP_TO, "gte")),
        (TaskFilter(statuses=("completed",)), Total(1, "eq")),
        # Searches are counted up to one past the threshold, from SQLite's index alone or
        # beside a time window from the tables.
        (TaskFilter(search=EDGE, statuses=("failed",)), Total(TOTAL_EXACT_UP_TO, "eq")),
        (TaskFilter(search=EDGE), Total(TOTAL_EXACT_UP_TO, "gte")),
        (TaskFilter(search=EDGE, statuses=("completed",)), Total(1, "eq")),
        (TaskFilter(search=EDGE, within_hours=720), Total(TOTAL_EXACT_UP_TO, "gte")),
        (
            TaskFilter(search=EDGE, statuses=("failed",), within_hours=720),
            Total(TOTAL_EXACT_UP_TO, "eq"),
        ),
    ],
)
def test_totals_turn_to_at_least_one_match_past_the_threshold(at_the_threshold, task_filter, total):
    with at_the_threshold.connect() as connection:
        assert count_tasks(connection, task_filter, NOW) == total


@pytest.mark.parametrize("at_the_threshold", ["sqlite", "postgresql", "mariadb"], indirect=True)
@pytest.mark.parametrize("search", [None, EDGE], ids=["all", "search"])
def test_facets_turn_to_at_least_one_match_past_the_threshold(at_the_threshold, search):
    """A search's chips are counted in one grouped statement on PostgreSQL and MariaDB and
    capped afterwards: the same rule as the counts that stop at the threshold."""
    with at_the_threshold.connect() as connection:
        facets = count_facets(connection, TaskFilter(search=search), NOW)
        exact = count_facets(connection, TaskFilter(search=search, exact_count=True), NOW)
    assert facets.status["failed"] == Total(TOTAL_EXACT_UP_TO, "eq")
    assert facets.status["completed"] == Total(1, "eq")
    assert facets.task_type["training"] == Total(6_000, "eq")
    assert facets.total == Total(TOTAL_EXACT_UP_TO, "gte")
    assert exact.total == Total(TOTAL_EXACT_UP_TO + 1, "eq")


@pytest.mark.parametrize("at_the_threshold", ["sqlite", "postgresql", "mariadb"], indirect=True)
@pytest.mark.parametrize(
    ("args", "total"),
    [
        ({"status": "failed"}, {"value": TOTAL_EXACT_UP_TO, "relation": "eq"}),
        ({}, {"value": TOTAL_EXACT_UP_TO, "relation": "gte"}),
        ({"count": "exact"}, {"value": TOTAL_EXACT_UP_TO + 1, "relation": "eq"}),
        ({"count": "exact", "status": "failed"}, {"value": TOTAL_EXACT_UP_TO, "relation": "eq"}),
    ],
)
def test_the_api_reports_a_total_past_the_threshold_as_at_least(at_the_threshold, args, total):
    app = make_app(at_the_threshold.url.render_as_string(hide_password=False))
    response = app.test_client().get("/tasks", query_string={"limit": 5, **args})
    with app.app_context():
        app.extensions["sqlalchemy"].engine.dispose()
    assert response.get_json()["total"] == total


# -- the metrics' task gauges ----------------------------------------------------------------


def gauge_statements() -> list[Any]:
    """The two statements of a metrics scrape, with their values."""
    shape, values = shape_of(TaskFilter(within_hours=1), NOW)
    return [
        facet_template(shape).params(values),
        silent_template().params({"silent_since": NOW - timedelta(hours=1)}),
    ]


@pytest.mark.parametrize("seeded", ["sqlite"], indirect=True)
def test_sqlite_task_gauges_read_ranges_of_indexes_that_lead_with_the_status(seeded):
    for statement in gauge_statements():
        plan = sqlite_plan(seeded, sql_of(seeded, statement))
        reads = [step for step in plan if step.startswith(("SEARCH", "SCAN"))]
        assert reads
        assert all(
            re.search(r"^SEARCH \w+ USING .*INDEX ix_\w+_status_\w+ \(status=", step)
            for step in reads
        ), reads


@pytest.mark.parametrize("seeded", ["postgresql"], indirect=True)
def test_postgresql_task_gauges_read_ranges_of_indexes_that_lead_with_the_status(seeded):
    for statement in gauge_statements():
        plan = postgresql_generic_plan(seeded, statement)
        indexes = [node.get("Index Name", "") for node, _ in nodes(plan)]
        scans = table_scans(plan)
        assert scans
        assert not any(node["Node Type"] == "Seq Scan" for node, _ in scans)
        assert sum("_status_" in name for name in indexes) == len(scans)


@pytest.mark.parametrize("seeded", ["mariadb"], indirect=True)
def test_mariadb_task_gauges_read_ranges_of_indexes_that_lead_with_the_status(seeded):
    for statement in gauge_statements():
        tables = mariadb_tables(seeded, sql_of(seeded, statement))
        assert tables
        assert all(table["access_type"] in {"ref", "range"} for table in tables)
        assert all("_status_" in table["key"] for table in tables)


# -- stalled tasks ---------------------------------------------------------------------------

STALLED = TaskFilter(stalled=True)


def stalled_statements(page_shapes: tuple[bool, ...] = (True, False)) -> list[Any]:
    """A first page of stalled tasks (merged members, limited ones, or both) and their
    counts, with their values."""
    page_shape, page_values_ = page_shape_of(STALLED, NOW)
    shape, values = shape_of(STALLED, NOW)
    return [
        *(
            page_template(page_shape, merged).params(page_values_ | page_values(STALLED))
            for merged in page_shapes
        ),
        *(t.params(values | {"cap": 10_001}) for t in capped_count_templates(shape, True)),
        *(t.params(values | {"cap": 10_001}) for t in capped_count_templates(shape, False)),
    ]


@pytest.mark.parametrize("seeded", ["sqlite"], indirect=True)
def test_sqlite_stalled_tasks_are_read_from_the_running_range_of_a_status_index(seeded):
    for statement in stalled_statements():
        plan = sqlite_plan(seeded, sql_of(seeded, statement))
        reads = [step for step in plan if step.startswith(("SEARCH", "SCAN")) and "_task" in step]
        assert reads, plan
        # A range of the index, not every running task: the moment bounds it too.
        bounded = r"INDEX ix_\w+_status_\w+ \(status=\? AND (updated|created)_at<\?\)"
        assert all(re.search(bounded, step) for step in reads), reads


@pytest.mark.parametrize("seeded", ["sqlite", "postgresql"], indirect=True)
def test_stalled_tasks_of_a_tag_are_counted_on_the_tags_running_range(seeded):
    """Not the (status, updated_at) range of every tag's stalled tasks, each row read for
    its tag: the tag's running tasks created before the limit (see `tag_walk_bounded`)."""
    task_filter = TaskFilter(stalled=True, tags=("exp-7",))
    shape, values = shape_of(task_filter, NOW)
    (template,) = capped_count_templates(shape, True)
    statement = template.params(values | {"cap": 10_001})
    if seeded.dialect.name == "sqlite":
        plan = sqlite_plan(seeded, sql_of(seeded, statement))
        reads = [step for step in plan if step.startswith(("SEARCH", "SCAN")) and "_task" in step]
        ranges = [re.search(r"INDEX (ix_\w+) \((.*)\)", step).groups() for step in reads]
    else:
        plan = postgresql_generic_plan(seeded, statement)
        ranges = [
            (node["Index Name"], node.get("Index Cond", ""))
            for node, _ in nodes(plan)
            if "Index Name" in node
        ]
    # Each table twice: the probe past the threshold, and the exact count below it.
    assert len(ranges) == 2 * len(MODEL_FOR_TYPE), ranges
    assert all(index.endswith("_tag_status") and "created_at" in bounds for index, bounds in ranges)


@pytest.mark.parametrize("seeded", ["postgresql"], indirect=True)
def test_postgresql_stalled_tasks_are_read_from_the_running_range_of_a_status_index(seeded):
    # PostgreSQL's pages are the limited shape (see engine_shape); the merged one is SQLite's.
    for statement in stalled_statements(page_shapes=(False,)):
        plan = postgresql_generic_plan(seeded, statement)
        scans = table_scans(plan)
        assert scans
        assert not any(node["Node Type"] == "Seq Scan" for node, _ in scans)
        # An index scan names its index; a bitmap heap scan's child does.
        indexes = [node["Index Name"] for node, _ in nodes(plan) if "Index Name" in node]
        assert len(indexes) == len(scans)
        assert all("_status_" in index for index in indexes), indexes


@pytest.mark.parametrize("seeded", ["mariadb"], indirect=True)
def test_mariadb_stalled_tasks_are_read_from_the_running_range_of_a_status_index(seeded):
    for statement in stalled_statements():
        tables = [
            t
            for t in mariadb_tables(seeded, sql_of(seeded, statement))
            if "_task" in t["table_name"]
        ]
        assert tables
        # A range bounded by the moment as well, not `ref`: every running task of the table.
        assert all(table["access_type"] == "range" for table in tables), tables
        assert all("_status_" in table["key"] for table in tables)


@pytest.mark.parametrize("seeded", ["sqlite", "postgresql", "mariadb"], indirect=True)
def test_stalled_tasks_created_after_a_moment_are_counted_from_the_index_alone(seeded):
    """The stalled chip of a "Created between…" view: the (status, updated_at) range holds
    created_at too (revision 0014), so no running task is looked up in its table."""
    task_filter = TaskFilter(stalled=True, created_after=NOW - timedelta(days=3))
    shape, values = shape_of(task_filter, NOW)
    one_statement = seeded.dialect.name != "mariadb"
    templates = capped_count_templates(shape, one_statement)
    statements = [t.params(values | {"cap": 10_001}) for t in templates]
    indexes = []
    for statement in statements:
        if seeded.dialect.name == "sqlite":
            plan = sqlite_plan(seeded, sql_of(seeded, statement))
            reads = [step for step in plan if "_task" in step]
            assert all("USING COVERING INDEX" in step for step in reads), reads
            indexes += [re.search(r"INDEX (ix_\w+)", step).group(1) for step in reads]
        elif seeded.dialect.name == "postgresql":
            scans = table_scans(postgresql_generic_plan(seeded, statement))
            assert all(node["Node Type"] == "Index Only Scan" for node, _ in scans), scans
            indexes += [node["Index Name"] for node, _ in scans]
        else:
            tables = mariadb_tables(seeded, sql_of(seeded, statement))
            assert all(table.get("using_index") is True for table in tables), tables
            indexes += [table["key"] for table in tables]
    assert indexes and all(index.endswith("_status_updated") for index in indexes), indexes


@pytest.mark.parametrize("seeded", ["sqlite", "postgresql", "mariadb"], indirect=True)
def test_stalled_tasks_of_finished_statuses_are_counted_without_reading_a_row(seeded):
    """Only a running task stalls: the facet of a finished status, or a status filter
    without running, is a constant false that each engine answers from its plan alone."""
    task_filter = TaskFilter(stalled=True, statuses=("completed",), within_hours=24)
    shape, values = shape_of(task_filter, NOW)
    with seeded.connect() as connection:
        for template in capped_count_templates(shape, True):
            sql = template_sql(seeded, template, values | {"cap": 10_001})
            assert sql.count("false") + sql.count("0 = 1") >= len(MODEL_FOR_TYPE), sql
            assert connection.exec_driver_sql(sql).scalar_one() == 0
    if seeded.dialect.name == "postgresql":
        plan = postgresql_plan(seeded, sql)
        filters = [node.get("One-Time Filter") for node, _ in nodes(plan)]
        assert filters.count("false") >= len(MODEL_FOR_TYPE), plan


@pytest.mark.parametrize("seeded", ["postgresql"], indirect=True)
def test_postgresql_tests_an_actors_many_tasks_per_row_of_its_walk(seeded):
    """Where an actor's tasks are too many to list, a page walks created_at and probes
    task_event per row: a join would read every one of the actor's tasks and sort them."""
    many = ActorTasks("evaluation-module", ())  # no table listed: each tests per row
    task_filter = TaskFilter(actor="evaluation-module", actor_tasks=many)
    shape, values = page_shape_of(task_filter, NOW)
    statement = page_template(shape, False).params(values | page_values(task_filter))
    plan = postgresql_generic_plan(seeded, statement)
    kinds = [node["Node Type"] for node, _ in nodes(plan)]
    probes = [node for node, _ in nodes(plan) if node.get("Subplan Name", "").startswith("SubPlan")]
    assert not any("Join" in kind or kind in {"Hash", "HashAggregate"} for kind in kinds), kinds
    assert len(probes) == len(MODEL_FOR_TYPE)


@pytest.fixture
def gathered_actor(seeded: sa.Engine) -> Iterator[TaskFilter]:
    """An actor who acted on one in a hundred of the seeded training tasks, as a person's
    2,000 cancelled runs are of a table at a million tasks, read as too many to list and too
    few to walk for (see app/query/actors.py); its events are gone after the test."""
    with seeded.begin() as connection:
        ids = connection.execute(sa.select(MODEL_FOR_TYPE["training"].id).limit(40)).scalars()
        events = [
            {"task_type": "training", "task_id": i, "kind": "cancelled", "actor": "ops", "at": NOW}
            for i in ids
        ]
        connection.execute(sa.insert(TaskEvent), events)
    refresh_statistics(seeded)
    others = tuple((task_type, ()) for task_type in MODEL_FOR_TYPE if task_type != "training")
    yield TaskFilter(actor="ops", actor_tasks=ActorTasks("ops", others, gathered=("training",)))
    with seeded.begin() as connection:
        connection.execute(sa.delete(TaskEvent).where(TaskEvent.actor == "ops"))
    refresh_statistics(seeded)


def training_reads(engine: sa.Engine, statement: Any) -> list[str]:
    """How each engine's plan of the statement reads training_task: the index it uses."""
    if engine.dialect.name == "sqlite":
        plan = sqlite_plan(engine, sql_of(engine, statement))
        return [step for step in plan if "training_task" in step]
    if engine.dialect.name == "postgresql":
        scans = table_scans(postgresql_generic_plan(engine, statement))
        named = [node for node, _ in scans if node["Relation Name"] == "training_task"]
        return [f"{node['Node Type']} {node.get('Index Name')}" for node in named]
    tables = mariadb_tables(engine, sql_of(engine, statement))
    return [
        f"{t['access_type']} {t.get('key')}" for t in tables if t["table_name"] == "training_task"
    ]


@pytest.mark.parametrize("seeded", ["sqlite", "postgresql", "mariadb"], indirect=True)
@pytest.mark.parametrize("narrowed", [{}, {"within_hours": 48}])
def test_an_actors_gathered_tasks_are_read_by_primary_key(seeded, gathered_actor, narrowed):
    """The page, the chips and the chart of an actor's few thousand tasks of a table read
    them by primary key, beside a time window too: planning without the actor, PostgreSQL
    walked the whole key beside its ids, and SQLite and PostgreSQL read the chart's week
    of the table (see `NotIndexed`)."""
    task_filter = replace(gathered_actor, **narrowed)
    page_shape, values = page_shape_of(task_filter, NOW)
    count_shape, _ = shape_of(task_filter, NOW)
    values |= page_values(task_filter) | {"chart_lower": NOW - timedelta(days=7)}
    values |= {"chart_upper": NOW}
    statements = [
        page_template(page_shape, merged=True),
        page_template(page_shape, merged=False),
        gathered_facet_template(count_shape),
        grouped_template(count_shape, 3600),
    ]
    by_key = ("(id=?)", "Index Scan pk_training_task", "eq_ref PRIMARY")
    if seeded.dialect.name == "postgresql":
        # With 4,000 rows a table, a plain scan beside the 40 ids is cheaper than reading
        # them by key, and PostgreSQL's plans for the page and the chips follow what its
        # statistics say of the actor; the chart's must not follow its guess of a week.
        statements = statements[-1:]
    failing = []
    for number, statement in enumerate(statements):
        reads = training_reads(seeded, statement.params(values))
        if not reads or not all(any(key in read for key in by_key) for read in reads):
            failing.append((number, reads))
    assert not failing


def table_reads(engine: sa.Engine, statement: Any, table: str) -> list[str]:
    """How each engine's plan of the statement reads `table`: the index it uses, and on
    SQLite whether it sorts."""
    if engine.dialect.name == "sqlite":
        plan = sqlite_plan(engine, sql_of(engine, statement))
        return [step for step in plan if table in step or "TEMP B-TREE" in step]
    if engine.dialect.name == "postgresql":
        scans = table_scans(postgresql_generic_plan(engine, statement))
        named = [node for node, _ in scans if node["Relation Name"] == table]
        return [f"{node['Node Type']} {node.get('Index Name')}" for node in named]
    tables = mariadb_tables(engine, sql_of(engine, statement))
    return [f"{t['access_type']} {t.get('key')}" for t in tables if t["table_name"] == table]


@pytest.mark.parametrize("seeded", ["sqlite", "postgresql", "mariadb"], indirect=True)
def test_an_actors_gathered_page_walks_its_rows_of_actor_task(seeded, gathered_actor):
    """A page of an actor's few thousand tasks of a table walks the actor's range of
    actor_task's key in the listing's order, not every one of those tasks sorted: SQLite
    merges its members as they come (its other page shape sorts each member's rows, as for
    every table)."""
    page_shape, values = page_shape_of(gathered_actor, NOW)
    values |= page_values(gathered_actor)
    walked = (
        "SEARCH actor_task USING COVERING INDEX sqlite_autoindex_actor_task_1 "
        "(actor=? AND task_type=?)",
        "Index Only Scan actor_task_pkey",
        "ref PRIMARY",
    )
    for merged in (True, False):
        statement = page_template(page_shape, merged).params(values)
        reads = table_reads(seeded, statement, "actor_task")
        if not merged:
            reads = [read for read in reads if "TEMP B-TREE" not in read]
        assert reads and all(read in walked for read in reads), (merged, reads)


@pytest.mark.parametrize("seeded", ["postgresql"], indirect=True)
def test_postgresql_connections_plan_once_and_compile_nothing(seeded):
    """At ten million tasks a capped count's never-run exact branch is estimated past
    `jit_above_cost`: compiling it cost 20 to 60 ms a count (see `plan_once`)."""
    app = make_app(seeded.url.render_as_string(hide_password=False))
    with app.app_context(), db.engine.connect() as connection:
        settings = {
            name: connection.exec_driver_sql(f"SHOW {name}").scalar_one()
            for name in ("jit", "plan_cache_mode")
        }
        db.engine.dispose()
    assert settings == {"jit": "off", "plan_cache_mode": "force_generic_plan"}


# A stalled task was created before its type's limit ago: a first page of them starts its
# created_at walk there, rather than at the newest running task (app/query/pages.py).


@pytest.mark.parametrize("seeded", ["sqlite"], indirect=True)
def test_sqlite_stalled_first_page_walks_created_at_from_the_limit_without_sorting(seeded):
    plan = sqlite_plan(seeded, sql_of(seeded, page_statement(STALLED, NOW, dialect="sqlite")))
    searches = [step for step in plan if step.startswith("SEARCH")]
    assert len(searches) == 5
    assert all(
        "_status_created" in step and "(status=? AND created_at<?)" in step for step in searches
    ), plan
    assert not any("TEMP B-TREE" in step for step in plan)


@pytest.mark.parametrize("seeded", ["postgresql"], indirect=True)
def test_postgresql_stalled_first_page_walks_created_at_from_the_limit(seeded):
    statement = page_statement(STALLED, NOW, dialect="postgresql")
    scans = table_scans(postgresql_generic_plan(seeded, statement))
    assert len(scans) == 5
    for node, above in scans:
        assert node["Index Name"].endswith("_status_created")
        assert "created_at <" in node["Index Cond"]
        assert "Limit" in above and "Sort" not in below_nearest_limit(above)


@pytest.mark.parametrize("seeded", ["mariadb"], indirect=True)
def test_mariadb_stalled_first_page_reads_about_a_page_of_entries_per_table(seeded):
    """Demo tasks are heard from last when they start, minutes after they were created: the
    walk from the limit down finds a stalled task at nearly every entry."""
    shape, values = page_shape_of(STALLED, NOW)
    sql = template_sql(seeded, keys_template(shape), values | page_values(STALLED))
    tables = [t for t in mariadb_tables(seeded, sql) if "_task" in t["table_name"]]
    assert len(tables) == 5
    for table in tables:
        assert table["key"].endswith("_status_created") and table["access_type"] == "range"
        assert table["r_rows"] <= 2 * (STALLED.limit + 1), table


# -- the hourly summary ----------------------------------------------------------------------


def hourly_statement() -> Any:
    """A week's chart of two statuses as the summary answers it: 3-hour buckets."""
    shape, _ = shape_of(TaskFilter(statuses=("failed", "completed")), NOW)
    first = (NOW - timedelta(days=7) - EPOCH) // timedelta(hours=1)
    template = hourly_template(shape.task_types, shape.statuses, 3)
    return template.params({"first_hour": first, "end_hour": first + 168})


@pytest.mark.parametrize("seeded", ["sqlite"], indirect=True)
def test_sqlite_reads_a_week_of_the_summary_as_ranges_of_its_key(seeded):
    plan = sqlite_plan(seeded, sql_of(seeded, hourly_statement()))
    reads = [step for step in plan if step.startswith(("SEARCH", "SCAN"))]
    assert reads == [
        "SEARCH task_hourly_count USING INDEX sqlite_autoindex_task_hourly_count_1 "
        "(task_type=? AND status=? AND hour>? AND hour<?)"
    ]


@pytest.mark.parametrize("seeded", ["postgresql"], indirect=True)
def test_postgresql_reads_a_week_of_the_summary_as_ranges_of_its_key(seeded):
    plan = postgresql_generic_plan(seeded, hourly_statement())
    scans = table_scans(plan)
    assert [(node["Node Type"], node["Index Name"]) for node, _ in scans] == [
        ("Index Scan", "task_hourly_count_pkey")
    ]
    assert "hour >= " in scans[0][0]["Index Cond"]


@pytest.mark.parametrize("seeded", ["mariadb"], indirect=True)
def test_mariadb_reads_a_week_of_the_summary_as_ranges_of_its_key(seeded):
    tables = mariadb_tables(seeded, sql_of(seeded, hourly_statement()))
    assert [(table["access_type"], table["key"]) for table in tables] == [("range", "PRIMARY")]


# -- searches on SQLite: the index first -----------------------------------------------------


def looked_up(engine: sa.Engine, task_filter: TaskFilter) -> TaskFilter:
    with engine.connect() as connection:
        return with_lookups(connection, task_filter)


@pytest.mark.parametrize("seeded", ["sqlite"], indirect=True)
@pytest.mark.parametrize("statuses", [(), ("failed",), ("queued", "running")])
def test_sqlite_counts_a_search_by_status_in_its_index_alone(seeded, statuses):
    """Words, types and statuses are all in the FTS5 index: no task table is read, nor the
    index of a table where the lookup found no match."""
    task_filter = looked_up(seeded, TaskFilter(search=parse_search("llama"), statuses=statuses))
    shape, values = shape_of(task_filter, NOW)
    found = tables_with_matches(shape)
    indexes = {t: f"{MODEL_FOR_TYPE[t].__tablename__}_search" for t in shape.task_types}
    assert found and set(found) < set(shape.task_types)
    for template in capped_count_templates(shape, True, index="fts5"):
        plan = sqlite_plan(seeded, template_sql(seeded, template, values | {"cap": 10_001}))
        read = {step.split()[1] for step in plan if step.startswith(("SCAN", "SEARCH"))}
        assert {indexes[t] for t in found} == read & set(indexes.values()), plan
        assert not read & {model.__tablename__ for model in MODEL_FOR_TYPE.values()}, plan


@pytest.mark.parametrize("seeded", ["postgresql"], indirect=True)
@pytest.mark.parametrize("q", ["llama", "llama mmlu", '"support tickets"'])
@pytest.mark.parametrize("statuses", [(), ("failed",), ("queued", "running")])
def test_postgresql_counts_a_search_of_words_in_its_words_tables_alone(seeded, q, statuses):
    """Words, phrases of two words (a pair of neighbours, revision 0013), types and statuses
    are all in the words tables (revision 0011): each count is an index-only scan of their
    (word, status, created_at, id) keys, no task table is read."""
    task_filter = TaskFilter(search=parse_search(q), statuses=statuses)
    shape, values = shape_of(task_filter, NOW)
    for template in capped_count_templates(shape, True, index="words"):
        plan = postgresql_plan(seeded, template_sql(seeded, template, values | {"cap": 10_001}))
        scans = [node for node, _ in nodes(plan) if "Relation Name" in node]
        assert {node["Relation Name"] for node in scans} == {
            f"{model.__tablename__}_words" for model in MODEL_FOR_TYPE.values()
        }
        assert {node["Node Type"] for node in scans} == {"Index Only Scan"}, plan


@pytest.mark.parametrize("seeded", ["mariadb"], indirect=True)
@pytest.mark.parametrize("q", ["llama", "llama mmlu", '"support tickets"'])
@pytest.mark.parametrize("statuses", [(), ("failed",)])
def test_mariadb_counts_a_search_in_its_words_tables_alone(seeded, q, statuses):
    """Words, and a phrase of two words as one pair of neighbours, with types and statuses
    are all in MariaDB's words tables (revision 0012): each count reads a range of their
    keys, and no task table."""
    task_filter = looked_up(seeded, TaskFilter(search=parse_search(q), statuses=statuses))
    shape, values = shape_of(task_filter, NOW)
    task_tables = {model.__tablename__ for model in MODEL_FOR_TYPE.values()}
    read = []
    for template in capped_count_templates(shape, False, index="words"):
        read += mariadb_tables(seeded, template_sql(seeded, template, values | {"cap": 10_001}))
    assert read
    assert not {table["table_name"] for table in read} & task_tables, read
    assert {table["key"] for table in read} == {"PRIMARY"}


@pytest.mark.parametrize("seeded", ["mariadb"], indirect=True)
def test_mariadb_walks_created_at_testing_each_row_or_gathers_few_matches(seeded):
    """A table where many tasks hold the words is walked in created_at order, each row one
    step into the words table's key; one where few do hands them over from a range of that
    key (here the planner then walks created_at too, looking each row up among them). Both
    give the same page."""
    unlooked = TaskFilter(search=parse_search("llama"))
    task_filter = looked_up(seeded, unlooked)
    reach = task_filter.search_reach
    assert reach.probed and "training" in reach.gathered
    walked = replace(unlooked, search_reach=replace(reach, gathered=()))
    with seeded.connect() as connection:
        assert fetch_page(connection, walked, NOW) == fetch_page(connection, task_filter, NOW)

    def training_reads(page_filter: TaskFilter) -> list[tuple[str, str, str | None]]:
        shape, values = page_shape_of(page_filter, NOW)
        sql = template_sql(seeded, keys_template(shape), values | page_values(page_filter))
        return [
            (table["table_name"], table["access_type"], table.get("key"))
            for table in mariadb_tables(seeded, sql)
            if table["table_name"].startswith("training")
        ]

    assert training_reads(walked) == [
        ("training_task", "index", "ix_training_task_created"),
        ("training_task_words", "eq_ref", "PRIMARY"),
    ]
    assert ("training_task_words", "ref", "PRIMARY") in training_reads(task_filter)


def sqlite_steps(engine: sa.Engine, task_filter: TaskFilter) -> tuple[int, list[Any]]:
    """The page's rows, and how many hundreds of virtual machine steps SQLite took for them."""
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    with engine.connect() as connection:
        raw = connection.connection.driver_connection
        raw.set_progress_handler(count, 100)
        try:
            rows = fetch_page(connection, task_filter, NOW)
        finally:
            raw.set_progress_handler(None, 100)
    return steps, rows


@pytest.mark.parametrize("seeded", ["sqlite"], indirect=True)
def test_sqlite_reads_no_table_where_no_task_has_the_words(seeded):
    """SQLite walks a table to its end testing a condition that names none of its rows:
    the lookup tells which tables have no match, and their members read nothing."""
    unlooked = TaskFilter(search=parse_search("humaneval"))
    task_filter = looked_up(seeded, unlooked)
    assert set(task_filter.search_reach.absent) == set(MODEL_FOR_TYPE) - {"evaluation"}
    sql = sql_of(seeded, page_statement(task_filter, NOW, dialect="sqlite"))
    assert sql.count("0 = 1") == len(MODEL_FOR_TYPE) - 1, sql
    steps, rows = sqlite_steps(seeded, task_filter)
    walked_all, same_rows = sqlite_steps(
        seeded, replace(unlooked, search_reach=SearchReach(unlooked.search.text, ()))
    )
    assert rows == same_rows and {row.task_type for row in rows} == {"evaluation"}
    assert steps * 3 < walked_all, (steps, walked_all)


# A search's chart on SQLite: its matches between two rowids, from the search index alone;
# the exceptions by their created_at (app/query/created_order.py).


@pytest.mark.parametrize("seeded", ["sqlite"], indirect=True)
def test_sqlite_search_chart_reads_the_index_between_rowids_and_the_exceptions_by_time(seeded):
    task_filter = TaskFilter(search=parse_search("llama"))
    shape, values = shape_of(task_filter, NOW)
    edges = {f"edge_{index}": NOW - timedelta(hours=3 * (4 - index)) for index in range(5)}
    firsts = {f"first_{t}_{index}": 100 * index for t in shape.task_types for index in range(5)}
    window = {"chart_lower": NOW - timedelta(hours=12), "chart_upper": NOW}
    rowid_plan = sqlite_plan(
        seeded, template_sql(seeded, rowid_bars_template(shape, 4), values | firsts)
    )
    index_reads = [step for step in rowid_plan if "VIRTUAL TABLE" in step]
    assert len(index_reads) == 25 and all(":M" in step and "><" in step for step in index_reads)
    assert not any(
        f"{model.__tablename__} " in f"{step} "
        for model in MODEL_FOR_TYPE.values()
        for step in rowid_plan
    )
    kept_plan = sqlite_plan(
        seeded, template_sql(seeded, out_of_order_template(shape, 10800), values | window)
    )
    kept_reads = [step for step in kept_plan if "_out_of_order" in step]
    assert len(kept_reads) == 5 and all(
        "created_at>? AND created_at<?" in step.replace("=", "") for step in kept_reads
    ), kept_plan
    firsts_plan = sqlite_plan(
        seeded, template_sql(seeded, first_rowids_template(shape.task_types, 4), edges)
    )
    scans = [step for step in firsts_plan if step.startswith("SCAN") and "CONSTANT ROW" not in step]
    assert not scans and sum("USING COVERING INDEX" in step for step in firsts_plan) == 50


# A search's chart on PostgreSQL and MariaDB: a range of each words table's key per status,
# the index alone (revision 0016).


@pytest.mark.parametrize("seeded", ["postgresql", "mariadb"], indirect=True)
@pytest.mark.parametrize("q", ["llama", "llama mmlu", '"support tickets"'])
def test_a_search_chart_reads_the_words_tables_key_alone(seeded, q):
    task_filter = TaskFilter(search=parse_search(q))
    shape, values = shape_of(task_filter, NOW)
    values |= {"chart_lower": NOW - timedelta(days=7), "chart_upper": NOW}
    statement = words_template(shape, 3 * 3600).params(values)
    if seeded.dialect.name == "postgresql":
        scans = table_scans(postgresql_generic_plan(seeded, statement))
        reads = {
            (node["Relation Name"], node["Node Type"], node.get("Index Name")) for node, _ in scans
        }
        assert reads == {
            (f"{model.__tablename__}_words", "Index Only Scan", f"pk_{model.__tablename__}_words")
            for model in MODEL_FOR_TYPE.values()
        }
    else:
        tables = mariadb_tables(seeded, sql_of(seeded, statement))
        assert tables and {t["table_name"] for t in tables} <= {"word_0", "word_1"}
        assert all(t["key"] == "PRIMARY" and t.get("using_index") for t in tables), tables
