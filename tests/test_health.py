"""/healthz and /readyz: up without a database; ready only with the database answering and its
schema at the newest revision; and never held longer than its limit by a database that hangs."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import make_app, unavailable
from flask import Flask
from flask.testing import FlaskClient
from server_support import free_port

from app.health import NotReady, add_check
from app.schema import (
    FIRST_REVISION,
    drop_schema,
    revision_metadata,
    script_directory,
    upgrade_database,
)

LIMIT = 1.0  # READYZ_TIMEOUT_SECONDS in these tests
# Far beyond the limit, and short of hanging the run when something waits with no limit.
GIVE_UP = 15.0
UNREACHABLE = "postgresql+psycopg://postgres@127.0.0.1:1/none"


def get_within(client: FlaskClient, path: str) -> tuple[Any, float]:
    """GET `path` and how long it took; fail, rather than hang, after GIVE_UP seconds."""
    answer: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: answer.update(response=client.get(path)))
    started = time.monotonic()
    thread.start()
    thread.join(GIVE_UP)
    assert not thread.is_alive(), f"{path} did not answer within {GIVE_UP} s"
    return answer["response"], time.monotonic() - started


def checks(response: Any) -> dict[str, dict[str, Any]]:
    """What each check found, by name."""
    return response.get_json()["checks"]


def at_newest_revision(app: Flask) -> Flask:
    """The app, its tables at the newest revision."""
    with app.app_context():
        upgrade_database()
    return app


@pytest.fixture
def limited_app(scratch_url: str) -> Iterator[Flask]:
    """An app over the scratch database at the newest revision, readiness limited to LIMIT."""
    app = make_app(scratch_url, READYZ_TIMEOUT_SECONDS=LIMIT)
    yield at_newest_revision(app)
    with app.app_context():
        app.extensions["sqlalchemy"].engine.dispose()


def test_healthz_answers_without_asking_the_database():
    response = make_app(UNREACHABLE).test_client().get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}
    assert response.headers["Cache-Control"] == "no-store"


def test_readyz_is_ready_at_the_newest_revision(limited_app):
    response = limited_app.test_client().get("/readyz")
    assert response.status_code == 200
    assert response.get_json()["status"] == "ready"
    found = checks(response)
    assert set(found) == {"database", "schema"}
    assert all(check["ok"] for check in found.values())
    assert script_directory().get_current_head() in found["schema"]["detail"]


def test_readyz_names_tables_made_before_revisions(scratch_app, scratch_engine):
    drop_schema(scratch_engine)
    revision_metadata(FIRST_REVISION, scratch_engine.dialect).create_all(scratch_engine)
    response = scratch_app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["status"] == "not ready"
    found = checks(response)
    assert found["database"]["ok"]
    assert not found["schema"]["ok"]
    assert found["schema"]["detail"].startswith("at no revision, newest is ")
    assert "flask --app wsgi init-db" in found["schema"]["detail"]


@pytest.mark.parametrize(
    ("url", "words"),
    [
        (UNREACHABLE, "refused"),
        ("mariadb+pymysql://root@127.0.0.1:1/none", "refused"),
        ("sqlite:////no/such/folder/tasks.sqlite3", "unable to open database file"),
    ],
)
def test_readyz_names_a_database_it_cannot_reach(url, words):
    response, _ = get_within(make_app(url).test_client(), "/readyz")
    assert response.status_code == 503
    database = checks(response)["database"]
    assert not database["ok"]
    assert words in database["detail"].lower()
    assert "\n" not in database["detail"]


@contextmanager
def revision_locked(engine: sa.Engine) -> Iterator[None]:
    """Another connection holds alembic_version as a migration would, readers kept out."""
    if engine.dialect.name == "sqlite":
        # In WAL mode only an exclusive locking mode keeps other connections from reading,
        # and it waits for none of them to be open: the pool's are closed first.
        engine.dispose()
        holder = sqlite3.connect(str(engine.url.database), isolation_level=None)
        holder.execute("PRAGMA locking_mode = EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        return
    with engine.connect() as holder:
        if engine.dialect.name == "postgresql":
            holder.exec_driver_sql("LOCK TABLE alembic_version IN ACCESS EXCLUSIVE MODE")
            try:
                yield
            finally:
                holder.rollback()
        else:
            holder.exec_driver_sql("LOCK TABLES alembic_version WRITE")
            try:
                yield
            finally:
                holder.exec_driver_sql("UNLOCK TABLES")


def test_readyz_answers_within_its_limit_while_a_lock_holds_the_revision(limited_app):
    with limited_app.app_context():
        engine = limited_app.extensions["sqlalchemy"].engine
    with revision_locked(engine):
        response, seconds = get_within(limited_app.test_client(), "/readyz")
    assert response.status_code == 503
    assert not checks(response)["schema"]["ok"]
    assert seconds < LIMIT + 2


def test_a_check_added_later_is_reported_and_held_to_the_limit(limited_app):
    def cache_answers(_app: Flask) -> str:
        raise NotReady("cache: connection refused")

    def replica_answers(_app: Flask) -> str:
        time.sleep(GIVE_UP)
        return "never seen"

    add_check(limited_app, "cache", cache_answers)
    add_check(limited_app, "replica", replica_answers)
    response, seconds = get_within(limited_app.test_client(), "/readyz")
    assert response.status_code == 503
    found = checks(response)
    assert found["database"]["ok"] and found["schema"]["ok"]
    assert found["cache"] == {"ok": False, "detail": "cache: connection refused"}
    assert found["replica"] == {"ok": False, "detail": f"no answer within {LIMIT:g} s"}
    assert seconds < LIMIT + 2


# -- a PostgreSQL server of the test's own, stopped and resumed -------------------------------


@pytest.fixture(scope="module")
def own_postgresql() -> Iterator[tuple[str, int]]:
    """A PostgreSQL cluster in a temp folder, on a port of its own: (URL, postmaster pid)."""
    binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not binaries:
        unavailable("PostgreSQL's server binaries are not installed")
    bin_dir = Path(binaries[-1]).parent
    # initdb and postgres refuse to run as root: run them as the postgres user.
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    folder = Path(tempfile.mkdtemp(prefix="vt-readyz-"))
    if as_postgres:
        shutil.chown(folder, "postgres")
    port = free_port()
    data = folder / "data"
    run = {"check": True, "capture_output": True, "timeout": 60}
    subprocess.run([*as_postgres, bin_dir / "initdb", "-D", data, "-U", "postgres",
                    "-A", "trust", "--no-sync"], **run)  # fmt: skip
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    # The server's output goes to its log: pg_ctl would otherwise pass it our pipes.
    subprocess.run([*as_postgres, bin_dir / "pg_ctl", "-D", data, "-o", options,
                    "-l", folder / "log", "-w", "start"], **run)  # fmt: skip
    pid = int((data / "postmaster.pid").read_text().split()[0])
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", pid
    finally:
        os.kill(pid, signal.SIGCONT)
        subprocess.run([*as_postgres, bin_dir / "pg_ctl", "-D", data, "-m", "immediate",
                        "stop"], **run)  # fmt: skip
        shutil.rmtree(folder, ignore_errors=True)


def test_readyz_answers_while_the_database_is_stopped_and_recovers(own_postgresql):
    url, postmaster = own_postgresql
    app = at_newest_revision(make_app(url, READYZ_TIMEOUT_SECONDS=LIMIT))
    client = app.test_client()
    assert client.get("/readyz").status_code == 200
    os.kill(postmaster, signal.SIGSTOP)
    try:
        response, seconds = get_within(client, "/readyz")
    finally:
        os.kill(postmaster, signal.SIGCONT)
    assert response.status_code == 503
    assert not checks(response)["database"]["ok"]
    assert seconds < LIMIT + 2
    response, _ = get_within(client, "/readyz")
    assert response.status_code == 200
    with app.app_context():
        app.extensions["sqlalchemy"].engine.dispose()
