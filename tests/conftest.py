"""Engines, apps and clients over databases loaded with known tasks.

SQLite always runs. PostgreSQL and MariaDB run when TEST_POSTGRESQL_URL and TEST_MARIADB_URL
point at a server where we may create databases; each test session creates its own, fresh,
and drops it afterwards. With CI set, a missing or unreachable engine fails the run.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import settings
from oracle import NOW, delete_all_tasks, insert_events, insert_tasks, known_tasks
from server_support import Server, running_gunicorn

from app import create_app
from app.clock import utcnow
from app.config import normalise_database_url
from app.demo import seed_demo
from app.filters import TaskFilter
from app.models import MODEL_FOR_TYPE
from app.schema import create_at_head, drop_schema

# Private PostgreSQL servers (tests/pg_cluster.py) for tests that stop or replicate one.
pytest_plugins = ["pg_cluster"]

SERVER_URL_VARIABLES = {"postgresql": "TEST_POSTGRESQL_URL", "mariadb": "TEST_MARIADB_URL"}
ENGINES = ["sqlite", *SERVER_URL_VARIABLES]
IN_CI = bool(os.environ.get("CI"))
SERVED_TASKS = 300
SERVED_SEED = 20261203

# CI explores the same examples on every run, so a landing never hangs on a lucky draw;
# on a laptop each run draws new ones (and keeps any failure in .hypothesis/ to replay).
settings.register_profile("ci", derandomize=True, print_blob=True)
if IN_CI:
    settings.load_profile("ci")


def unavailable(reason: str) -> None:
    """Skip on a laptop; fail in CI, where every engine must really run."""
    if IN_CI:
        pytest.fail(f"{reason} (CI is set, so this is a failure, not a skip)")
    pytest.skip(reason)


def server_database(kind: str) -> Iterator[str]:
    """Create a fresh database on the PostgreSQL or MariaDB server; drop it afterwards."""
    variable = SERVER_URL_VARIABLES[kind]
    server_url = os.environ.get(variable)
    if not server_url:
        unavailable(f"{variable} is not set")
    url = sa.make_url(normalise_database_url(server_url))
    name = f"vt_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"CREATE DATABASE {name}")
    except sa.exc.OperationalError as error:
        unavailable(f"{kind} at {url.render_as_string()} cannot be reached: {error.orig}")
    test_url = url.set(database=name)
    if kind == "mariadb":
        test_url = test_url.update_query_dict({"charset": "utf8mb4"})
    try:
        yield test_url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            force = " WITH (FORCE)" if kind == "postgresql" else ""
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}{force}")
        admin.dispose()


def database(kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh, empty database of one kind, for the whole test session."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'tasks.sqlite3'}"
    else:
        yield from server_database(kind)


def make_app(url: str, **config: Any) -> Flask:
    """An app over `url` whose clock stands still at NOW."""
    return create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": url,
            "SECRET_KEY": "test-secret",
            "CLOCK": lambda: NOW,
            **config,
        }
    )


def csp_directives(response: Any) -> dict[str, str]:
    """A response's Content-Security-Policy, directive name to its sources."""
    policy = response.headers["Content-Security-Policy"]
    pairs = (directive.strip().partition(" ") for directive in policy.split(";"))
    return {name: sources for name, _, sources in pairs}


# MariaDB's DDL is slow (about half a second to drop and make the schema), and hundreds of
# tests start from empty tables: there, tables left exactly as a full reset made them are
# emptied instead. Keyed by URL: what the last full reset left (see `mariadb_objects`).
MARIADB_FRESH: dict[str, frozenset[tuple[str, ...]]] = {}


def reset_tables(engine: sa.Engine) -> None:
    """Drop and create the task tables, empty, at the newest revision."""
    url = engine.url.render_as_string(hide_password=False)
    if engine.dialect.name == "mariadb" and emptied_in_place(engine, url):
        return
    drop_schema(engine)
    create_at_head(engine)
    if engine.dialect.name == "mariadb":
        with engine.connect() as connection:
            MARIADB_FRESH[url] = mariadb_objects(connection)


def mariadb_objects(connection: sa.Connection) -> frozenset[tuple[str, ...]]:
    """The schema as MariaDB describes it: revision, columns, indexes and triggers."""
    queries = [
        "SELECT 'revision', version_num FROM alembic_version",
        "SELECT 'column', table_name, column_name, column_type, COALESCE(generation_expression, '')"
        " FROM information_schema.columns WHERE table_schema = DATABASE()",
        "SELECT 'index', table_name, index_name, column_name, CAST(seq_in_index AS CHAR)"
        " FROM information_schema.statistics WHERE table_schema = DATABASE()",
        "SELECT 'trigger', trigger_name, event_object_table, action_statement"
        " FROM information_schema.triggers WHERE trigger_schema = DATABASE()",
    ]
    try:
        return frozenset(
            tuple(str(value) for value in row)
            for query in queries
            for row in connection.exec_driver_sql(query)
        )
    except sa.exc.DBAPIError:
        return frozenset()


def emptied_in_place(engine: sa.Engine, url: str) -> bool:
    """Empty every table but the revision's, if the schema is the one a full reset left."""
    with engine.connect() as connection:
        fresh = MARIADB_FRESH.get(url)
        if not fresh or mariadb_objects(connection) != fresh:
            return False
        tables = {row[1] for row in fresh if row[0] == "column"} - {"alembic_version"}
        # The task tables first: their triggers write to the others (the hourly counts).
        task_tables = {model.__tablename__ for model in MODEL_FOR_TYPE.values()}
        connection.exec_driver_sql("SET FOREIGN_KEY_CHECKS = 0")
        for table in sorted(tables, key=lambda name: (name not in task_tables, name)):
            connection.exec_driver_sql(f"DELETE FROM `{table}`")
            connection.exec_driver_sql(f"ALTER TABLE `{table}` AUTO_INCREMENT = 1")
        connection.exec_driver_sql("SET FOREIGN_KEY_CHECKS = 1")
        connection.commit()
    return True


@pytest.fixture(scope="session", params=ENGINES)
def engine_kind(request: pytest.FixtureRequest) -> str:
    """Each test that uses a database runs once per engine."""
    return request.param


@pytest.fixture(scope="session")
def known_database(
    engine_kind: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, list[dict]]]:
    """A database holding the known tasks, shared by the tests that only read."""
    for url in database(engine_kind, tmp_path_factory):
        engine = sa.create_engine(url)
        reset_tables(engine)
        tasks = known_tasks()
        insert_tasks(engine, tasks)
        insert_events(engine, tasks)
        engine.dispose()
        yield url, tasks


@pytest.fixture(scope="session")
def scratch_url(engine_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second database per engine, for tests that write."""
    yield from database(engine_kind, tmp_path_factory)


@pytest.fixture
def tasks(known_database: tuple[str, list[dict]]) -> list[dict]:
    """The known tasks, as the oracle sees them."""
    return known_database[1]


@pytest.fixture
def app(known_database: tuple[str, list[dict]]) -> Iterator[Flask]:
    """The app over the known tasks."""
    app = make_app(known_database[0])
    yield app
    with app.app_context():
        app.extensions["sqlalchemy"].engine.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client of the app over the known tasks."""
    return app.test_client()


@pytest.fixture
def scratch_app(scratch_url: str) -> Iterator[Flask]:
    """An app over empty tables, for tests that record or insert tasks."""
    app = make_app(scratch_url)
    with app.app_context():
        engine = app.extensions["sqlalchemy"].engine
        reset_tables(engine)
    yield app
    with app.app_context():
        app.extensions["sqlalchemy"].engine.dispose()


# Sign-on as the tests configure it: a trusted proxy names the user in this header.
SSO_HEADER = "X-Forwarded-Email"
SSO_SETTINGS = {
    "TRUSTED_PROXIES": 1,
    "AUTH_USER_HEADER": SSO_HEADER,
    "OPERATORS": "ops@example.com, @ml.example.com",
}


@pytest.fixture
def signed_app(scratch_url: str) -> Iterator[Flask]:
    """An app over empty tables behind a trusted sign-on proxy, with OPERATORS set."""
    app = make_app(scratch_url, **SSO_SETTINGS)
    with app.app_context():
        engine = app.extensions["sqlalchemy"].engine
        reset_tables(engine)
    yield app
    with app.app_context():
        app.extensions["sqlalchemy"].engine.dispose()


@pytest.fixture
def scratch_engine(scratch_app: Flask) -> sa.Engine:
    """The engine of the scratch app's database."""
    with scratch_app.app_context():
        return scratch_app.extensions["sqlalchemy"].engine


@pytest.fixture(scope="module")
def module_engine(scratch_url: str) -> Iterator[sa.Engine]:
    """The scratch database's engine (configured as the app configures it), its tables
    created once per test module."""
    app = make_app(scratch_url)
    with app.app_context():
        engine = app.extensions["sqlalchemy"].engine
    reset_tables(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def empty_engine(module_engine: sa.Engine) -> sa.Engine:
    """Empty task tables, for tests that write without an app: rows deleted, tables kept."""
    delete_all_tasks(module_engine)
    return module_engine


@pytest.fixture
def runner(app: Flask):
    """A CLI runner for the app's commands."""
    return app.test_cli_runner()


@pytest.fixture(scope="session")
def served_database(tmp_path_factory: pytest.TempPathFactory) -> str:
    """An SQLite file of demo tasks from a fixed seed, for the tests that start gunicorn."""
    url = f"sqlite:///{tmp_path_factory.mktemp('served') / 'tasks.sqlite3'}"
    engine = sa.create_engine(url)
    reset_tables(engine)
    seed_demo(engine, SERVED_TASKS, utcnow(), seed=SERVED_SEED)
    engine.dispose()
    return url


@pytest.fixture(scope="session")
def gunicorn_server(
    served_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """gunicorn with the project's gunicorn.conf.py over the demo tasks, behind one proxy."""
    log = tmp_path_factory.mktemp("gunicorn") / "error.log"
    with running_gunicorn(served_database, log, TRUSTED_PROXIES="1") as server:
        yield server


def every_id(client: FlaskClient, task_filter: TaskFilter) -> list[str]:
    """Every id the API lists for a filter, page after page by cursor."""
    ids: list[str] = []
    query = task_filter.to_args()
    while True:
        body = client.get("/tasks", query_string=query).get_json()
        ids += [item["id"] for item in body["items"]]
        if not body["next_cursor"]:
            return ids
        query = [*task_filter.to_args(), ("cursor", body["next_cursor"])]


@contextmanager
def statements_run(app: Flask | sa.Engine) -> Iterator[list[str]]:
    """The SQL statements the app's engine (or an engine) sends while the block runs, in
    order."""
    engine = app
    if isinstance(app, Flask):
        with app.app_context():
            engine = app.extensions["sqlalchemy"].engine
    sent: list[str] = []

    def record(_connection: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        sent.append(statement)

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


def only_the_version_was_read(sent: list[str]) -> bool:
    """Whether the statements sent are the data version's alone: the newest change of each
    task table and the newest event (app/query/versions.py)."""
    return len(sent) == 1 and sent[0].lower().count("max(") == len(MODEL_FOR_TYPE) + 1
