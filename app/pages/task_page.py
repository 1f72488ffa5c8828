"""One task's page, `/task/<id>` (and `/embed/task/<id>` inside the portal's frame)."""

from __future__ import annotations

from flask import Response, make_response, render_template, request, url_for

from app.api import task_or_404
from app.clock import display_now, request_time
from app.events import task_events
from app.filters import TaskFilter
from app.models import read_connection
from app.pages.blueprint import bp
from app.pages.views import FULL_VIEW, ListView, embed_view, page_filter


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
