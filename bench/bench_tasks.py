"""Time `/tasks` and `/tasks/counts` at one and ten million tasks, and how each case grows.

    .venv/bin/python bench/bench_tasks.py                      # SQLite, 1,000,000 tasks
    .venv/bin/python bench/bench_tasks.py --tasks 10000000 \\
        --postgresql postgresql://postgres@127.0.0.1:5432/vt_bench \\
        --mariadb 'mariadb://root@127.0.0.1:3306/vt_bench?charset=utf8mb4'

`--tasks N` times every tenfold size from `--from` (1,000,000) up to N, each in a database of
its own (vt_bench_1m, vt_bench_10m, …), and prints the growth of every case from the smallest
size to the largest: each case is timed at every size, one right after the other, so that the
machine's drift over a run does not pass for growth. Each database is seeded once with its
demo tasks (a fixed random seed and a fixed clock, so the data and the time window are the
same on every run; loaded in bulk, see app/bulk.py) and reused while it holds exactly those
tasks and its seeding finished, upgraded to the newest revision as `init-db` would;
`--reseed` starts afresh.

For every filter case the script times, through the Flask test client: the first page, page 50
by offset (offset 980, limit 20), a page DEPTH rows deep by cursor (or as deep as the matches
go), the last page by cursor (where a walk that does not know where its matches end reads to
the end of every table), and `/tasks/counts`. On the same connection it times the SQL alone:
the module's first page (`fetch_page`, the statements `list_tasks` runs for a page, without
its total) against the baseline's, and the module's cursor page against the baseline at the
same depth by offset; both must return the same ids. The baseline is the earlier
implementation's shape: status and time filters inside each table's branch; the tag filter,
ORDER BY, LIMIT and OFFSET outside one UNION ALL subquery. It prints medians of warm runs, in
milliseconds, as one markdown table per engine, then the worst case of each kind beside its
target. Each table says how fast the machine was at the time (a plain Python loop and an
empty statement's round trip): on a shared machine that drifts, and every number with it.
"""

from __future__ import annotations

import argparse
import itertools
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.datastructures import MultiDict

from app import create_app
from app.bulk import actor_tasks_made_after
from app.cache import MemoryCache
from app.config import normalise_database_url
from app.demo import seed_demo, type_fields
from app.filters import Cursor, TaskFilter, format_timestamp, parse_filter, sign_cursor
from app.models import ACTIVE_STATUSES, MODEL_FOR_TYPE, ApiToken, Base, Role, TaskEvent, db
from app.query import count_tasks, fetch_page, iter_tasks, list_columns
from app.recorder import Recorder
from app.schema import compare_with, drop_schema, refresh_statistics, upgrade_database
from app.timeouts import limit_statements
from app.tokens import create_token

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SQLITE = ROOT / "instance" / "vt_bench.sqlite3"
# The bench's clock stands still, so a rerun next week measures the same time window.
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
SEED = 20261128
SECRET_KEY = "bench-secret"
BASELINE_STATEMENT_TIMEOUT_MS = 600_000
PAGE = 20
# Someone who asked for PERSON_TASKS training runs to stop, at every size.
PERSON = "ops@example.com"
PERSON_TASKS = 2_000
OFFSET_PAGE_50 = 980

Args = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Case:
    """One filter, as the query string a client would send."""

    name: str
    args: Args


@dataclass(frozen=True)
class ViewCase:
    """A request for the chart or the errors (JSON, or the page's chart and top errors
    fragment at /insights), and its target on SQLite and PostgreSQL."""

    name: str
    path: str
    args: Args
    target_ms: float | None


CASES = (
    Case("no filter", ()),
    Case("task_type", (("task_type", "training"),)),
    Case("two task types", (("task_type", "training"), ("task_type", "evaluation"))),
    Case("status", (("status", "failed"),)),
    Case("two statuses", (("status", "failed"), ("status", "cancelled"))),
    Case("within_hours=24", (("within_hours", "24"),)),
    # No task created a week ago is active or ended in the last hour: nothing matches, and
    # a walk that cannot tell reads every older task before it knows.
    Case(
        "1 h, created a week ago",
        (("within_hours", "1"), ("created_before", format_timestamp(NOW - timedelta(days=7)))),
    ),
    Case("created_after", (("created_after", format_timestamp(NOW - timedelta(days=3))),)),
    Case("created_before", (("created_before", format_timestamp(NOW - timedelta(days=14))),)),
    Case(
        "created range",
        (
            ("created_after", format_timestamp(NOW - timedelta(days=20))),
            ("created_before", format_timestamp(NOW - timedelta(days=5))),
        ),
    ),
    Case("tag", (("tag", "exp-7"),)),
    Case("two tags", (("tag", "exp-7"), ("tag", "nightly"))),
    Case("completed, 24 h", (("status", "completed"), ("within_hours", "24"))),
    Case(
        "training, failed, 1 week",
        (("task_type", "training"), ("status", "failed"), ("within_hours", "168")),
    ),
    # Running tasks not heard from for longer than their type's limit.
    Case("stalled", (("stalled", "true"),)),
    Case("stalled, training", (("task_type", "training"), ("stalled", "true"))),
    # Tasks with an event by someone: every evaluation (its module wrote their events),
    # 2,000 training runs a person asked to stop (too many to list, read by key), and no
    # task at all (nobody of that name acted).
    Case("actor, a module", (("actor", "evaluation-module"),)),
    Case("actor, a person", (("actor", PERSON),)),
    Case("actor, nobody", (("actor", "nobody@example.com"),)),
    # Search: a word many tasks have, a rare one, a phrase, an error's words, an id's start.
    Case("q=llama", (("q", "llama"),)),
    Case("q=humaneval", (("q", "humaneval"),)),
    Case('q="support tickets"', (("q", '"support tickets"'),)),
    Case("q=cuda memory, failed", (("q", "cuda memory"), ("status", "failed"))),
    Case("q=id prefix", (("q", "3f2a9b1c"),)),
)

# The chart and the errors panel: each a request through the client, its target (ms) on
# SQLite and PostgreSQL. A week's chart reads the week's hourly counts, whatever the table.
WEEK_AGO = format_timestamp(NOW - timedelta(days=7))
VIEW_CASES = (
    ViewCase("histogram, last 7 days", "/tasks/histogram", (), 40),
    ViewCase(
        "histogram, created in 7 days",
        "/tasks/histogram",
        (("created_after", WEEK_AGO), ("created_before", format_timestamp(NOW))),
        40,
    ),
    # Its ends inside hours: those two part hours are counted from the tables.
    ViewCase(
        "histogram, created in 7 days, ends inside hours",
        "/tasks/histogram",
        (
            ("created_after", format_timestamp(NOW - timedelta(days=7, minutes=-37))),
            ("created_before", format_timestamp(NOW - timedelta(minutes=23))),
        ),
        40,
    ),
    # A search's chart: a word a sixth of the tasks hold, a phrase, and a word beside a
    # status, each over the page's default week, read from the search index.
    ViewCase("histogram, q=llama, last 7 days", "/tasks/histogram", (("q", "llama"),), 40),
    ViewCase(
        'histogram, q="support tickets", last 7 days',
        "/tasks/histogram",
        (("q", '"support tickets"'),),
        40,
    ),
    ViewCase(
        "histogram, q=cuda memory, failed, last 7 days",
        "/tasks/histogram",
        (("q", "cuda memory"), ("status", "failed")),
        40,
    ),
    ViewCase(
        "histogram, training, 24 h",
        "/tasks/histogram",
        (("task_type", "training"), ("within_hours", "24")),
        None,
    ),
    ViewCase("errors, every failed task", "/tasks/errors", (), None),
    ViewCase("errors, created in 7 days", "/tasks/errors", (("created_after", WEEK_AGO),), None),
    # What a live page loads right after each swapped-in results region: chart and errors.
    ViewCase("page chart + errors fragment, no filter", "/insights", (), None),
    ViewCase(
        "page chart + errors fragment, failed, 7 days",
        "/insights",
        (("status", "failed"), ("within_hours", "168")),
        None,
    ),
)
RATIO_A_CASE = "completed, 24 h"
RATIO_B_CASE = "no filter"

# Targets per engine at any size up to 10,000,000 tasks: first page, cursor, offset 1,000,
# counts, and the page's results fragment (ms).
TARGETS: dict[str, tuple[float, float, float, float, float]] = {
    "sqlite": (3, 3, 15, 15, 30),
    "postgresql": (5, 5, 15, 20, 40),
    "mariadb": (10, 10, 30, 40, 80),
}
# A live refresh of a region that has not changed, answered 304, on every engine (ms).
REFRESH_TARGET = 5
# Targets of the search cases on every engine: first page and counts (ms).
SEARCH_TARGETS = (20, 60)
# How much slower a case may be at the largest size than at the smallest (engine: first and
# cursor pages, counts); None: reported, no target.
GROWTH_TARGETS: dict[str, tuple[float | None, float | None]] = {
    "sqlite": (1.3, 1.5),
    "postgresql": (1.3, 1.5),
    "mariadb": (None, None),
}
# How long one statement writing the events of a table may run, at ten million tasks.
SEEDING_LIMIT_MS = 3_600_000
# Sizes are timed from here up to --tasks, by powers of ten.
SMALLEST_SIZE = 1_000_000


@dataclass(frozen=True)
class Timing:
    """How many warm runs make one median; statements slower than a second get fewer.

    Warm means as on a server that has answered the same request a few times: its data
    is in memory, and PostgreSQL has prepared the statement (psycopg does so at the fifth
    run on a connection) and planned it once for every later run.
    """

    runs: int
    warmups: int
    slow_runs: int = 3
    slow_seconds: float = 1.0

    def median_ms(self, action: Callable[[], object]) -> float:
        """Run `action` warmups + runs times; the median of the timed runs in ms."""
        runs, warmups = self.runs, self.warmups
        if warmups:
            start = time.perf_counter()
            action()
            if time.perf_counter() - start > self.slow_seconds:
                runs, warmups = min(runs, self.slow_runs), 1
        for _ in range(warmups - 1):
            action()
        samples = []
        for _ in range(runs):
            start = time.perf_counter()
            action()
            samples.append(time.perf_counter() - start)
        return statistics.median(samples) * 1000


@dataclass(frozen=True)
class CaseResult:
    """Medians (ms) of one case on one engine."""

    case: Case
    matches: int
    depth: int
    first_page: float
    counts: float
    exact_counts: float
    fragment: float
    refresh: float
    module_first_sql: float
    # None where the baseline was not timed (sizes past --baseline-up-to).
    baseline_first_sql: float | None
    # None when every match fits on the first page, which is then the last page too.
    offset_page: float | None
    cursor_page: float | None
    last_page: float | None
    module_deep_sql: float | None
    baseline_deep_sql: float | None


# -- the database ----------------------------------------------------------------------------


def engine_kind(url: str) -> str:
    """sqlite, postgresql or mariadb, as the targets name them."""
    name = sa.make_url(url).get_backend_name()
    return "mariadb" if name in {"mysql", "mariadb"} else name


def create_database_if_missing(url: str) -> None:
    """Make the bench database (or the SQLite file's folder) if it is not there yet."""
    parsed = sa.make_url(url)
    kind = engine_kind(url)
    if kind == "sqlite":
        Path(parsed.database or "").parent.mkdir(parents=True, exist_ok=True)
        return
    name = parsed.database
    server = parsed.set(database="postgres" if kind == "postgresql" else "mysql")
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        if kind == "postgresql":
            exists = connection.execute(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            ).first()
            if not exists:
                connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        else:
            connection.exec_driver_sql(
                f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4"
            )
    admin.dispose()


def seeded_tasks(engine: sa.Engine) -> int | None:
    """How many tasks this script seeded there, or None if the tables are not its own."""
    inspector = sa.inspect(engine)
    if not all(inspector.has_table(model.__tablename__) for model in MODEL_FOR_TYPE.values()):
        return None
    total = 0
    newest: list[datetime] = []
    with engine.connect() as connection:
        for model in MODEL_FOR_TYPE.values():
            total += connection.execute(sa.select(sa.func.count()).select_from(model)).scalar_one()
            latest = connection.execute(sa.select(sa.func.max(model.created_at))).scalar_one()
            newest += [latest] if latest is not None else []
    # Demo tasks are created up to one second before the seeding clock.
    if newest and not NOW - timedelta(hours=1) < max(newest) < NOW:
        return None
    return total


def schema_drift(engine: sa.Engine) -> list[tuple[Any, ...]]:
    """How the bench tables differ from the models' (nothing, once seeded by this version)."""
    with engine.connect() as connection:
        if drift := compare_with(connection, Base.metadata):
            print(f"  the tables differ from the models: {drift}", file=sys.stderr)
        return drift


def seed(engine: sa.Engine, tasks: int) -> None:
    """Fill the empty tables with `tasks` demo tasks, showing progress."""
    done = 0
    started = time.perf_counter()

    def progress(rows: int) -> None:
        nonlocal done
        done += rows
        if done % 100_000 < rows or done == tasks:
            elapsed = time.perf_counter() - started
            print(f"  seeded {done:,} of {tasks:,} tasks ({elapsed:.0f} s)", file=sys.stderr)

    seed_demo(engine, tasks, NOW, seed=SEED, on_progress=progress)
    seed_events(engine)


def seed_events(engine: sa.Engine) -> None:
    """A "created" event for every task and a "started" one for every task that started,
    each by its type's module, written by the database from the task tables in one pass;
    then PERSON's requests to stop."""
    with actor_tasks_made_after(engine), engine.connect() as connection:
        limit_statements(connection, SEEDING_LIMIT_MS)  # one statement per table and kind
        with connection.begin():
            write_events(connection)
            write_person_events(connection)
    refresh_statistics(engine)
    print("  seeded the tasks' events", file=sys.stderr)


def write_events(connection: sa.Connection) -> None:
    """The statements of `seed_events`: one INSERT … SELECT per table and kind."""
    for task_type, model in MODEL_FOR_TYPE.items():
        for kind, moment, condition in (
            ("created", model.created_at, sa.true()),
            ("started", model.started_at, model.started_at.is_not(None)),
        ):
            rows = sa.select(
                sa.literal(task_type),
                model.id,
                sa.literal(kind),
                sa.literal(f"{task_type}-module"),
                moment,
            ).where(condition)
            columns = ["task_type", "task_id", "kind", "actor", "at"]
            connection.execute(sa.insert(TaskEvent).from_select(columns, rows))


def write_person_events(connection: sa.Connection) -> None:
    """PERSON's request to stop PERSON_TASKS training runs, the first by id: spread over
    the weeks the tasks span, as their random ids are."""
    model = MODEL_FOR_TYPE["training"]
    chosen = sa.select(model.id, model.created_at).order_by(model.id).limit(PERSON_TASKS)
    chosen = chosen.subquery()
    rows = sa.select(
        sa.literal("training"),
        chosen.c.id,
        sa.literal("cancel_requested"),
        sa.literal(PERSON),
        chosen.c.created_at,
    )
    columns = ["task_type", "task_id", "kind", "actor", "at"]
    connection.execute(sa.insert(TaskEvent).from_select(columns, rows))


def seeding_finished(engine: sa.Engine) -> bool:
    """Whether PERSON's tasks are in actor_task: the last rows a seeding makes (see
    `seed_events`), after the objects dropped for the load (the words tables, each actor's
    tasks), which the models do not show, are made again."""
    if not sa.inspect(engine).has_table("actor_task"):
        return False
    found = sa.text("SELECT 1 FROM actor_task WHERE actor = :actor LIMIT 1")
    with engine.connect() as connection:
        return connection.execute(found, {"actor": PERSON}).first() is not None


def prepare(url: str, tasks: int, reseed: bool) -> None:
    """Make sure the database holds exactly `tasks` bench tasks, at the newest revision.

    A database seeded by an earlier version is upgraded as a production one would be
    (`init-db`); one that then still differs from the models (indexes of its own that the
    planner could pick) stops the run, so that every run measures the declared indexes.
    One whose seeding stopped before the end (`seeding_finished`) is seeded again.
    """
    create_database_if_missing(url)
    app = bench_app(url)
    with app.app_context():
        engine = db.engine
        try:
            reused = not reseed and seeded_tasks(engine) == tasks
            if reused:
                for step in upgrade_database():
                    print(f"  {step}", file=sys.stderr)
            if not (reused and seeding_finished(engine)):
                print(f"Seeding {tasks:,} tasks into {engine.url!r}", file=sys.stderr)
                drop_schema(engine)
                upgrade_database()
                seed(engine, tasks)
            if drift := schema_drift(engine):
                raise SystemExit(f"{engine.url!r} differs from the models; --reseed: {drift}")
        finally:
            engine.dispose()


# -- the baseline ----------------------------------------------------------------------------


def baseline_statement(
    task_filter: TaskFilter, now: datetime, *, limit: int, offset: int
) -> sa.Select[Any]:
    """The earlier implementation's query over the same tables and filter.

    Status and time filters sit inside each table's branch; the tag filter and the ORDER BY,
    LIMIT and OFFSET sit outside one UNION ALL subquery.
    """
    types = task_filter.task_types or tuple(MODEL_FOR_TYPE)
    active = [status.value for status in ACTIVE_STATUSES]
    branches = []
    for model in (MODEL_FOR_TYPE[task_type] for task_type in types):
        conditions = []
        if task_filter.statuses:
            conditions.append(model.status.in_(task_filter.statuses))
        if task_filter.within_hours is not None:
            since = now - timedelta(hours=task_filter.within_hours)
            conditions.append(sa.or_(model.status.in_(active), model.finished_at >= since))
        if task_filter.created_after is not None:
            conditions.append(model.created_at >= task_filter.created_after)
        if task_filter.created_before is not None:
            conditions.append(model.created_at < task_filter.created_before)
        if task_filter.stalled:
            heard_before = task_filter.stall_limits.heard_before(now)[model.task_type]
            conditions += [model.status == "running", model.updated_at < heard_before]
        branches.append(sa.select(*list_columns(model)).where(*conditions))
    tasks = sa.union_all(*branches).subquery("tasks")
    statement = sa.select(tasks)
    if task_filter.tags:
        statement = statement.where(tasks.c.tag.in_(task_filter.tags))
    return (
        statement.order_by(tasks.c.created_at.desc(), tasks.c.id.desc()).limit(limit).offset(offset)
    )


# -- one case --------------------------------------------------------------------------------


def case_filter(case: Case) -> TaskFilter:
    """The filter value the API builds from the case's query string."""
    parsed = parse_filter(MultiDict(case.args), secret_key=SECRET_KEY, strict=True)
    if parsed.value is None:
        raise ValueError(f"{case.name}: {parsed.errors}")
    return parsed.value


def fetch_ids(connection: sa.Connection, statement: sa.Select[Any], rows: int) -> list[Any]:
    """The ids of the statement's first `rows` rows."""
    return [row.id for row in connection.execute(statement).all()[:rows]]


def deep_cursor(
    connection: sa.Connection, task_filter: TaskFilter, depth: int, baseline: bool
) -> tuple[Cursor, list[Any]]:
    """A signed cursor to the page starting `depth` rows in, and that page's ids.

    Placed by the baseline's offset where the baseline is timed; otherwise (sorting ten
    million rows takes seconds) by the module's export walk, batches of a thousand by
    cursor, which the timed page of twenty must then agree with.
    """
    if baseline:
        before = baseline_statement(task_filter, NOW, limit=1, offset=depth - 1)
        row = connection.execute(before).one()
        following = baseline_statement(task_filter, NOW, limit=PAGE, offset=depth)
        cursor = sign_cursor(row.created_at, row.id, "desc", SECRET_KEY)
        return cursor, fetch_ids(connection, following, PAGE)
    walked = iter_tasks(connection, task_filter, NOW, batch=1000)
    row, *following = itertools.islice(walked, depth - 1, depth + PAGE)
    cursor = sign_cursor(row.created_at, row.id, "desc", SECRET_KEY)
    return cursor, [task.id for task in following]


def last_page_cursor(
    connection: sa.Connection, task_filter: TaskFilter
) -> tuple[Cursor, list[Any]]:
    """A signed cursor to the newest-first list's last page, and that page's ids.

    The last page, newest first, is the first page oldest first, read backwards; the cursor
    is the row just after it in that order. Read by the module in the other order, so the
    check that both agree is not the module agreeing with itself on one path.
    """
    oldest_first = replace(task_filter, order="asc", limit=PAGE + 1)
    rows = fetch_page(connection, oldest_first, NOW)[: PAGE + 1]
    before = rows[PAGE]
    cursor = sign_cursor(before.created_at, before.id, "desc", SECRET_KEY)
    return cursor, [row.id for row in reversed(rows[:PAGE])]


def get_ok(client: FlaskClient, path: str, args: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """GET a JSON page and insist on 200."""
    response = client.get(f"{path}?{urlencode(list(args))}")
    if response.status_code != 200:
        raise RuntimeError(f"{path} {args}: {response.status_code} {response.get_data(True)}")
    return response.get_json()


REGION_HEADERS = {"HX-Request": "true", "HX-Target": "results"}


def get_fragment(client: FlaskClient, args: Sequence[tuple[str, str]]) -> str:
    """GET the page's results region (table, counts, pager) as htmx asks for it; its ETag.
    The chart and top errors load after it (get_insights)."""
    response = client.get(f"/?{urlencode(list(args))}", headers=REGION_HEADERS)
    body = response.get_data(True)
    if response.status_code != 200 or not ("data-task-id" in body or 'id="empty"' in body):
        raise RuntimeError(f"results fragment {args}: {response.status_code}")
    return response.headers["ETag"]


def refresh_unchanged(client: FlaskClient, args: Sequence[tuple[str, str]], etag: str) -> None:
    """The page's live refresh of a region that has not changed: insist on 304."""
    headers = {**REGION_HEADERS, "If-None-Match": etag}
    response = client.get(f"/?{urlencode(list(args))}", headers=headers)
    if response.status_code != 304:
        raise RuntimeError(f"refresh of an unchanged region {args}: {response.status_code}")


def get_insights(client: FlaskClient, args: Sequence[tuple[str, str]]) -> str:
    """GET the page's chart and top errors as a swapped-in results region loads them."""
    response = client.get(
        f"/insights?{urlencode(list(args))}",
        headers={"HX-Request": "true", "HX-Target": "insights"},
    )
    body = response.get_data(True)
    if response.status_code != 200 or 'id="insights"' not in body:
        raise RuntimeError(f"chart and errors fragment {args}: {response.status_code}")
    return body


def time_view(client: FlaskClient, view: ViewCase, timing: Timing) -> tuple[int, float]:
    """What a chart or errors request counted (tasks charted, or groups), and its median."""
    if view.path == "/insights":
        counted = get_ok(client, "/tasks/histogram", view.args)["total"]
        return counted, timing.median_ms(lambda: get_insights(client, view.args))
    answer = get_ok(client, view.path, view.args)
    counted = answer["total"] if "total" in answer else len(answer["groups"])
    return counted, timing.median_ms(lambda: get_ok(client, view.path, view.args))


def check_same_ids(label: str, module_ids: list[Any], baseline_ids: list[Any]) -> None:
    """Stop the run if the module and the baseline disagree on a page."""
    if [str(i) for i in module_ids] != [str(i) for i in baseline_ids]:
        raise AssertionError(f"{label}: the module's page differs from the baseline's")


def run_case(
    case: Case,
    client: FlaskClient,
    connection: sa.Connection,
    timing: Timing,
    depth: int,
    baseline: bool,
) -> CaseResult:
    """Time one case through the client and as bare statements (the baseline's if asked)."""
    task_filter = case_filter(case)
    # The earlier implementation had no search and no actor to compare with.
    baseline = baseline and task_filter.search is None and task_filter.actor is None
    matches = count_tasks(connection, replace(task_filter, exact_count=True), NOW).value
    baseline_first = baseline_statement(task_filter, NOW, limit=PAGE, offset=0)
    first_ids = [item["id"] for item in get_ok(client, "/tasks", case.args)["items"]]
    if baseline:
        baseline_ids = fetch_ids(connection, baseline_first, PAGE)
        check_same_ids(f"{case.name} first page", first_ids, baseline_ids)
    exact_args = (*case.args, ("count", "exact"))
    etag = get_fragment(client, case.args)
    first = CaseResult(
        case=case,
        matches=matches,
        depth=0,
        first_page=timing.median_ms(lambda: get_ok(client, "/tasks", case.args)),
        counts=timing.median_ms(lambda: get_ok(client, "/tasks/counts", case.args)),
        exact_counts=timing.median_ms(lambda: get_ok(client, "/tasks/counts", exact_args)),
        fragment=timing.median_ms(lambda: get_fragment(client, case.args)),
        refresh=timing.median_ms(lambda: refresh_unchanged(client, case.args, etag)),
        module_first_sql=timing.median_ms(lambda: fetch_page(connection, task_filter, NOW)),
        baseline_first_sql=timing.median_ms(lambda: connection.execute(baseline_first).all())
        if baseline
        else None,
        offset_page=None,
        cursor_page=None,
        last_page=None,
        module_deep_sql=None,
        baseline_deep_sql=None,
    )
    if matches <= PAGE:
        return first

    depth = max(1, min(depth, matches - PAGE))
    cursor, deep_ids = deep_cursor(connection, task_filter, depth, baseline)
    deep_filter = replace(task_filter, cursor=cursor)
    baseline_deep = baseline_statement(task_filter, NOW, limit=PAGE, offset=depth)
    module_deep_ids = [row.id for row in fetch_page(connection, deep_filter, NOW)[:PAGE]]
    check_same_ids(f"{case.name} deep page", module_deep_ids, deep_ids)
    last_cursor, last_ids = last_page_cursor(connection, task_filter)
    last_args = (*case.args, ("cursor", last_cursor.token))
    last_page = get_ok(client, "/tasks", last_args)
    check_same_ids(f"{case.name} last page", [i["id"] for i in last_page["items"]], last_ids)
    if last_page["next_cursor"] is not None:
        raise AssertionError(f"{case.name}: the last page says another page follows")

    offset_args = (*case.args, ("offset", str(OFFSET_PAGE_50)), ("limit", str(PAGE)))
    cursor_args = (*case.args, ("cursor", cursor.token))
    return replace(
        first,
        depth=depth,
        offset_page=timing.median_ms(lambda: get_ok(client, "/tasks", offset_args)),
        cursor_page=timing.median_ms(lambda: get_ok(client, "/tasks", cursor_args)),
        last_page=timing.median_ms(lambda: get_ok(client, "/tasks", last_args)),
        module_deep_sql=timing.median_ms(lambda: fetch_page(connection, deep_filter, NOW)),
        baseline_deep_sql=timing.median_ms(lambda: connection.execute(baseline_deep).all())
        if baseline
        else None,
    )


# -- one engine ------------------------------------------------------------------------------


def bench_app(url: str) -> Flask:
    """The app over the bench database, its clock fixed at the seeding time.

    Its caches keep nothing: with the clock standing still every request of a case would
    otherwise be answered from the counts and the rendering of the first, and the bench
    times what a view costs when it has changed (the cache's effect is what
    bench/load_gunicorn.py --live measures).
    """
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": url,
            "SECRET_KEY": SECRET_KEY,
            "CLOCK": lambda: NOW,
            # The earlier query shape sorts every match: give it time to be measured.
            "STATEMENT_TIMEOUT_MS": BASELINE_STATEMENT_TIMEOUT_MS,
        }
    )
    for cache in ("counts_cache", "rendered_lists"):
        app.extensions[cache] = MemoryCache(entries=0)
    return app


def server_memory(connection: sa.Connection) -> str:
    """The server's own cache for table and index pages, which decides what stays in memory."""
    kind = engine_kind(connection.engine.url.render_as_string())
    if kind == "postgresql":
        return "shared_buffers " + connection.exec_driver_sql("SHOW shared_buffers").scalar_one()
    if kind == "mariadb":
        size = connection.exec_driver_sql("SELECT @@innodb_buffer_pool_size").scalar_one()
        return f"innodb_buffer_pool_size {int(size) // 2**20} MB"
    return "SQLite: the operating system's page cache"


def machine_speed(connection: sa.Connection) -> str:
    """How fast this machine is right now, to read the other numbers against.

    A shared machine's speed drifts from hour to hour; a loop of plain Python and an
    empty statement's round trip, timed in the same run, tell a slow hour from a slow query.
    """
    timing = Timing(runs=101, warmups=10)
    python = timing.median_ms(lambda: sum(range(100_000)))
    round_trip = timing.median_ms(lambda: connection.exec_driver_sql("SELECT 1").all())
    return f"sum(range(100_000)) in Python {python:.2f} ms; SELECT 1 round trip {round_trip:.2f} ms"


def time_events(client: FlaskClient, connection: sa.Connection, timing: Timing) -> str:
    """`GET /tasks/<id>/events` of the newest started training task, and the task page."""
    model = MODEL_FOR_TYPE["training"]
    task_id = connection.execute(
        sa.select(model.id)
        .where(model.started_at.is_not(None))
        .order_by(model.created_at.desc())
        .limit(1)
    ).scalar_one()
    events = get_ok(client, f"/tasks/{task_id}/events", ())
    if [item["kind"] for item in events["items"]][:2] != ["created", "started"]:
        raise AssertionError(f"events of {task_id}: {events}")
    endpoint = timing.median_ms(lambda: get_ok(client, f"/tasks/{task_id}/events", ()))
    page = timing.median_ms(lambda: client.get(f"/task/{task_id}").get_data())
    return (
        f"- `/tasks/<id>/events` of one task ({len(events['items'])} events): {ms(endpoint)} ms; "
        f"its page `/task/<id>` with the timeline: {ms(page)} ms"
    )


ACTION_TASK_TYPE = "training"
ACTION_TAG = "bench-actions"
ACTION_STATUSES = {"cancel, queued": "queued", "cancel, running": "running", "retry": "failed"}


def action_tasks(engine: sa.Engine, status: str, count: int) -> list[uuid.UUID]:
    """Fresh training tasks brought to `status` by a module, each to be acted on once."""
    module = Recorder(engine, lambda: NOW - timedelta(minutes=5))
    fields = type_fields(ACTION_TASK_TYPE, random.Random(SEED), finished_ok=False)
    made = []
    for _ in range(count):
        task_id = module.create(ACTION_TASK_TYPE, tag=ACTION_TAG, **fields)
        if status != "queued":
            module.start(ACTION_TASK_TYPE, task_id)
        if status == "failed":
            module.fail(ACTION_TASK_TYPE, task_id, "CUDA out of memory")
        made.append(task_id)
    return made


def remove_action_tasks(engine: sa.Engine, token_name: str) -> None:
    """Leave the bench database as seeded: the tasks acted on, their retries and events,
    and the operator's token go."""
    model = MODEL_FOR_TYPE[ACTION_TASK_TYPE]
    with engine.begin() as connection:
        made = sa.select(model.id).where(model.tag == ACTION_TAG).scalar_subquery()
        connection.execute(sa.delete(TaskEvent).where(TaskEvent.task_id.in_(made)))
        connection.execute(sa.update(model).where(model.tag == ACTION_TAG).values(retry_of=None))
        connection.execute(sa.delete(model).where(model.tag == ACTION_TAG))
        connection.execute(sa.delete(ApiToken).where(ApiToken.name == token_name))


def time_actions(client: FlaskClient, engine: sa.Engine, timing: Timing) -> str:
    """Cancel and retry through the API, each on a fresh task (an action changes its task):
    a queued task cancelled, a running one asked to stop, a failed one retried."""
    token_name = "bench-operator"
    remove_action_tasks(engine, token_name)
    token = create_token(engine, token_name, Role.OPERATOR, NOW)
    headers = {"Authorization": f"Bearer {token}"}
    lines = []
    try:
        for label, status in ACTION_STATUSES.items():
            action = label.split(",")[0]
            tasks = iter(action_tasks(engine, status, timing.runs + timing.warmups))

            def act(action: str = action, tasks: Iterator[uuid.UUID] = tasks) -> None:
                response = client.post(f"/tasks/{next(tasks)}/{action}", headers=headers)
                if response.status_code not in {200, 201}:
                    answer = response.get_data(True)
                    raise RuntimeError(f"{action}: {response.status_code} {answer}")

            lines.append(f"{label} {ms(timing.median_ms(act))} ms")
    finally:
        remove_action_tasks(engine, token_name)
    return f"- `POST /tasks/<id>/cancel` and `/retry`, each on a fresh task: {'; '.join(lines)}"


@dataclass
class SizeRun:
    """One size's database, open for the run: the app's client, a connection for the bare
    statements, and what the run found there."""

    size: int
    client: FlaskClient
    engine: sa.Engine
    connection: sa.Connection
    baseline: bool
    memory: str = ""
    results: list[CaseResult] = field(default_factory=list)
    events: str = ""
    views: list[tuple[ViewCase, int, float]] = field(default_factory=list)


@contextmanager
def opened(size: int, url: str, baseline: bool) -> Iterator[SizeRun]:
    """The app and a connection over one size's database, for as long as the run lasts."""
    app = bench_app(url)
    with app.app_context():
        engine = db.engine
    try:
        with engine.connect() as connection:
            memory = f"{server_memory(connection)}. Machine: {machine_speed(connection)}"
            yield SizeRun(size, app.test_client(), engine, connection, baseline, memory)
    finally:
        engine.dispose()


def run_sizes(runs: Sequence[SizeRun], cases: Sequence[Case], timing: Timing, depth: int) -> None:
    """Every case at every size, each case timed at one size right after the other.

    A shared machine's speed drifts over the minutes a size's cases take: timed one size
    after the other, a case's growth would be the drift's as much as the data's. Then the
    events of one task, cancel and retry, and the chart's and the errors' cases, the same
    way.
    """
    for case in cases:
        for run in runs:
            print(f"  {case.name}, {run.size:,} tasks", file=sys.stderr)
            run.results.append(
                run_case(case, run.client, run.connection, timing, depth, run.baseline)
            )
    for run in runs:
        run.events = time_events(run.client, run.connection, timing)
        run.events += "\n" + time_actions(run.client, run.engine, timing)
    for view in VIEW_CASES:
        for run in runs:
            print(f"  {view.name}, {run.size:,} tasks", file=sys.stderr)
            run.views.append((view, *time_view(run.client, view, timing)))


def views_table(kind: str, views: Sequence[tuple[ViewCase, int, float]]) -> str:
    """The chart's and the errors' medians beside their targets."""
    lines = [
        f"#### {kind}: the chart and the top errors (medians in ms)",
        "",
        "| case | tasks charted / groups | median | target |",
        "|---|--:|--:|---|",
    ]
    for view, counted, median in views:
        limit = view.target_ms if kind in {"sqlite", "postgresql"} else None
        lines.append(f"| {view.name} | {counted:,} | {ms(median)} | {verdict(median, limit)} |")
    return "\n".join(lines)


# -- the report ------------------------------------------------------------------------------


def ms(value: float | None) -> str:
    """A duration in ms, to two significant places below 10; a dash for none."""
    if value is None:
        return "-"
    return f"{value:.2f}" if value < 10 else f"{value:.0f}"


def ratio(slow: float, fast: float) -> str:
    """How many times faster `fast` is than `slow`."""
    return f"{slow / fast:.0f}x" if slow / fast >= 10 else f"{slow / fast:.1f}x"


def versus(module: float | None, baseline: float | None) -> str:
    """ "module / baseline (ratio)", or the module's alone where the baseline was not timed."""
    if module is None:
        return "- (every match on the first page)"
    if baseline is None:
        return f"{ms(module)} / -"
    return f"{ms(module)} / {ms(baseline)} ({ratio(baseline, module)})"


def markdown_table(
    kind: str, tasks: int, timing: Timing, memory: str, results: Sequence[CaseResult]
) -> str:
    """The engine's results as a markdown table, medians in ms."""
    lines = [
        f"### {kind}: {tasks:,} tasks, medians of {timing.runs} runs after {timing.warmups} "
        f"warm-ups (ms; {timing.slow_runs} runs where one takes over {timing.slow_seconds:g} s)",
        "",
        f"Server cache: {memory}.",
        "",
        "| case | matches | first page | offset 980 | cursor (depth) | last page | counts "
        "| exact counts | page fragment | unchanged refresh | SQL first page: module / baseline "
        "| SQL deep page: cursor / offset |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in results:
        lines.append(
            f"| {r.case.name} | {r.matches:,} | {ms(r.first_page)} | {ms(r.offset_page)} "
            f"| {ms(r.cursor_page)} ({r.depth:,}) | {ms(r.last_page)} | {ms(r.counts)} "
            f"| {ms(r.exact_counts)} | {ms(r.fragment)} | {ms(r.refresh)} "
            f"| {versus(r.module_first_sql, r.baseline_first_sql)} "
            f"| {versus(r.module_deep_sql, r.baseline_deep_sql)} |"
        )
    return "\n".join(lines)


def verdict(value: float | None, limit: float | None, unit: str = " ms") -> str:
    """Whether a worst case meets its target, or that it has none."""
    if value is None:
        return "no case reached it"
    if limit is None:
        return "no target; reported"
    return f"target ≤ {limit:g}{unit}: {'met' if value <= limit else 'MISSED'}"


def worst(values: Iterable[float | None]) -> float | None:
    """The largest of the values measured."""
    return max((value for value in values if value is not None), default=None)


def is_search(case: Case) -> bool:
    """Whether a case searches with q (its targets are SEARCH_TARGETS)."""
    return any(name == "q" for name, _ in case.args)


def target_summary(kind: str, results: Sequence[CaseResult]) -> str:
    """The worst case of each kind beside its target, and the two ratios."""
    first, cursor, offset, counts, fragment = TARGETS[kind]
    by_name = {r.case.name: r for r in results}
    searches = [r for r in results if is_search(r.case)]
    results = [r for r in results if not is_search(r.case)] or results
    search_rows = [
        ("search first page, worst case", worst(r.first_page for r in searches), SEARCH_TARGETS[0]),
        ("search counts, worst case", worst(r.counts for r in searches), SEARCH_TARGETS[1]),
    ]
    rows = [
        ("first page, worst case", worst(r.first_page for r in results), first),
        ("cursor page, worst case", worst(r.cursor_page for r in results), cursor),
        ("last page by cursor, worst case", worst(r.last_page for r in results), cursor),
        ("offset 980, worst case", worst(r.offset_page for r in results), offset),
        ("counts, worst case", max(r.counts for r in results), counts),
        ("page results fragment, worst case", max(r.fragment for r in results), fragment),
        ("unchanged refresh (304), worst case", max(r.refresh for r in results), REFRESH_TARGET),
        ("exact counts, worst case", max(r.exact_counts for r in results), None),
        *(search_rows if searches else []),
    ]
    lines = [f"- {label}: {ms(value)} ms ({verdict(value, limit)})" for label, value, limit in rows]
    a = by_name.get(RATIO_A_CASE)
    if a is not None and a.baseline_first_sql is not None:
        lines.append(
            f"- (a) first page {RATIO_A_CASE}, module vs baseline statement: "
            f"{ms(a.module_first_sql)} vs {ms(a.baseline_first_sql)} ms, "
            f"{ratio(a.baseline_first_sql, a.module_first_sql)} faster"
        )
    b = by_name.get(RATIO_B_CASE)
    if b is not None and b.module_deep_sql is not None and b.baseline_deep_sql is not None:
        lines.append(
            f"- (b) page {b.depth:,} rows deep, {RATIO_B_CASE}, module cursor vs baseline "
            f"offset: {ms(b.module_deep_sql)} vs {ms(b.baseline_deep_sql)} ms, "
            f"{ratio(b.baseline_deep_sql, b.module_deep_sql)} faster"
        )
    return "\n".join(lines)


# What the growth table shows of each case: a label and how to read it off a result.
GROWN: tuple[tuple[str, Callable[[CaseResult], float | None]], ...] = (
    ("first page", lambda r: r.first_page),
    ("cursor page", lambda r: r.cursor_page),
    ("last page", lambda r: r.last_page),
    ("counts", lambda r: r.counts),
    ("page fragment", lambda r: r.fragment),
    ("unchanged refresh", lambda r: r.refresh),
    ("exact counts", lambda r: r.exact_counts),
)


def growth(small: float | None, large: float | None) -> float | None:
    """How many times longer at the larger size."""
    return None if small is None or large is None else large / small


def growth_table(kind: str, by_size: dict[int, list[CaseResult]]) -> str:
    """Each case at the smallest and the largest size, and the ratio between them."""
    small, large = min(by_size), max(by_size)
    header = " | ".join(f"{label}: {small:,} / {large:,} (x)" for label, _ in GROWN)
    lines = [
        f"### {kind}: growth from {small:,} to {large:,} tasks (medians in ms)",
        "",
        f"| case | {header} |",
        "|---|" + "--:|" * len(GROWN),
    ]
    pairs = zip(by_size[small], by_size[large], strict=True)
    for before, after in pairs:
        cells = []
        for _, read in GROWN:
            times = growth(read(before), read(after))
            grown = "-" if times is None else f"{times:.2f}"
            cells.append(f"{ms(read(before))} / {ms(read(after))} ({grown})")
        lines.append(f"| {before.case.name} | {' | '.join(cells)} |")
    pages_limit, counts_limit = GROWTH_TARGETS[kind]
    worst_growth = {
        label: worst(
            growth(read(b), read(a)) for b, a in zip(by_size[small], by_size[large], strict=True)
        )
        for label, read in GROWN
    }
    lines.append("")
    for label, limit in (
        ("first page", pages_limit),
        ("cursor page", pages_limit),
        ("counts", counts_limit),
        ("page fragment", None),
        ("unchanged refresh", None),
        ("exact counts", None),
    ):
        value = worst_growth[label]
        shown = "-" if value is None else f"{value:.2f}x"
        lines.append(f"- {label}, largest growth: {shown} ({verdict(value, limit, 'x')})")
    return "\n".join(lines)


# -- command line ----------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--tasks",
        type=int,
        default=SMALLEST_SIZE,
        help="the largest size: every tenfold step from --from up to it is timed, each in a "
        "database of its own (vt_bench_1m, vt_bench_10m, …), and the growth printed",
    )
    parser.add_argument(
        "--from",
        dest="smallest",
        type=int,
        default=SMALLEST_SIZE,
        help="the smallest size timed (a quick run: --from 10000 --tasks 100000)",
    )
    parser.add_argument(
        "--baseline-up-to",
        type=int,
        default=SMALLEST_SIZE,
        help="time the earlier query shape only at sizes up to this (it sorts every match)",
    )
    parser.add_argument("--reseed", action="store_true", help="seed even if the data is there")
    parser.add_argument(
        "--seed-only", action="store_true", help="prepare the databases, time nothing"
    )
    parser.add_argument("--sqlite", default=str(DEFAULT_SQLITE), help="SQLite file to use")
    parser.add_argument("--no-sqlite", action="store_true", help="skip SQLite")
    parser.add_argument("--postgresql", metavar="URL", help="a PostgreSQL database to use")
    parser.add_argument("--mariadb", metavar="URL", help="a MariaDB database to use")
    parser.add_argument("--runs", type=int, default=15, help="timed runs per median")
    parser.add_argument("--warmups", type=int, default=12, help="untimed runs first")
    parser.add_argument("--depth", type=int, default=100_000, help="rows before the deep page")
    parser.add_argument(
        "--case",
        action="append",
        help="only these cases (by name); a name of none, such as 'none', times the chart and "
        "the errors alone",
    )
    return parser.parse_args(argv)


def database_urls(options: argparse.Namespace) -> list[str]:
    """The databases to bench, SQLAlchemy URLs with the drivers we ship."""
    urls = [] if options.no_sqlite else [f"sqlite:///{Path(options.sqlite).resolve()}"]
    urls += [url for url in (options.postgresql, options.mariadb) if url]
    return [normalise_database_url(url) for url in urls]


def bench_sizes(smallest: int, largest: int) -> list[int]:
    """Every power of ten times `smallest` up to `largest`, and `largest` itself."""
    sizes = [largest]
    size = smallest
    while size < largest:
        sizes.append(size)
        size *= 10
    return sorted(set(sizes))


def size_label(size: int) -> str:
    """1m, 10m, 250k: the suffix of a size's database."""
    for unit, suffix in ((1_000_000, "m"), (1_000, "k")):
        if size % unit == 0:
            return f"{size // unit}{suffix}"
    return str(size)


def sized_url(url: str, size: int) -> str:
    """The database that holds one size: the given name with the size appended."""
    parsed = sa.make_url(url)
    name = parsed.database or ""
    if engine_kind(url) == "sqlite":
        path = Path(name)
        sized = str(path.with_name(f"{path.stem}_{size_label(size)}{path.suffix}"))
    else:
        sized = f"{name}_{size_label(size)}"
    return parsed.set(database=sized).render_as_string(hide_password=False)


def main(argv: Sequence[str] | None = None) -> None:
    """Seed, time every case at every size on every engine asked for, print the tables."""
    options = parse_args(argv)
    timing = Timing(options.runs, options.warmups)
    cases = [c for c in CASES if not options.case or c.name in options.case]
    sizes = bench_sizes(options.smallest, options.tasks)
    for url in database_urls(options):
        kind = engine_kind(url)
        sized = {size: sized_url(url, size) for size in sizes}
        for size, size_url in sized.items():
            print(f"{kind}: preparing {sa.make_url(size_url)!r}", file=sys.stderr)
            prepare(size_url, size, options.reseed)
        if options.seed_only:
            continue
        with ExitStack() as stack:
            runs = [
                stack.enter_context(opened(size, size_url, size <= options.baseline_up_to))
                for size, size_url in sized.items()
            ]
            run_sizes(runs, cases, timing, options.depth)
        for run in runs:
            print_size(kind, run, timing)
        if len(runs) > 1:
            print(growth_table(kind, {run.size: run.results for run in runs}))
            print(flush=True)


def print_size(kind: str, run: SizeRun, timing: Timing) -> None:
    """One size's tables: every case, the worst beside the targets, the events and actions,
    the chart and the errors."""
    if run.results:  # none when only the chart and the errors are timed (--case none)
        print(markdown_table(kind, run.size, timing, run.memory, run.results))
        print()
        print(target_summary(kind, run.results))
    else:
        print(f"### {kind}, {run.size:,} tasks. {run.memory}")
    print(run.events)
    print()
    print(views_table(kind, run.views))
    print(flush=True)


if __name__ == "__main__":
    main()
