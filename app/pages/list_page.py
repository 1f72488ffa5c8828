"""The list: `/` and `/embed`, the results region alone for htmx, and the chart and top
errors alone (`/insights`, `/embed/insights`).

One template renders both the page and, for an htmx request that targets the results
region, that region alone. The answer's ETag comes from the data version before anything
is listed, so an unchanged view answers 304 at once.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from flask import (
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

from app.cache import Cache, kept_or_made, shared_errors, shared_facets, shared_histogram
from app.clock import request_time
from app.errors import (
    DATABASE_ERRORS,
    RETRY_AFTER_SECONDS,
    is_unreachable,
    log_database_error,
    outage,
)
from app.filters import ParsedFilter, TaskFilter
from app.models import close_read_connection, read_connection
from app.pages.blueprint import bp
from app.pages.etags import list_etag
from app.pages.htmx import swaps_only
from app.pages.results import Shown, results_context
from app.pages.views import FULL_VIEW, ListView, embed_view, history_url, page_filter
from app.query import DataVersion, data_version, get_task, known_tags, list_tasks
from app.query.lookups import with_lookups

RESULTS_ID = "results"
# What a list request renders: the whole page, the results region alone (htmx), or the chart
# and top errors alone, which a live page's region loads right after it is swapped in.
PAGE, REGION, INSIGHTS = "page", "fragment", "insights"
# Every header the list's response depends on besides its URL.
VARY = ("HX-Request", "HX-Target", "HX-History-Restore-Request", "HX-Current-URL")
TAG_SUGGESTIONS = 50
TOP_ERRORS_SHOWN = 5


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
    now, rendering = ask.now, ask.rendering
    task_filter = with_lookups(connection, ask.task_filter)  # once for all four reads
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
    rendering = INSIGHTS if insights else REGION if swaps_only(RESULTS_ID) else PAGE
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
