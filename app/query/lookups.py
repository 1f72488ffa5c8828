"""What a request looks up before it reads the tables: the tasks of an actor (`actor=`, see
app/query/actors.py) and, on SQLite and MariaDB (and on PostgreSQL beside a status few tasks
have), where a search's words are (`q=`, see app/query/search.py). Both are done once per
request: the filter carries them through every statement built from it. An export that runs
for a while therefore reads what they found at its start: a task its actor acts on since, or
one with the words in a table that had none, joins the next export, not this one."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import replace
from typing import Concatenate, ParamSpec, TypeVar

from app.filters import TaskFilter
from app.query.actors import with_actor_tasks
from app.query.engines import Executor, dialect_name, engine_shape
from app.query.search import (
    SearchReach,
    look_up_reach,
    look_up_words_reach,
    narrowing_statuses,
    search_reach,
)
from app.search import Search


def with_search_reach(executor: Executor, task_filter: TaskFilter) -> TaskFilter:
    """The filter, carrying where its search's words are, on the engines that ask first."""
    search = task_filter.search
    if search is None or not search.phrases or search_reach(task_filter) is not None:
        return task_filter
    engine = engine_shape(dialect_name(executor))
    if engine.search_index == "fts5":
        return replace(task_filter, search_reach=look_up_reach(executor, search))
    if engine.search_probes_words:
        return replace(task_filter, search_reach=look_up_words_reach(executor, search))
    if engine.search_index == "words" and narrowing_statuses(task_filter.statuses):
        return replace(task_filter, search_reach=page_probes(executor, search))
    return task_filter


def page_probes(executor: Executor, search: Search) -> SearchReach | None:
    """PostgreSQL's reach of a search beside statuses few tasks have (`narrowing_statuses`):
    a page's members test each row they walk in the words tables, as MariaDB's do. The
    trigram index gathers every match of the words among those tasks and sorts them for a
    page: `cuda memory` among the failed tasks, 64,401 of them at ten million, took 182 ms
    a first page in the bench, where the walk takes 5.7. The counts, the chart and the top
    errors read every match, which that index gathers fastest: probed too, the counts of
    `llama` among a month's failed tasks took 1,154 ms at a million instead of 107."""
    reach = look_up_words_reach(executor, search)
    return reach and replace(reach, pages_only=True)


def with_lookups(executor: Executor, task_filter: TaskFilter) -> TaskFilter:
    """The filter with its actor's tasks and its search's reach looked up."""
    return with_search_reach(executor, with_actor_tasks(executor, task_filter))


P = ParamSpec("P")
R = TypeVar("R")


def looked_up_first(
    read: Callable[Concatenate[Executor, TaskFilter, P], R],
) -> Callable[Concatenate[Executor, TaskFilter, P], R]:
    """Give a reading function the filter with its lookups done (`with_lookups`)."""

    @functools.wraps(read)
    def reading(
        executor: Executor, task_filter: TaskFilter, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        return read(executor, with_lookups(executor, task_filter), *args, **kwargs)

    return reading
