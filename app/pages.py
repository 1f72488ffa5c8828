"""The web page: the task list with htmx filters, the task page and the embed view.

`/` and `/embed` read the JSON API's query parameters with the same form, leniently (a blank
field is "not set", an unknown name is ignored), and list tasks through the same query
module. One template renders both the page and, for an htmx request that targets the
results region, that region alone. Every link, the pushed URL and the JSON and export links
are built from the filter value's `to_args()`.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import math
import shlex
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.datastructures import MultiDict
from werkzeug.http import quote_etag

from app.api import next_page_cursor, task_or_404
from app.cache import Cache, kept_or_made, shared_errors, shared_facets, shared_histogram
from app.chart import build_chart, error_links
from app.clock import display_now, request_time
from app.errors import (
    DATABASE_ERRORS,
    RETRY_AFTER_SECONDS,
    is_unreachable,
    log_database_error,
    outage,
)
from app.events import task_events
from app.filters import (
    DEFAULT_LIMIT,
    MAX_OFFSET,
    STATUSES,
    ParsedFilter,
    TaskFilter,
    format_timestamp,
    lenient_arguments,
    parse_filter,
)
from app.identity import rendering_key
from app.models import ACTIVE_STATUSES, TASK_TYPES, close_read_connection, read_connection
from app.query import (
    DataVersion,
    ErrorGroup,
    Facets,
    Histogram,
    TaskPage,
    TaskRow,
    Total,
    data_version,
    get_task,
    known_tags,
    list_tasks,
)
from app.search import mark_words
from app.stalled import is_stalled

bp = Blueprint("pages", __name__)

HTMX_VERSION = "2.0.11"
HTMX_FILE = f"vendor/htmx-{HTMX_VERSION}.min.js"
HTMX_CDN_URL = f"https://cdn.jsdelivr.net/npm/htmx.org@{HTMX_VERSION}/dist/htmx.min.js"
# What htmx does with each answer: skip a 304 (the results have not changed) and swap the
# 503 page, so a database outage shows its message in the results region. History is never
# cached in the browser: Back asks the server, since the tasks may have moved on meanwhile.
# htmx evaluates no code and adds no inline style: the Content-Security-Policy forbids both
# (the indicator's style is in style.css).
HTMX_CONFIG = {
    "historyCacheSize": 0,
    "allowEval": False,
    "allowScriptTags": False,
    "includeIndicatorStyles": False,
    "responseHandling": [
        {"code": "204", "swap": False},
        {"code": "304", "swap": False},
        {"code": "[23]..", "swap": True},
        {"code": "503", "swap": True, "error": False},
        {"code": "[45]..", "swap": False, "error": True},
    ],
}

RESULTS_ID = "results"
EMBED_ENDPOINTS = frozenset({"pages.embed", "pages.embed_task", "pages.embed_insights"})
# What a list request renders: the whole page, the results region alone (htmx), or the chart
# and top errors alone, which a live page's region loads right after it is swapped in.
PAGE, REGION, INSIGHTS = "page", "fragment", "insights"
# Every header the list's response depends on besides its URL.
VARY = ("HX-Request", "HX-Target", "HX-History-Restore-Request", "HX-Current-URL")
TAG_SUGGESTIONS = 50
ERROR_PREVIEW_CHARACTERS = 80
TOP_ERRORS_SHOWN = 5

TYPE_LABELS = {
    "model_upload": "Model upload",
    "dataset_upload": "Dataset upload",
    "training": "Training",
    "evaluation": "Evaluation",
    "synthesis": "Synthesis",
}
STATUS_LABELS = {
    "queued": "Queued",
    "running": "Running",
    "completed": "Completed",
    "failed": "Failed",
    "cancelled": "Cancelled",
}
EVENT_LABELS = {
    "created": "Created",
    "started": "Started",
    "progress": "Progress",
    "cancel_requested": "Cancel requested",
    "cancelled": "Cancelled",
    "completed": "Completed",
    "failed": "Failed",
    "retried": "Retried",
}
# Shown beside the status text, never instead of it.
STATUS_ICONS = {"queued": "◷", "running": "▶", "completed": "✓", "failed": "✕", "cancelled": "⊘"}
WINDOW_CHOICES = (
    (1, "Last hour"),
    (6, "Last 6 hours"),
    (24, "Last 24 hours"),
    (168, "Last 7 days"),
    (720, "Last 30 days"),
)
PAGE_SIZES = (10, 20, 50, 100)
LIVE_STATUSES = frozenset(status.value for status in ACTIVE_STATUSES)


# -- htmx, served from the CDN with a hash of the copy we ship --------------------------------


@dataclass(frozen=True)
class HtmxAsset:
    """Where htmx is loaded from, and the hash every copy must match."""

    cdn_url: str
    local_file: str
    integrity: str
    local_only: bool


def subresource_integrity(path: Path) -> str:
    """The `integrity` value of a file: its SHA-384, base64, as browsers check it."""
    digest = hashlib.sha384(path.read_bytes()).digest()
    return "sha384-" + base64.b64encode(digest).decode()


def htmx_asset(app: Flask) -> HtmxAsset:
    """Hash the vendored htmx once at start-up: the CDN serves the same bytes."""
    local = Path(app.static_folder or "static") / HTMX_FILE
    return HtmxAsset(
        cdn_url=HTMX_CDN_URL,
        local_file=HTMX_FILE,
        integrity=subresource_integrity(local),
        local_only=bool(app.config.get("HTMX_LOCAL_ONLY")),
    )


# -- time, as people read it -----------------------------------------------------------------


def time_ago(moment: datetime, now: datetime) -> str:
    """ "5 min ago", "3 h ago", "12 d ago": how long ago, in the largest useful unit."""
    seconds = (now - moment).total_seconds()
    if seconds < 60:
        return "just now"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min ago"
    hours = minutes // 60
    if hours < 48:
        return f"{hours} h ago"
    return f"{hours // 24} d ago"


def duration_text(seconds: float) -> str:
    """ "42 s", "12 min 5 s", "3 h 20 min", "2 d 4 h": two units at most."""
    whole = max(0, int(seconds))
    if whole < 60:
        return f"{whole} s"
    minutes, whole = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {whole} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def task_duration(started: datetime | None, finished: datetime | None, now: datetime) -> str:
    """How long a task ran, or has been running; empty when it never started."""
    if started is None:
        return ""
    return duration_text(((finished or now) - started).total_seconds())


def stalled_text(row: TaskRow, now: datetime) -> str | None:
    """ "Stalled — last heard 2 h ago" for a stalled task (see app/stalled.py), else None."""
    limits = current_app.config["STALL_LIMITS"]
    if not is_stalled(row.task_type, row.status, row.updated_at, now, limits):
        return None
    return f"Stalled \N{EM DASH} last heard {time_ago(row.updated_at, now)}"


def utc_text(moment: datetime) -> str:
    """The exact instant, for tooltips: 2026-11-28 09:14:03 UTC."""
    return format_timestamp(moment)[:19].replace("T", " ") + " UTC"


def thousands(number: int) -> str:
    """1234 as "1,234"."""
    return f"{number:,}"


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


def wants_results_fragment() -> bool:
    """An htmx request that swaps the results region; a history restore needs the page."""
    headers = request.headers
    return (
        headers.get("HX-Request") == "true"
        and headers.get("HX-Target") == RESULTS_ID
        and headers.get("HX-History-Restore-Request") != "true"
    )


def history_headers(view: ListView, url: str) -> dict[str, str]:
    """How an htmx request moves the address bar.

    A new view is pushed, so Back returns to the one before. A refresh of the view already
    shown pushes nothing. The embed only replaces its URL: pushing inside an iframe would
    add steps to the portal's own Back button.
    """
    try:
        current = urlsplit(request.headers.get("HX-Current-URL", ""))
    except ValueError:  # a header no browser sends; treat the view as new
        return {"HX-Push-Url": url}
    if urlunsplit(("", "", current.path, current.query, "")) == url:
        return {"HX-Push-Url": "false"}
    shown = MultiDict(parse_qsl(current.query, keep_blank_values=True))
    same_view = current.path == url_for(view.endpoint) and (
        history_url(view, *page_filter(shown), shown) == url
    )
    if view.embed or same_view:
        return {"HX-Replace-Url": url}
    return {"HX-Push-Url": url}


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


def total_text(total: Total) -> str:
    """ "1,234", or "10,000+" when only a lower bound is known."""
    return thousands(total.value) + ("+" if total.relation == "gte" else "")


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


# -- responses -------------------------------------------------------------------------------


def render_fingerprint(app: Flask) -> str:
    """What every rendering depends on besides the data and the request: the code, the
    templates, the static files and the settings the pages show. A deploy changes it."""
    digest = hashlib.sha256()
    folders = (app.root_path, app.template_folder, app.static_folder)
    for folder in (Path(str(name)) for name in folders):
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.suffix != ".pyc":
                digest.update(str(path.relative_to(folder)).encode() + b"\0")
                digest.update(path.read_bytes())
    # Pager cursors are signed with the secret key; the others show in the markup.
    settings = ("LIVE_REFRESH_SECONDS", "HTMX_LOCAL_ONLY", "SECRET_KEY", "STALL_LIMITS")
    digest.update(repr([app.config.get(name) for name in settings]).encode())
    return digest.hexdigest()


def list_etag(view: ListView, rendering: str, version: DataVersion) -> str:
    """The ETag of the list page, of its results region alone or of its chart and top
    errors (`rendering`), known before any is rendered: a digest of everything they are
    rendered from.

    The data (the tables' newest changes and the minute), the request's full URL (host,
    path and query string: the filter, the form's values as typed, the embed's options),
    which rendering, who views it (their role, and an operator's session: forms carry its CSRF
    token), and the app's own fingerprint.
    """
    parts = (
        current_app.extensions["render_fingerprint"],
        rendering_key(),
        view.endpoint,
        rendering,
        request.url,
        version.token,
    )
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


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


@dataclass(frozen=True)
class ListRequest:
    """Which list a request asks for, and how: read from the request before any query."""

    view: ListView
    parsed: ParsedFilter
    task_filter: TaskFilter
    rendering: str
    self_url: str
    now: datetime

    def template(self) -> str:
        """The view's whole page, the results region alone, or its chart and top errors."""
        templates = {PAGE: self.view.template, REGION: "_results.html"}
        return templates.get(self.rendering, "_insights.html")

    def respond(self, body: str, etag: str | None, once: bool = False) -> Response:
        """The answer with the headers every answer of the list carries; a 304 when the
        browser's copy has `etag`, a 503 (try again shortly) when there is no ETag. A page
        shown `once` (it carries a message) is never stored and has no ETag."""
        response = make_response(body, 200 if etag else 503)
        response.vary.update(VARY)
        response.headers["Cache-Control"] = "no-store" if once else "no-cache"
        if self.rendering == REGION:
            response.headers.update(history_headers(self.view, self.self_url))
        if once:
            return response
        if etag is None:
            response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
            return response
        response.set_etag(etag)
        return response.make_conditional(request)


def render_fresh(ask: ListRequest, connection: Any, version: DataVersion, etag: str) -> str:
    """List, count and render the list: what the data version does not tell apart.

    The results region alone leaves out the chart and the top errors, which take several
    times as long as the list: it carries a placeholder that loads them right after the
    swap. The whole page (no JavaScript needed) draws them in place.
    """
    task_filter, now, rendering = ask.task_filter, ask.now, ask.rendering
    listed, charted = rendering != INSIGHTS, rendering != REGION
    region_etags = {REGION: etag, PAGE: list_etag(ask.view, REGION, version)}
    shown = Shown(
        ask.self_url,
        now,
        page=list_tasks(connection, task_filter, now) if listed else None,
        facets=shared_facets(connection, task_filter, now, version) if listed else None,
        region_etag=region_etags.get(rendering),
        histogram=shared_histogram(connection, task_filter, now, version) if charted else None,
        errors=(
            shared_errors(connection, task_filter, now, version, TOP_ERRORS_SHOWN)
            if charted
            else None
        ),
        lazy_insights=not charted,
    )
    tags = known_tags(connection, TAG_SUGGESTIONS) if rendering == PAGE else []
    context = results_context(ask.view, ask.parsed, task_filter, shown)
    return render_template(
        ask.template(), **context, known_tags=tags, insights_alone=rendering == INSIGHTS
    )


def has_message() -> bool:
    """Whether an action left a message (a flash) for the next page this browser sees."""
    return bool(session.get("_flashes"))


def render_list(view: ListView, insights: bool = False) -> Response:
    """The list page, only its results region for an htmx request that targets it, or
    (`insights`) only its chart and top errors.

    The ETag comes first, from the data version alone: a view that has not changed since
    the browser's copy answers 304 before anything is listed, counted or rendered, and a
    view another viewer was just sent is sent as rendered then (the ETag covers everything
    the rendering depends on), from the process or from the shared cache.
    """
    parsed, task_filter = page_filter(request.args)
    rendering = INSIGHTS if insights else REGION if wants_results_fragment() else PAGE
    self_url = history_url(view, parsed, task_filter, request.args)
    ask = ListRequest(view, parsed, task_filter, rendering, self_url, request_time())
    rendered: Cache = current_app.extensions["rendered_lists"]
    try:
        connection = read_connection()
        if (jump := jump_to_task(view, connection, task_filter)) is not None:
            return jump
        version = data_version(connection, ask.now)
        etag = list_etag(view, rendering, version)
        make = functools.partial(render_fresh, ask, connection, version, etag)
        if has_message():
            # What an action just did, for this browser alone: never kept, shared or 304'd.
            return ask.respond(make(), etag, once=True)
        if request.if_none_match.contains_weak(etag):
            return ask.respond("", etag)
        body = kept_or_made(rendered, f"list:{etag}", make)
        return ask.respond(body, etag)
    except DATABASE_ERRORS as error:
        if not is_unreachable(error):
            raise
        log_database_error(error)
        close_read_connection()
        detail = outage(error)[1]
    context = results_context(view, parsed, task_filter, Shown(self_url, ask.now))
    body = render_template(
        ask.template(),
        **context,
        known_tags=[],
        unavailable_detail=detail,
        insights_alone=rendering == INSIGHTS,
    )
    return ask.respond(body, None)


def jump_to_task(view: ListView, connection: Any, task_filter: TaskFilter) -> Response | None:
    """A whole task id in the search box opens that task's page, when the task exists.

    The task page's way back is the list without the search, which would only open the
    task again. An htmx request is told to go there (`HX-Redirect`), a plain one redirected.
    """
    task_id = task_filter.search.whole_id if task_filter.search else None
    if task_id is None or get_task(connection, task_id) is None:
        return None
    url = view.task_url(task_id, replace(task_filter.first_page, search=None))
    if request.headers.get("HX-Request") == "true":
        response = make_response("", 200)
        response.headers["HX-Redirect"] = url
    else:
        response = redirect(url, 303)
    response.vary.update(VARY)
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/")
def index() -> Response:
    """Every task, filterable, paginated, refreshing itself while tasks are active."""
    return render_list(FULL_VIEW)


@bp.get("/embed")
def embed() -> Response:
    """The same list, compact, for the portal's iframe (`hide=filters` drops the form)."""
    return render_list(embed_view())


@bp.get("/insights")
def insights() -> Response:
    """The chart and top errors of `/` for the same query string: a live page's results
    region loads them right after it is swapped in."""
    return render_list(FULL_VIEW, insights=True)


@bp.get("/embed/insights")
def embed_insights() -> Response:
    """The chart and top errors of the embed, whose links stay inside the embed."""
    return render_list(embed_view(), insights=True)


def render_task(view: ListView, task_id: str) -> Response:
    """One task: every field, the full error, and the way back to the list it came from."""
    detail = task_or_404(task_id)
    parsed_id = detail.row.id
    _, back_filter = page_filter(request.args)
    row = detail.row
    body = render_template(
        "task.html",
        view=view,
        row=row,
        details=detail.details,
        events=task_events(read_connection(), parsed_id),
        now=display_now(request_time()),
        back_url=view.url(back_filter),
        back_filter=back_filter,
        json_url=url_for("api.show_task_json", task_id=parsed_id),
        full_view_url=url_for("pages.show_task", task_id=parsed_id),
        tag_url=view.url(TaskFilter(tags=(row.tag,))) if row.tag else None,
        cancelling=detail.cancelling,
        self_url=request.full_path.rstrip("?"),
        retry_of=detail.retry_of,
        retried_as=detail.retried_as,
        retry_of_url=view.task_url(detail.retry_of, back_filter) if detail.retry_of else None,
        retried_as_url=view.task_url(detail.retried_as, back_filter) if detail.retried_as else None,
    )
    response = make_response(body)
    response.headers["Cache-Control"] = "no-cache"
    response.add_etag()
    return response.make_conditional(request)


@bp.get("/task/<task_id>")
def show_task(task_id: str) -> Response:
    """A task's own page."""
    return render_task(FULL_VIEW, task_id)


@bp.get("/embed/task/<task_id>")
def embed_task(task_id: str) -> Response:
    """A task's page inside the portal's frame."""
    return render_task(embed_view(), task_id)


# -- registration ----------------------------------------------------------------------------


def template_helpers(asset: HtmxAsset) -> dict[str, Any]:
    """Names every template may use."""
    return {
        "htmx": asset,
        "htmx_config": HTMX_CONFIG,
        "results_id": RESULTS_ID,
        "type_labels": TYPE_LABELS,
        "status_labels": STATUS_LABELS,
        "status_icons": STATUS_ICONS,
        "window_choices": WINDOW_CHOICES,
        "page_sizes": PAGE_SIZES,
        "task_types": TASK_TYPES,
        "statuses": STATUSES,
        "live_statuses": LIVE_STATUSES,
        "error_preview": ERROR_PREVIEW_CHARACTERS,
        "time_ago": time_ago,
        "task_duration": task_duration,
        "stalled_text": stalled_text,
        "event_labels": EVENT_LABELS,
    }


def init_app(app: Flask) -> None:
    """Register the pages and their template helpers."""
    asset = htmx_asset(app)
    app.extensions["render_fingerprint"] = render_fingerprint(app)
    app.register_blueprint(bp)
    app.context_processor(lambda: template_helpers(asset))
    app.add_template_filter(format_timestamp, "iso")
    app.add_template_filter(utc_text, "utc")
    app.add_template_filter(thousands, "thousands")
    app.add_template_filter(total_text, "total_text")
    app.add_template_filter(mark_words, "mark")
