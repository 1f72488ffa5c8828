"""The JSON API's contract: filters, order, pages, totals, detail and errors."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qsl, urlsplit

import pytest
from oracle import NOW, STATUSES, counted, expected

from app.filters import LATEST, STATUS_ALIASES, TaskFilter, format_timestamp
from app.models import TASK_TYPES

FILTERS = {
    "nothing": ([], TaskFilter()),
    "one type": ([("task_type", "training")], TaskFilter(task_types=("training",))),
    "two types": (
        [("task_type", "synthesis"), ("task_type", "model_upload")],
        TaskFilter(task_types=("model_upload", "synthesis")),
    ),
    "one status": ([("status", "failed")], TaskFilter(statuses=("failed",))),
    "two statuses": (
        [("status", "queued"), ("status", "completed")],
        TaskFilter(statuses=("queued", "completed")),
    ),
    "within 24 hours": ([("within_hours", "24")], TaskFilter(within_hours=24)),
    "within 1 hour": ([("within_hours", "1")], TaskFilter(within_hours=1)),
    "created range": (
        [
            ("created_after", format_timestamp(NOW - timedelta(days=20))),
            ("created_before", format_timestamp(NOW - timedelta(days=5))),
        ],
        TaskFilter(created_after=NOW - timedelta(days=20), created_before=NOW - timedelta(days=5)),
    ),
    "created before the calendar's end": (
        [("created_before", "9999-12-31T23:00:00-05:00")],
        TaskFilter(created_before=LATEST),
    ),
    "created after the calendar's end": (
        [("created_after", "9999-12-31T23:00:00-05:00")],
        TaskFilter(created_after=LATEST),
    ),
    "one tag": ([("tag", "exp-1")], TaskFilter(tags=("exp-1",))),
    "tag with html": ([("tag", "<b>bold</b>")], TaskFilter(tags=("<b>bold</b>",))),
    "two tags": ([("tag", "exp-1"), ("tag", "nightly")], TaskFilter(tags=("exp-1", "nightly"))),
    "status and window": (
        [("status", "completed"), ("within_hours", "24")],
        TaskFilter(statuses=("completed",), within_hours=24),
    ),
    "everything at once": (
        [
            ("task_type", "training"),
            ("task_type", "evaluation"),
            ("status", "completed"),
            ("status", "failed"),
            ("within_hours", "720"),
            ("tag", "exp-1"),
            ("tag", "exp-2"),
            ("created_after", format_timestamp(NOW - timedelta(days=40))),
        ],
        TaskFilter(
            task_types=("training", "evaluation"),
            statuses=("completed", "failed"),
            within_hours=720,
            tags=("exp-1", "exp-2"),
            created_after=NOW - timedelta(days=40),
        ),
    ),
}


def all_ids(client, args, **extra) -> list[str]:
    """Walk every page by cursor and collect the ids in order."""
    ids: list[str] = []
    params = [*args, ("limit", "100"), *extra.items()]
    while True:
        body = client.get("/tasks", query_string=params).get_json()
        ids += [item["id"] for item in body["items"]]
        if body["next_cursor"] is None:
            return ids
        params = [(k, v) for k, v in params if k != "cursor"] + [("cursor", body["next_cursor"])]


@pytest.mark.parametrize("name", FILTERS)
def test_filter_matches_oracle(client, tasks, name):
    args, task_filter = FILTERS[name]
    assert all_ids(client, args) == expected(tasks, task_filter)


@pytest.mark.parametrize("name", FILTERS)
def test_ascending_order_matches_oracle(client, tasks, name):
    args, task_filter = FILTERS[name]
    ascending = TaskFilter(**{**task_filter.__dict__, "order": "asc"})
    assert all_ids(client, args, order="asc") == expected(tasks, ascending)


@pytest.mark.parametrize("name", FILTERS)
def test_total_is_exact_count_of_matches(client, tasks, name):
    args, task_filter = FILTERS[name]
    body = client.get("/tasks", query_string=args).get_json()
    assert body["total"] == {"value": len(expected(tasks, task_filter)), "relation": "eq"}


def test_default_page_is_twenty_newest(client, tasks):
    body = client.get("/tasks").get_json()
    assert [item["id"] for item in body["items"]] == expected(tasks, TaskFilter())[:20]
    assert (body["limit"], body["offset"]) == (20, 0)


def test_offset_pages_concatenate_to_the_full_list(client, tasks):
    ids = []
    for offset in range(0, 300, 7):
        body = client.get("/tasks", query_string={"limit": 7, "offset": offset}).get_json()
        ids += [item["id"] for item in body["items"]]
    assert ids == expected(tasks, TaskFilter())


def test_every_item_has_the_same_fields(client):
    items = client.get("/tasks", query_string={"limit": 100}).get_json()["items"]
    fields = {
        "id", "task_type", "status", "tag", "created_at", "updated_at", "started_at",
        "finished_at", "progress", "error_msg", "summary", "cancel_requested_at",
    }  # fmt: skip
    assert all(set(item) == fields for item in items)
    assert {item["task_type"] for item in items} <= set(TASK_TYPES)


def test_timestamps_are_utc_with_z(client):
    item = client.get("/tasks").get_json()["items"][0]
    assert item["created_at"].endswith("Z")


def test_last_page_has_no_cursor_and_no_link(client, tasks):
    body = client.get("/tasks", query_string={"offset": len(tasks) - 3})
    assert body.get_json()["next_cursor"] is None
    assert "Link" not in body.headers


def test_link_header_points_at_the_next_page(client):
    first = client.get("/tasks", query_string={"status": "failed", "limit": 5})
    link = first.headers["Link"]
    assert link.endswith('>; rel="next"')
    url = urlsplit(link[1 : link.index(">")])
    second = client.get(url.path, query_string=parse_qsl(url.query)).get_json()
    by_cursor = client.get(
        "/tasks",
        query_string={"status": "failed", "limit": 5, "cursor": first.get_json()["next_cursor"]},
    ).get_json()
    assert second == by_cursor
    assert ("status", "failed") in parse_qsl(url.query)


@pytest.mark.parametrize("alias", STATUS_ALIASES)
def test_one_letter_status_codes_are_aliases(client, alias):
    by_alias = client.get("/tasks", query_string={"status": alias}).get_json()
    by_name = client.get("/tasks", query_string={"status": STATUS_ALIASES[alias]}).get_json()
    assert by_alias == by_name


def test_exact_count_when_asked(client, tasks):
    body = client.get("/tasks", query_string={"count": "exact"}).get_json()
    assert body["total"] == {"value": len(tasks), "relation": "eq"}


def test_counts_are_facets_that_predict_each_selection(client, tasks):
    args = [("status", "failed"), ("task_type", "training"), ("within_hours", "720")]
    counts = client.get("/tasks/counts", query_string=args).get_json()
    window = TaskFilter(within_hours=720)
    for status in STATUSES:
        chosen = TaskFilter(task_types=("training",), statuses=(status,), within_hours=720)
        assert counts["status"][status] == counted(len(expected(tasks, chosen)))
    for task_type in TASK_TYPES:
        chosen = TaskFilter(task_types=(task_type,), statuses=("failed",), within_hours=720)
        assert counts["task_type"][task_type] == counted(len(expected(tasks, chosen)))
    both = TaskFilter(task_types=("training",), statuses=("failed",), within_hours=720)
    assert counts["total"] == counted(len(expected(tasks, both)))
    shown = sum(count["value"] for count in counts["status"].values())
    assert shown <= len(expected(tasks, window))


def test_counts_are_zero_filled(client):
    counts = client.get("/tasks/counts", query_string={"tag": "no-such-tag"}).get_json()
    zero = {"value": 0, "relation": "eq"}
    assert counts == {
        "status": dict.fromkeys(STATUSES, zero),
        "task_type": dict.fromkeys(TASK_TYPES, zero),
        "total": zero,
        "stalled": zero,
    }


def test_detail_has_type_specific_fields(client, tasks):
    task = next(t for t in tasks if t["task_type"] == "training")
    body = client.get(f"/tasks/{task['id']}").get_json()
    assert body["id"] == str(task["id"])
    assert body["task_type"] == "training"
    assert body["details"]["base_model"] == task["base_model"]
    assert body["details"]["epochs"] == task["epochs"]


def test_a_task_asked_to_stop_says_when_in_the_list_and_alone(client, tasks):
    items = client.get("/tasks", query_string={"status": "running", "limit": 100}).json["items"]
    asked = {item["id"]: item["cancel_requested_at"] for item in items}
    by_id = {str(task["id"]): task for task in tasks}
    for task_id, requested_at in asked.items():
        stored = by_id[task_id]["cancel_requested_at"]
        assert requested_at == (stored and format_timestamp(stored))
    stopping = [task_id for task_id, requested_at in asked.items() if requested_at]
    assert stopping, "the known tasks hold running tasks asked to stop"
    for task_id in [*stopping, next(i for i, at in asked.items() if at is None)]:
        assert client.get(f"/tasks/{task_id}").json["cancel_requested_at"] == asked[task_id]


@pytest.mark.parametrize("task_id", ["00000000-0000-4000-8000-000000000000", "not-a-uuid", "1234"])
def test_unknown_task_is_404_problem(client, task_id):
    response = client.get(f"/tasks/{task_id}")
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["status"] == 404


BAD_INPUTS = {
    "unknown status": ([("status", "done")], "status"),
    "unknown type": ([("task_type", "upload")], "task_type"),
    "empty status": ([("status", "")], "status"),
    "empty within": ([("within_hours", "")], "within_hours"),
    "zero hours": ([("within_hours", "0")], "within_hours"),
    "too many hours": ([("within_hours", "8761")], "within_hours"),
    "hours not a number": ([("within_hours", "abc")], "within_hours"),
    "hours with underscore": ([("within_hours", "1_0")], "within_hours"),
    "hours as float": ([("within_hours", "1.5")], "within_hours"),
    "limit zero": ([("limit", "0")], "limit"),
    "limit too big": ([("limit", "101")], "limit"),
    "negative offset": ([("offset", "-1")], "offset"),
    "offset too deep": ([("offset", "10001")], "offset"),
    "typo in a name": ([("statuss", "failed")], "statuss"),
    "offset with cursor": ([("offset", "5"), ("cursor", "x.y")], "cursor"),
    "malformed cursor": ([("cursor", "garbage")], "cursor"),
    "tampered cursor": ([("cursor", "ZGVzY3wyMDI2LTExLTI4VDA.AAAAAAAAAAAAAAAAAAAAAA")], "cursor"),
    "after not before before": (
        [("created_after", "2026-11-02T00:00:00Z"), ("created_before", "2026-11-01T00:00:00Z")],
        "created_before",
    ),
    "timestamp without zone": ([("created_after", "2026-11-01T00:00:00")], "created_after"),
    "timestamp garbage": ([("created_before", "yesterday")], "created_before"),
    "tag too long": ([("tag", "x" * 129)], "tag"),
    "tag with control character": ([("tag", "a\x00b")], "tag"),
    "unknown order": ([("order", "newest")], "order"),
    "unknown count": ([("count", "fast")], "count"),
    "limit twice": ([("limit", "5"), ("limit", "6")], "limit"),
}


@pytest.mark.parametrize("name", BAD_INPUTS)
@pytest.mark.parametrize("path", ["/tasks", "/tasks/counts"])
def test_bad_input_is_422_naming_the_parameter(client, name, path):
    args, parameter = BAD_INPUTS[name]
    response = client.get(path, query_string=args)
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["status"] == 422
    assert parameter in {error["parameter"] for error in body["errors"]}
    assert parameter in body["detail"]


def test_every_bad_parameter_is_named_at_once(client):
    args = {"status": "nope", "limit": "0", "within_hours": "x", "colour": "red"}
    body = client.get("/tasks", query_string=args).get_json()
    assert {error["parameter"] for error in body["errors"]} == set(args)


def test_cursor_of_another_order_is_422(client):
    cursor = client.get("/tasks", query_string={"limit": 2}).get_json()["next_cursor"]
    response = client.get("/tasks", query_string={"cursor": cursor, "order": "asc"})
    assert response.status_code == 422


def test_cursor_signed_with_another_key_is_422(client, app):
    from app.filters import sign_cursor

    forged = sign_cursor(NOW, __import__("uuid").uuid4(), "desc", "another-key")
    assert client.get("/tasks", query_string={"cursor": forged.token}).status_code == 422


def test_offset_zero_with_a_cursor_is_422(client):
    cursor = client.get("/tasks", query_string={"limit": 2}).get_json()["next_cursor"]
    response = client.get("/tasks", query_string={"cursor": cursor, "offset": "0"})
    assert response.status_code == 422
    assert response.get_json()["errors"][0]["parameter"] == "cursor"


def test_link_header_carries_the_public_address_behind_a_trusted_proxy(known_database):
    from conftest import make_app

    app = make_app(known_database[0], TRUSTED_PROXIES=1, ALLOWED_HOSTS="tasks.example.com")
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "tasks.example.com"}
    response = app.test_client().get("/tasks?limit=1", headers=headers)
    assert response.headers["Link"].startswith("<https://tasks.example.com/tasks?")


def test_forwarded_headers_are_ignored_without_a_trusted_proxy(client):
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example.com"}
    response = client.get("/tasks?limit=1", headers=headers)
    assert response.headers["Link"].startswith("<http://localhost/tasks?")
