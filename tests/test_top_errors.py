"""The most common errors: the grouping key, the groups against the oracle on every engine,
and the link that lists exactly one group's tasks."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qsl, urlsplit

import pytest
import sqlalchemy as sa
from oracle import NOW, error_groups, expected
from test_api import FILTERS

from app.error_groups import ERROR_GROUP_MAX_LENGTH, error_group
from app.filters import TaskFilter, format_timestamp
from app.models import MODEL_FOR_TYPE
from app.recorder import Recorder


@pytest.mark.parametrize(
    ("message", "key"),
    [
        ("row 18342: expected 3 columns, found 5", "row <n>: expected <n> columns, found <n>"),
        (
            "CUDA out of memory. Tried to allocate 2.50 GiB (GPU 0; 79.15 GiB total capacity)",
            "CUDA out of memory. Tried to allocate <n> GiB (GPU <n>; <n> GiB total capacity)",
        ),
        ("task 3f2a1b2c-1111-2222-3333-444455556666 lost", "task <uuid> lost"),
        ("invalid start byte 0xff at offset 1048576", "invalid start byte <hex> at offset <n>"),
        ("commit deadbeef12 was not found", "commit <hex> was not found"),
        ("FileNotFoundError: /data/x/y.parquet", "FileNotFoundError: <path>"),
        ("KeyError: 'label'", "KeyError: <value>"),
        ('no column "text" in the dataset', "no column <value> in the dataset"),
        ("fetch https://hub.example/a/b?rev=3 failed", "fetch <url> failed"),
        ("  two   lines\n of text ", "two lines of text"),
        ("", "(empty message)"),
        ("ünïcode ✓ <b>42</b>", "ünïcode ✓ <b><n></b>"),
    ],
)
def test_the_key_takes_out_the_variable_parts(message, key):
    assert error_group(message) == key


def test_a_long_message_gets_a_key_the_column_holds():
    assert len(error_group("word " * 200)) == ERROR_GROUP_MAX_LENGTH


ERROR_FILTERS = {
    name: FILTERS[name]
    for name in ("nothing", "one type", "within 24 hours", "one tag", "created range")
} | {
    "failed and completed": (
        [("status", "failed"), ("status", "completed")],
        TaskFilter(statuses=("completed", "failed")),
    ),
}


def without_links(groups: list[dict]) -> list[dict]:
    return [{k: v for k, v in group.items() if k != "tasks_url"} for group in groups]


@pytest.mark.parametrize("name", list(ERROR_FILTERS))
def test_groups_match_the_oracle(client, tasks, name):
    args, task_filter = ERROR_FILTERS[name]
    response = client.get("/tasks/errors", query_string=[*args, ("limit", "100")])
    assert response.status_code == 200, response.get_json()
    assert without_links(response.get_json()["groups"]) == error_groups(tasks, task_filter)


@pytest.mark.parametrize("name", ["nothing", "one type", "within 24 hours"])
def test_each_link_lists_exactly_its_group(client, tasks, name):
    args, task_filter = ERROR_FILTERS[name]
    groups = client.get("/tasks/errors", query_string=args).get_json()["groups"]
    assert groups
    for group in groups:
        url = urlsplit(group["tasks_url"])
        listed = client.get(url.path, query_string=[*parse_qsl(url.query), ("limit", "100")])
        ids = [item["id"] for item in listed.get_json()["items"]]
        in_group = TaskFilter(**{**task_filter.__dict__, "error_group": group["error_group"]})
        assert ids == expected(tasks, in_group)
        assert len(ids) == group["count"]


def test_a_filter_without_failed_tasks_has_no_groups(client):
    answer = client.get("/tasks/errors", query_string={"status": "completed"}).get_json()
    assert answer == {"groups": []}


def test_limit_is_how_many_groups(client, tasks):
    groups = client.get("/tasks/errors", query_string={"limit": "2"}).get_json()["groups"]
    assert without_links(groups) == error_groups(tasks, TaskFilter())[:2]


@pytest.mark.parametrize(
    ("args", "parameter"),
    [
        ({"offset": "20"}, "offset"),
        ({"error_group": "x" * (ERROR_GROUP_MAX_LENGTH + 1)}, "error_group"),
        ({"error_group": "tab\there"}, "error_group"),
        ({"limit": "0"}, "limit"),
    ],
)
def test_bad_input_is_422_naming_the_parameter(client, args, parameter):
    response = client.get("/tasks/errors", query_string=args)
    assert response.status_code == 422
    assert parameter in {error["parameter"] for error in response.get_json()["errors"]}


def test_failing_a_task_writes_its_error_group(scratch_engine):
    recorder = Recorder(scratch_engine, clock=lambda: NOW)
    task_id = recorder.create("training", base_model="m", dataset_name="d", method="lora", epochs=1)
    recorder.fail("training", task_id, "worker lost: node gpu-17 stopped after 3600 s")
    model = MODEL_FOR_TYPE["training"]
    with scratch_engine.connect() as connection:
        key = connection.execute(
            sa.select(model.error_group).where(model.id == task_id)
        ).scalar_one()
    assert key == "worker lost: node gpu-<n> stopped after <n> s"


def test_the_window_limits_the_groups(client, tasks):
    after = format_timestamp(NOW - timedelta(days=2))
    groups = client.get("/tasks/errors", query_string={"created_after": after}).get_json()
    assert sum(g["count"] for g in groups["groups"]) == len(
        [t for t in tasks if t["status"] == "failed" and t["created_at"] >= NOW - timedelta(days=2)]
    )
