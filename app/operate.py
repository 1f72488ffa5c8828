"""Cancel and retry, for operators: on the API (JSON) and from the page's forms.

`POST /tasks/<id>/cancel` and `/retry` answer JSON (problem documents for errors); the page's
buttons post to `/task/<id>/cancel` and `/retry`, which go back to where the button was (a
303) with a message. Both ask the same functions of app/actions.py. Every write needs the
operator role; one without a bearer token needs the page's CSRF token too. The one
exception: `POST /tasks/<id>/cancel` with a reporter's token is a module confirming that it
stopped its task (app/reporting.py).
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
    render_template,
    request,
    url_for,
)
from werkzeug.datastructures import MultiDict

from app.actions import (
    APPLIES_TO,
    ActionConflict,
    ActionResult,
    BulkPlan,
    TaskMissing,
    TooMany,
    applicable_filter,
    cancel_task,
    plan_bulk,
    retry_task,
    run_bulk,
)
from app.api import parsed_task_id
from app.errors import invalid_query, problem
from app.export import PAGE_PARAMETERS
from app.filters import TaskFilter, parse_filter
from app.idempotency import answered_once
from app.identity import OPERATE, REPORT, current_identity, protect_form, require
from app.models import db
from app.pages.views import with_query
from app.pages.words import STATUS_LABELS, TYPE_LABELS
from app.reporting import confirm_cancel

bp = Blueprint("operate", __name__)

Action = Callable[[sa.Engine, uuid.UUID, datetime, str], ActionResult]
ACTIONS: dict[str, Action] = {"cancel": cancel_task, "retry": retry_task}
CONFLICT_TITLE = {"cancel": "Task already finished", "retry": "Task cannot be retried"}


def actor_name() -> str:
    """Who the events of an action name: the signed-in person or the token's name."""
    return current_identity().name or "anonymous"


def act(name: str, task_id: str) -> ActionResult:
    """Check who asks (401/403), the CSRF token unless a bearer token came, then act.

    ActionConflict (409) is the caller's to answer; an unknown id is a 404.
    """
    require(OPERATE)
    protect_form()
    parsed = parsed_task_id(task_id)
    try:
        return ACTIONS[name](db.engine, parsed, current_app.config["CLOCK"](), actor_name())
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
    # An operator cancels as far as they may; a module (a reporter) confirms that it stopped.
    if not require(OPERATE, REPORT).may(OPERATE):
        return confirm_cancel(task_id)
    return answered_once(lambda: api_answer("cancel", task_id))


@bp.post("/tasks/<task_id>/retry")
def retry_json(task_id: str) -> Response:
    """Queue a new task with a failed or cancelled task's type, inputs and tag."""
    return api_answer("retry", task_id)


# -- many at once --------------------------------------------------------------------------------

DRY_RUN_VALUES = {"1": True, "true": True, "0": False, "false": False}
BULK_REFUSED = "a bulk action reads every match; leave out limit, offset and cursor"


def bulk_arguments(args: MultiDict[str, str]) -> tuple[TaskFilter, bool] | Response:
    """The list's filter and `dry_run` from the query string, or the 422 naming each bad one."""
    rest = MultiDict([(k, v) for k, v in args.items(multi=True) if k != "dry_run"])
    errors = {name: [BULK_REFUSED] for name in PAGE_PARAMETERS if name in rest}
    dry_runs = args.getlist("dry_run")
    if len(dry_runs) > 1 or any(value not in DRY_RUN_VALUES for value in dry_runs):
        errors["dry_run"] = ["once at most, one of 1, true, 0, false"]
    parsed = parse_filter(rest, secret_key=current_app.secret_key, strict=True)
    errors = {**parsed.errors, **errors}
    if errors or parsed.value is None:
        return invalid_query(errors)
    return parsed.value, bool(dry_runs) and DRY_RUN_VALUES[dry_runs[0]]


def bulk_plan(task_filter: TaskFilter, action: str) -> BulkPlan:
    """What the action would change, read on the primary (it acts there next)."""
    with db.engine.connect() as connection:
        return plan_bulk(connection, task_filter, action, current_app.config["CLOCK"]())


def bulk_answer(action: str) -> Response:
    """A dry run (how many and which) or the action (what changed, what did not and why)."""
    require(OPERATE)
    protect_form()
    arguments = bulk_arguments(request.args)
    if isinstance(arguments, Response):
        return arguments
    task_filter, dry_run = arguments
    try:
        plan = bulk_plan(task_filter, action)
    except TooMany as too_many:
        return invalid_query({"filter": [str(too_many)]})
    unchanged = [item.as_json() for item in plan.skipped]
    if dry_run:
        ids = [str(task_id) for _, task_id in plan.targets]
        body = {"action": action, "dry_run": True, "count": len(ids), "ids": ids}
        return jsonify({**body, "unchanged": unchanged})
    changed, left = run_bulk(db.engine, plan, current_app.config["CLOCK"](), actor_name())
    return jsonify(
        {
            "action": action,
            "dry_run": False,
            "count": len(changed),
            "changed": [result.as_json() for result in changed],
            "unchanged": [item.as_json() for item in left],
        }
    )


@bp.post("/tasks/cancel")
def cancel_many_json() -> Response:
    """Cancel every queued and running task the filter matches, at most 1,000 a call."""
    return bulk_answer("cancel")


@bp.post("/tasks/retry")
def retry_many_json() -> Response:
    """Retry every failed and cancelled task the filter matches, at most 1,000 a call."""
    return bulk_answer("retry")


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


# -- many at once, from the page: a confirmation step, then what happened ------------------------

VERBS = {"cancel": "Cancel", "retry": "Retry"}


def bulk_question(action: str, task_filter: TaskFilter, count: int) -> str:
    """ "Cancel 37 queued and running training tasks tagged exp-7?" """
    narrowed = applicable_filter(task_filter, action)
    statuses = narrowed.statuses if narrowed else APPLIES_TO[action]
    words = [VERBS[action], f"{count:,}", " and ".join(STATUS_LABELS[s].lower() for s in statuses)]
    if task_filter.task_types:
        words.append(" or ".join(TYPE_LABELS[t].lower() for t in task_filter.task_types))
    words.append("task" if count == 1 else "tasks")
    if task_filter.tags:
        words.append("tagged " + " or ".join(task_filter.tags))
    return " ".join(words) + "?"


def bulk_page(action: str, **context: object) -> str:
    """The confirmation or the result page."""
    return render_template("bulk.html", action=action, verb=VERBS[action], **context)


def page_bulk_filter(action: str) -> TaskFilter | Response:
    """The filter of the page's bulk form, or the page (422) telling what is wrong with it."""
    arguments = bulk_arguments(request.args)
    if isinstance(arguments, Response):
        errors = arguments.get_json()["errors"]
        body = bulk_page(action, errors=errors, back_url=url_for("pages.index"))
        return Response(body, 422, mimetype="text/html")
    return arguments[0]


def confirm_bulk_page(action: str) -> Response | str:
    """How many tasks the action would change, asked before anything happens (a dry run)."""
    require(OPERATE)
    task_filter = page_bulk_filter(action)
    if isinstance(task_filter, Response):
        return task_filter
    back_url = with_query(url_for("pages.index"), task_filter.to_args())
    try:
        plan = bulk_plan(task_filter, action)
    except TooMany as too_many:
        return bulk_page(action, too_many=str(too_many), back_url=back_url)
    return bulk_page(
        action,
        plan=plan,
        question=bulk_question(action, task_filter, len(plan.targets)),
        action_url=with_query(request.path, task_filter.to_args()),
        back_url=back_url,
    )


def run_bulk_page(action: str) -> Response | str:
    """Act on every match, then list what changed and what did not, and why."""
    require(OPERATE)
    protect_form()
    task_filter = page_bulk_filter(action)
    if isinstance(task_filter, Response):
        return task_filter
    back_url = with_query(url_for("pages.index"), task_filter.to_args())
    try:
        plan = bulk_plan(task_filter, action)
    except TooMany as too_many:
        return bulk_page(action, too_many=str(too_many), back_url=back_url)
    changed, unchanged = run_bulk(db.engine, plan, current_app.config["CLOCK"](), actor_name())
    return bulk_page(action, changed=changed, unchanged=unchanged, back_url=back_url)


@bp.get("/bulk/cancel")
def confirm_cancel_page() -> Response | str:
    """How many tasks "Cancel the matching tasks" would cancel, asked first."""
    return confirm_bulk_page("cancel")


@bp.post("/bulk/cancel")
def cancel_many_page() -> Response | str:
    """Cancel the matching tasks, once confirmed."""
    return run_bulk_page("cancel")


@bp.get("/bulk/retry")
def confirm_retry_page() -> Response | str:
    """How many tasks "Retry the matching tasks" would retry, asked first."""
    return confirm_bulk_page("retry")


@bp.post("/bulk/retry")
def retry_many_page() -> Response | str:
    """Retry the matching tasks, once confirmed."""
    return run_bulk_page("retry")
