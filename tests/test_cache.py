"""Counts shared by the viewers of one view: in the process by default, over Redis between
servers, and skipped with a warning when the cache cannot be reached."""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from conftest import make_app, only_the_version_was_read, statements_run, unavailable
from flask import Flask
from oracle import NOW, insert_tasks, known_tasks
from server_support import free_port

from app.cache import MemoryCache, counts_key, kept_or_made, make_cache
from app.filters import Cursor, TaskFilter
from app.query import DataVersion, count_facets
from app.recorder import Recorder

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
REDIS_SERVER = Path(os.environ.get("REDIS_SERVER", "/usr/bin/redis-server"))
FAILED_TODAY = {"status": "failed", "within_hours": "24"}
UNREACHABLE = "cannot be reached"


@contextmanager
def app_over(url: str, **config: object) -> Iterator[Flask]:
    """An app over `url` with `config`, its connections closed afterwards."""
    app = make_app(url, **config)
    try:
        yield app
    finally:
        with app.app_context():
            app.extensions["sqlalchemy"].engine.dispose()


def expected_counts(app: Flask, args: dict[str, str]) -> dict:
    """The counts of a filter, counted now without any cache."""
    task_filter = TaskFilter(statuses=(args["status"],), within_hours=int(args["within_hours"]))
    with app.app_context(), app.extensions["sqlalchemy"].engine.connect() as connection:
        return count_facets(connection, task_filter, NOW).as_json()


# -- in the process --------------------------------------------------------------------------


def test_memory_cache_forgets_the_least_recently_used_entry_when_full():
    cache = MemoryCache(entries=2)
    cache.set("a", "1")
    cache.set("b", "2")
    assert cache.get("a") == "1"
    cache.set("c", "3")
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == ("1", None, "3")


def test_memory_cache_entries_expire():
    now = [100.0]
    cache = MemoryCache(ttl=10, clock=lambda: now[0])
    cache.set("a", "1")
    now[0] = 109.9
    assert cache.get("a") == "1"
    now[0] = 110.0
    assert cache.get("a") is None


VERSION = DataVersion((NOW, None, NOW, NOW, NOW), NOW)


@pytest.mark.parametrize(
    "same",
    [
        TaskFilter(statuses=("failed",), limit=50),
        TaskFilter(statuses=("failed",), offset=40),
        TaskFilter(statuses=("failed",), order="asc"),
        TaskFilter(statuses=("failed",), cursor=Cursor(NOW, uuid.UUID(int=1), "desc", "t")),
    ],
)
def test_pages_orders_and_sizes_of_one_view_share_its_counts(same):
    assert counts_key(same, VERSION) == counts_key(TaskFilter(statuses=("failed",)), VERSION)


@pytest.mark.parametrize(
    "other",
    [
        (TaskFilter(statuses=("running",)), VERSION),
        (TaskFilter(statuses=("failed",), exact_count=True), VERSION),
        (TaskFilter(statuses=("failed",)), DataVersion(VERSION.newest, NOW + timedelta(minutes=1))),
        (TaskFilter(statuses=("failed",)), DataVersion((NOW,) * 5, NOW)),
    ],
)
def test_another_filter_or_data_version_has_other_counts(other):
    assert counts_key(*other) != counts_key(TaskFilter(statuses=("failed",)), VERSION)


def test_threads_that_miss_one_key_at_once_make_it_once():
    cache, made, answers = MemoryCache(), [], []
    release = threading.Event()

    def make() -> str:
        made.append(1)
        release.wait(5)
        return "counted"

    threads = [
        threading.Thread(target=lambda: answers.append(kept_or_made(cache, "view", make)))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    time.sleep(0.2)  # every thread has missed the key by now
    release.set()
    for thread in threads:
        thread.join()
    assert made == [1] and answers == ["counted"] * 4


def test_a_cache_url_that_is_not_redis_is_refused():
    with pytest.raises(ValueError, match="CACHE_URL"):
        make_cache("memcached://127.0.0.1:11211", "p:")


def test_viewers_of_one_view_share_its_counts_in_the_process(app, client):
    """The page's chips and the API go through the same cache: after the page, the API
    reads the data version alone."""
    page = client.get("/", query_string={**FAILED_TODAY, "limit": "10"})
    assert page.status_code == 200
    with statements_run(app) as sent:
        shared = client.get("/tasks/counts", query_string=FAILED_TODAY)
    assert only_the_version_was_read(sent)
    assert shared.get_json() == expected_counts(app, FAILED_TODAY)
    with statements_run(app) as sent:
        client.get("/tasks/counts", query_string={"status": "failed"})
    assert len(sent) > 1  # another view is counted


def test_counts_follow_a_change_at_once(scratch_app, scratch_engine):
    insert_tasks(scratch_engine, known_tasks())
    client = scratch_app.test_client()
    before = client.get("/tasks/counts").get_json()["task_type"]["training"]
    Recorder(scratch_engine, clock=lambda: NOW).create(
        "training", base_model="m", dataset_name="d", method="full", epochs=1
    )
    after = client.get("/tasks/counts").get_json()["task_type"]["training"]
    assert after["value"] == before["value"] + 1


# -- over Redis ------------------------------------------------------------------------------


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix of this test's own on the shared Redis; its keys are deleted afterwards."""
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as error:
        unavailable(f"Redis at {REDIS_URL} cannot be reached: {error}")
    prefix = f"vectorize-tasks-test-{uuid.uuid4().hex}:"
    yield prefix
    if keys := list(client.scan_iter(match=prefix + "*")):
        client.delete(*keys)
    client.close()


def test_two_servers_share_a_views_counts_and_rendering_over_redis(known_database, redis_prefix):
    url = known_database[0]
    config = {"CACHE_URL": REDIS_URL, "CACHE_KEY_PREFIX": redis_prefix}
    with app_over(url, **config) as first, app_over(url, **config) as second:
        chips = first.test_client().get("/", query_string=FAILED_TODAY)
        assert chips.status_code == 200
        with statements_run(second) as sent:
            shared = second.test_client().get("/tasks/counts", query_string=FAILED_TODAY)
        assert len(sent) == 1  # the data version; the counts came from Redis
        assert shared.get_json() == expected_counts(second, FAILED_TODAY)
        with statements_run(second) as sent:
            page = second.test_client().get("/", query_string=FAILED_TODAY)
        assert len(sent) == 1  # the page as the first server rendered it
        assert page.data == chips.data
    kept = redis.Redis.from_url(REDIS_URL).keys(redis_prefix + "*")
    assert sorted(key.decode().removeprefix(redis_prefix)[:5] for key in kept) == [
        "chart",
        "count",
        "error",
        "list:",
    ]


def test_a_cache_on_a_closed_port_is_skipped_with_a_warning(known_database, caplog):
    cache_url = f"redis://127.0.0.1:{free_port()}/0"
    with app_over(known_database[0], CACHE_URL=cache_url) as app:
        client = app.test_client()
        with caplog.at_level(logging.WARNING, logger="app.cache"):
            page = client.get("/", query_string=FAILED_TODAY)
            counts = client.get("/tasks/counts", query_string=FAILED_TODAY)
        assert page.status_code == 200 and 'id="chip-status-failed"' in page.get_data(True)
        assert counts.get_json() == expected_counts(app, FAILED_TODAY)
    assert UNREACHABLE in caplog.text


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[int, subprocess.Popen]]:
    """A redis-server of this test's own on a free port, which the test may stop."""
    if not REDIS_SERVER.exists():
        unavailable(f"{REDIS_SERVER} is missing (apt-get install redis-server)")
    port = free_port()
    options = {"port": str(port), "bind": "127.0.0.1", "save": "", "appendonly": "no"}
    arguments = [item for name, value in options.items() for item in (f"--{name}", value)]
    server = subprocess.Popen(
        [str(REDIS_SERVER), *arguments, "--dir", str(tmp_path)], stdout=subprocess.DEVNULL
    )
    client = redis.Redis(port=port, socket_timeout=1, socket_connect_timeout=1)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                server.kill()
                raise
            time.sleep(0.05)
    yield port, server
    client.close()
    if server.poll() is None:
        server.kill()
        server.wait()


def test_a_cache_that_stops_is_skipped_with_a_warning(known_database, own_redis, caplog):
    port, server = own_redis
    with app_over(known_database[0], CACHE_URL=f"redis://127.0.0.1:{port}/0") as app:
        client = app.test_client()
        assert client.get("/tasks/counts", query_string=FAILED_TODAY).status_code == 200
        assert redis.Redis(port=port).dbsize() == 1
        server.kill()
        server.wait()
        with caplog.at_level(logging.WARNING, logger="app.cache"):
            page = client.get("/", query_string={"status": "running"})
        assert page.status_code == 200 and 'id="chip-status-running"' in page.get_data(True)
    assert UNREACHABLE in caplog.text


def test_readyz_checks_the_shared_cache(known_database):
    with app_over(known_database[0], CACHE_URL=REDIS_URL) as app:
        answer = app.test_client().get("/readyz")
    assert answer.status_code == 200 and answer.get_json()["checks"]["cache"]["ok"]
    closed = f"redis://127.0.0.1:{free_port()}/0"
    with app_over(known_database[0], CACHE_URL=closed) as app:
        answer = app.test_client().get("/readyz")
    assert answer.status_code == 503 and not answer.get_json()["checks"]["cache"]["ok"]


def test_readyz_has_no_cache_check_without_a_shared_cache(known_database):
    with app_over(known_database[0]) as app:
        assert "cache" not in app.test_client().get("/readyz").get_json()["checks"]
