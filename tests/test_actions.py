"""Cancel and retry: queued and running tasks, the module's side, finished tasks, retry links,
and cancels racing a module's moves on every engine."""

from __future__ import annotations

import random
import re
import threading
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import SSO_HEADER
from oracle import NOW

from app.demo import type_fields
from app.events import task_events
from app.models import MODEL_FOR_TYPE, TASK_TYPES, Role
from app.recorder import CancelRequested, IllegalTransition, Recorder
from app.tokens import create_token

OPERATOR = {SSO_HEADER: "ops@example.com"}
RACE_ROUNDS = 8


@pytest.fixture
def engine(signed_app) -> sa.Engine:
    with signed_app.app_context():
        return signed_app.extensions["sqlalchemy"].engine


@pytest.fixture
def recorder(engine) -> Recorder:
    return Recorder(engine, lambda: NOW)


@pytest.fixture
def operator(signed_app, engine):
    """A test client that sends an operator's bearer token."""
    token = create_token(engine, "ops-bot", Role.OPERATOR, NOW)
    client = signed_app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return client


def task_in(recorder: Recorder, status: str, task_type: str = "training") -> uuid.UUID:
    """A task of `task_type` brought to `status` as its module would."""
    fields = type_fields(task_type, random.Random(5), finished_ok=False)
    task_id = recorder.create(task_type, tag="exp-7", **fields)
    if status in {"running", "completed"}:
        recorder.start(task_type, task_id)
    if status == "completed":
        recorder.complete(task_type, task_id)
    if status == "failed":
        recorder.fail(task_type, task_id, "CUDA out of memory")
    if status == "cancelled":
        recorder.cancel(task_type, task_id)
    return task_id


def stored(engine: sa.Engine, task_type: str, task_id: uuid.UUID) -> dict[str, Any]:
    table = MODEL_FOR_TYPE[task_type].__table__
    with engine.connect() as connection:
        return dict(
            connection.execute(sa.select(table).where(table.c.id == task_id)).one()._mapping
        )


# -- cancel -------------------------------------------------------------------------------------


def test_a_queued_task_is_cancelled_at_once(operator, recorder, engine):
    task_id = task_in(recorder, "queued")
    response = operator.post(f"/tasks/{task_id}/cancel")
    assert response.status_code == 200
    assert response.get_json() == {
        "id": str(task_id),
        "task_type": "training",
        "outcome": "cancelled",
        "status": "cancelled",
    }
    row = stored(engine, "training", task_id)
    assert row["status"] == "cancelled" and row["finished_at"] == NOW
    assert row["cancel_requested_at"] is None


def test_a_running_task_is_asked_to_stop_and_its_module_confirms(
    operator, recorder, engine, signed_app
):
    task_id = task_in(recorder, "running")
    recorder.report_progress("training", task_id, 0.4)
    response = operator.post(f"/tasks/{task_id}/cancel")
    assert response.get_json()["outcome"] == "cancel_requested"
    assert response.get_json()["status"] == "running"
    detail = operator.get(f"/tasks/{task_id}").get_json()
    assert detail["status"] == "running" and detail["cancel_requested_at"] is not None
    page = signed_app.test_client().get(f"/task/{task_id}").get_data(as_text=True)
    assert "Cancelling…" in page

    # The module learns it when it next reports, and its progress is not recorded.
    assert recorder.cancel_requested("training", task_id)
    heard = stored(engine, "training", task_id)["updated_at"]
    with pytest.raises(CancelRequested):
        recorder.report_progress("training", task_id, 0.6)
    with pytest.raises(CancelRequested):
        recorder.report_progress("training", task_id, 0.8)  # past a milestone: no event
    with pytest.raises(CancelRequested):
        recorder.heartbeat("training", task_id)
    assert stored(engine, "training", task_id)["progress"] == 0.4
    assert stored(engine, "training", task_id)["updated_at"] == heard
    assert kinds_by(engine, task_id)[-1][0] == "cancel_requested"
    # It stops and confirms.
    recorder.cancel("training", task_id)
    assert stored(engine, "training", task_id)["status"] == "cancelled"
    assert not recorder.cancel_requested("training", task_id)
    page = signed_app.test_client().get(f"/task/{task_id}").get_data(as_text=True)
    assert "Cancelling…" not in page and "Cancelled" in page


def test_asking_a_running_task_again_answers_as_the_first_time(operator, recorder, engine):
    task_id = task_in(recorder, "running")
    first = operator.post(f"/tasks/{task_id}/cancel").get_json()
    requested_at = stored(engine, "training", task_id)["cancel_requested_at"]
    assert operator.post(f"/tasks/{task_id}/cancel").get_json() == first
    assert stored(engine, "training", task_id)["cancel_requested_at"] == requested_at


@pytest.mark.parametrize("status", ["completed", "failed", "cancelled"])
def test_a_finished_task_answers_409_with_its_status(operator, recorder, engine, status):
    task_id = task_in(recorder, status)
    before = stored(engine, "training", task_id)
    response = operator.post(f"/tasks/{task_id}/cancel")
    assert response.status_code == 409
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["task_status"] == status
    assert stored(engine, "training", task_id) == before


@pytest.mark.parametrize("task_id", [str(uuid.UUID(int=7)), "not-a-uuid", "%00"])
@pytest.mark.parametrize("action", ["cancel", "retry"])
def test_an_unknown_task_is_404(operator, task_id, action):
    response = operator.post(f"/tasks/{task_id}/{action}")
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"


def test_the_page_button_cancels_and_goes_back_with_a_message(signed_app, recorder, engine):
    task_id = task_in(recorder, "queued")
    client = signed_app.test_client()
    page = client.get("/?status=queued", headers=OPERATOR).get_data(as_text=True)
    form = page.split(f'action="/task/{task_id}/cancel"', 1)[1].split("</form>", 1)[0]
    fields = dict(
        (name, value.replace("&amp;", "&"))
        for name, value in re.findall(r'name="(\w+)" value="([^"]*)"', form)
    )
    assert fields["next"] == "/?status=queued"
    response = client.post(f"/task/{task_id}/cancel", headers=OPERATOR, data=fields)
    assert response.status_code == 303 and response.headers["Location"] == "/?status=queued"
    assert stored(engine, "training", task_id)["status"] == "cancelled"
    after = client.get(response.headers["Location"], headers=OPERATOR).get_data(as_text=True)
    assert "Cancelled the task." in after


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/\\evil"])
def test_the_page_goes_back_only_to_this_site(signed_app, recorder, target):
    task_id = task_in(recorder, "queued")
    client = signed_app.test_client()
    page = client.get(f"/task/{task_id}", headers=OPERATOR).get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    data = {"csrf_token": token, "next": target}
    response = client.post(f"/task/{task_id}/cancel", headers=OPERATOR, data=data)
    assert response.headers["Location"] == f"/task/{task_id}"


# -- what the pages show while a cancel goes on ----------------------------------------------------

REGION = {"HX-Request": "true", "HX-Target": "results"}
LIVE_PART = {"HX-Request": "true", "HX-Target": "task-live"}


class ModuleClock:
    """The module's clock: behind the app's while the task runs, past it when it confirms,
    as a module's writes come before and after an operator's."""

    def __init__(self) -> None:
        self.now = NOW - timedelta(minutes=10)

    def __call__(self) -> datetime:
        return self.now


def refreshed(client, path: str, headers: dict[str, str], etag: str | None) -> Any:
    """A live refresh as the page's script sends it: 200 with the new rendering, or 304."""
    return client.get(path, headers={**headers, **({"If-None-Match": etag} if etag else {})})


@pytest.mark.parametrize(
    ("path", "headers", "asking_marker"),
    [
        ("/?tag=exp-7", REGION, 'id="live-refresh"'),
        ("/task/{task_id}", LIVE_PART, 'hx-get="/task/{task_id}"'),
    ],
    ids=["list row", "task page"],
)
def test_a_live_refresh_shows_cancelling_then_cancelled(
    signed_app, operator, engine, path, headers, asking_marker
):
    clock = ModuleClock()
    module = Recorder(engine, clock)
    task_id = task_in(module, "running")
    path, asking_marker = path.format(task_id=task_id), asking_marker.format(task_id=task_id)
    viewer = signed_app.test_client()
    running = refreshed(viewer, path, headers, None)
    assert refreshed(viewer, path, headers, running.headers["ETag"]).status_code == 304

    operator.post(f"/tasks/{task_id}/cancel")
    asked = refreshed(viewer, path, headers, running.headers["ETag"])
    assert asked.status_code == 200
    assert f'id="cancelling-{task_id}"' in asked.text and "Cancelling…" in asked.text
    assert asking_marker in asked.text  # still active: the page keeps asking

    with pytest.raises(CancelRequested):
        module.heartbeat("training", task_id)
    clock.now = NOW + timedelta(seconds=30)
    module.cancel("training", task_id)
    done = refreshed(viewer, path, headers, asked.headers["ETag"])
    assert done.status_code == 200
    assert "Cancelling…" not in done.text and 'data-status="cancelled"' in done.text
    assert asking_marker not in done.text  # finished: the page asks no more


def test_a_cancel_button_asks_first_and_a_retry_button_does_not(signed_app, recorder):
    running, queued = task_in(recorder, "running"), task_in(recorder, "queued")
    failed = task_in(recorder, "failed")
    client = signed_app.test_client()
    page = client.get("/?tag=exp-7", headers=OPERATOR).get_data(as_text=True)
    forms = {
        action_id: form
        for form in re.findall(r"<form class=\"action-form\".*?</form>", page, re.S)
        for action_id in re.findall(r'id="((?:cancel|retry)-[^"]+)"', form)
    }
    assert 'data-confirm="Ask the running task' in forms[f"cancel-{running}"]
    assert 'data-confirm="Cancel the queued task' in forms[f"cancel-{queued}"]
    assert "data-confirm" not in forms[f"retry-{failed}"]


# -- retry --------------------------------------------------------------------------------------


@pytest.mark.parametrize("task_type", TASK_TYPES)
@pytest.mark.parametrize("status", ["failed", "cancelled"])
def test_a_retry_is_a_new_queued_task_with_the_same_inputs_linked_both_ways(
    operator, recorder, engine, signed_app, task_type, status
):
    old_id = task_in(recorder, status, task_type)
    response = operator.post(f"/tasks/{old_id}/retry")
    assert response.status_code == 201
    new_id = uuid.UUID(response.get_json()["new_task_id"])
    assert response.headers["Location"] == f"/tasks/{new_id}"
    old, new = stored(engine, task_type, old_id), stored(engine, task_type, new_id)
    model = MODEL_FOR_TYPE[task_type]
    assert new["status"] == "queued" and new["retry_of"] == old_id
    assert new["created_at"] == NOW and new["started_at"] is None and new["error_msg"] is None
    assert {name: new[name] for name in ["tag", *model.input_columns()]} == {
        name: old[name] for name in ["tag", *model.input_columns()]
    }
    assert all(new[name] is None for name in model.result_columns)
    assert operator.get(f"/tasks/{old_id}").get_json()["retried_as"] == str(new_id)
    assert operator.get(f"/tasks/{new_id}").get_json()["retry_of"] == str(old_id)
    client = signed_app.test_client()
    assert f"/task/{new_id}" in client.get(f"/task/{old_id}").get_data(as_text=True)
    assert f"/task/{old_id}" in client.get(f"/task/{new_id}").get_data(as_text=True)
    # A module picks it up like any queued task.
    recorder.start(task_type, new_id)


@pytest.mark.parametrize("status", ["queued", "running", "completed"])
def test_only_a_failed_or_cancelled_task_is_retried(operator, recorder, status):
    task_id = task_in(recorder, status)
    response = operator.post(f"/tasks/{task_id}/retry")
    assert response.status_code == 409
    assert response.get_json()["task_status"] == status


def test_a_task_is_retried_once(operator, recorder):
    task_id = task_in(recorder, "failed")
    new_id = operator.post(f"/tasks/{task_id}/retry").get_json()["new_task_id"]
    again = operator.post(f"/tasks/{task_id}/retry")
    assert again.status_code == 409
    assert again.get_json()["retried_as"] == new_id


# -- races: each move is one compare-and-set, on every engine -----------------------------------


def race(*moves) -> list[Any]:
    """Run the moves at once on their own threads; each one's result or exception."""
    barrier = threading.Barrier(len(moves))
    results: list[Any] = [None] * len(moves)

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = moves[index]()
        except Exception as error:  # the loser's refusal is part of the result
            results[index] = error

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(moves))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_a_cancel_racing_a_start_ends_in_one_state(signed_app, operator, recorder, engine):
    for _ in range(RACE_ROUNDS):
        task_id = task_in(recorder, "queued")
        client = signed_app.test_client()
        client.environ_base.update(operator.environ_base)
        answer, started = race(
            lambda task_id=task_id, client=client: client.post(f"/tasks/{task_id}/cancel"),
            lambda task_id=task_id: recorder.start("training", task_id),
        )
        row = stored(engine, "training", task_id)
        outcome = answer.get_json()["outcome"]
        if outcome == "cancelled":  # the cancel came first: the module may not start it
            assert isinstance(started, IllegalTransition)
            assert row["status"] == "cancelled" and row["cancel_requested_at"] is None
        else:  # the module started it first: it is asked to stop
            assert outcome == "cancel_requested" and started is None
            assert row["status"] == "running" and row["cancel_requested_at"] is not None


def test_a_cancel_racing_a_completion_ends_in_one_state(signed_app, operator, recorder, engine):
    for _ in range(RACE_ROUNDS):
        task_id = task_in(recorder, "running")
        client = signed_app.test_client()
        client.environ_base.update(operator.environ_base)
        answer, completed = race(
            lambda task_id=task_id, client=client: client.post(f"/tasks/{task_id}/cancel"),
            lambda task_id=task_id: recorder.complete("training", task_id),
        )
        assert completed is None  # a module may always finish what it was doing
        row = stored(engine, "training", task_id)
        assert row["status"] == "completed"
        if answer.status_code == 200:  # asked before it completed
            assert row["cancel_requested_at"] is not None
        else:
            assert answer.status_code == 409
            assert answer.get_json()["task_status"] == "completed"
            assert row["cancel_requested_at"] is None


def test_a_confirmed_cancel_racing_a_completion_lets_exactly_one_win(recorder, engine):
    for _ in range(RACE_ROUNDS):
        task_id = task_in(recorder, "running")
        results = race(
            lambda task_id=task_id: recorder.cancel("training", task_id),
            lambda task_id=task_id: recorder.complete("training", task_id),
        )
        winners = [result is None for result in results]
        assert winners.count(True) == 1
        status = stored(engine, "training", task_id)["status"]
        assert status == ("cancelled" if winners[0] else "completed")


def test_two_retries_at_once_make_one_new_task(signed_app, operator, recorder, engine):
    for _ in range(RACE_ROUNDS):
        task_id = task_in(recorder, "failed")
        clients = [signed_app.test_client() for _ in range(2)]
        for client in clients:
            client.environ_base.update(operator.environ_base)
        answers = race(*(lambda c=c, t=task_id: c.post(f"/tasks/{t}/retry") for c in clients))
        assert sorted(answer.status_code for answer in answers) == [201, 409]
        model = MODEL_FOR_TYPE["training"]
        with engine.connect() as connection:
            count = sa.select(sa.func.count()).where(model.retry_of == task_id)
            assert connection.execute(count).scalar_one() == 1


# -- every action on record --------------------------------------------------------------------


def kinds_by(engine: sa.Engine, task_id: uuid.UUID) -> list[tuple[str, str, str | None]]:
    """A task's events as (kind, actor, note), oldest first."""
    with engine.connect() as connection:
        return [(e.kind, e.actor, e.note) for e in task_events(connection, task_id)]


def test_each_action_is_an_event_naming_who_acted(signed_app, operator, recorder, engine):
    queued, running, failed = (task_in(recorder, s) for s in ("queued", "running", "failed"))
    person = signed_app.test_client()
    page = person.get("/?status=queued", headers=OPERATOR).get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    assert operator.post(f"/tasks/{running}/cancel").status_code == 200
    retried = operator.post(f"/tasks/{failed}/retry").get_json()["new_task_id"]
    response = person.post(f"/task/{queued}/cancel", data={"csrf_token": csrf}, headers=OPERATOR)
    assert response.status_code == 303
    assert kinds_by(engine, queued)[-1] == ("cancelled", "ops@example.com", None)
    assert kinds_by(engine, running)[-1] == ("cancel_requested", "ops-bot", None)
    assert kinds_by(engine, failed)[-1] == ("retried", "ops-bot", f"retried as {retried}")
    assert kinds_by(engine, uuid.UUID(retried)) == [("created", "ops-bot", f"a retry of {failed}")]
    recorder.cancel("training", running)
    assert kinds_by(engine, running)[-1] == ("cancelled", "module", None)


def test_an_action_that_changes_nothing_records_nothing(operator, recorder, engine):
    done = task_in(recorder, "completed")
    before = kinds_by(engine, done)
    assert operator.post(f"/tasks/{done}/cancel").status_code == 409
    assert operator.post(f"/tasks/{done}/retry").status_code == 409
    assert kinds_by(engine, done) == before
