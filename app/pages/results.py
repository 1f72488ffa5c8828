"""What the results region shows: the counts as chips, the filters applied, the pager, the
links for engineers, and the chart and top errors, built from the filter and what the query
module said."""

from __future__ import annotations

import math
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import current_app, url_for
from werkzeug.http import quote_etag

from app.api import next_page_cursor
from app.chart import build_chart, error_links
from app.clock import display_now
from app.filters import DEFAULT_LIMIT, MAX_OFFSET, STATUSES, ParsedFilter, TaskFilter
from app.models import ACTIVE_STATUSES, TASK_TYPES
from app.pages.views import FULL_VIEW, ListView, form_state, with_query
from app.pages.words import STATUS_LABELS, TYPE_LABELS, thousands, total_text, utc_text
from app.query import ErrorGroup, Facets, Histogram, TaskPage, Total

LIVE_STATUSES = frozenset(status.value for status in ACTIVE_STATUSES)

# -- what the results region shows -----------------------------------------------------------


@dataclass(frozen=True)
class Link:
    """A labelled URL, marked when it is the one being shown."""

    label: str
    url: str
    current: bool = False


@dataclass(frozen=True)
class Chip:
    """A count above the table that toggles its value in the filter."""

    dimension: str
    value: str
    label: str
    count: Total
    selected: bool
    url: str


@dataclass(frozen=True)
class Pager:
    """Previous/next, page numbers and "showing 41 to 60 of 1,234" (with an en dash).

    Pages within the first MAX_OFFSET tasks go by offset, so they have numbers; past that,
    "Older" follows the signed cursor, as fast on page 10,000 as on page 2.
    """

    status: str
    previous: str | None
    next: str | None
    next_label: str
    numbers: list[Link | None]
    first_page: str | None


def toggled(chosen: tuple[str, ...], value: str, order: Sequence[str]) -> tuple[str, ...]:
    """`chosen` with `value` added or removed, in the canonical order."""
    wanted = set(chosen) ^ {value}
    return tuple(item for item in order if item in wanted)


# For each facet: the filter field it toggles, its values in order, and their labels.
FACETS = {
    "status": ("statuses", STATUSES, STATUS_LABELS),
    "task_type": ("task_types", TASK_TYPES, TYPE_LABELS),
}


def facet_chips(view: ListView, task_filter: TaskFilter, facets: Facets) -> dict[str, list[Chip]]:
    """One chip per status and per type, each a link that toggles it (back to page one)."""
    start = task_filter.first_page
    chips: dict[str, list[Chip]] = {}
    for dimension, (field, values, labels) in FACETS.items():
        chosen: tuple[str, ...] = getattr(start, field)
        counts: dict[str, Total] = getattr(facets, dimension)
        chips[dimension] = [
            Chip(
                dimension,
                value,
                labels[value],
                counts[value],
                value in chosen,
                view.url(start, **{field: toggled(chosen, value, values)}),
            )
            for value in values
        ]
    chips["stalled"] = [
        Chip(
            "stalled",
            "true",
            "Stalled",
            facets.stalled,
            start.stalled,
            view.url(start, stalled=not start.stalled),
        )
    ]
    return chips


def applied_filters(view: ListView, task_filter: TaskFilter) -> list[Link]:
    """Each filter in words, with the URL that removes just that one."""
    start = task_filter.first_page
    applied: list[Link] = []
    if start.task_types:
        names = " or ".join(TYPE_LABELS[t] for t in start.task_types)
        applied.append(Link(f"type is {names}", view.url(start, task_types=())))
    if start.statuses:
        names = " or ".join(STATUS_LABELS[s] for s in start.statuses)
        applied.append(Link(f"status is {names}", view.url(start, statuses=())))
    if start.within_hours is not None:
        window = f"active within the last {start.within_hours} h"
        applied.append(Link(window, view.url(start, within_hours=None)))
    if start.created_after is not None:
        after = f"created at or after {utc_text(start.created_after)}"
        applied.append(Link(after, view.url(start, created_after=None)))
    if start.created_before is not None:
        before = f"created before {utc_text(start.created_before)}"
        applied.append(Link(before, view.url(start, created_before=None)))
    for tag in start.tags:
        remaining = tuple(other for other in start.tags if other != tag)
        applied.append(Link(f"tag is “{tag}”", view.url(start, tags=remaining)))
    if start.actor is not None:
        applied.append(Link(f"acted on by “{start.actor}”", view.url(start, actor=None)))
    if start.stalled:
        applied.append(Link("stalled", view.url(start, stalled=False)))
    if start.search is not None:
        applied.append(Link(f"search for “{start.search.text}”", view.url(start, search=None)))
    if start.error_group is not None:
        error = f"error is “{start.error_group}”"
        applied.append(Link(error, view.url(start, error_group=None)))
    return applied


def page_numbers(view: ListView, task_filter: TaskFilter, total: Total) -> list[Link | None]:
    """Numbered pages around the current one, with None where numbers are skipped."""
    limit = task_filter.limit
    current = task_filter.offset // limit
    reachable = MAX_OFFSET // limit
    exact = total.relation == "eq"
    final = max(math.ceil(total.value / limit) - 1, 0)
    last = min(final, reachable) if exact else reachable
    if last == 0:
        return []
    # The last page gets a number only when it is truly the last: deeper ones go by cursor.
    wanted = {0, *range(current - 2, current + 3)} | ({last} if exact and last == final else set())
    numbers: list[Link | None] = []
    previous = -1
    for index in sorted(i for i in wanted if 0 <= i <= last):
        if index > previous + 1:
            numbers.append(None)
        url = view.url(task_filter, offset=index * limit, cursor=None)
        numbers.append(Link(str(index + 1), url, current=index == current))
        previous = index
    if not exact or previous < final:
        numbers.append(None)
    return numbers


def build_pager(view: ListView, task_filter: TaskFilter, page: TaskPage) -> Pager:
    """The pager for this page of results."""
    limit, offset, shown = task_filter.limit, task_filter.offset, len(page.items)
    position = task_filter.cursor
    next_url, next_label = None, "Next"
    if page.next_position is not None:
        if position is None and offset + limit <= MAX_OFFSET:
            next_url = view.url(task_filter, offset=offset + limit)
        else:
            next_url = view.url(task_filter, cursor=next_page_cursor(task_filter, page), offset=0)
            next_label = "Older" if task_filter.order == "desc" else "Newer"
    of_total = f"of {total_text(page.total)}"
    if position is not None:
        side = "before" if task_filter.order == "desc" else "after"
        when = utc_text(position.created_at)
        status = f"Showing {shown} tasks created {side} {when}, {of_total}"
        first = view.url(task_filter.first_page)
        return Pager(status, None, next_url, next_label, [], first)
    status = f"Showing {thousands(offset + 1)}\N{EN DASH}{thousands(offset + shown)} {of_total}"
    if not shown:
        status = f"No tasks on this page, {of_total}" if offset else "No tasks match"
    previous = view.url(task_filter, offset=max(0, offset - limit)) if offset else None
    first = view.url(task_filter.first_page) if offset else None
    numbers = page_numbers(view, task_filter, page.total)
    return Pager(status, previous, next_url, next_label, numbers, first)


def engineer_links(task_filter: TaskFilter) -> dict[str, str]:
    """The same query as JSON, as a curl command, and as CSV and NDJSON downloads."""
    args = task_filter.to_args()
    absolute = with_query(url_for("api.list_tasks_json", _external=True), args)
    # Exports stream every match, so they take no page: limit, offset and cursor go.
    export_args = task_filter.to_args(limit=DEFAULT_LIMIT, offset=0, cursor=None)
    return {
        "json": with_query(url_for("api.list_tasks_json"), args),
        "curl": f"curl -sS {shlex.quote(absolute)}",
        "csv": with_query(url_for("api.export_csv"), export_args),
        "ndjson": with_query(url_for("api.export_ndjson"), export_args),
        # The operator's "act on every match" (a confirmation first), which reads no page either.
        "bulk_cancel": with_query(url_for("operate.confirm_cancel_page"), export_args),
        "bulk_retry": with_query(url_for("operate.confirm_retry_page"), export_args),
    }


def results_context(
    view: ListView,
    parsed: ParsedFilter,
    task_filter: TaskFilter,
    shown: Shown,
) -> dict[str, Any]:
    """Everything `_results.html` renders, from the filter and what the query module said."""
    context: dict[str, Any] = {
        "view": view,
        "state": form_state(parsed),
        "task_filter": task_filter,
        "self_url": shown.self_url,
        "clear_url": view.url(TaskFilter()),
        "now": display_now(shown.now),
        "refresh_seconds": current_app.config["LIVE_REFRESH_SECONDS"],
        "unavailable": shown.page is None or shown.facets is None,
        "full_view_url": FULL_VIEW.url(task_filter),
        "links": engineer_links(task_filter),
        "applied": applied_filters(view, task_filter),
        "searched_words": task_filter.search.words if task_filter.search else frozenset(),
        "region_etag": quote_etag(shown.region_etag) if shown.region_etag else "",
        "insights_url": view.insights_url(task_filter) if shown.lazy_insights else None,
    }
    if shown.page is not None and shown.facets is not None:
        context |= {
            "rows": shown.page.items,
            "chips": facet_chips(view, task_filter, shown.facets),
            "pager": build_pager(view, task_filter, shown.page),
            "live": any(row.status in LIVE_STATUSES for row in shown.page.items),
        }
    return context | insights_context(view, task_filter, shown)


def insights_context(view: ListView, task_filter: TaskFilter, shown: Shown) -> dict[str, Any]:
    """The chart and the top errors (`_insights.html`), where they were counted."""
    context: dict[str, Any] = {}
    if shown.histogram is not None:
        context["chart"] = build_chart(shown.histogram, task_filter, view.url, STATUS_LABELS)
    if shown.errors is not None:
        context["top_errors"] = error_links(shown.errors, task_filter, view.url, TYPE_LABELS)
    return context


@dataclass(frozen=True)
class Shown:
    """What the query module said for a list, or None where the database could not answer
    or the rendering does not show it, with the URL and time the list is shown for, the
    ETag of its results region, and whether its chart and top errors load after it."""

    self_url: str
    now: datetime
    page: TaskPage | None = None
    facets: Facets | None = None
    region_etag: str | None = None
    histogram: Histogram | None = None
    errors: list[ErrorGroup] | None = None
    lazy_insights: bool = False
