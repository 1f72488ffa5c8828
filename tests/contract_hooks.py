"""Schemathesis hooks: what the API description cannot say about parameters taken together.

A drawn task id is almost never a task's, so a case of cancel or retry drawn as valid gets
the id of a real task that the action could apply to (one of the first page of such tasks).

OpenAPI describes each parameter alone. Three rules of `/tasks` join parameters: a cursor is
one the server made (it is signed), it is not given with offset, and created_after comes
before created_before. A request that breaks one of them answers 422, which is right, so a
case Schemathesis draws as valid is brought in line with them before it is sent: a drawn
cursor becomes a real one, fetched from the server for the case's order. Cases drawn as
invalid are sent as drawn. The 422s for these rules are tested in tests/test_filters.py and
tests/test_api.py.

The reporting API's cases drawn as valid are fitted the same way: a fresh Idempotency-Key
(a drawn one is shared by many cases with different bodies, which is rightly a 422), a task
that the move applies to, a referenced task that exists, and only the results of the
completed task's own type.

Writes need a token: CONTRACT_OPERATOR_TOKEN is sent to every operation but the reporting
API's, which gets CONTRACT_REPORTER_TOKEN (either may be left unset: those writes then
answer 401, as described).

Load with `SCHEMATHESIS_HOOKS=tests/contract_hooks.py` or `hooks` in schemathesis.toml.
"""

from __future__ import annotations

import os
import random
import uuid
from datetime import datetime
from functools import cache

import requests
import schemathesis
from schemathesis import Case, HookContext

from app.models import TASK_TYPES
from app.task_fields import input_fields, result_fields

# The tag of the operations a reporter's token is for.
REPORTING_TAG = "reporting"
# The task type each id field of a new task names.
REFERENCES = {
    field.name: field.references
    for task_type in TASK_TYPES
    for field in input_fields(task_type)
    if field.references
}


@cache
def server_cursor(base_url: str, order: str) -> str | None:
    """A cursor the server signed: the next_cursor of a one-task first page in `order`."""
    response = requests.get(f"{base_url}/tasks", params={"order": order, "limit": 1}, timeout=10)
    response.raise_for_status()
    return response.json()["next_cursor"]


def instant(text: str) -> datetime:
    """An RFC 3339 timestamp as the API reads it (a lower-case z is UTC)."""
    return datetime.fromisoformat(text[:-1] + "Z" if text.endswith("z") else text)


def keep_window_ordered(query: dict) -> None:
    """Make created_after come strictly before created_before."""
    after, before = query.get("created_after"), query.get("created_before")
    if not isinstance(after, str) or not isinstance(before, str):
        return
    if instant(after) == instant(before):
        del query["created_before"]
    elif instant(after) > instant(before):
        query["created_after"], query["created_before"] = before, after


def use_server_cursor(query: dict, base_url: str) -> None:
    """Replace a drawn cursor with one the server made for the same order, without offset."""
    if "cursor" not in query:
        return
    query.pop("offset", None)
    order = query.get("order", "desc")
    cursor = server_cursor(base_url, order if isinstance(order, str) else "desc")
    if cursor is None:
        del query["cursor"]
    else:
        query["cursor"] = cursor


# The statuses each action of one task applies to.
ACTION_STATUSES = {
    "cancel": ("queued", "running"),
    "retry": ("failed", "cancelled"),
    "start": ("queued",),
    "progress": ("running",),
    "heartbeat": ("running",),
    "complete": ("running",),
    "fail": ("queued", "running"),
}


@cache
def server_task_ids(base_url: str, action: str) -> tuple[str, ...]:
    """Ids of tasks `action` applies to, from the first page of them."""
    query = {"status": ACTION_STATUSES[action], "limit": 100}
    response = requests.get(f"{base_url}/tasks", params=query, timeout=10)
    response.raise_for_status()
    return tuple(item["id"] for item in response.json()["items"])


def use_real_task(case: Case) -> None:
    """Point a drawn cancel or retry at a task it could apply to."""
    action = case.operation.path.rsplit("/", 1)[-1]
    if case.method.upper() != "POST" or action not in ACTION_STATUSES or not case.path_parameters:
        return
    ids = server_task_ids(case.operation.schema.get_base_url(), action)
    if ids:
        case.path_parameters["task_id"] = random.choice(ids)


@cache
def server_task_type(base_url: str, task_id: str) -> str | None:
    """The type of a task, or None when no task has that id."""
    response = requests.get(f"{base_url}/tasks/{task_id}", timeout=10)
    return response.json()["task_type"] if response.status_code == 200 else None


@cache
def server_task_of_type(base_url: str, task_type: str) -> str | None:
    """The id of a task of one type, the newest."""
    query = {"task_type": task_type, "limit": 1}
    response = requests.get(f"{base_url}/tasks", params=query, timeout=10)
    response.raise_for_status()
    items = response.json()["items"]
    return items[0]["id"] if items else None


def fit_body(case: Case) -> None:
    """A new task names tasks that exist; a completion has only its task's type's results."""
    if case.method.upper() != "POST" or not isinstance(case.body, dict):
        return
    base_url = case.operation.schema.get_base_url()
    action = case.operation.path.rsplit("/", 1)[-1]
    if case.operation.path == "/tasks":
        for name, task_type in REFERENCES.items():
            if case.body.get(name) is not None:
                real = server_task_of_type(base_url, task_type)
                case.body[name] = real
    elif action == "complete" and case.path_parameters:
        task_type = server_task_type(base_url, case.path_parameters["task_id"])
        if task_type is not None:
            own = {field.name for field in result_fields(task_type)}
            case.body = {name: value for name, value in case.body.items() if name in own}


def fresh_idempotency_key(case: Case) -> None:
    """A key of this case's own: valid cases are never repeats of another request."""
    if case.headers and "Idempotency-Key" in case.headers:
        case.headers["Idempotency-Key"] = str(uuid.uuid4())


@schemathesis.auth(refresh_interval=None)
class RoleToken:
    """The reporter's token for the reporting API, the operator's for everything else."""

    def get(self, case: Case, context: object) -> str | None:
        reporting = REPORTING_TAG in (case.operation.tags or [])
        token = os.environ.get(
            "CONTRACT_REPORTER_TOKEN" if reporting else "CONTRACT_OPERATOR_TOKEN"
        )
        return token or None

    def set(self, case: Case, data: str, context: object) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@schemathesis.hook
def map_case(context: HookContext, case: Case) -> Case:
    """Bring a case drawn as valid in line with the rules that join parameters."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return case
    use_real_task(case)
    fit_body(case)
    fresh_idempotency_key(case)
    if not case.query:
        return case
    keep_window_ordered(case.query)
    use_server_cursor(case.query, case.operation.schema.get_base_url())
    return case
