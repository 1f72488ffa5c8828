"""The reporting API: a module's tasks over HTTP, with the recorder's rules and events, who
may report, bad bodies, Idempotency-Key, and cancels racing completions on every engine."""

from __future__ import annotations

import random
import threading
import uuid
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import make_app, reset_tables
from jsonschema import Draft202012Validator
from oracle import NOW

from app.demo import type_fields
from app.error_groups import error_group
from app.events import task_events
from app.idempotency import KEPT_FOR, request_fingerprint
from app.models import MODEL_FOR_TYPE, TASK_TYPES, IdempotencyKey, Role
from app.recorder import Recorder
from app.reporting import ERROR_MSG_MAX_LENGTH
from app.tokens import create_token

MODULE = "trainer-module"
RACE_ROUNDS = 6
ENDPOINTS = ["start", "progress", "heartbeat", "complete", "fail", "cancel"]


@pytest.fixture(scope="module")
def moment() -> list:
    """The app's clock, which a test may move (and puts back)."""
    return [NOW]


@pytest.fixture(scope="module")
def reporting_app(scratch_url, moment):
    """One app over tables made once for the module: every test makes its own tasks."""
    app = make_app(scratch_url, CLOCK=lambda: moment[0])
    with app.app_context():
        engine = app.extensions["sqlalchemy"].engine
        reset_tables(engine)
        app.config["TOKENS"] = {
            role: create_token(engine, name, Role(role), NOW)
            for role, name in [
                ("reporter", MODULE),
                ("operator", "ops-bot"),
                ("viewer", "viewer-bot"),
            ]
        }
        app.config["TOKENS"]["other reporter"] = create_token(
            engine, "uploader-module", Role.REPORTER, NOW
        )
    yield app
    with app.app_context():
        app.extensions["sqlalchemy"].engine.dispose()


@pytest.fixture(scope="module")
def engine(reporting_app) -> sa.Engine:
    with reporting_app.app_context():
        return reporting_app.extensions["sqlalchemy"].engine


def client_of(app, role: str | None):
    """A test client sending the token of `role` (None: no token at all)."""
    client = app.test_client()
    if role is not None:
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {app.config['TOKENS'][role]}"
    return client


@pytest.fixture
def module(reporting_app):
    return client_of(reporting_app, "reporter")


@pytest.fixture
def operator(reporting_app):
    return client_of(reporting_app, "operator")


def inputs_and_results(task_type: str, seed: int = 3) -> tuple[dict, dict]:
    """A type's inputs and results as the platform fills them."""
    fields = type_fields(task_type, random.Random(seed), finished_ok=True)
    model = MODEL_FOR_TYPE[task_type]
    inputs = {name: fields[name] for name in model.input_columns() if name in fields}
    results = {name: fields[name] for name in model.result_columns}
    return inputs, results


def create(client, task_type: str = "training", **extra: Any) -> uuid.UUID:
    inputs, _ = inputs_and_results(task_type)
    response = client.post("/tasks", json={"task_type": task_type, **inputs, **extra})
    assert response.status_code == 201, response.get_json()
    return uuid.UUID(response.get_json()["id"])


def task_in(client, status: str) -> uuid.UUID:
    """A training task brought to `status` over HTTP."""
    task_id = create(client, tag="exp-7")
    if status != "queued":
        assert client.post(f"/tasks/{task_id}/start").status_code == 200
    moves = {
        "completed": ("complete", None),
        "failed": ("fail", {"error_msg": "CUDA out of memory"}),
        "cancelled": ("cancel", None),
    }
    if status in moves:
        action, body = moves[status]
        assert client.post(f"/tasks/{task_id}/{action}", json=body).status_code == 200
    return task_id


def stored(engine: sa.Engine, task_type: str, task_id: uuid.UUID) -> dict[str, Any]:
    table = MODEL_FOR_TYPE[task_type].__table__
    with engine.connect() as connection:
        row = connection.execute(sa.select(table).where(table.c.id == task_id)).one()
    return dict(row._mapping)


def events_of(engine: sa.Engine, task_id: uuid.UUID) -> list[tuple[str, str, str | None]]:
    with engine.connect() as connection:
        return [(e.kind, e.actor, e.note) for e in task_events(connection, task_id)]


# -- a task's life ------------------------------------------------------------------------------

VOLATILE = {"id", "created_at", "updated_at", "started_at", "finished_at", "seconds_to_finish"}


@pytest.mark.parametrize("task_type", TASK_TYPES)
def test_a_life_over_http_is_the_recorders_life(module, engine, task_type):
    inputs, results = inputs_and_results(task_type)
    response = module.post("/tasks", json={"task_type": task_type, "tag": "exp-7", **inputs})
    assert response.status_code == 201
    over_http = uuid.UUID(response.get_json()["id"])
    assert response.headers["Location"] == f"/tasks/{over_http}"
    assert response.get_json() == module.get(response.headers["Location"]).get_json()
    assert response.get_json()["status"] == "queued"
    for action, body in [
        ("start", None),
        ("progress", {"progress": 0.3}),
        ("progress", {"progress": 0.6}),
        ("heartbeat", None),
        ("complete", results),
    ]:
        response = module.post(f"/tasks/{over_http}/{action}", json=body)
        assert response.status_code == 200, (action, response.get_json())
        assert response.get_json() == module.get(f"/tasks/{over_http}").get_json()
    assert response.get_json()["status"] == "completed"

    recorder = Recorder(engine, lambda: NOW, actor=MODULE)
    direct = recorder.create(task_type, tag="exp-7", **inputs)
    recorder.start(task_type, direct)
    recorder.report_progress(task_type, direct, 0.3)
    recorder.report_progress(task_type, direct, 0.6)
    recorder.heartbeat(task_type, direct)
    recorder.complete(task_type, direct, **results)

    assert events_of(engine, over_http) == events_of(engine, direct)
    assert [kind for kind, _, _ in events_of(engine, over_http)] == [
        "created",
        "started",
        "progress",
        "progress",
        "completed",
    ]

    def kept(row: dict) -> dict:
        return {name: value for name, value in row.items() if name not in VOLATILE}

    assert kept(stored(engine, task_type, over_http)) == kept(stored(engine, task_type, direct))


def test_a_failure_over_http_is_grouped_and_recorded_as_the_recorder_does(module, engine):
    message = "row 18342: expected 3 columns, found 5\n  at line 2"
    task_id = task_in(module, "running")
    response = module.post(f"/tasks/{task_id}/fail", json={"error_msg": message})
    assert response.status_code == 200
    assert response.get_json()["status"] == "failed"
    assert response.get_json()["error_msg"] == message
    row = stored(engine, "training", task_id)
    assert row["error_group"] == error_group(message)
    assert events_of(engine, task_id)[-1] == ("failed", MODULE, message)


def test_a_queued_task_can_fail_before_it_starts(module):
    task_id = task_in(module, "queued")
    response = module.post(f"/tasks/{task_id}/fail", json={"error_msg": "no GPU free"})
    assert response.get_json()["status"] == "failed"


def test_a_heartbeat_is_heard_and_records_nothing(reporting_app, module, engine, moment):
    task_id = task_in(module, "running")
    before = events_of(engine, task_id)
    moment[0] = NOW + timedelta(minutes=7)
    try:
        response = module.post(f"/tasks/{task_id}/heartbeat")
    finally:
        moment[0] = NOW
    assert response.status_code == 200
    assert response.get_json()["updated_at"] == "2026-11-28T12:07:00Z"
    assert events_of(engine, task_id) == before


# -- who may report -----------------------------------------------------------------------------


GOOD_BODIES = {"progress": {"progress": 0.5}, "fail": {"error_msg": "x"}}


def post_as(app, role, path: str, body: dict | None = None):
    return client_of(app, role).post(path, json=body)


@pytest.mark.parametrize("endpoint", ["create", *ENDPOINTS])
@pytest.mark.parametrize("role, status", [(None, 401), ("viewer", 403), ("operator", 403)])
def test_only_a_reporter_reports(reporting_app, module, engine, endpoint, role, status):
    task_id = task_in(module, "running")
    before = stored(engine, "training", task_id)
    if endpoint == "create":
        path, body = "/tasks", {"task_type": "training", **inputs_and_results("training")[0]}
    else:
        path, body = f"/tasks/{task_id}/{endpoint}", GOOD_BODIES.get(endpoint)
    if endpoint == "cancel" and role == "operator":
        # The operator's own cancel: it asks the running task to stop.
        assert post_as(reporting_app, role, path).get_json()["outcome"] == "cancel_requested"
        return
    response = post_as(reporting_app, role, path, body)
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"
    assert "the reporter role" in response.get_json()["detail"]
    assert stored(engine, "training", task_id) == before
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_reporter_writes_without_a_csrf_token_even_behind_the_sign_on_proxy(scratch_url, engine):
    token = create_token(engine, f"csrf-{uuid.uuid4().hex[:6]}", Role.REPORTER, NOW)
    app = make_app(scratch_url, TRUSTED_PROXIES=1, AUTH_USER_HEADER="X-Forwarded-Email")
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    response = client.post("/tasks", json=new_task_body("behind-the-proxy"))
    assert response.status_code == 201
    with app.app_context():
        app.extensions["sqlalchemy"].engine.dispose()


# -- moves the rules do not allow ---------------------------------------------------------------


@pytest.mark.parametrize(
    "status, action, body",
    [
        ("running", "start", None),
        ("completed", "start", None),
        ("queued", "progress", {"progress": 0.5}),
        ("queued", "heartbeat", None),
        ("queued", "complete", None),
        ("completed", "progress", {"progress": 0.5}),
        ("failed", "complete", None),
        ("completed", "fail", {"error_msg": "late"}),
        ("completed", "cancel", None),
        ("cancelled", "cancel", None),
    ],
)
def test_an_illegal_move_is_409_with_the_current_status(module, engine, status, action, body):
    task_id = task_in(module, status)
    before = stored(engine, "training", task_id), events_of(engine, task_id)
    response = module.post(f"/tasks/{task_id}/{action}", json=body)
    assert response.status_code == 409
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["task_status"] == status
    assert response.get_json()["cancel_requested"] is False
    assert (stored(engine, "training", task_id), events_of(engine, task_id)) == before


@pytest.mark.parametrize("action", ENDPOINTS)
@pytest.mark.parametrize("task_id", [str(uuid.UUID(int=7)), "not-a-uuid"])
def test_an_unknown_task_is_404(module, action, task_id):
    body = {"progress": 0.5} if action == "progress" else None
    response = module.post(f"/tasks/{task_id}/{action}", json=body)
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"


# -- bodies -------------------------------------------------------------------------------------


# New tasks the API refuses, and the fields each 422 names.
BAD_NEW_TASKS = [
    ({}, {"task_type"}),
    ({"task_type": "painting"}, {"task_type"}),
    ({"task_type": {}, "epochs": 2}, {"task_type"}),
    ({"task_type": ["training"]}, {"task_type"}),
    ({"task_type": "training"}, {"base_model", "dataset_name", "method", "epochs"}),
    (
        {
            "task_type": "training",
            "base_model": "",
            "dataset_name": "d" * 201,
            "method": "dreambooth",
            "epochs": 0,
            "colour": "red",
            "tag": "a\x00b",
        },
        {"base_model", "dataset_name", "method", "epochs", "colour", "tag"},
    ),
    (
        {
            "task_type": "synthesis",
            "generator_model": "m",
            "output_dataset": "o",
            "target_rows": True,
            "generated_rows": 5,
        },
        {"target_rows", "generated_rows"},
    ),
    (
        {
            "task_type": "evaluation",
            "model_name": "m",
            "dataset_name": "d",
            "benchmark": "b",
            "training_task_id": str(uuid.UUID(int=9)),
        },
        {"training_task_id"},
    ),
    (
        {
            "task_type": "model_upload",
            "source": "github",
            "model_name": "m\ud800",
            "source_uri": 3,
        },
        {"model_name", "source_uri"},
    ),
]


@pytest.mark.parametrize("body, named", BAD_NEW_TASKS)
def test_a_bad_new_task_is_422_naming_each_field(module, engine, body, named):
    response = module.post("/tasks", json=body)
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    errors = response.get_json()["errors"]
    assert {error["field"] for error in errors} == named
    assert all(error["detail"] for error in errors)


@pytest.mark.parametrize(
    "action, body, named",
    [
        ("progress", {}, {"progress"}),
        ("progress", {"progress": 1.5}, {"progress"}),
        ("progress", {"progress": "half"}, {"progress"}),
        ("progress", {"progress": True}, {"progress"}),
        ("progress", {"progress": 0.5, "eta": 3}, {"eta"}),
        ("fail", {}, {"error_msg"}),
        ("fail", {"error_msg": ""}, {"error_msg"}),
        ("fail", {"error_msg": "x" * 10_001}, {"error_msg"}),
        ("complete", {"metrics": {"accuracy": 0.9}}, {"metrics"}),
        ("complete", {"output_model": 7}, {"output_model"}),
        ("start", {"force": True}, {"force"}),
        ("heartbeat", [], {"body"}),
        ("cancel", {"reason": "user asked"}, {"reason"}),
    ],
)
def test_a_bad_report_is_422_naming_each_field(module, engine, action, body, named):
    task_id = task_in(module, "running" if action != "start" else "queued")
    before = stored(engine, "training", task_id)
    response = module.post(f"/tasks/{task_id}/{action}", json=body)
    assert response.status_code == 422
    assert {error["field"] for error in response.get_json()["errors"]} == named
    assert stored(engine, "training", task_id) == before


def test_a_body_that_is_not_json_is_refused(module):
    task_id = task_in(module, "running")
    path = f"/tasks/{task_id}/progress"
    as_text = module.post(path, data="progress=0.5", content_type="text/plain")
    assert as_text.status_code == 415
    broken = module.post(path, data='{"progress": 0.5', content_type="application/json")
    assert broken.status_code == 422 and broken.get_json()["errors"][0]["field"] == "body"
    nested = module.post(path, data="[" * 100_000, content_type="application/json")
    assert nested.status_code == 422
    huge = module.post(path, data=b" " * (1024 * 1024 + 1), content_type="application/json")
    assert huge.status_code == 413


def test_the_description_refuses_what_the_api_refuses_and_takes_what_it_takes(module):
    schemas = module.get("/openapi.json").get_json()["components"]["schemas"]
    new_task = Draft202012Validator(schemas["NewTask"])
    for body, named in BAD_NEW_TASKS:
        # That a referenced task exists is the one rule a description cannot state.
        if named != {"training_task_id"}:
            assert not new_task.is_valid(body), body
    for task_type in TASK_TYPES:
        inputs, results = inputs_and_results(task_type)
        assert new_task.is_valid({"task_type": task_type, "tag": "exp-7", **inputs})
        assert Draft202012Validator(schemas["Results"]).is_valid(results)
    progress = Draft202012Validator(schemas["Progress"])
    assert progress.is_valid({"progress": 1}) and not progress.is_valid({"progress": 1.01})


# -- a cancel: the operator asks, the module learns it and confirms -----------------------------


def test_a_module_learns_of_a_cancel_over_http_and_confirms_it(module, operator, engine):
    task_id = task_in(module, "running")
    assert module.post(f"/tasks/{task_id}/progress", json={"progress": 0.3}).status_code == 200
    asked = operator.post(f"/tasks/{task_id}/cancel")
    assert asked.get_json()["outcome"] == "cancel_requested"
    heard = stored(engine, "training", task_id)

    for action, body in [("progress", {"progress": 0.8}), ("heartbeat", None)]:
        response = module.post(f"/tasks/{task_id}/{action}", json=body)
        assert response.status_code == 409
        problem = response.get_json()
        assert problem["task_status"] == "running" and problem["cancel_requested"] is True
        assert f"POST /tasks/{task_id}/cancel" in problem["detail"]
    assert stored(engine, "training", task_id) == heard  # nothing recorded

    confirmed = module.post(f"/tasks/{task_id}/cancel")
    assert confirmed.status_code == 200
    assert confirmed.get_json() == {
        "id": str(task_id),
        "task_type": "training",
        "outcome": "cancelled",
        "status": "cancelled",
    }
    assert stored(engine, "training", task_id)["status"] == "cancelled"
    assert [(kind, actor) for kind, actor, _ in events_of(engine, task_id)] == [
        ("created", MODULE),
        ("started", MODULE),
        ("progress", MODULE),
        ("cancel_requested", "ops-bot"),
        ("cancelled", MODULE),
    ]


def test_a_module_may_cancel_its_queued_task_of_its_own_accord(module, engine):
    task_id = task_in(module, "queued")
    assert module.post(f"/tasks/{task_id}/cancel").get_json()["status"] == "cancelled"
    assert events_of(engine, task_id)[-1] == ("cancelled", MODULE, None)


# -- Idempotency-Key ----------------------------------------------------------------------------


def count_of(engine: sa.Engine, task_type: str, tag: str) -> int:
    model = MODEL_FOR_TYPE[task_type]
    with engine.connect() as connection:
        statement = sa.select(sa.func.count()).where(model.tag == tag)
        return connection.execute(statement).scalar_one()


def new_task_body(tag: str) -> dict:
    return {"task_type": "training", "tag": tag, **inputs_and_results("training")[0]}


def test_a_repeated_create_is_answered_once(module, engine):
    tag, key = f"idem-{uuid.uuid4().hex[:8]}", {"Idempotency-Key": str(uuid.uuid4())}
    first = module.post("/tasks", json=new_task_body(tag), headers=key)
    again = module.post("/tasks", json=new_task_body(tag), headers=key)
    assert first.status_code == again.status_code == 201
    assert again.get_json() == first.get_json()
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert count_of(engine, "training", tag) == 1


def test_a_replay_answers_as_the_first_time_after_the_task_moved_on(module):
    task_id = task_in(module, "queued")
    key = {"Idempotency-Key": f"start-{task_id}"}
    first = module.post(f"/tasks/{task_id}/start", headers=key)
    assert module.post(f"/tasks/{task_id}/complete").status_code == 200
    again = module.post(f"/tasks/{task_id}/start", headers=key)
    assert (again.status_code, again.get_json()) == (200, first.get_json())
    assert again.get_json()["status"] == "running"  # the first answer, not the task now
    assert module.post(f"/tasks/{task_id}/start").status_code == 409  # without the key


def test_the_longest_failure_is_kept_and_its_answer_replayed(module, engine):
    message = "💥 " * (ERROR_MSG_MAX_LENGTH // 2)
    task_id = task_in(module, "running")
    key = {"Idempotency-Key": f"fail-{task_id}"}
    first = module.post(f"/tasks/{task_id}/fail", json={"error_msg": message}, headers=key)
    again = module.post(f"/tasks/{task_id}/fail", json={"error_msg": message}, headers=key)
    assert first.status_code == again.status_code == 200
    assert (
        again.get_json()["error_msg"] == message == stored(engine, "training", task_id)["error_msg"]
    )
    assert again.headers["Idempotent-Replayed"] == "true"


def test_the_same_key_with_another_request_is_422(module, engine):
    key = {"Idempotency-Key": str(uuid.uuid4())}
    tag = f"idem-{uuid.uuid4().hex[:8]}"
    assert module.post("/tasks", json=new_task_body(tag), headers=key).status_code == 201
    other = module.post("/tasks", json=new_task_body(tag + "-b"), headers=key)
    assert other.status_code == 422
    assert other.get_json()["errors"][0]["parameter"] == "Idempotency-Key"
    assert count_of(engine, "training", tag + "-b") == 0


def test_keys_belong_to_their_token(reporting_app, module, engine):
    key = {"Idempotency-Key": str(uuid.uuid4())}
    tag = f"idem-{uuid.uuid4().hex[:8]}"
    assert module.post("/tasks", json=new_task_body(tag), headers=key).status_code == 201
    other = client_of(reporting_app, "other reporter")
    assert other.post("/tasks", json=new_task_body(tag), headers=key).status_code == 201
    assert count_of(engine, "training", tag) == 2


@pytest.mark.parametrize("key", ["", "has space", "é", "k" * 256])
def test_a_malformed_key_is_422_and_nothing_is_done(module, engine, key):
    tag = f"idem-{uuid.uuid4().hex[:8]}"
    response = module.post("/tasks", json=new_task_body(tag), headers={"Idempotency-Key": key})
    assert response.status_code == 422
    assert response.get_json()["errors"][0]["parameter"] == "Idempotency-Key"
    assert count_of(engine, "training", tag) == 0


def test_a_refused_request_spends_no_key(module, engine):
    key = {"Idempotency-Key": str(uuid.uuid4())}
    tag = f"idem-{uuid.uuid4().hex[:8]}"
    refused = module.post("/tasks", json={**new_task_body(tag), "epochs": 0}, headers=key)
    assert refused.status_code == 422
    corrected = module.post("/tasks", json=new_task_body(tag), headers=key)
    assert corrected.status_code == 201 and "Idempotent-Replayed" not in corrected.headers
    missing = f"/tasks/{uuid.UUID(int=11)}/start"
    assert module.post(missing, headers={"Idempotency-Key": "gone-1"}).status_code == 404
    with engine.connect() as connection:
        kept = sa.select(IdempotencyKey.key).where(IdempotencyKey.key == "gone-1")
        assert connection.execute(kept).first() is None


def test_a_refused_move_is_answered_once_like_any_other(module):
    task_id = task_in(module, "completed")
    key = {"Idempotency-Key": f"late-{task_id}"}
    first = module.post(f"/tasks/{task_id}/start", headers=key)
    again = module.post(f"/tasks/{task_id}/start", headers=key)
    assert first.status_code == again.status_code == 409
    assert again.get_json() == first.get_json()
    assert again.headers["Idempotent-Replayed"] == "true"


def test_keys_expire_after_a_day(reporting_app, module, engine, moment):
    key = {"Idempotency-Key": str(uuid.uuid4())}
    tag = f"idem-{uuid.uuid4().hex[:8]}"
    assert module.post("/tasks", json=new_task_body(tag), headers=key).status_code == 201
    moment[0] = NOW + KEPT_FOR + timedelta(seconds=1)
    try:
        again = module.post("/tasks", json=new_task_body(tag), headers=key)
    finally:
        moment[0] = NOW
    assert again.status_code == 201 and "Idempotent-Replayed" not in again.headers
    assert count_of(engine, "training", tag) == 2
    with engine.connect() as connection:
        oldest = connection.execute(sa.select(sa.func.min(IdempotencyKey.created_at))).scalar()
    assert oldest > NOW  # purged: every key of the clock's first moment


def claimed_earlier(app, engine: sa.Engine, key: str, body: dict, minutes_ago: int) -> None:
    """A claim of the module's key for creating `body`, with no answer yet, made a while ago."""
    with app.test_request_context("/tasks", method="POST", json=body):
        fingerprint = request_fingerprint()
    row = {"owner": f"token:{MODULE}", "key": key, "request_hash": fingerprint}
    row["created_at"] = NOW - timedelta(minutes=minutes_ago)
    with engine.begin() as connection:
        connection.execute(sa.insert(IdempotencyKey).values(row))


def test_a_claim_still_in_progress_is_409_and_an_abandoned_one_is_taken_over(
    reporting_app, module, engine
):
    in_progress, abandoned = str(uuid.uuid4()), str(uuid.uuid4())
    tag = f"idem-{uuid.uuid4().hex[:8]}"
    claimed_earlier(reporting_app, engine, in_progress, new_task_body(tag), minutes_ago=1)
    claimed_earlier(reporting_app, engine, abandoned, new_task_body(tag), minutes_ago=6)
    waiting = module.post(
        "/tasks", json=new_task_body(tag), headers={"Idempotency-Key": in_progress}
    )
    assert waiting.status_code == 409 and waiting.headers["Retry-After"] == "1"
    taken = module.post("/tasks", json=new_task_body(tag), headers={"Idempotency-Key": abandoned})
    assert taken.status_code == 201
    assert count_of(engine, "training", tag) == 1


# -- at once, on every engine -------------------------------------------------------------------


Request = tuple[str, str, dict | None, dict]


def posted_at_once(app, *requests: Request) -> list[Any]:
    """Send the POSTs (role, path, body, headers) at once, each from its own client on its
    own thread; their answers, in order."""
    clients = [client_of(app, role) for role, *_ in requests]
    barrier = threading.Barrier(len(requests))
    answers: list[Any] = [None] * len(requests)

    def send(index: int) -> None:
        _, path, body, headers = requests[index]
        barrier.wait()
        answers[index] = clients[index].post(path, json=body, headers=headers)

    threads = [threading.Thread(target=send, args=(index,)) for index in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return answers


def test_two_identical_requests_at_once_create_one_task(reporting_app, engine):
    for _ in range(RACE_ROUNDS):
        tag, key = f"twin-{uuid.uuid4().hex[:8]}", {"Idempotency-Key": str(uuid.uuid4())}
        twin = ("reporter", "/tasks", new_task_body(tag), key)
        answers = posted_at_once(reporting_app, twin, twin)
        assert count_of(engine, "training", tag) == 1
        statuses = sorted(answer.status_code for answer in answers)
        assert statuses in ([201, 201], [201, 409]), statuses
        if statuses == [201, 201]:
            assert answers[0].get_json() == answers[1].get_json()
        else:
            waiting = next(answer for answer in answers if answer.status_code == 409)
            assert waiting.get_json()["title"] == "Request in progress"
            assert waiting.headers["Retry-After"] == "1"


def test_a_modules_cancel_racing_its_completion_lets_exactly_one_win(reporting_app, engine):
    for _ in range(RACE_ROUNDS):
        task_id = task_in(client_of(reporting_app, "reporter"), "running")
        cancel, complete = posted_at_once(
            reporting_app,
            ("reporter", f"/tasks/{task_id}/cancel", None, {}),
            ("reporter", f"/tasks/{task_id}/complete", {"output_model": "m"}, {}),
        )
        assert sorted([cancel.status_code, complete.status_code]) == [200, 409]
        winner = "cancelled" if cancel.status_code == 200 else "completed"
        loser = complete if winner == "cancelled" else cancel
        assert loser.get_json()["task_status"] == winner
        assert stored(engine, "training", task_id)["status"] == winner
        assert [kind for kind, _, _ in events_of(engine, task_id)] == [
            "created",
            "started",
            winner,
        ]


def test_an_operators_cancel_racing_a_start_over_http_ends_in_one_state(reporting_app, engine):
    for _ in range(RACE_ROUNDS):
        task_id = task_in(client_of(reporting_app, "reporter"), "queued")
        cancel, start = posted_at_once(
            reporting_app,
            ("operator", f"/tasks/{task_id}/cancel", None, {}),
            ("reporter", f"/tasks/{task_id}/start", None, {}),
        )
        row = stored(engine, "training", task_id)
        kinds = [kind for kind, _, _ in events_of(engine, task_id)]
        if cancel.get_json()["outcome"] == "cancelled":
            assert start.status_code == 409 and start.get_json()["task_status"] == "cancelled"
            assert row["status"] == "cancelled" and kinds == ["created", "cancelled"]
        else:
            assert start.status_code == 200
            assert row["status"] == "running" and row["cancel_requested_at"] is not None
            assert kinds == ["created", "started", "cancel_requested"]
