"""Cancel and retry, for operators: on the API (JSON) and from the page's forms.

`POST /tasks/<id>/cancel` and `/retry` answer JSON (problem documents for errors); the page's
buttons post to `/task/<id>/cancel` and `/retry`, which go back to where the button was (a
303) with a message. Both ask the same functions of app/actions.py. Every write needs the
operator role; one without a bearer token needs the page's CSRF token too.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    request,
    url_for,
)

from app.actions import ActionConflict, ActionResult, TaskMissing, cancel_task, retry_task
from app.errors import problem
from app.identity import OPERATE, protect_form, require
from app.models import db

bp = Blueprint("operate", __name__)

Action = Callable[[sa.Engine, uuid.UUID, datetime], ActionResult]
ACTIONS: dict[str, Action] = {"cancel": cancel_task, "retry": retry_task}
CONFLICT_TITLE = {"cancel": "Task already finished", "retry": "Task cannot be retried"}


def act(name: str, task_id: str) -> ActionResult:
    """Check who asks (401/403), the CSRF token unless a bearer token came, then act.

    ActionConflict (409) is the caller's to answer; an unknown id is a 404.
    """
    require(OPERATE)
    protect_form()
    try:
        parsed = uuid.UUID(task_id)
    except ValueError:
        abort(404, description=f"{task_id!r} is not a task id (a UUID)")
    try:
        return ACTIONS[name](db.engine, parsed, current_app.config["CLOCK"]())
    except TaskMissing as missing:
        abort(404, description=str(missing))


def api_answer(name: str, task_id: str) -> Response:
    """The action's result as JSON, or a 409 problem naming the task's status."""
    try:
        result = act(name, task_id)
    except ActionConflict as conflict:
        extra = {"task_status": conflict.status}
        if conflict.retried_as is not None:
            extra["retried_as"] = str(conflict.retried_as)
        return problem(409, CONFLICT_TITLE[name], str(conflict), **extra)
    response = jsonify(result.as_json())
    if result.new_task_id is not None:
        response.status_code = 201
        response.headers["Location"] = url_for("api.show_task_json", task_id=result.new_task_id)
    return response


@bp.post("/tasks/<task_id>/cancel")
def cancel_json(task_id: str) -> Response:
    """Cancel a queued task at once, or ask a running one to stop (its module confirms)."""
    return api_answer("cancel", task_id)


@bp.post("/tasks/<task_id>/retry")
def retry_json(task_id: str) -> Response:
    """Queue a new task with a failed or cancelled task's type, inputs and tag."""
    return api_answer("retry", task_id)


# -- the page's forms ----------------------------------------------------------------------------

MESSAGES = {
    "cancelled": "Cancelled the task.",
    "cancel_requested": "Asked the task to stop: it shows “Cancelling…” until its module confirms.",
    "retried": "Queued a retry of the task.",
}


def local_path(target: str | None, fallback: str) -> str:
    """Where to go back to: a path on this site only, never another host."""
    if not target:
        return fallback
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return fallback
    if "\\" in target or any(ord(character) < 0x20 for character in target):
        return fallback
    return target


def task_endpoint() -> str:
    """The task page of the view the button was on: the embed's, or the site's."""
    return "pages.embed_task" if request.form.get("embed") == "1" else "pages.show_task"


def page_answer(name: str, task_id: str) -> Response:
    """Act, then go back (303) with what happened as a message."""
    try:
        result = act(name, task_id)
    except ActionConflict as conflict:
        flash(str(conflict), "error")
    else:
        flash(MESSAGES[result.outcome], "done")
        if result.new_task_id is not None:
            return redirect(url_for(task_endpoint(), task_id=result.new_task_id), 303)
    fallback = url_for(task_endpoint(), task_id=task_id)
    return redirect(local_path(request.form.get("next"), fallback), 303)


@bp.post("/task/<task_id>/cancel")
def cancel_page(task_id: str) -> Response:
    """The Cancel button of the task page and of the list's rows."""
    return page_answer("cancel", task_id)


@bp.post("/task/<task_id>/retry")
def retry_page(task_id: str) -> Response:
    """The Retry button: on to the new task's page."""
    return page_answer("retry", task_id)
