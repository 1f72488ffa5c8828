"""One task's page, `/task/<id>` (and `/embed/task/<id>` inside the portal's frame).

What changes as the task lives (its status, buttons, times, events and fields) is one part
of the page, `_task_live.html`: the page includes it, and an htmx request that targets it
gets it alone. While the task is queued or running that part asks for itself every few
seconds, so an operator who asked a running task to stop sees "Cancelling…" turn into
"Cancelled" once its module confirms, without reloading.
"""

from __future__ import annotations

from typing import Any

from flask import Response, current_app, make_response, render_template, request, url_for
from werkzeug.http import generate_etag, quote_etag

from app.api import task_or_404
from app.clock import display_now, request_time
from app.events import task_events
from app.filters import TaskFilter
from app.models import read_connection
from app.pages.blueprint import bp
from app.pages.htmx import swaps_only
from app.pages.views import FULL_VIEW, ListView, embed_view, page_filter
from app.query import TaskDetail

LIVE_PART_ID = "task-live"
# Every header the task page's answer depends on besides its URL (and the viewer's).
VARY = ("HX-Request", "HX-Target", "HX-History-Restore-Request")


def task_context(view: ListView, detail: TaskDetail) -> dict[str, Any]:
    """Everything the task page and its live part render."""
    row = detail.row
    _, back_filter = page_filter(request.args)
    retry_of, retried_as = detail.retry_of, detail.retried_as
    return {
        "view": view,
        "row": row,
        "details": detail.details,
        "events": task_events(read_connection(), row.id),
        "now": display_now(request_time()),
        "back_url": view.url(back_filter),
        "back_filter": back_filter,
        "json_url": url_for("api.show_task_json", task_id=row.id),
        "full_view_url": url_for("pages.show_task", task_id=row.id),
        "tag_url": view.url(TaskFilter(tags=(row.tag,))) if row.tag else None,
        "self_url": request.full_path.rstrip("?"),
        "refresh_seconds": current_app.config["LIVE_REFRESH_SECONDS"],
        "retry_of": retry_of,
        "retried_as": retried_as,
        "retry_of_url": view.task_url(retry_of, back_filter) if retry_of else None,
        "retried_as_url": view.task_url(retried_as, back_filter) if retried_as else None,
    }


def render_task(view: ListView, task_id: str) -> Response:
    """One task: every field, the full error, and the way back to the list it came from;
    or, for htmx, only the part that changes as the task lives.

    The page carries its live part's ETag, which the page's script sends when the part asks
    for itself again: an unchanged part answers 304 and is left as it is.
    """
    context = task_context(view, task_or_404(task_id))
    live = render_template("_task_live.html", **context)
    if swaps_only(LIVE_PART_ID):
        return conditional(live)
    live_etag = quote_etag(generate_etag(live.encode()))
    return conditional(render_template("task.html", **context, live_etag=live_etag))


def conditional(body: str) -> Response:
    """The answer with its ETag (a digest of the body), or a 304 when the browser has it."""
    response = make_response(body)
    response.vary.update(VARY)
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
