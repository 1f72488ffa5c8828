"""A page of a search on SQLite, read first among each table's newest tasks.

FTS5 hands over a word's matches as a list, which the page's walk of created_at tests each
row against (see `_words_match_sqlite` in app/query/search.py). The list is built whole, so
a word many tasks hold costs what its matches do, however few rows the walk reads: `llama`
is in 330,000 tasks of a table at ten million, 138 ms for a first page.

FTS5 starts a list at any rowid, and a table's newest tasks are the ones a page needs. So a
page is read first among each table's newest tasks, `HORIZON_ROWS[0]` of them (below the
cursor or `created_before`): the table's list holds the rowids between their lowest and
highest, and the oldest created_at among them (its horizon) bounds the walk. That answer is
the page when it is full and every horizon lies strictly before its last row: each task
that belongs on the page is then newer than its table's horizon, so among those newest
tasks and in their list. A table that holds fewer tasks than that below the bound has them
all in its list (its horizon is before every task), and a page whose tables are all such is
the page however few rows it holds: the last pages of a word many tasks hold read only the
oldest tasks' list. Otherwise the page is read among more of them (words among a status
few tasks have), and at last whole (words few recent tasks hold).
Nothing is assumed of how rowids follow created_at: a module writes a task when it creates
it, so the newest tasks hold the highest rowids and the lists are short, and tasks written
out of that order only lengthen them. The horizons are looked up in a statement of their
own: a task written between it and the page's is left off, as if the page were read before
it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa

from app.models import MODEL_FOR_TYPE, sql_constant
from app.query.engines import Executor, sqlite_rowid
from app.query.shapes import Shape, Values, tables_with_matches

# How many of a table's newest tasks a page is read among, before it is read whole: enough
# to hold a page of words one task in twenty has, read in well under a millisecond; then
# enough for one in a few hundred (`cuda memory` among the failed tasks).
HORIZON_ROWS = (1_000, 16_000)

Upper = Literal["cursor", "before"] | None
# The horizon of a table that holds fewer tasks than asked for below the bound: before every
# task, so that its walk goes to its end, all its tasks in its list.
BEFORE_EVERY_TASK = datetime(1, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Horizon:
    """A table's newest tasks: the oldest created_at, the lowest and the highest rowid
    (None for a table without a task below the bound)."""

    created_at: datetime
    floor: int | None
    ceiling: int | None

    @property
    def holds_every_task(self) -> bool:
        """Whether every task of the table below the bound is among them."""
        return self.created_at == BEFORE_EVERY_TASK


def horizons_apply(shape: Shape) -> bool:
    """Whether a page's walk starts at its newest tasks and has no lower bound of its own:
    a search's page, newest first, outside a time window. Ids are found by their range."""
    newest_first = shape.page and shape.order == "desc"
    bounded_below = shape.after or shape.window
    return bool(newest_first and shape.search_phrases and not shape.search_ids) and not (
        bounded_below
    )


def upper_bound(shape: Shape) -> Upper:
    """Where the newest tasks are counted down from: the cursor, `created_before`, or the
    newest task."""
    if shape.cursor:
        return "cursor"
    return "before" if shape.before else None


def newest_first(model: Any, upper: Upper, *columns: Any) -> sa.Select[Any]:
    """`columns` of a table's tasks from its newest down (below the upper bound)."""
    newest = sa.select(*columns).select_from(model)
    if upper == "cursor":
        newest = newest.where(model.created_at <= sa.bindparam("cursor_at"))
    elif upper == "before":
        newest = newest.where(model.created_at < sa.bindparam("before"))
    return newest.order_by(model.created_at.desc())


@functools.lru_cache(maxsize=64)
def horizons_template(task_types: tuple[str, ...], upper: Upper) -> sa.CompoundSelect:
    """(task_type, horizon, lowest and highest rowid) of each table's newest tasks, read
    from the end of its created_at index: the horizon is NULL in a table that holds fewer.

    The horizon is the last of them, stepped to (SQLite steps over the entries before it
    without reading their columns), and the rowids the only column read of each: the
    oldest created_at among them, read as a minimum, took three times as long."""
    members = []
    for task_type in task_types:
        model = MODEL_FOR_TYPE[task_type]
        rowid = sqlite_rowid(model.__tablename__).label("row")
        last = newest_first(model, upper, model.created_at).offset(sa.bindparam("last_newest"))
        rows = newest_first(model, upper, rowid).limit(sa.bindparam("newest")).subquery()
        last = last.limit(sql_constant(1))
        members.append(
            sa.select(
                sa.literal(task_type).label("task_type"),
                last.scalar_subquery().label("created_at"),
                sa.func.min(rows.c.row).label("floor"),
                sa.func.max(rows.c.row).label("ceiling"),
            ).select_from(rows)
        )
    return sa.union_all(*members)


def look_up_horizons(
    executor: Executor, shape: Shape, values: Values, newest: int
) -> dict[str, Horizon]:
    """The horizon of each table the page reads (`BEFORE_EVERY_TASK` where it holds fewer
    than `newest` tasks below the bound)."""
    # A table given a horizon but read as none would hold the page back to the next one.
    tables = tables_with_matches(shape)
    if not tables:
        return {}
    template = horizons_template(tables, upper_bound(shape))
    values = values | {"newest": newest, "last_newest": newest - 1}
    return {
        row.task_type: Horizon(row.created_at or BEFORE_EVERY_TASK, row.floor, row.ceiling)
        for row in executor.execute(template, values)
    }


def horizon_values(horizons: dict[str, Horizon]) -> Values:
    """The page's bounds: each table's horizon and the rowids its list lies between."""
    values: Values = {}
    for task_type, horizon in horizons.items():
        values[f"horizon_{task_type}"] = horizon.created_at
        values[f"floor_{task_type}"] = horizon.floor
        values[f"ceiling_{task_type}"] = horizon.ceiling
    return values


def page_is_whole(horizons: dict[str, Horizon], rows: list[Any], wanted: int) -> bool:
    """Whether rows read within the horizons are the page: every task below the bound was
    in them, or `wanted` rows and none of the tasks past a horizon newer than the last."""
    if all(horizon.holds_every_task for horizon in horizons.values()):
        return True
    if len(rows) < wanted:
        return False
    last = rows[-1].created_at
    return all(horizon.created_at < last for horizon in horizons.values())
