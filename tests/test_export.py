"""The CSV and NDJSON exports: the API's rows, streamed, with the API's strict filters."""

from __future__ import annotations

import csv
import io
import json
import random
import tracemalloc
from datetime import timedelta

import pytest
from conftest import make_app
from oracle import NOW, insert_tasks, make_task

from app.models import TASK_TYPES

UNREACHABLE_DATABASE = "postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=2"
EXPORTS = ["/tasks.csv", "/tasks.ndjson"]

EXPORT_FILTERS = {
    "nothing": [],
    "two types": [("task_type", "training"), ("task_type", "synthesis")],
    "status and window": [("status", "completed"), ("within_hours", "720")],
    "tags, one with html": [("tag", "<b>bold</b>"), ("tag", "nightly")],
    "oldest first": [("order", "asc"), ("status", "F")],
    "nothing matches": [("tag", "no-such-tag")],
}


def api_items(client, args) -> list[dict]:
    """Every item the JSON API lists for `args`, walking its pages by cursor."""
    items: list[dict] = []
    params = [*args, ("limit", "100")]
    while True:
        body = client.get("/tasks", query_string=params).get_json()
        items += body["items"]
        if body["next_cursor"] is None:
            return items
        params = [*args, ("limit", "100"), ("cursor", body["next_cursor"])]


def csv_text(value) -> str:
    """How a JSON value reads in the CSV: null is empty, everything else as Python prints it."""
    return "" if value is None else str(value)


@pytest.mark.parametrize("name", EXPORT_FILTERS)
def test_ndjson_rows_equal_the_api_rows(client, name):
    args = EXPORT_FILTERS[name]
    response = client.get("/tasks.ndjson", query_string=args)
    assert response.status_code == 200
    assert response.mimetype == "application/x-ndjson"
    lines = response.get_data(as_text=True).splitlines()
    assert [json.loads(line) for line in lines] == api_items(client, args)


@pytest.mark.parametrize("name", EXPORT_FILTERS)
def test_csv_rows_equal_the_api_rows(client, name):
    args = EXPORT_FILTERS[name]
    response = client.get("/tasks.csv", query_string=args)
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    items = api_items(client, args)
    assert rows == [{key: csv_text(value) for key, value in item.items()} for item in items]


def test_csv_columns_are_the_api_fields_in_order(client):
    header = client.get("/tasks.csv").get_data(as_text=True).splitlines()[0]
    item = client.get("/tasks", query_string={"limit": 1}).get_json()["items"][0]
    assert header.split(",") == list(item)


@pytest.mark.parametrize("path", EXPORTS)
def test_export_is_a_download_named_for_its_time(client, path):
    response = client.get(path)
    extension = path.rsplit(".", 1)[1]
    expected = f'attachment; filename="tasks-20261128T120000Z.{extension}"'
    assert response.headers["Content-Disposition"] == expected


@pytest.mark.parametrize("path", EXPORTS)
@pytest.mark.parametrize(("parameter", "value"), [("limit", "5"), ("offset", "0"), ("cursor", "x")])
def test_paging_parameters_are_refused(client, path, parameter, value):
    response = client.get(path, query_string={parameter: value})
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    (error,) = response.get_json()["errors"]
    assert error["parameter"] == parameter
    assert "an export streams every match" in error["detail"]


@pytest.mark.parametrize("path", EXPORTS)
@pytest.mark.parametrize(
    ("args", "parameter"),
    [({"status": "done"}, "status"), ({"statuss": "failed"}, "statuss"), ({"tag": ""}, "tag")],
)
def test_bad_filters_are_refused_as_strictly_as_by_the_api(client, path, args, parameter):
    response = client.get(path, query_string=args)
    assert response.status_code == 422
    assert parameter in {error["parameter"] for error in response.get_json()["errors"]}


def test_export_is_streamed_a_chunk_at_a_time(client):
    response = client.get("/tasks.csv", buffered=False)
    assert response.is_streamed
    assert "Content-Length" not in response.headers
    chunks = iter(response.response)
    header = next(chunks)
    assert header.decode().startswith("id,task_type,status") and header.count(b"\n") == 1
    assert next(chunks).count(b"\n") > 1
    response.close()


@pytest.mark.parametrize("path", EXPORTS)
def test_database_down_is_a_503_problem_not_a_cut_off_download(path):
    response = make_app(UNREACHABLE_DATABASE).test_client().get(path)
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"


def test_csv_keeps_formulas_as_text(scratch_app, scratch_engine):
    rng = random.Random(3)
    task = make_task("training", "failed", NOW - timedelta(hours=1), tag="=1+2", rng=rng)
    task["error_msg"] = "@SUM(A1:A9)"
    insert_tasks(scratch_engine, [task])
    client = scratch_app.test_client()
    row = next(csv.DictReader(io.StringIO(client.get("/tasks.csv").get_data(as_text=True))))
    assert (row["tag"], row["error_msg"]) == ("'=1+2", "'@SUM(A1:A9)")
    item = json.loads(client.get("/tasks.ndjson").get_data(as_text=True))
    assert (item["tag"], item["error_msg"]) == ("=1+2", "@SUM(A1:A9)")


def completed_tasks(count: int, start: int, rng: random.Random) -> list[dict]:
    """`count` completed tasks, one a minute back from NOW - `start` minutes."""
    return [
        make_task(TASK_TYPES[i % 5], "completed", NOW - timedelta(minutes=i + 1), rng=rng)
        for i in range(start, start + count)
    ]


def export_peak(client) -> tuple[int, int]:
    """The most memory held while the NDJSON export is read, and the export's size."""
    warm = client.get("/tasks.ndjson", buffered=False)  # compile and cache the statements
    for _ in warm.response:
        pass
    warm.close()
    tracemalloc.start()
    try:
        response = client.get("/tasks.ndjson", buffered=False)
        size = sum(len(chunk) for chunk in response.response)
        response.close()
        return tracemalloc.get_traced_memory()[1], size
    finally:
        tracemalloc.stop()


def test_memory_stays_flat_as_the_export_grows(scratch_app, scratch_engine):
    rng = random.Random(11)
    client = scratch_app.test_client()
    insert_tasks(scratch_engine, completed_tasks(1_500, 0, rng))
    small_peak, small_size = export_peak(client)
    insert_tasks(scratch_engine, completed_tasks(6_000, 1_500, rng))
    large_peak, large_size = export_peak(client)
    assert large_size > 4.5 * small_size
    # Five times the rows, but one batch in memory at a time: the peak barely moves.
    assert large_peak < 2 * small_peak, (small_peak, large_peak)


def test_a_download_cut_off_gives_its_connection_back(scratch_app, scratch_engine):
    insert_tasks(scratch_engine, completed_tasks(2_500, 0, random.Random(5)))
    response = scratch_app.test_client().get("/tasks.csv", buffered=False)
    next(iter(response.response))
    assert scratch_engine.pool.checkedout() == 1  # the download is still reading
    response.close()
    assert scratch_engine.pool.checkedout() == 0
