"""The one place where engines get different SQL: how pages and capped counts are shaped,
and the few expressions each engine writes in its own words."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Literal

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.visitors import InternalTraversal

from app.models import TaskModel, UTCDateTime, sql_constant

Executor = Session | sa.Connection
PageShape = Literal["merge", "limited", "keys"]
HistogramShape = Literal["ranges", "grouped"]
# The index that counts a search's words without the task tables, where there is one.
SearchIndex = Literal["fts5", "words"] | None


@dataclass(frozen=True)
class EngineShape:
    """How the statements are written for one engine (see `engine_shape`)."""

    page: PageShape
    count_in_one_statement: bool
    histogram: HistogramShape = "grouped"
    search_index: SearchIndex = None
    search_gathers_matches: bool = False
    search_probes_words: bool = False


def engine_shape(dialect_name: str | None) -> EngineShape:
    """The one place where engines get different SQL, keyed on the dialect's name.

    Pages. "merge" (SQLite): members are plain filtered selects; ORDER BY, LIMIT and OFFSET
    sit outside. SQLite flattens the union and merges its members in index order, so a page
    reads only the rows it shows (plus the offset), from whichever tables they come from.
    "limited" (PostgreSQL, and any engine not named): each member has its own ORDER BY and
    LIMIT (offset + limit + 1) and the outer query sorts those few rows. PostgreSQL does
    not pull a UNION ALL member that has a WHERE clause into its append plan, so with plain
    members it plans each alone, without the outer order, and sorts every match.
    "keys" (MariaDB): the limited shape over (task_type, created_at, id) alone, which the
    indexes hold, then the page's rows by id. MariaDB materialises a UNION ALL derived
    table, so members need their own limits; and its rows live in the primary key, so
    reading offset + limit whole rows per table costs a random read each. Its limited
    members also name the index they walk (FORCE INDEX, see `pin_index`), which only the
    engines that take such a hint are given.

    Capped counts. SQLite and PostgreSQL stop a UNION ALL at its LIMIT and OFFSET, so one
    statement tells whether a match lies past the threshold, and counts them if not.
    MariaDB materialises the union first, so each member is counted on its own, told how
    many rows are still wanted, until the threshold is passed.

    Histograms. "grouped" (PostgreSQL, MariaDB): each table's window is read once, as one
    range of the created_at index, grouped by (bucket, status) with `BucketStart`. "ranges"
    (SQLite): one COUNT(*) per bucket and status, each a range of the (status, created_at)
    index. SQLite steps through an index range fast but groups slowly: over the 170,000
    tasks of a week at a million, the grouped statement took 160 to 270 ms (most of it the
    GROUP BY, whatever the bucket expression), the 280 range counts 30 ms.

    Searches. SQLite (`search_index` "fts5"): its FTS5 index is asked first where each
    table's matches are (see `look_up_reach` in app/query/search.py), and a count of words,
    statuses and types is read from the index alone. SQLite runs a constant such as `0 = 1`
    once, before the walk, but a test holding a subquery (`EXISTS (… MATCH …)`) for each row
    it walks, even one that names no table of the query: a member of a table without a
    match would walk all of it. PostgreSQL and MariaDB ("words") count words, phrases,
    statuses and types in their words tables (revisions 0011 to 0013), a range of an index
    (and the rows of a phrase's candidates when it has three words or more). Otherwise
    PostgreSQL's trigram index hands over every match of a search before a row is read
    (`search_gathers_matches`), however few rows a count wants; so a search's chips are
    counted in one statement grouped by status, each table's matches gathered once, not
    once for each of the eleven counts (the statements each engine sends are counted in
    tests/test_search.py). MariaDB (`search_probes_words`) looks up first
    how many tasks of each table hold the words (see `look_up_words_reach`), then tests
    each row a member walks in the words tables, or gathers a table's few matches: a walk
    stops at a page or a cap where FULLTEXT gathered every match of a common word (two
    seconds for `llama` at a million tasks). PostgreSQL does the same for a page beside one
    status few tasks have (`page_probes` in app/query/lookups.py), where its trigram index
    would gather and sort every match of the words among them.

    tests/test_query_plans.py shows the other reasons in the engines' own plans.
    """
    if dialect_name == "sqlite":
        return EngineShape(
            page="merge", count_in_one_statement=True, histogram="ranges", search_index="fts5"
        )
    if dialect_name in {"mysql", "mariadb"}:
        return EngineShape(
            page="keys",
            count_in_one_statement=False,
            search_index="words",
            search_probes_words=True,
        )
    return EngineShape(
        page="limited",
        count_in_one_statement=True,
        search_index="words",
        search_gathers_matches=True,
    )


def dialect_name(executor: Executor) -> str:
    """The engine an executor talks to: sqlite, postgresql, mariadb or mysql."""
    bind = executor if isinstance(executor, sa.Connection) else executor.get_bind()
    return bind.dialect.name


class Greatest(sa.sql.functions.FunctionElement[float]):
    """The largest of its arguments, none of them NULL: GREATEST, or SQLite's max()."""

    type = sa.Double()
    name = "greatest"
    inherit_cache = True


@compiles(Greatest)
def _greatest(element: Greatest, compiler: Any, **kw: Any) -> str:
    return f"GREATEST({compiler.process(element.clauses, **kw)})"


@compiles(Greatest, "sqlite")
def _greatest_sqlite(element: Greatest, compiler: Any, **kw: Any) -> str:
    return f"max({compiler.process(element.clauses, **kw)})"


class SecondsBefore(sa.sql.functions.FunctionElement[datetime]):
    """A moment less a number of seconds, as each engine writes it (see the compilers below)."""

    type = UTCDateTime()
    name = "seconds_before"
    inherit_cache = True


@compiles(SecondsBefore)
def _seconds_before_postgresql(element: SecondsBefore, compiler: Any, **kw: Any) -> str:
    moment, seconds = (compiler.process(arg, **kw) for arg in element.clauses)
    return f"(CAST({moment} AS TIMESTAMP WITH TIME ZONE) - make_interval(secs => {seconds}))"


@compiles(SecondsBefore, "sqlite")
def _seconds_before_sqlite(element: SecondsBefore, compiler: Any, **kw: Any) -> str:
    # Written in the stored text form, rounded to the millisecond (well within the margin).
    moment, seconds = (compiler.process(arg, **kw) for arg in element.clauses)
    return f"strftime('%Y-%m-%d %H:%M:%f', julianday({moment}) - ({seconds}) / 86400.0)"


@compiles(SecondsBefore, "mysql")
@compiles(SecondsBefore, "mariadb")
def _seconds_before_mariadb(element: SecondsBefore, compiler: Any, **kw: Any) -> str:
    moment, seconds = (compiler.process(arg, **kw) for arg in element.clauses)
    return f"({moment} - INTERVAL ({seconds}) SECOND)"


# Engines that take an index hint after a table's name.
INDEX_HINT_DIALECTS = ("mariadb", "mysql")


def pin_index(member: sa.Select[Any], model: TaskModel, index: str) -> sa.Select[Any]:
    """Hold a limited member on the index it walks, where the engine takes a hint.

    Past a cursor, MariaDB may read a status's index by `ref` (status equal, from the
    newest entry) rather than as the range below the cursor on the same index: its costs
    for `ref` on a covering index ignore the range. A page 100,000 rows deep then reads
    tens of thousands of entries instead of its twenty-one. FORCE INDEX costs the range
    as the one way in. Other engines are not given the hint.
    """
    for dialect in INDEX_HINT_DIALECTS:
        member = member.with_hint(model.__table__, f"FORCE INDEX ({index})", dialect)
    return member


class BucketStart(sa.sql.functions.FunctionElement[Any]):
    """The start of the histogram bucket a moment falls in: buckets of a whole number of
    seconds (a constant, the second argument), counted from 1970-01-01 UTC. A UTC datetime
    (PostgreSQL) or epoch seconds."""

    name = "bucket_start"
    inherit_cache = True


def bucket_counts(
    task_type: str, created_at: sa.ColumnElement[Any], status: sa.ColumnElement[Any], step: int
) -> sa.Select[Any]:
    """(task_type, bucket, status, tasks): a table's tasks counted per bucket of `step`
    seconds and status, for the caller to give its FROM and WHERE."""
    bucket = BucketStart(created_at, sql_constant(step))
    return sa.select(
        sql_constant(task_type).label("task_type"),
        bucket.label("bucket"),
        status,
        sa.func.count().label("tasks"),
    ).group_by(bucket, status)


@compiles(BucketStart)
def _bucket_start_postgresql(element: BucketStart, compiler: Any, **kw: Any) -> str:
    # date_bin groups a timestamptz column at half the cost of dividing its epoch.
    moment, step = (compiler.process(arg, **kw) for arg in element.clauses)
    stride = f"make_interval(secs => {step})"
    return f"date_bin({stride}, {moment}, TIMESTAMPTZ '1970-01-01 00:00:00+00')"


@compiles(BucketStart, "sqlite")
def _bucket_start_sqlite(element: BucketStart, compiler: Any, **kw: Any) -> str:
    moment, step = (compiler.process(arg, **kw) for arg in element.clauses)
    return f"(CAST(strftime('%s', {moment}) AS INTEGER) / {step} * {step})"


@compiles(BucketStart, "mysql")
@compiles(BucketStart, "mariadb")
def _bucket_start_mariadb(element: BucketStart, compiler: Any, **kw: Any) -> str:
    # Not UNIX_TIMESTAMP: it reads the column in the session's time zone; the column holds UTC.
    moment, step = (compiler.process(arg, **kw) for arg in element.clauses)
    return f"(TIMESTAMPDIFF(SECOND, '1970-01-01 00:00:00', {moment}) DIV {step} * {step})"


class RunningHeardBefore(sa.sql.functions.FunctionElement[bool]):
    """A running task last heard before a moment, written so that only an index leading
    with the status serves it. Its arguments: the status, when the task was last heard
    from, the running status, the moment; the status test itself is written beside it.

    PostgreSQL plans these statements once for any moment (see `plan_once`), guessing that
    `updated_at < $1` keeps a third of a table. Where a table's rows lie in time order,
    that third read through the updated_at index looks cheap, and the plan walks it instead
    of the running range of (status, updated_at): a cost that grows with the table. The row
    comparison `(status, updated_at) < ('running', $1)`, beside `status = 'running'`, means
    the same and can only be read from (status, updated_at). Other engines plan with the
    values and get the plain comparison.
    """

    type = sa.Boolean()
    name = "running_heard_before"
    inherit_cache = True
    # A plain comparison: as `(…) = 1` SQLite and MariaDB could not read it on the index.
    _is_implicitly_boolean = True


@compiles(RunningHeardBefore)
def _running_heard_before_postgresql(element: RunningHeardBefore, compiler: Any, **kw: Any) -> str:
    status, heard, running, moment = (compiler.process(arg, **kw) for arg in element.clauses)
    return f"(({status}, {heard}) < ({running}, {moment}))"


@compiles(RunningHeardBefore, "sqlite")
@compiles(RunningHeardBefore, "mysql")
@compiles(RunningHeardBefore, "mariadb")
def _running_heard_before_others(element: RunningHeardBefore, compiler: Any, **kw: Any) -> str:
    _status, heard, _running, moment = (compiler.process(arg, **kw) for arg in element.clauses)
    return f"({heard} < {moment})"


class ExistsPerRow(sa.sql.expression.ColumnElement[bool]):
    """EXISTS (probe), tested for each row the outer query reads, on every engine.

    Used where the outer query walks an index in order and most rows it reads match (an
    actor's tasks where they are too many to list, see app/query/actors.py), so a page
    reads a page's worth of rows and a count stops at its cap. PostgreSQL turns a plain
    EXISTS into a join, which reads every match of the probe and sorts them: over a
    module's 200,000 tasks, a second for one page. A subquery with an OFFSET is kept as
    written (PostgreSQL pulls up no sublink that has one), so `OFFSET 0` says "per row"
    there. SQLite and MariaDB run the plain EXISTS per row already.
    """

    type = sa.Boolean()
    inherit_cache = True
    _is_implicitly_boolean = True  # a plain EXISTS, not `EXISTS (…) = 1`
    _traverse_internals: ClassVar = [("probe", InternalTraversal.dp_clauseelement)]

    def __init__(self, probe: sa.Select[Any]) -> None:
        self.probe = probe


@compiles(ExistsPerRow)
def _exists_per_row(element: ExistsPerRow, compiler: Any, **kw: Any) -> str:
    return compiler.process(element.probe.exists(), **kw)


@compiles(ExistsPerRow, "postgresql")
def _exists_per_row_postgresql(element: ExistsPerRow, compiler: Any, **kw: Any) -> str:
    kept = element.probe.offset(sa.literal_column("0"))
    return compiler.process(kept.exists(), **kw)


def sqlite_rowid(table: str) -> sa.ColumnElement[int]:
    """SQLite's rowid of a table (or of an alias), which the models do not declare."""
    return sa.literal_column(f"{table}.rowid", sa.Integer())


class NotIndexed(sa.sql.expression.ColumnElement[Any]):
    """A column, written so that an engine cannot read a range of its index for it.

    Where a member's rows are read by primary key (an actor's gathered tasks, see
    app/query/actors.py), a time range beside them would still tempt SQLite and PostgreSQL
    to read the range and test each row against the ids: a week of a table, 66,876 entries
    at a million tasks, to find 712 of an actor's 2,000 tasks. SQLite guesses a range
    between two bounds small, and PostgreSQL plans the app's statements once for any values
    (`plan_once`), guessing the same. SQLite's unary `+` and PostgreSQL's added zero
    interval leave the key as the only way in. MariaDB weighs each range by its values.
    """

    inherit_cache = True
    _traverse_internals: ClassVar = [("column", InternalTraversal.dp_clauseelement)]

    def __init__(self, column: sa.ColumnElement[Any]) -> None:
        self.column = column
        self.type = column.type


@compiles(NotIndexed)
def _not_indexed(element: NotIndexed, compiler: Any, **kw: Any) -> str:
    return compiler.process(element.column, **kw)


@compiles(NotIndexed, "sqlite")
def _not_indexed_sqlite(element: NotIndexed, compiler: Any, **kw: Any) -> str:
    return "+" + compiler.process(element.column, **kw)


@compiles(NotIndexed, "postgresql")
def _not_indexed_postgresql(element: NotIndexed, compiler: Any, **kw: Any) -> str:
    return f"({compiler.process(element.column, **kw)} + interval '0')"
