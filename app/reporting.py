"""The reporting API: modules that cannot use the recorder report their tasks over HTTP.

`POST /tasks` creates a task; `POST /tasks/<id>/start`, `/progress`, `/heartbeat`,
`/complete` and `/fail` move it; `POST /tasks/<id>/cancel` with a reporter token confirms
that the module stopped it (the same URL with an operator's token is the operator's cancel,
app/operate.py: each role cancels as far as it may). Only the reporter role reports, always
with a bearer token (so no CSRF token).

Every move is the recorder's own (app/recorder.py), with the token's name as the actor of
its events: the same compare-and-set, the same events, the same error groups. An illegal
move is a 409 naming the task's status; a progress report or heartbeat of a task an
operator asked to stop is a 409 with `cancel_requested: true` (the recorder's
CancelRequested): the module stops, then confirms with `/cancel`. Bodies are checked field
by field (app/task_fields.py), and every write honours `Idempotency-Key`
(app/idempotency.py).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from flask import Blueprint, Response, abort, current_app, jsonify, request, url_for

from app.actions import ActionResult, TaskMissing, task_type_of
from app.api import parsed_task_id, task_detail_json
from app.errors import invalid_body, problem
from app.idempotency import answered_once, read_body
from app.identity import REPORT, current_identity, protect_form, require
from app.models import MODEL_FOR_TYPE, TAG_MAX_LENGTH, TASK_TYPES, Status, db
from app.query import get_task
from app.recorder import CancelRequested, IllegalTransition, Recorder, TaskNotFound
from app.task_fields import Field, check_body, input_fields, result_fields

bp = Blueprint("reporting", __name__)

ERROR_MSG_MAX_LENGTH = 10_000
TASK_TYPE_FIELD = Field(
    "task_type", "text", required=True, choices=TASK_TYPES, description="The kind of task."
)
TAG_FIELD = Field(
    "tag",
    "text",
    nullable=True,
    max_length=TAG_MAX_LENGTH,
    description="A label to find the task by, matched exactly (an experiment, a run).",
)
PROGRESS_FIELD = Field(
    "progress",
    "number",
    required=True,
    minimum=0.0,
    maximum=1.0,
    description="How far the task has got, from 0.0 to 1.0.",
)
ERROR_FIELD = Field(
    "error_msg",
    "text",
    required=True,
    max_length=ERROR_MSG_MAX_LENGTH,
    any_text=True,
    description="Why the task failed; newlines allowed (a traceback's end, say).",
)

Body = dict[str, Any]
Move = Callable[[Recorder, str, uuid.UUID, Body], None]


# -- what every reporting request goes through ------------------------------------------------


Write = Callable[[], Response]
# What checks a request's body: the write to perform, or the answer refusing it (a 422).
Check = Callable[[Body], Write | Response]


def reported(check: Check) -> Response:
    """Check who asks (the reporter role), the body (415, 422) and the task (404), then
    perform the write once per Idempotency-Key.

    A request refused before anything is written spends no key: corrected, it may be sent
    again under the same key.
    """
    require(REPORT)
    protect_form()
    body = json_body()
    if isinstance(body, Response):
        return body
    write = check(body)
    if isinstance(write, Response):
        return write
    return answered_once(write)


def json_body() -> Body | Response:
    """The body as a JSON object (none at all is `{}`), or the answer saying what is wrong;
    at most MAX_BODY_BYTES (else a 413)."""
    raw = read_body()
    if not raw.strip():
        return {}
    if not request.is_json:
        abort(415, description="Send the body as JSON, with Content-Type: application/json.")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        return invalid_body({"body": ["not valid JSON"]})
    if not isinstance(body, dict):
        return invalid_body({"body": ["must be a JSON object"]})
    return body


def module_recorder() -> Recorder:
    """The recorder, acting as the token: its name is who the events name."""
    name = current_identity().name or "module"
    return Recorder(db.engine, current_app.config["CLOCK"], actor=name)


def task_answer(task_id: uuid.UUID, status: int = 200) -> Response:
    """The task as `/tasks/<id>` shows it, read on the primary right after the move."""
    with db.engine.connect() as connection:
        detail = get_task(connection, task_id)
    if detail is None:
        abort(404, description=f"no task has id {task_id}")
    response = jsonify(task_detail_json(detail))
    response.status_code = status
    return response


def refused_move(refused: IllegalTransition) -> Response:
    """409: the task's status does not allow the move; or an operator asked it to stop."""
    if isinstance(refused, CancelRequested):
        confirm = url_for("operate.cancel_json", task_id=refused.task_id)
        return problem(
            409,
            "Cancel requested",
            f"task {refused.task_id} was asked to stop: stop its work, then confirm with "
            f"POST {confirm}",
            task_status=Status.RUNNING.value,
            cancel_requested=True,
        )
    return problem(
        409, "Move not allowed", str(refused), task_status=refused.current, cancel_requested=False
    )


# -- create -----------------------------------------------------------------------------------


def missing_references(fields: list[Field], values: Body) -> dict[str, list[str]]:
    """The id fields naming a task that does not exist (a training's dataset upload, say)."""
    errors: dict[str, list[str]] = {}
    with db.engine.connect() as connection:
        for field in fields:
            if field.references is None or values.get(field.name) is None:
                continue
            model = MODEL_FOR_TYPE[field.references]
            found = connection.execute(
                sa.select(model.id).where(model.id == values[field.name])
            ).first()
            if found is None:
                errors[field.name] = [f"no {field.references} task has id {values[field.name]}"]
    return errors


def new_task(body: Body) -> Write | Response:
    """Check the type, the tag and the type's inputs; the write records the task, answered
    201 with it."""
    task_type = body.get("task_type")
    if not isinstance(task_type, str) or task_type not in MODEL_FOR_TYPE:
        _, reason = TASK_TYPE_FIELD.check(task_type)
        return invalid_body({"task_type": [reason if "task_type" in body else "required"]})
    fields = [TAG_FIELD, *input_fields(task_type)]
    values, errors = check_body(fields, body, known_elsewhere=("task_type",))
    if not errors:
        errors = missing_references(fields, values)
    if errors:
        return invalid_body(errors)

    def create() -> Response:
        try:
            task_id = module_recorder().create(task_type, **values)
        except sa.exc.IntegrityError:
            # A task it names was deleted between the check and the insert.
            named = [f.name for f in fields if f.references and values.get(f.name) is not None]
            if not named:
                raise
            return invalid_body({name: ["no such task (deleted meanwhile)"] for name in named})
        response = task_answer(task_id, 201)
        response.headers["Location"] = url_for("api.show_task_json", task_id=task_id)
        return response

    return create


@bp.post("/tasks")
def create_task_json() -> Response:
    """Create a queued task of a type, with its inputs and an optional tag (reporter role)."""
    return reported(new_task)


# -- moves ------------------------------------------------------------------------------------


def no_fields(_task_type: str) -> list[Field]:
    return []


def performing(
    task_id: str,
    fields_for: Callable[[str], list[Field]],
    move: Move,
    answer: Callable[[str, uuid.UUID], Response] | None = None,
) -> Check:
    """A move of one task: its id (404) and its body's fields for its type (422) checked;
    the write is the recorder's move (409 when refused), answered with the task by default."""

    def check(body: Body) -> Write | Response:
        parsed = parsed_task_id(task_id)
        try:
            task_type = task_type_of(db.engine, parsed)
        except TaskMissing as missing:
            abort(404, description=str(missing))
        values, errors = check_body(fields_for(task_type), body)
        if errors:
            return invalid_body(errors)

        def write() -> Response:
            try:
                move(module_recorder(), task_type, parsed, values)
            except TaskNotFound:
                abort(404, description=f"no task has id {parsed}")
            except IllegalTransition as refused:
                return refused_move(refused)
            return answer(task_type, parsed) if answer else task_answer(parsed)

        return write

    return check


@bp.post("/tasks/<task_id>/start")
def start_task_json(task_id: str) -> Response:
    """Start a queued task: it is running (reporter role)."""
    return reported(performing(task_id, no_fields, lambda recorder, t, i, _: recorder.start(t, i)))


@bp.post("/tasks/<task_id>/progress")
def report_progress_json(task_id: str) -> Response:
    """Report how far a running task has got, from 0.0 to 1.0 (reporter role)."""
    return reported(
        performing(
            task_id,
            lambda _: [PROGRESS_FIELD],
            lambda recorder, t, i, values: recorder.report_progress(t, i, values["progress"]),
        )
    )


@bp.post("/tasks/<task_id>/heartbeat")
def heartbeat_json(task_id: str) -> Response:
    """Say that a running task's module is alive, so it is not stalled (reporter role)."""
    return reported(
        performing(task_id, no_fields, lambda recorder, t, i, _: recorder.heartbeat(t, i))
    )


@bp.post("/tasks/<task_id>/complete")
def complete_task_json(task_id: str) -> Response:
    """Complete a running task, with the results its type records (reporter role)."""
    return reported(
        performing(
            task_id,
            result_fields,
            lambda recorder, t, i, values: recorder.complete(t, i, **values),
        )
    )


@bp.post("/tasks/<task_id>/fail")
def fail_task_json(task_id: str) -> Response:
    """Fail a queued or running task, saying why (reporter role)."""
    return reported(
        performing(
            task_id,
            lambda _: [ERROR_FIELD],
            lambda recorder, t, i, values: recorder.fail(t, i, values["error_msg"]),
        )
    )


def cancelled_answer(task_type: str, task_id: uuid.UUID) -> Response:
    """The module's cancel answered as the operator's is: what the cancel did."""
    result = ActionResult(task_type, task_id, "cancelled", Status.CANCELLED.value)
    return jsonify(result.as_json())


def confirm_cancel(task_id: str) -> Response:
    """The module stopped its task (asked to, or of its own accord): it is cancelled.

    Served at `POST /tasks/<id>/cancel` (app/operate.py) when a reporter sends it.
    """
    return reported(
        performing(
            task_id,
            no_fields,
            lambda recorder, t, i, _: recorder.cancel(t, i),
            answer=cancelled_answer,
        )
    )
