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

Load with `SCHEMATHESIS_HOOKS=tests/contract_hooks.py` or `hooks` in schemathesis.toml.
"""

from __future__ import annotations

import random
from datetime import datetime
from functools import cache

import requests
import schemathesis
from schemathesis import Case, HookContext


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
ACTION_STATUSES = {"cancel": ("queued", "running"), "retry": ("failed", "cancelled")}


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


@schemathesis.hook
def map_case(context: HookContext, case: Case) -> Case:
    """Bring a case drawn as valid in line with the rules that join parameters."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return case
    use_real_task(case)
    if not case.query:
        return case
    keep_window_ordered(case.query)
    use_server_cursor(case.query, case.operation.schema.get_base_url())
    return case
