"""Liveness and readiness for load balancers and orchestrators: /healthz and /readyz.

/healthz says the process answers and touches nothing else. /readyz runs the readiness
checks, each a named function that returns a short description of what it found or raises
with what is wrong (`NotReady` for a finding, any other error for a failure). Checks run
side by side, each in a thread of its own, and /readyz waits for them for
READYZ_TIMEOUT_SECONDS at most: a database that hangs makes it answer 503, never hang. Each
check also keeps to that limit itself where its driver allows, so that its thread ends too.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, wait
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from flask import Blueprint, Flask, Response, current_app, jsonify

from app.config import REPLICA_BIND
from app.schema import schema_state

Check = Callable[[Flask], str]
CHECKS = "readiness_checks"
PROBE_ENGINE = "readiness_engine"
REPLICA_PROBE_ENGINE = "readiness_replica_engine"

bp = Blueprint("health", __name__)


class NotReady(Exception):
    """A check that ran and found something to fix; the message says what."""


@dataclass(frozen=True)
class CheckResult:
    """One check's outcome and what it found."""

    ok: bool
    detail: str


def init_app(app: Flask) -> None:
    """Serve /healthz and /readyz, with the primary database's checks."""
    app.extensions[CHECKS] = {}
    app.extensions[PROBE_ENGINE] = probe_engine(
        app.config["SQLALCHEMY_DATABASE_URI"], app.config["READYZ_TIMEOUT_SECONDS"]
    )
    add_check(app, "database", database_answers)
    add_check(app, "schema", schema_at_head)
    if replica_url := app.config.get("SQLALCHEMY_BINDS", {}).get(REPLICA_BIND):
        seconds = app.config["READYZ_TIMEOUT_SECONDS"]
        app.extensions[REPLICA_PROBE_ENGINE] = probe_engine(replica_url, seconds)
        add_check(app, "replica", replica_answers)
    if app.config.get("CACHE_URL"):
        add_check(app, "cache", cache_answers)
    app.register_blueprint(bp)


def add_check(app: Flask, name: str, check: Check) -> None:
    """Make `check` part of readiness, reported under `name`."""
    app.extensions[CHECKS][name] = check


@bp.get("/healthz")
def healthz() -> Response:
    """The process is up and answering; no database is asked."""
    return uncached(jsonify(status="ok"))


@bp.get("/readyz")
def readyz() -> Response:
    """200 when every check passes, else 503; either way, what each check found."""
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    results = run_checks(app, app.extensions[CHECKS], app.config["READYZ_TIMEOUT_SECONDS"])
    ready = all(result.ok for result in results.values())
    response = jsonify(
        status="ready" if ready else "not ready",
        checks={name: {"ok": r.ok, "detail": r.detail} for name, r in results.items()},
    )
    response.status_code = 200 if ready else 503
    return uncached(response)


def uncached(response: Response) -> Response:
    """A probe's answer is about this moment only."""
    response.headers["Cache-Control"] = "no-store"
    return response


def run_checks(app: Flask, checks: dict[str, Check], seconds: float) -> dict[str, CheckResult]:
    """Run every check at once and wait `seconds` at most; a late check has failed."""
    futures = {name: in_thread(name, check, app) for name, check in checks.items()}
    wait(futures.values(), timeout=seconds)
    return {name: outcome(future, seconds) for name, future in futures.items()}


def in_thread(name: str, check: Check, app: Flask) -> Future[str]:
    """Start `check` in a daemon thread: one that hangs is left behind, not waited for."""
    future: Future[str] = Future()

    def run() -> None:
        try:
            future.set_result(check(app))
        except Exception as error:
            future.set_exception(error)

    threading.Thread(target=run, name=f"readyz-{name}", daemon=True).start()
    return future


def outcome(future: Future[str], seconds: float) -> CheckResult:
    """What a check's future holds, in words."""
    if not future.done():
        return CheckResult(False, f"no answer within {seconds:g} s")
    error = future.exception()
    if error is None:
        return CheckResult(True, future.result())
    return CheckResult(False, reason(error))


def reason(error: BaseException) -> str:
    """The first line of an error's message: a driver's, for a database error."""
    message = str(error.orig if isinstance(error, sa.exc.DBAPIError) else error).strip()
    return message.splitlines()[0] if message else type(error).__name__


# -- the primary database's checks ------------------------------------------------------------


def probe_engine(url: str | sa.URL, seconds: float) -> sa.Engine:
    """An engine for checks: a new connection for each, each step held to `seconds`.

    A new connection per check shows that the database still takes connections, and
    takes none from the pool the requests use.
    """
    url = sa.make_url(url)
    limits = driver_time_limits(url.get_backend_name(), seconds)
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool, connect_args=limits)
    if url.get_backend_name() == "postgresql":
        milliseconds = math.ceil(seconds * 1000)

        @sa.event.listens_for(engine, "connect")
        def _statement_timeout(dbapi_connection: Any, _record: Any) -> None:
            # The server cancels a statement stuck behind a lock (a migration's, say).
            with dbapi_connection.cursor() as cursor:
                cursor.execute(f"SET statement_timeout = {milliseconds}")
            dbapi_connection.commit()

    return engine


def driver_time_limits(backend: str, seconds: float) -> dict[str, Any]:
    """Each driver's own limits on connecting and waiting for an answer."""
    if backend == "postgresql":
        # libpq counts whole seconds, and two at least.
        return {"connect_timeout": max(2, math.ceil(seconds))}
    if backend in {"mysql", "mariadb"}:
        return {"connect_timeout": seconds, "read_timeout": seconds, "write_timeout": seconds}
    if backend == "sqlite":
        return {"timeout": seconds}  # how long to wait for another connection's lock
    return {}


@contextmanager
def probe(app: Flask) -> Iterator[sa.Connection]:
    """A new connection to the primary database, closed after the check."""
    with app.extensions[PROBE_ENGINE].connect() as connection:
        yield connection


def database_answers(app: Flask) -> str:
    """The primary database takes a connection and answers a round trip."""
    started = time.perf_counter()
    with probe(app) as connection:
        connection.execute(sa.select(sa.literal_column("1"))).scalar_one()
    return f"answered in {(time.perf_counter() - started) * 1000:.0f} ms"


def replica_answers(app: Flask) -> str:
    """The read replica takes a connection and answers (REPLICA_FALLBACK or not: reads
    that fall back still mean a replica to mend)."""
    started = time.perf_counter()
    with app.extensions[REPLICA_PROBE_ENGINE].connect() as connection:
        connection.execute(sa.select(sa.literal_column("1"))).scalar_one()
    return f"answered in {(time.perf_counter() - started) * 1000:.0f} ms"


def cache_answers(app: Flask) -> str:
    """The shared cache (CACHE_URL) answers a PING; requests would otherwise skip it."""
    started = time.perf_counter()
    app.extensions["counts_cache"].ping()
    return f"answered in {(time.perf_counter() - started) * 1000:.0f} ms"


def schema_at_head(app: Flask) -> str:
    """The primary database's schema is at the newest revision this version knows."""
    with probe(app) as connection:
        state = schema_state(connection)
    if not state.at_head:
        found = f"revision {state.current}" if state.current else "no revision"
        raise NotReady(f"at {found}, newest is {state.head}: run `flask --app wsgi init-db`")
    return f"at revision {state.head}, the newest"
