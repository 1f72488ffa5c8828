"""Which list a request shows (the full page or the embed), its URLs, and how the page reads
its query string: leniently, a blank field being "not set" and an unknown name ignored.

Every link, the pushed URL and the JSON and export links are built from the filter value's
`to_args()`.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from flask import current_app, request, url_for
from werkzeug.datastructures import MultiDict

from app.filters import ParsedFilter, TaskFilter, lenient_arguments, parse_filter

EMBED_ENDPOINTS = frozenset({"pages.embed", "pages.embed_task", "pages.embed_insights"})
# What the filter form offers for the time window and the page size.
WINDOW_CHOICES = (
    (1, "Last hour"),
    (6, "Last 6 hours"),
    (24, "Last 24 hours"),
    (168, "Last 7 days"),
    (720, "Last 30 days"),
)
PAGE_SIZES = (10, 20, 50, 100)


# -- which list, and its URLs ----------------------------------------------------------------


def with_query(path: str, args: Sequence[tuple[str, str]]) -> str:
    """A path with its query string, or the bare path when there are no arguments."""
    return f"{path}?{urlencode(list(args))}" if args else path


@dataclass(frozen=True)
class ListView:
    """The full page or the embed: its endpoints, its template, what its links keep."""

    endpoint: str
    task_endpoint: str
    insights_endpoint: str
    template: str
    embed: bool = False
    hide_filters: bool = False

    def extra_args(self) -> list[tuple[str, str]]:
        """The embed's own parameter, kept on every link inside the frame."""
        return [("hide", "filters")] if self.hide_filters else []

    def url(self, task_filter: TaskFilter, **changes: Any) -> str:
        """This view's URL for a filter (with `changes` applied)."""
        args = task_filter.to_args(**changes) + self.extra_args()
        return with_query(url_for(self.endpoint), args)

    def insights_url(self, task_filter: TaskFilter) -> str:
        """The chart and top errors of this view's filter, as the region loads them: the
        same for every page of the list, which they do not depend on."""
        args = task_filter.first_page.to_args() + self.extra_args()
        return with_query(url_for(self.insights_endpoint), args)

    def task_url(self, task_id: uuid.UUID, task_filter: TaskFilter) -> str:
        """A task's page, carrying the list's filter so its back link returns to this view."""
        path = url_for(self.task_endpoint, task_id=task_id)
        return with_query(path, task_filter.to_args() + self.extra_args())


FULL_VIEW = ListView("pages.index", "pages.show_task", "pages.insights", "index.html")


def embed_view() -> ListView:
    """The embed, with the filter form hidden when the portal asks for it."""
    hide = request.args.get("hide") == "filters"
    return ListView(
        "pages.embed",
        "pages.embed_task",
        "pages.embed_insights",
        "embed.html",
        embed=True,
        hide_filters=hide,
    )


# -- reading the query string ----------------------------------------------------------------


def page_filter(args: MultiDict[str, str]) -> tuple[ParsedFilter, TaskFilter]:
    """The form bound to `args`, and the filter to list by.

    When a parameter is bad, the form keeps it (to show the value and its message) and the
    list is shown for the other parameters, with that one left out.
    """
    read = functools.partial(
        parse_filter,
        secret_key=current_app.secret_key,
        strict=False,
        stall_limits=current_app.config["STALL_LIMITS"],
    )
    parsed = read(args)
    if parsed.value is not None:
        return parsed, parsed.value
    usable = MultiDict([(k, v) for k, v in args.items(multi=True) if k not in parsed.errors])
    return parsed, read(usable).value or TaskFilter(stall_limits=parsed.form.meta.stall_limits)


def form_state(parsed: ParsedFilter) -> dict[str, Any]:
    """What the filter form shows: the values as given (bad ones too) and their messages.

    The form is rendered from it, and the results region carries it too: after a chip or a
    link changed the filter, the page's script brings the form (outside the region) in line.
    """
    form = parsed.form
    return {
        "task_type": list(form.task_type.data or []),
        "status": list(form.status.data or []),
        "within_hours": form.within_hours._value(),
        "created_after": form.created_after._value(),
        "created_before": form.created_before._value(),
        "tag": list(form.tag.data or []),
        "q": form.q._value(),
        "error_group": form.error_group.data or "",
        "limit": form.limit._value(),
        "order": form.order.data if form.order.raw_data else "desc",
        "count": "exact" if form.count.raw_data else "",
        "actor": form.actor._value(),
        "stalled": "true" if form.stalled.data == "true" else "",
        "errors": parsed.errors,
    }


def history_url(
    view: ListView, parsed: ParsedFilter, task_filter: TaskFilter, args: MultiDict[str, str]
) -> str:
    """The URL that shows this very view again: canonical, or as given while it has errors."""
    if not parsed.errors:
        return view.url(task_filter)
    given = list(lenient_arguments(args).items(multi=True))
    return with_query(url_for(view.endpoint), given + view.extra_args())
