"""Pages by offset and by cursor: every match exactly once, stable while new tasks arrive."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import timedelta
from itertools import count

import pytest
from oracle import NOW, STATUSES, expected, insert_tasks, known_tasks, make_task, sort_key
from test_cache import app_over

from app.filters import TaskFilter
from app.models import TASK_TYPES
from app.recorder import Recorder

FILTERS = {
    "nothing": ([], TaskFilter()),
    "running": ([("status", "running")], TaskFilter(statuses=("running",))),
    "two types in a window": (
        [("task_type", "training"), ("task_type", "synthesis"), ("within_hours", "720")],
        TaskFilter(task_types=("training", "synthesis"), within_hours=720),
    ),
    "two tags": ([("tag", "exp-1"), ("tag", "Exp-1")], TaskFilter(tags=("Exp-1", "exp-1"))),
}


def page(client, args: list[tuple[str, str]]) -> dict:
    response = client.get("/tasks", query_string=args)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def walk(
    client,
    args: list[tuple[str, str]],
    limit: int,
    between_pages: Callable[[], None] = lambda: None,
    cursor: str | None = None,
) -> list[list[str]]:
    """Follow next_cursor from the first page (or `cursor`) to the last; each page's ids."""
    pages: list[list[str]] = []
    for _ in range(1000):
        position = [("cursor", cursor)] if cursor else []
        body = page(client, [*args, ("limit", str(limit)), *position])
        pages.append([item["id"] for item in body["items"]])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
        between_pages()
    pytest.fail("the walk never reached a last page")


def flat(pages: list[list[str]]) -> list[str]:
    return [task_id for ids in pages for task_id in ids]


def with_order(args: list[tuple[str, str]], task_filter: TaskFilter, order: str):
    return [*args, ("order", order)], TaskFilter(**{**task_filter.__dict__, "order": order})


# -- walking by cursor -----------------------------------------------------------------------


@pytest.mark.parametrize("order", ["desc", "asc"])
@pytest.mark.parametrize("limit", [3, 100])
@pytest.mark.parametrize("name", FILTERS)
def test_cursor_walk_returns_every_match_once_in_order(client, tasks, name, limit, order):
    args, task_filter = with_order(*FILTERS[name], order)
    pages = walk(client, args, limit)
    assert flat(pages) == expected(tasks, task_filter)
    assert all(len(ids) == limit for ids in pages[:-1])


class Arrivals:
    """New tasks created after every known one, one batch between each two pages."""

    def __init__(self, engine, per_page: int, status: str = "running"):
        self.engine = engine
        self.per_page = per_page
        self.status = status
        self.tasks: list[dict] = []
        self.seconds = count(1)
        self.rng = random.Random(11)

    def __call__(self) -> None:
        batch = [
            make_task(
                self.rng.choice(TASK_TYPES),
                self.status,
                NOW + timedelta(seconds=next(self.seconds)),
                tag="exp-1",
                rng=self.rng,
            )
            for _ in range(self.per_page)
        ]
        insert_tasks(self.engine, batch)
        self.tasks += batch


@pytest.fixture
def scratch_tasks(scratch_engine) -> list[dict]:
    """The known tasks, in the scratch database that tests may add to."""
    tasks = known_tasks()
    insert_tasks(scratch_engine, tasks)
    return tasks


@pytest.mark.parametrize("name", FILTERS)
def test_newer_tasks_do_not_shift_a_descending_walk(
    scratch_app, scratch_engine, scratch_tasks, name
):
    args, task_filter = FILTERS[name]
    arrivals = Arrivals(scratch_engine, per_page=3)
    ids = flat(walk(scratch_app.test_client(), args, 10, between_pages=arrivals))
    assert arrivals.tasks, "no task arrived during the walk"
    assert ids == expected(scratch_tasks, task_filter)


@pytest.mark.parametrize("name", FILTERS)
def test_newer_tasks_join_an_ascending_walk_at_the_end(
    scratch_app, scratch_engine, scratch_tasks, name
):
    args, task_filter = with_order(*FILTERS[name], "asc")
    arrivals = Arrivals(scratch_engine, per_page=1)
    ids = flat(walk(scratch_app.test_client(), args, 10, between_pages=arrivals))
    original = expected(scratch_tasks, task_filter)
    assert ids[: len(original)] == original
    assert ids[len(original) :] == expected(arrivals.tasks, task_filter)
    assert len(set(ids)) == len(ids)


def test_tasks_finishing_during_a_walk_do_not_shift_it(scratch_app, scratch_engine, scratch_tasks):
    """A task that leaves the filter while the walk is under way neither repeats nor hides
    the tasks after it: the cursor is a position, not a count."""
    client = scratch_app.test_client()
    args, task_filter = [("status", "running")], TaskFilter(statuses=("running",))
    original = expected(scratch_tasks, task_filter)
    first = page(client, [*args, ("limit", "10")])
    # The first listed task of the first page finishes.
    by_id = {str(task["id"]): task for task in scratch_tasks}
    finished = by_id[first["items"][0]["id"]]
    Recorder(scratch_engine, lambda: NOW).complete(finished["task_type"], finished["id"])
    rest = walk(client, args, 10, cursor=first["next_cursor"])
    assert [item["id"] for item in first["items"]] + flat(rest) == original


# -- pages by offset -------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [1, 7, 100])
@pytest.mark.parametrize("name", FILTERS)
def test_offset_pages_are_slices_of_the_oracle(client, tasks, name, limit):
    args, task_filter = FILTERS[name]
    matching = expected(tasks, task_filter)
    for offset in range(0, len(matching) + limit, max(limit, 23)):
        body = page(client, [*args, ("limit", str(limit)), ("offset", str(offset))])
        assert [item["id"] for item in body["items"]] == matching[offset : offset + limit]
        assert (body["limit"], body["offset"]) == (limit, offset)


def test_offset_past_the_end_is_an_empty_last_page(client, tasks):
    body = page(client, [("offset", str(len(tasks) + 5))])
    assert body["items"] == []
    assert body["next_cursor"] is None
    assert body["total"] == {"value": len(tasks), "relation": "eq"}


def test_offset_page_ending_at_the_last_match_has_no_cursor(client, tasks):
    body = page(client, [("limit", "10"), ("offset", str(len(tasks) - 10))])
    assert len(body["items"]) == 10
    assert body["next_cursor"] is None


def test_offset_page_before_the_last_match_has_a_cursor(client, tasks):
    body = page(client, [("limit", "10"), ("offset", str(len(tasks) - 11))])
    assert body["next_cursor"] is not None


def test_cursor_from_an_offset_page_continues_after_it(client, tasks):
    body = page(client, [("limit", "10"), ("offset", "40")])
    following = page(client, [("limit", "10"), ("cursor", body["next_cursor"])])
    assert [item["id"] for item in following["items"]] == expected(tasks, TaskFilter())[50:60]


# -- limits ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("limit", "size"), [(None, 20), ("1", 1), ("20", 20), ("100", 100)])
def test_limit_sets_the_page_size(client, tasks, limit, size):
    body = page(client, [("limit", limit)] if limit else [])
    assert [item["id"] for item in body["items"]] == expected(tasks, TaskFilter())[:size]
    assert body["limit"] == size


# -- the last page ---------------------------------------------------------------------------


@pytest.mark.parametrize("status", STATUSES)
def test_page_holding_every_match_has_no_cursor(client, tasks, status):
    matching = expected(tasks, TaskFilter(statuses=(status,)))
    body = page(client, [("status", status), ("limit", str(len(matching)))])
    assert len(body["items"]) == len(matching)
    assert body["next_cursor"] is None


@pytest.mark.parametrize("status", STATUSES)
def test_page_one_short_of_every_match_leads_to_a_last_page_of_one(client, tasks, status):
    matching = expected(tasks, TaskFilter(statuses=(status,)))
    first = page(client, [("status", status), ("limit", str(len(matching) - 1))])
    assert first["next_cursor"] is not None
    last = page(client, [("status", status), ("cursor", first["next_cursor"])])
    assert [item["id"] for item in last["items"]] == matching[-1:]
    assert last["next_cursor"] is None


def test_no_match_is_one_empty_page_without_cursor(client):
    body = page(client, [("tag", "no-such-tag")])
    assert (body["items"], body["next_cursor"]) == ([], None)


# -- a cursor is a position ------------------------------------------------------------------


@pytest.mark.parametrize("order", ["desc", "asc"])
@pytest.mark.parametrize("name", [name for name in FILTERS if name != "nothing"])
def test_cursor_keeps_its_position_when_the_filter_changes(client, tasks, name, order):
    args, task_filter = with_order(*FILTERS[name], order)
    unfiltered = page(client, [("limit", "60"), ("order", order)])
    last = next(t for t in tasks if str(t["id"]) == unfiltered["items"][-1]["id"])
    after = [
        str(task["id"])
        for task in tasks
        if (sort_key(task) < sort_key(last) if order == "desc" else sort_key(task) > sort_key(last))
    ]
    ids = flat(walk(client, args, 100, cursor=unfiltered["next_cursor"]))
    assert ids == [task_id for task_id in expected(tasks, task_filter) if task_id in after]
    assert ids, "the filter should still match something after the position"


def test_cursor_works_with_another_page_size(client, tasks):
    first = page(client, [("limit", "5")])
    second = page(client, [("limit", "50"), ("cursor", first["next_cursor"])])
    assert [item["id"] for item in second["items"]] == expected(tasks, TaskFilter())[5:55]


@pytest.mark.parametrize("token", ["abc.\u00e9", "\u00e9.abc"])
def test_a_cursor_with_non_ascii_characters_is_422(client, token):
    response = client.get("/tasks", query_string={"cursor": token})
    assert response.status_code == 422
    assert response.get_json()["errors"][0]["parameter"] == "cursor"


def test_servers_that_share_the_secret_key_continue_each_other_s_walk(known_database):
    """Behind one address, each page may be asked of another server: a cursor one signed
    is read by every server given the same SECRET_KEY, and refused by one that is not."""
    url, tasks = known_database
    with (
        app_over(url) as first,
        app_over(url) as second,
        app_over(url, SECRET_KEY="another-secret") as stranger,
    ):
        cursor = page(first.test_client(), [("limit", "7")])["next_cursor"]
        following = page(second.test_client(), [("limit", "7"), ("cursor", cursor)])
        refused = stranger.test_client().get("/tasks", query_string={"cursor": cursor})
    assert [item["id"] for item in following["items"]] == expected(tasks, TaskFilter())[7:14]
    assert refused.status_code == 422
    assert refused.get_json()["errors"][0]["parameter"] == "cursor"
