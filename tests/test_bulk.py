"""Many at once: the list's filter picks the tasks, a dry run says which, the action does that,
at most 1,000 a call; on the API and through the page's confirmation step."""

from __future__ import annotations

import random
import re
from datetime import timedelta

import pytest
import sqlalchemy as sa
from conftest import SSO_HEADER
from oracle import NOW, insert_tasks, known_tasks, make_task, matches

from app.actions import APPLIES_TO, BULK_LIMIT
from app.filters import TaskFilter
from app.models import MODEL_FOR_TYPE, Role
from app.tokens import create_token

OPERATOR = {SSO_HEADER: "ops@example.com"}


@pytest.fixture
def engine(signed_app) -> sa.Engine:
    with signed_app.app_context():
        return signed_app.extensions["sqlalchemy"].engine


@pytest.fixture
def tasks(engine) -> list[dict]:
    """The known tasks, in the signed app's own database (the actions change them)."""
    known = known_tasks()
    insert_tasks(engine, known)
    return known


@pytest.fixture
def operator(signed_app, engine):
    client = signed_app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = "Bearer " + create_token(
        engine, "ops-bot", Role.OPERATOR, NOW
    )
    return client


def statuses(engine) -> dict[str, str]:
    """Every task's status, by id."""
    found = {}
    with engine.connect() as connection:
        for model in MODEL_FOR_TYPE.values():
            found |= {str(i): s for i, s in connection.execute(sa.select(model.id, model.status))}
    return found


def would_change(task: dict, action: str) -> bool:
    """Whether the action changes the task: a cancel one that is queued, or running and not
    yet asked to stop; a retry one that failed or was cancelled."""
    asked_to_stop = task["cancel_requested_at"] is not None
    return task["status"] in APPLIES_TO[action] and not (action == "cancel" and asked_to_stop)


# Filters as the list takes them, and the same as a TaskFilter for the oracle.
FILTERS = [
    ("tag=exp-1", TaskFilter(tags=("exp-1",))),
    (
        "task_type=training&status=running",
        TaskFilter(task_types=("training",), statuses=("running",)),
    ),
    ("status=completed", TaskFilter(statuses=("completed",))),
    ("within_hours=24&tag=nightly", TaskFilter(within_hours=24, tags=("nightly",))),
]


@pytest.mark.parametrize("action", ["cancel", "retry"])
@pytest.mark.parametrize(("query", "task_filter"), FILTERS)
def test_the_dry_run_names_what_the_action_then_changes(
    operator, engine, tasks, action, query, task_filter
):
    matching = [task for task in tasks if matches(task, task_filter)]
    wanted = {str(task["id"]) for task in matching if would_change(task, action)}
    before = statuses(engine)
    dry = operator.post(f"/tasks/{action}?{query}&dry_run=1")
    assert dry.status_code == 200
    assert set(dry.get_json()["ids"]) == wanted and dry.get_json()["count"] == len(wanted)
    assert statuses(engine) == before  # a dry run changes nothing
    done = operator.post(f"/tasks/{action}?{query}")
    assert done.status_code == 200
    assert {item["id"] for item in done.get_json()["changed"]} == wanted
    assert done.get_json()["count"] == len(wanted)
    after = statuses(engine)
    moved = {task_id for task_id, status in after.items() if before.get(task_id) != status}
    if action == "cancel":  # queued ones are cancelled, running ones only asked to stop
        queued = {task_id for task_id in wanted if before[task_id] == "queued"}
        assert moved == queued
    # Asked again, nothing is left to change: each is unchanged with its reason.
    again = operator.post(f"/tasks/{action}?{query}&dry_run=1").get_json()
    assert again["count"] == 0
    reasons = {item["reason"].split(" as ")[0] for item in again["unchanged"]}
    assert reasons <= {"already asked to stop", "already retried"}


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("statuss=queued", "statuss"),
        ("status=done", "status"),
        ("limit=5", "limit"),
        ("offset=20", "offset"),
        ("dry_run=yes", "dry_run"),
        ("dry_run=1&dry_run=0", "dry_run"),
    ],
)
def test_a_bad_filter_is_422_naming_it_and_changes_nothing(
    operator, engine, tasks, query, parameter
):
    before = statuses(engine)
    response = operator.post(f"/tasks/cancel?{query}")
    assert response.status_code == 422
    assert parameter in {error["parameter"] for error in response.get_json()["errors"]}
    assert statuses(engine) == before


def test_more_than_1000_matches_is_422_that_says_so(operator, engine):
    rng = random.Random(11)
    many = [
        make_task("synthesis", "queued", NOW - timedelta(minutes=i), tag="flood", rng=rng)
        for i in range(BULK_LIMIT + 1)
    ]
    insert_tasks(engine, many)
    response = operator.post("/tasks/cancel?tag=flood&dry_run=1")
    assert response.status_code == 422
    assert "at most 1,000 tasks a call" in response.get_json()["detail"]
    assert operator.post("/tasks/cancel?tag=flood").status_code == 422
    assert set(statuses(engine).values()) == {"queued"}
    # One fewer is allowed.
    first = str(many[0]["id"])
    assert operator.post(f"/tasks/{first}/cancel").status_code == 200
    response = operator.post("/tasks/cancel?tag=flood&dry_run=1")
    assert response.status_code == 200 and response.get_json()["count"] == BULK_LIMIT


@pytest.mark.parametrize(
    ("headers", "expected"),
    [({}, 401), ({SSO_HEADER: "carol@example.com"}, 403), (OPERATOR, 400)],
)
def test_only_an_operator_with_a_token_or_the_page_s_form_acts_on_many(
    signed_app, engine, tasks, headers, expected
):
    before = statuses(engine)
    response = signed_app.test_client().post("/tasks/cancel?tag=exp-1", headers=headers)
    assert response.status_code == expected  # the signed-in operator lacks the CSRF token
    assert statuses(engine) == before


def test_the_page_asks_with_the_count_first_then_lists_what_happened(signed_app, engine, tasks):
    task_filter = TaskFilter(task_types=("training",), tags=("exp-1",))
    matching = [task for task in tasks if matches(task, task_filter)]
    wanted = {str(task["id"]) for task in matching if would_change(task, "cancel")}
    client = signed_app.test_client()
    listed = client.get("/?task_type=training&tag=exp-1&limit=50", headers=OPERATOR)
    link = re.search(r'id="bulk-cancel" href="([^"]+)"', listed.get_data(as_text=True))[1]
    before = statuses(engine)
    confirm = client.get(link.replace("&amp;", "&"), headers=OPERATOR).get_data(as_text=True)
    question = re.search(r'id="bulk-question">([^<]+)<', confirm)[1]
    assert question == f"Cancel {len(wanted)} queued and running training tasks tagged exp-1?"
    assert statuses(engine) == before  # asking changes nothing
    form = re.search(r'<form method="post" action="([^"]+)"', confirm)[1].replace("&amp;", "&")
    token = re.search(r'name="csrf_token" value="([^"]+)"', confirm)[1]
    assert client.post(form, headers=OPERATOR).status_code == 400  # no CSRF token
    done = client.post(form, headers=OPERATOR, data={"csrf_token": token})
    page = done.get_data(as_text=True)
    assert f"Cancel: {len(wanted)} changed, 0 unchanged" in page
    assert all(f"/task/{task_id}" in page for task_id in wanted)


def test_the_page_shows_a_typo_in_the_filter(signed_app):
    response = signed_app.test_client().get("/bulk/retry?tagg=x", headers=OPERATOR)
    assert response.status_code == 422
    assert "tagg" in response.get_data(as_text=True)


def test_a_viewer_is_not_offered_bulk_actions(signed_app, tasks):
    page = signed_app.test_client().get("/", headers={SSO_HEADER: "carol@example.com"})
    assert "bulk-cancel" not in page.get_data(as_text=True)
    assert signed_app.test_client().get("/bulk/cancel").status_code == 401
