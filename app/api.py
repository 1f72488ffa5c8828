"""The JSON API: `/tasks`, `/tasks/counts`, `/tasks/<id>`, its events and the exports."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Generator
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, abort, current_app, jsonify, request, url_for
from werkzeug.routing import BaseConverter

from app.cache import shared_facets
from app.clock import request_time
from app.errors import invalid_query
from app.events import Event, task_events
from app.export import EXPORT_FORMATS, export_response, page_parameter_errors
from app.filters import (
    DEFAULT_LIMIT,
    Cursor,
    TaskFilter,
    format_timestamp,
    parse_filter,
    sign_cursor,
)
from app.models import connect_for_reading, read_connection
from app.query import (
    TaskDetail,
    TaskPage,
    TaskRow,
    get_task,
    iter_tasks,
    list_tasks,
    task_histogram,
    top_errors,
)

bp = Blueprint("api", __name__)


class TaskIdConverter(BaseConverter):
    """A task id in a path: any segment but the names of the actions on many tasks, so that
    `/tasks/cancel` is that action's alone (a GET there is a 405, not "no such task")."""

    regex = r"(?!(?:cancel|retry)$)[^/]+"


def json_value(value: Any) -> Any:
    """Write values the one way the API promises: UTC `Z` timestamps, ids as strings."""
    if isinstance(value, datetime):
        return format_timestamp(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


TIMESTAMP_FIELDS = (
    "created_at",
    "updated_at",
    "started_at",
    "finished_at",
    "cancel_requested_at",
)


def task_json(row: TaskRow) -> dict[str, Any]:
    """One list item: the same fields whatever the task's type, the id first."""
    fields = row._asdict()
    for name in TIMESTAMP_FIELDS:
        if fields[name] is not None:
            fields[name] = format_timestamp(fields[name])
    return {"id": str(fields.pop("id")), **fields}


def next_page_cursor(task_filter: TaskFilter, page: TaskPage) -> Cursor | None:
    """The signed cursor of the page after this one; None on the last page."""
    if page.next_position is None:
        return None
    return sign_cursor(*page.next_position, task_filter.order, current_app.secret_key)


def api_filter(refused: dict[str, list[str]] | None = None) -> TaskFilter | Response:
    """The request's filter, or the 422 naming every bad parameter, `refused` ones included."""
    parsed = parse_filter(
        request.args,
        secret_key=current_app.secret_key,
        strict=True,
        stall_limits=current_app.config["STALL_LIMITS"],
    )
    errors = {**parsed.errors, **(refused or {})}
    if errors or parsed.value is None:
        return invalid_query(errors)
    return parsed.value


@bp.get("/tasks")
def list_tasks_json() -> Response:
    """Tasks of every type, one list, newest first, paginated by offset or cursor."""
    task_filter = api_filter()
    if isinstance(task_filter, Response):
        return task_filter
    page = list_tasks(read_connection(), task_filter, request_time())
    next_cursor = next_page_cursor(task_filter, page)
    response = jsonify(
        {
            "items": [task_json(row) for row in page.items],
            "total": page.total.as_json(),
            "limit": task_filter.limit,
            "offset": task_filter.offset,
            "next_cursor": next_cursor.token if next_cursor else None,
        }
    )
    if next_cursor is not None:
        next_args = task_filter.to_args(cursor=next_cursor, offset=0)
        next_url = url_for("api.list_tasks_json", _external=True) + "?" + urlencode(next_args)
        response.headers["Link"] = f'<{next_url}>; rel="next"'
    return response


@bp.get("/tasks/counts")
def count_tasks_json() -> Response:
    """How many tasks match, by status and by type, each facet ignoring its own filter."""
    task_filter = api_filter()
    if isinstance(task_filter, Response):
        return task_filter
    facets = shared_facets(read_connection(), task_filter, request_time())
    return jsonify(facets.as_json())


# What the chart and the errors take no part of: they have no pages (the errors' `limit` is
# how many groups).
CHART_REFUSES = ("limit", "offset", "cursor")
ERRORS_REFUSE = ("offset", "cursor")


def refused_parameters(names: tuple[str, ...], reason: str) -> dict[str, list[str]]:
    """The request's parameters among `names`, each refused for `reason`."""
    return {name: [reason] for name in names if name in request.args}


@bp.get("/tasks/histogram")
def histogram_json() -> Response:
    """Matching tasks per bucket of created_at, by status, oldest bucket first."""
    refused = refused_parameters(CHART_REFUSES, "the histogram has no pages; leave it out")
    task_filter = api_filter(refused)
    if isinstance(task_filter, Response):
        return task_filter
    return jsonify(task_histogram(read_connection(), task_filter, request_time()).as_json())


def error_group_url(endpoint: str, task_filter: TaskFilter, key: str) -> str:
    """The URL that lists exactly one group's tasks under the filter."""
    args = task_filter.to_args(error_group=key, limit=DEFAULT_LIMIT, offset=0, cursor=None)
    return url_for(endpoint) + "?" + urlencode(args)


@bp.get("/tasks/errors")
def errors_json() -> Response:
    """The most common errors of the matching failed tasks, most frequent first."""
    refused = refused_parameters(ERRORS_REFUSE, "the errors have no pages; limit is how many")
    task_filter = api_filter(refused)
    if isinstance(task_filter, Response):
        return task_filter
    groups = top_errors(read_connection(), task_filter, request_time(), task_filter.limit)
    items = [
        group.as_json()
        | {"tasks_url": error_group_url("api.list_tasks_json", task_filter, group.key)}
        for group in groups
    ]
    return jsonify({"groups": items})


def export_tasks(kind: str) -> Response:
    """Every task the filter matches, streamed in one format; paging parameters are refused."""
    # A paging parameter is refused whatever its value, so its own parse error is moot.
    task_filter = api_filter(refused=page_parameter_errors(request.args))
    if isinstance(task_filter, Response):
        return task_filter
    now = request_time()
    return export_response(streamed_tasks(task_filter, now), EXPORT_FORMATS[kind], task_json, now)


def streamed_tasks(task_filter: TaskFilter, now: datetime) -> Generator[TaskRow, None, None]:
    """Every matching task, on a connection of its own that lasts as long as the download.

    The response outlives the request's own connection, which is given back when the view
    returns; closing the download closes this one. Its statements have the export's limit.
    """
    with connect_for_reading(current_app.config["EXPORT_STATEMENT_TIMEOUT_MS"]) as connection:
        yield from iter_tasks(connection, task_filter, now)


@bp.get("/tasks.csv")
def export_csv() -> Response:
    """Every matching task as CSV, one header line then a record per task."""
    return export_tasks("csv")


@bp.get("/tasks.ndjson")
def export_ndjson() -> Response:
    """Every matching task as newline-delimited JSON, one list item per line."""
    return export_tasks("ndjson")


def task_or_404(task_id: str) -> TaskDetail:
    """The task with this id, or a 404 that says whether the id or the task is wrong."""
    parsed_id = parsed_task_id(task_id)
    detail = get_task(read_connection(), parsed_id)
    if detail is None:
        abort(404, description=f"no task has id {parsed_id}")
    return detail


def parsed_task_id(task_id: str) -> uuid.UUID:
    """The id in a task's URL, or a 404 that says it is not one."""
    try:
        return uuid.UUID(task_id)
    except ValueError:
        abort(404, description=f"{task_id!r} is not a task id (a UUID)")


@bp.get("/tasks/<task_id>/events")
def task_events_json(task_id: str) -> Response:
    """A task's events, oldest first: what happened, who did it, when (kept after deletion)."""
    parsed_id = parsed_task_id(task_id)
    connection = read_connection()
    events = task_events(connection, parsed_id)
    if not events and get_task(connection, parsed_id) is None:
        abort(404, description=f"no task has id {parsed_id}, and no events name it")
    return jsonify({"task_id": str(parsed_id), "items": [event_json(e) for e in events]})


def event_json(event: Event) -> dict[str, Any]:
    """One event as the API writes it."""
    return {name: json_value(value) for name, value in dataclasses.asdict(event).items()}


def task_detail_json(detail: TaskDetail) -> dict[str, Any]:
    """One task as `/tasks/<id>` answers it (and the reporting API after each move)."""
    details = {name: json_value(value) for name, value in detail.details.items()}
    links = {
        "retry_of": json_value(detail.retry_of),
        "retried_as": json_value(detail.retried_as),
    }
    return {**task_json(detail.row), **links, "details": details}


@bp.get("/tasks/<task:task_id>")
def show_task_json(task_id: str) -> Response:
    """One task with its type-specific fields."""
    return jsonify(task_detail_json(task_or_404(task_id)))
