"""Reads from a real PostgreSQL streaming replica, writes to the primary, and a replica that is
down: a 503 that names it, or the primary when falling back is on."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa
from conftest import make_app, reset_tables
from flask import Flask
from oracle import insert_tasks, known_tasks
from pg_cluster import Cluster

from app.config import REPLICA_BIND, settings_from_environment
from app.errors import REPLICA_DETAIL
from app.models import connect_for_reading, db, read_connection
from app.recorder import Recorder

WHERE = "SELECT pg_is_in_recovery(), inet_server_port()"


def wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    """Poll until `condition` holds; fail after `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the condition did not come true in time"
        time.sleep(0.05)


def scalar(url: str, statement: str) -> object:
    """One value read on a connection of its own."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        return connection.exec_driver_sql(statement).scalar()


@pytest.fixture(scope="module")
def replicated(pg_server: Cluster, pg_replica: Cluster) -> list[dict]:
    """The known tasks on the primary, once the replica has them too."""
    engine = sa.create_engine(pg_server.url)
    reset_tables(engine)
    tasks = known_tasks()
    insert_tasks(engine, tasks)
    engine.dispose()
    trainings = sum(task["task_type"] == "training" for task in tasks)
    wait_for(lambda: replica_has(pg_replica, trainings))
    return tasks


def replica_has(replica: Cluster, count: int) -> bool:
    """Whether the replica has applied the tables and this many training tasks."""
    try:
        return scalar(replica.url, "SELECT count(*) FROM training_task") == count
    except sa.exc.ProgrammingError:  # the tables themselves are not there yet
        return False


def replica_app(primary: Cluster, replica: Cluster, **config: object) -> Flask:
    """The app with the replica as its read bind."""
    return make_app(
        primary.url,
        SQLALCHEMY_BINDS={REPLICA_BIND: replica.url},
        DATABASE_CONNECT_TIMEOUT_SECONDS=2,
        **config,
    )


@pytest.fixture
def app(pg_server: Cluster, pg_replica: Cluster, replicated) -> Iterator[Flask]:
    """The app over the private primary, reading from its replica."""
    app = replica_app(pg_server, pg_replica)
    yield app
    with app.app_context():
        for engine in db.engines.values():
            engine.dispose()


@contextmanager
def replay_paused(replica: Cluster) -> Iterator[None]:
    """The replica stops applying what the primary writes, until the block ends."""
    engine = sa.create_engine(replica.url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.exec_driver_sql("SELECT pg_wal_replay_pause()")
        state = "SELECT pg_get_wal_replay_pause_state()"
        wait_for(lambda: connection.exec_driver_sql(state).scalar() == "paused")
        try:
            yield
        finally:
            connection.exec_driver_sql("SELECT pg_wal_replay_resume()")
    engine.dispose()


@contextmanager
def replica_stopped(replica: Cluster) -> Iterator[None]:
    """The replica is shut down for the block, then started again."""
    replica.stop(mode="fast")
    try:
        yield
    finally:
        replica.start()


def record_training(app: Flask, tag: str) -> uuid.UUID:
    """A task recorded as the platform's modules do, through the Recorder on the primary."""
    with app.app_context():
        recorder = Recorder(db.engine)
        return recorder.create(
            "training", tag=tag, base_model="m", dataset_name="d", method="lora", epochs=1
        )


def test_request_reads_on_the_replica(app, pg_replica):
    with app.test_request_context("/tasks"):
        assert read_connection().exec_driver_sql(WHERE).one() == (True, pg_replica.port)
        with connect_for_reading(app.config["EXPORT_STATEMENT_TIMEOUT_MS"]) as export:
            assert export.exec_driver_sql(WHERE).one() == (True, pg_replica.port)


def test_every_read_answers_from_the_replica(app, pg_server, pg_replica):
    """A task the replica has not applied yet is on the primary but in no answer."""
    client = app.test_client()
    tag = f"unreplicated-{uuid.uuid4().hex[:8]}"
    with replay_paused(pg_replica):
        task_id = record_training(app, tag)
        on_primary = f"SELECT count(*) FROM training_task WHERE tag = '{tag}'"
        assert scalar(pg_server.url, on_primary) == 1
        assert client.get("/tasks", query_string={"tag": tag}).get_json()["items"] == []
        assert (
            client.get("/tasks/counts", query_string={"tag": tag}).get_json()["total"]["value"] == 0
        )
        assert client.get("/tasks.ndjson", query_string={"tag": tag}).get_data() == b""
        assert client.get(f"/tasks/{task_id}").status_code == 404
        assert client.get(f"/task/{task_id}").status_code == 404
        page = client.get("/", query_string={"tag": tag}).get_data(as_text=True)
        assert "No tasks match" in page and f'<option value="{tag}">' not in page


def test_task_recorded_on_the_primary_appears_on_the_replicas_list(app):
    client = app.test_client()
    tag = f"replicated-{uuid.uuid4().hex[:8]}"
    task_id = record_training(app, tag)

    def listed() -> list[str]:
        items = client.get("/tasks", query_string={"tag": tag}).get_json()["items"]
        return [item["id"] for item in items]

    wait_for(lambda: listed() == [str(task_id)], seconds=5)


def test_commands_write_to_the_primary(app, pg_server):
    before = scalar(pg_server.url, "SELECT count(*) FROM synthesis_task")
    runner = app.test_cli_runner()
    assert runner.invoke(args=["init-db"]).exit_code == 0
    result = runner.invoke(args=["seed-demo", "--tasks", "50", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert scalar(pg_server.url, "SELECT count(*) FROM synthesis_task") > before


def test_replica_down_is_a_503_that_names_the_replica(app, pg_replica):
    client = app.test_client()
    with replica_stopped(pg_replica):
        response = client.get("/tasks")
        page = client.get("/", headers={"Accept": "text/html"})
    assert response.status_code == 503 and response.headers["Retry-After"]
    assert response.get_json()["detail"] == REPLICA_DETAIL
    assert page.status_code == 503 and REPLICA_DETAIL in page.get_data(as_text=True)
    wait_for(lambda: client.get("/tasks").status_code == 200)


def test_replica_down_falls_back_to_the_primary_when_asked(pg_server, pg_replica, replicated):
    app = replica_app(pg_server, pg_replica, REPLICA_FALLBACK=True)
    client = app.test_client()
    with replica_stopped(pg_replica):
        response = client.get("/tasks", query_string={"limit": 100})
        with app.test_request_context("/tasks"):
            where = read_connection().exec_driver_sql(WHERE).one()
    assert response.status_code == 200 and response.get_json()["total"]["value"] >= len(replicated)
    assert where == (False, pg_server.port)
    with app.app_context():
        for engine in db.engines.values():
            engine.dispose()


def test_replica_url_from_the_environment_becomes_the_read_bind(tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_REPLICA_URL", "postgresql://reader@replica.internal/tasks")
    monkeypatch.setenv("REPLICA_FALLBACK", "1")
    settings = settings_from_environment(tmp_path)
    replica = "postgresql+psycopg://reader@replica.internal/tasks"
    assert settings["SQLALCHEMY_BINDS"] == {REPLICA_BIND: replica}
    assert settings["REPLICA_FALLBACK"] is True


def test_readyz_checks_the_replica(app, pg_replica):
    client = app.test_client()
    assert client.get("/readyz").get_json()["checks"]["replica"]["ok"]
    with replica_stopped(pg_replica):
        response = client.get("/readyz")
    assert response.status_code == 503
    assert not response.get_json()["checks"]["replica"]["ok"]
    assert response.get_json()["checks"]["database"]["ok"]
