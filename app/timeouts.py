"""Time limits on the database, so that one that hangs never holds a worker for long.

Every statement has a limit (`STATEMENT_TIMEOUT_MS`; an export's connection gets its own,
longer one) enforced by the database itself where it can: PostgreSQL's `statement_timeout`,
MariaDB's `max_statement_time`, and on SQLite an interrupt from a progress handler. A new
connection gives up after `DATABASE_CONNECT_TIMEOUT_SECONDS`, and on PostgreSQL a pooled
connection is checked within the same time before it is used: a server that was stopped
keeps its connections open but answers nothing.

The limit is a setting of the pooled connection. A connection that served an export gets
the normal limit back when it is next checked out, so every user of the pool (a request, the
recorder, a command) starts from the normal one.
"""

from __future__ import annotations

import select
import sqlite3
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

LIMIT_KEY = "statement_limit_ms"
DEADLINE_KEY = "statement_deadline"
FRESH_KEY = "connected_just_now"
# PostgreSQL's query_canceled, which statement_timeout raises.
POSTGRESQL_CANCELED = "57014"
# MariaDB's ER_STATEMENT_TIMEOUT, which max_statement_time raises.
MARIADB_STATEMENT_TIMEOUT = 1969
# SQLite calls the progress handler every this many virtual machine steps: about a tenth of
# a millisecond of work, so a statement stops within that of its limit and pays no more.
SQLITE_STEPS_PER_CHECK = 10_000


class SqliteDeadline:
    """The progress handler of one SQLite connection: interrupt past the statement's limit."""

    def __init__(self, limit_ms: int):
        self.limit_seconds = seconds_or_endless(limit_ms)
        self.deadline = float("inf")

    def start(self) -> None:
        """A statement begins now."""
        self.deadline = time.monotonic() + self.limit_seconds

    def __call__(self) -> bool:
        # A true value makes SQLite stop the statement with SQLITE_INTERRUPT.
        return time.monotonic() > self.deadline


def seconds_or_endless(limit_ms: int) -> float:
    """A limit in seconds; 0 (as for PostgreSQL and MariaDB) is no limit."""
    return limit_ms / 1000 if limit_ms else float("inf")


def engine_kind(dialect: sa.Dialect) -> str:
    """postgresql, mariadb or sqlite: which way of limiting statements applies."""
    if getattr(dialect, "is_mariadb", False):
        return "mariadb"
    return dialect.name


def engine_options(url: str) -> dict[str, Any]:
    """Pool options per engine.

    SQLAlchemy's pre-ping waits for an answer as long as it takes; on PostgreSQL the
    checkout's own ping (`ping_within`) replaces it.
    """
    return {"pool_pre_ping": sa.make_url(url).get_backend_name() != "postgresql"}


def apply_limit(dialect: sa.Dialect, dbapi_connection: Any, info: dict, limit_ms: int) -> None:
    """Give a connection this statement limit, unless it has it already."""
    if info.get(LIMIT_KEY) == limit_ms:
        return
    kind = engine_kind(dialect)
    if kind == "sqlite":
        info[DEADLINE_KEY].limit_seconds = seconds_or_endless(limit_ms)
    elif kind in {"postgresql", "mariadb"}:
        statement = (
            f"SET statement_timeout = {int(limit_ms)}"
            if kind == "postgresql"
            else f"SET SESSION max_statement_time = {limit_ms / 1000:.3f}"
        )
        cursor = dbapi_connection.cursor()
        cursor.execute(statement)
        cursor.close()
        if kind == "postgresql" and not dbapi_connection.autocommit:
            dbapi_connection.commit()  # COMMIT, not ROLLBACK: psycopg keeps what it prepared
    info[LIMIT_KEY] = limit_ms


def limit_statements(connection: sa.Connection, limit_ms: int) -> None:
    """Give a checked-out connection another statement limit until it goes back to the pool."""
    dbapi_connection = connection.connection.dbapi_connection
    apply_limit(connection.dialect, dbapi_connection, connection.info, limit_ms)


def ping_within(dbapi_connection: Any, seconds: float) -> None:
    """Check that a PostgreSQL connection answers, waiting at most `seconds`.

    A broken connection raises DisconnectionError, so that the pool connects again at once;
    a silent server raises OperationalError, since a new connection would wait as long.
    """
    import psycopg

    try:
        answered = answer_within(dbapi_connection.pgconn, seconds)
    except psycopg.OperationalError as error:
        raise sa.exc.DisconnectionError(str(error)) from error
    if not answered:
        raise psycopg.OperationalError(f"the database server did not answer within {seconds:g} s")


def answer_within(pgconn: Any, seconds: float) -> bool:
    """Send `SELECT 1` and read its answer; False when none came within `seconds`."""
    from psycopg.pq import ExecStatus

    deadline = time.monotonic() + seconds
    pgconn.send_query(b"SELECT 1")
    while pgconn.flush():
        select.select([], [pgconn.socket], [], max(0.0, deadline - time.monotonic()))
    while True:
        pgconn.consume_input()
        if not pgconn.is_busy():
            break
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([pgconn.socket], [], [], remaining)[0]:
            return False
    while (result := pgconn.get_result()) is not None:
        if result.status != ExecStatus.TUPLES_OK:
            raise sa.exc.DisconnectionError(result.error_message.decode(errors="replace"))
    return True


# The statement limit each configured engine gives a connection when it is checked out.
_ENGINE_LIMITS: weakref.WeakKeyDictionary[sa.Engine, int] = weakref.WeakKeyDictionary()


def configure_time_limits(engine: sa.Engine, statement_ms: int, connect_seconds: int) -> None:
    """Limit every statement and every connection attempt of this engine."""
    kind = engine_kind(engine.dialect)
    _ENGINE_LIMITS[engine] = statement_ms

    @sa.event.listens_for(engine, "do_connect")
    def _connect_timeout(_dialect: Any, _record: Any, _args: Any, params: dict) -> None:
        if kind != "sqlite":  # a file opens at once, or fails at once
            params.setdefault("connect_timeout", connect_seconds)

    @sa.event.listens_for(engine, "connect")
    def _limit_new_connection(dbapi_connection: Any, record: Any) -> None:
        record.info[FRESH_KEY] = True
        if kind == "sqlite":
            deadline = record.info[DEADLINE_KEY] = SqliteDeadline(statement_ms)
            dbapi_connection.set_progress_handler(deadline, SQLITE_STEPS_PER_CHECK)
        apply_limit(engine.dialect, dbapi_connection, record.info, _ENGINE_LIMITS[engine])

    @sa.event.listens_for(engine, "checkout")
    def _restore_limit(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if kind == "postgresql" and not record.info.pop(FRESH_KEY, False):
            ping_within(dbapi_connection, connect_seconds)
        apply_limit(engine.dialect, dbapi_connection, record.info, _ENGINE_LIMITS[engine])

    if kind == "sqlite":

        @sa.event.listens_for(engine, "before_cursor_execute")
        def _start_clock(connection: sa.Connection, *_args: Any) -> None:
            connection.info[DEADLINE_KEY].start()


@contextmanager
def without_statement_limit(engine: sa.Engine) -> Iterator[None]:
    """Let every connection this engine hands out run as long as it needs, for a while.

    For the commands that change the whole database (loading millions of rows, building
    an index over them in a migration): a request's limit would stop them half done. They
    run in a process of their own, so the engine's other users are not served meanwhile.
    Connections checked out inside get no limit; the engine's own limit comes back with
    the next checkout after.
    """
    if engine not in _ENGINE_LIMITS:
        yield
        return
    kept = _ENGINE_LIMITS[engine]
    _ENGINE_LIMITS[engine] = 0
    try:
        yield
    finally:
        _ENGINE_LIMITS[engine] = kept


def is_statement_timeout(error: sa.exc.DBAPIError) -> bool:
    """Whether the database stopped a statement for running past its limit."""
    orig = error.orig
    if getattr(orig, "sqlstate", None) == POSTGRESQL_CANCELED:
        return True
    if getattr(orig, "sqlite_errorcode", None) == sqlite3.SQLITE_INTERRUPT:
        return True
    return bool(orig.args) and orig.args[0] == MARIADB_STATEMENT_TIMEOUT
