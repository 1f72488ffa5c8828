"""The only module that writes SQL: branches, UNION ALL, pages, cursors and counts.

Every listing is one `UNION ALL` with one member per table asked for. Each member carries
every filter and the cursor, so each engine walks one index in (created_at, id) order. When
a table is read for several statuses or several tags, the member is split into one per
status (or tag): `status IN (a, b)` cannot walk the (status, created_at, id) index in
created_at order, but each `status = a` can. How the members are ordered and limited is the
first of the two things that differ between engines; `engine_shape` chooses both.

A time window keeps tasks still queued or running and tasks finished since its start, so
a page's last matches can be tasks created long before that start. A page's members that
read finished statuses only get a floor on created_at below which no match can lie (from
the longest time to finish of their statuses, see `window_floor`), so a walk that runs out
of matches stops there instead of at the end of the table; counts beside a created_at bound
get it too (see `has_floor`). Queued and running tasks match at any age, so a page reads
them apart, each status on its own index, and the finished ones as one walk with a floor
(see `page_shape_of`).

Counts read indexes alone: the time window is split into its active half (queued, running:
no time condition) and its finished half (a range of the (status, finished_at) index), and
a capped total stops reading once past the threshold (the second engine difference).

Statements are built once per `Shape` (what a filter's SQL looks like, without its values)
and kept: building SQLAlchemy expressions costs more than running a first page. The values
travel as bound parameters.

Nothing here reads `request`: callers pass a `TaskFilter`, a connection and the time.

One module per idea: `shapes` (a filter's SQL apart from its values, and each member's WHERE
clause), `engines` (where engines get different SQL), `rows` (what a listed task is),
`pages` (listings, one task, exports' batches), `counts` (totals and facets), `histogram`
(matches per bucket of time and status), `rollup` (the hourly counts the database keeps,
which the histogram reads where it can), `errors` (the most common error groups), `gauges`
(what a metrics scrape reads) and `versions` (where the tables stand, to tell an unchanged
view cheaply).
"""

from app.query.counts import TOTAL_EXACT_UP_TO, Facets, Total, count_facets, count_tasks
from app.query.errors import ErrorGroup, top_errors
from app.query.histogram import Bucket, Histogram, task_histogram
from app.query.pages import TaskPage, fetch_page, get_task, iter_tasks, known_tags, list_tasks
from app.query.rows import LIST_COLUMNS, TaskDetail, TaskRow, list_columns
from app.query.versions import DataVersion, data_version

__all__ = [
    "LIST_COLUMNS",
    "TOTAL_EXACT_UP_TO",
    "Bucket",
    "DataVersion",
    "ErrorGroup",
    "Facets",
    "Histogram",
    "TaskDetail",
    "TaskPage",
    "TaskRow",
    "Total",
    "count_facets",
    "count_tasks",
    "data_version",
    "fetch_page",
    "get_task",
    "iter_tasks",
    "known_tags",
    "list_columns",
    "list_tasks",
    "task_histogram",
    "top_errors",
]
