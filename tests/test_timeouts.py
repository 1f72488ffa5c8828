"""Time limits: a slow statement answers 503 within its limit on every engine, its connection
goes back to the pool clean, exports have their own longer limit, and a stopped server answers
503 within the connect timeout and is used again once it resumes."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa
from conftest import make_app, reset_tables
from flask import Flask
from oracle import insert_tasks, known_tasks
from pg_cluster import Cluster

from app.config import settings_from_environment
from app.models import read_connection
from app.timeouts import DEADLINE_KEY, without_statement_limit

LIMIT_MS = 300
EXPORT_LIMIT_MS = 5000
CONNECT_TIMEOUT = 2  # psycopg's smallest
# Time the machine may add to a limit: a request's other work, and a busy, shared host.
SLACK = 1.5
# A statement that runs for seconds on SQLite, where a reader waits for no writer's lock.
SLOW_SQLITE = (
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000000) "
    "SELECT count(*) FROM n"
)
# What each engine says of the connection a request reads on: who it is, and its limit in ms.
SESSION_SQL = {
    "postgresql": "SELECT pg_backend_pid(), setting::int FROM pg_settings "
    "WHERE name = 'statement_timeout'",
    "mariadb": "SELECT CONNECTION_ID(), @@max_statement_time * 1000",
}
LOCKING_ENGINES = pytest.mark.parametrize("engine_kind", ["postgresql", "mariadb"], indirect=True)


def add_probes(app: Flask, kind: str) -> None:
    """Routes of this test's own app (never the shipped one) that read on the request's
    connection: a statement slow on purpose, and who the connection is with its limit."""

    @app.get("/probe/slow")
    def slow() -> dict:
        return {"count": read_connection().exec_driver_sql(SLOW_SQLITE).scalar_one()}

    @app.get("/probe/session")
    def session() -> dict:
        connection = read_connection()
        if kind == "sqlite":
            limit = connection.info[DEADLINE_KEY].limit_seconds * 1000
            return {"id": id(connection.connection.dbapi_connection), "limit_ms": round(limit)}
        who, limit = connection.exec_driver_sql(SESSION_SQL[kind]).one()
        return {"id": who, "limit_ms": round(float(limit))}


@pytest.fixture
def limited_app(known_database, engine_kind) -> Iterator[Flask]:
    """The app over the known tasks with a short limit and one pooled connection, so that
    every request reads on the same connection."""
    app = make_app(
        known_database[0],
        STATEMENT_TIMEOUT_MS=LIMIT_MS,
        EXPORT_STATEMENT_TIMEOUT_MS=EXPORT_LIMIT_MS,
        SQLALCHEMY_ENGINE_OPTIONS={"pool_size": 1, "max_overflow": 0},
    )
    add_probes(app, engine_kind)
    yield app
    with app.app_context():
        app.extensions["sqlalchemy"].engine.dispose()


@contextmanager
def training_locked(url: str, kind: str, release_after: float = 20.0) -> Iterator[None]:
    """Another connection holds a lock that keeps readers of training_task waiting.

    The lock goes at the end of the block, or after `release_after` seconds in any case, so
    that a statement that ignored its limit makes the test fail rather than hang.
    """
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    holder = engine.connect()
    transaction = holder.begin()
    if kind == "postgresql":
        holder.exec_driver_sql("LOCK TABLE training_task IN ACCESS EXCLUSIVE MODE")
    else:
        holder.exec_driver_sql("LOCK TABLES training_task WRITE")
    released = threading.Lock()

    def release() -> None:
        with released:
            if not holder.closed:
                if kind == "mariadb":
                    holder.exec_driver_sql("UNLOCK TABLES")
                transaction.rollback()
                holder.close()

    timer = threading.Timer(release_after, release)
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        release()
        engine.dispose()


@contextmanager
def slow_read(app: Flask, kind: str) -> Iterator[str]:
    """The path of a request whose statement runs past any short limit, while in the block:
    the real list behind another connection's lock where the engine has one, else a statement
    slow by itself."""
    if kind == "sqlite":
        yield "/probe/slow"
        return
    with training_locked(app.config["SQLALCHEMY_DATABASE_URI"], kind):
        yield "/tasks?task_type=training"


def timed_get(client, path: str, **kwargs):
    """A response and how many seconds it took."""
    started = time.monotonic()
    response = client.get(path, **kwargs)
    return response, time.monotonic() - started


def test_slow_statement_is_a_503_problem_within_the_limit(limited_app, engine_kind):
    client = limited_app.test_client()
    with slow_read(limited_app, engine_kind) as path:
        response, seconds = timed_get(client, path, headers={"Accept": "application/json"})
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["detail"] == "The query took longer than 0.3 s; narrow the filter."
    assert response.headers["Retry-After"]
    assert seconds < LIMIT_MS / 1000 + SLACK


def test_connection_goes_back_to_the_pool_clean_after_a_timeout(limited_app, engine_kind):
    client = limited_app.test_client()
    before = client.get("/probe/session").get_json()
    with slow_read(limited_app, engine_kind) as path:
        assert client.get(path).status_code == 503
    assert client.get("/tasks").status_code == 200
    assert client.get("/probe/session").get_json() == before == {**before, "limit_ms": LIMIT_MS}


@LOCKING_ENGINES
def test_page_says_the_query_took_too_long(limited_app, engine_kind):
    client = limited_app.test_client()
    with slow_read(limited_app, engine_kind) as path:
        response = client.get(path.replace("/tasks", "/"), headers={"Accept": "text/html"})
    html = response.get_data(as_text=True)
    assert response.status_code == 503
    assert 'id="unavailable"' in html and "took longer than 0.3 s; narrow the filter" in html


@LOCKING_ENGINES
def test_export_waits_up_to_its_own_limit_then_the_next_request_has_the_normal_one(
    limited_app, engine_kind, tasks
):
    client = limited_app.test_client()
    before = client.get("/probe/session").get_json()
    url = limited_app.config["SQLALCHEMY_DATABASE_URI"]
    with training_locked(url, engine_kind, release_after=1.0):
        response, seconds = timed_get(client, "/tasks.ndjson?task_type=training")
    assert response.status_code == 200 and seconds >= 1.0
    trainings = [task for task in tasks if task["task_type"] == "training"]
    assert response.get_data(as_text=True).count("\n") == len(trainings)
    assert client.get("/probe/session").get_json() == before
    with slow_read(limited_app, engine_kind) as path:
        response, seconds = timed_get(client, path)
    assert response.status_code == 503 and seconds < LIMIT_MS / 1000 + SLACK


def test_maintenance_runs_past_the_limit_and_requests_get_it_back(limited_app, engine_kind):
    """Seeding and migrations run under `without_statement_limit`: a statement that a
    request would be stopped in completes there, and the next request is limited again."""
    client = limited_app.test_client()
    before = client.get("/probe/session").get_json()
    wait = 3 * LIMIT_MS / 1000
    with limited_app.app_context():
        engine = limited_app.extensions["sqlalchemy"].engine
        with without_statement_limit(engine), engine.connect() as connection:
            started = time.monotonic()
            run_for(connection, engine_kind, wait)
            assert time.monotonic() - started >= wait
    assert client.get("/probe/session").get_json() == before == {**before, "limit_ms": LIMIT_MS}
    with slow_read(limited_app, engine_kind) as path:
        assert client.get(path).status_code == 503


def run_for(connection: sa.Connection, kind: str, seconds: float) -> None:
    """One statement that takes `seconds`: waiting for another's lock, or (SQLite) counting
    rows until a clock the statement reads on every row says the time is up."""
    if kind == "sqlite":
        end = time.monotonic() + seconds
        connection.connection.dbapi_connection.create_function("clock", 0, time.monotonic)
        connection.exec_driver_sql(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE clock() < ?) "
            "SELECT count(*) FROM n",
            (end,),
        ).scalar_one()
        return
    url = connection.engine.url.render_as_string(hide_password=False)
    with training_locked(url, kind, release_after=seconds):
        connection.exec_driver_sql("SELECT count(*) FROM training_task").scalar_one()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("STATEMENT_TIMEOUT_MS", "abc"),
        ("STATEMENT_TIMEOUT_MS", "0"),
        ("EXPORT_STATEMENT_TIMEOUT_MS", "1.5"),
        ("EXPORT_STATEMENT_TIMEOUT_MS", "-3"),
        ("DATABASE_CONNECT_TIMEOUT_SECONDS", "0"),
        ("DATABASE_CONNECT_TIMEOUT_SECONDS", "10s"),
    ],
)
def test_bad_time_limit_stops_the_start_with_its_name(tmp_path, monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=f"^{name}: '{value}' is not a whole number"):
        settings_from_environment(tmp_path)


def test_time_limits_default_to_ten_seconds_five_minutes_and_five_seconds(tmp_path, monkeypatch):
    for name in ("STATEMENT_TIMEOUT_MS", "EXPORT_STATEMENT_TIMEOUT_MS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("DATABASE_CONNECT_TIMEOUT_SECONDS", raising=False)
    settings = settings_from_environment(tmp_path)
    assert settings["STATEMENT_TIMEOUT_MS"] == 10_000
    assert settings["EXPORT_STATEMENT_TIMEOUT_MS"] == 300_000
    assert settings["DATABASE_CONNECT_TIMEOUT_SECONDS"] == 5


# -- a server that stops answering -----------------------------------------------------------


@pytest.fixture(scope="module")
def stoppable_app(pg_server: Cluster) -> Iterator[Flask]:
    """An app over known tasks on a private PostgreSQL server that the tests may freeze."""
    engine = sa.create_engine(pg_server.url)
    reset_tables(engine)
    insert_tasks(engine, known_tasks())
    engine.dispose()
    app = make_app(pg_server.url, DATABASE_CONNECT_TIMEOUT_SECONDS=CONNECT_TIMEOUT)
    yield app
    with app.app_context():
        app.extensions["sqlalchemy"].engine.dispose()


def test_stopped_server_is_a_503_within_the_connect_timeout_and_recovers(stoppable_app, pg_server):
    client = stoppable_app.test_client()
    assert client.get("/tasks").status_code == 200  # the pool now holds a connection
    pg_server.freeze()
    try:
        # The pooled connection's check, then a new connection: neither may wait longer.
        for path in ("/tasks", "/"):
            response, seconds = timed_get(client, path, headers={"Accept": "text/html"})
            assert response.status_code == 503 and response.headers["Retry-After"]
            assert "cannot be reached" in response.get_data(as_text=True)
            assert CONNECT_TIMEOUT - 0.1 < seconds < CONNECT_TIMEOUT + SLACK
    finally:
        pg_server.thaw()
    assert client.get("/tasks").status_code == 200
    assert client.get("/").status_code == 200


def test_restarted_server_is_reconnected_without_an_error(stoppable_app, pg_server):
    """The pool's bounded check still replaces a connection the server dropped, at once."""
    client = stoppable_app.test_client()
    assert client.get("/tasks").status_code == 200
    pg_server.stop()
    pg_server.start()
    response, seconds = timed_get(client, "/tasks")
    assert response.status_code == 200 and seconds < SLACK
