"""A chart of a search on SQLite, counted from FTS5's lists between rowids.

Tasks are written as they are created, so their rowids nearly always follow created_at, and
revision 0015 keeps apart those that do not (`<table>_out_of_order`). Among the others
created_at never decreases as the rowid grows, so the tasks created in a bar [e, f) are
exactly those whose rowid lies from the lowest rowid of a task created at or after e up to
that of f. A chart of a search then asks FTS5, once per table and status, for the matches
between the window's first and last rowids, and places each in its bar by comparing its
rowid with the bars' first rowids: a tree of CASE, six comparisons for 56 bars. The tables'
way tested every task of the window against the list of matches: a week holds 66,876
tasks of a table at a million, and `llama`'s chart took 90 ms. The tasks kept apart are
read by their created_at, tested as the tables' way tests them, and added.

Served from a time window's start on (where every task created matches it, as for the
hourly summary), for words with types and statuses: anything else needs the rows.
"""

from __future__ import annotations

import functools
from typing import Any

import sqlalchemy as sa

from app.models import MODEL_FOR_TYPE, TaskModel, UTCDateTime, sql_constant
from app.query.engines import Executor, bucket_counts, sqlite_rowid
from app.query.search import fts5_table, index_count_members
from app.query.shapes import STATUSES, Shape, branch_conditions, chosen_models


def out_of_order_table(model: TaskModel) -> sa.TableClause:
    """The tasks of a table kept apart by revision 0015: their rowids and created_at."""
    return sa.table(
        f"{model.__tablename__}_out_of_order",
        sa.column("task_rowid", sa.Integer()),
        sa.column("created_at", UTCDateTime()),
    )


def in_created_order(model: TaskModel, rowid: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
    """The task of this rowid is not kept apart: one step into the exceptions' key."""
    kept = out_of_order_table(model)
    return ~sa.exists().where(kept.c.task_rowid == rowid)


def kept_between(
    model: TaskModel, low: sa.ColumnElement[Any], high: sa.ColumnElement[Any]
) -> sa.Select[Any]:
    """The rowids of the tasks kept apart in [low, high): a list built once, against which
    each match is tested at the cost of a step into a list that is nearly always empty,
    where a step into the table of exceptions for each match took a quarter longer."""
    kept = out_of_order_table(model)
    return sa.select(kept.c.task_rowid).where(kept.c.task_rowid >= low, kept.c.task_rowid < high)


def first_rowid(model: TaskModel, edge: sa.BindParameter[Any]) -> sa.ScalarSelect[Any]:
    """The lowest rowid of the tasks in created order created at or after `edge`: the
    earliest created_at from `edge` on, then the lowest rowid of the tasks created then.
    Each a step into the created_at index (past the exceptions on the way)."""
    table = model.__table__
    earliest_table, tied_table = table.alias("earliest"), table.alias("tied")
    earliest = (
        sa.select(earliest_table.c.created_at)
        .where(
            earliest_table.c.created_at >= edge,
            in_created_order(model, sqlite_rowid("earliest")),
        )
        .order_by(earliest_table.c.created_at)
        .limit(sql_constant(1))
        .scalar_subquery()
    )
    rowid = sqlite_rowid("tied")
    return (
        sa.select(sa.func.min(rowid))
        .select_from(tied_table)
        .where(tied_table.c.created_at == earliest, in_created_order(model, rowid))
        .scalar_subquery()
    )


@functools.lru_cache(maxsize=64)
def first_rowids_template(task_types: tuple[str, ...], bars: int) -> sa.Select[Any]:
    """One row: for each table and edge (:edge_0 … :edge_<bars>), the first rowid from it
    on (`first_rowid`), as `<task_type>_<edge>`; and the rowid after the table's last, as
    `<task_type>_next`."""
    columns = []
    for task_type in task_types:
        model = MODEL_FOR_TYPE[task_type]
        for index in range(bars + 1):
            edge = sa.bindparam(f"edge_{index}", type_=UTCDateTime())
            columns.append(first_rowid(model, edge).label(f"{task_type}_{index}"))
        rowid = sqlite_rowid(model.__tablename__)
        last = sa.select(sa.func.max(rowid)).select_from(model.__table__).scalar_subquery()
        columns.append((sa.func.coalesce(last, 0) + 1).label(f"{task_type}_next"))
    return sa.select(*columns)


def bar_of(
    rowid: sa.ColumnElement[Any], firsts: list[sa.BindParameter[Any]], low: int, high: int
) -> sa.ColumnElement[Any]:
    """The bar among low … high - 1 whose rowids hold `rowid`: the last whose first rowid
    is at most `rowid`, found by halving."""
    if high - low == 1:
        return sql_constant(low)
    middle = (low + high) // 2
    return sa.case(
        (rowid < firsts[middle], bar_of(rowid, firsts, low, middle)),
        else_=bar_of(rowid, firsts, middle, high),
    )


@functools.lru_cache(maxsize=64)
def rowid_bars_template(shape: Shape, bars: int) -> sa.CompoundSelect:
    """(task_type, status, bar, tasks) rows: each table's matches of each status between
    its first rowids :first_<task_type>_0 and :first_<task_type>_<bars>, by bar, read
    from the search index alone, the exceptions left out."""
    members = []
    for model in chosen_models(shape):
        task_type = model.task_type
        firsts = [
            sa.bindparam(f"first_{task_type}_{index}", type_=sa.Integer())
            for index in range(bars + 1)
        ]
        for status in shape.statuses or STATUSES:
            (member,) = index_count_members(
                model, (status,), sql_constant(task_type).label("task_type")
            )
            rowid = fts5_table(model).c.rowid
            bar = bar_of(rowid, firsts, 0, bars)
            members.append(
                member.add_columns(
                    sql_constant(status).label("status"),
                    bar.label("bar"),
                    sa.func.count().label("tasks"),
                )
                .where(rowid >= firsts[0], rowid < firsts[bars])
                .where(rowid.not_in(kept_between(model, firsts[0], firsts[bars])))
                .group_by(sa.literal_column("bar"))
            )
    return sa.union_all(*members)


@functools.lru_cache(maxsize=64)
def out_of_order_template(shape: Shape, step: int) -> sa.CompoundSelect:
    """(task_type, bucket, status, tasks) rows: each table's tasks kept apart that were
    created in [:chart_lower, :chart_upper) and match, grouped as the tables' way groups."""
    members = []
    for model in chosen_models(shape):
        kept = out_of_order_table(model)
        rowid = sqlite_rowid(model.__tablename__)
        members.append(
            bucket_counts(model.task_type, model.created_at, model.status, step)
            .select_from(model)
            .where(
                rowid.in_(
                    sa.select(kept.c.task_rowid).where(
                        kept.c.created_at >= sa.bindparam("chart_lower", type_=UTCDateTime()),
                        kept.c.created_at < sa.bindparam("chart_upper", type_=UTCDateTime()),
                    )
                ),
                *branch_conditions(model, shape),
            )
        )
    return sa.union_all(*members)


def first_rowids(executor: Executor, shape: Shape, edges: dict[str, Any]) -> dict[str, int]:
    """The bound values :first_<task_type>_<edge> of `rowid_bars_template`.

    Where no task of a table was created at or after an edge, the bar from it on begins
    past the table's last rowid as it was read here: a task written before the matches are
    read, a moment later, then falls outside every bar, as if it had been written after.
    """
    template = first_rowids_template(shape.task_types, len(edges) - 1)
    found = executor.execute(template, edges).one()._mapping
    firsts = {}
    for task_type in shape.task_types:
        after_last = found[f"{task_type}_next"]
        for index in range(len(edges)):
            rowid = found[f"{task_type}_{index}"]
            firsts[f"first_{task_type}_{index}"] = after_last if rowid is None else rowid
    return firsts
