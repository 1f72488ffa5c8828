"""Vectorize Tasks: one filterable, paginated view of every background task of the platform."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from app.clock import utcnow
from app.config import settings_from_environment
from app.stalled import limits_from_environment
from app.timeouts import configure_time_limits, engine_options

ROOT = Path(__file__).resolve().parent.parent


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the app: settings, database, blueprints and commands."""
    app = Flask(
        __name__,
        instance_relative_config=True,
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
    )
    app.config.from_mapping(settings_from_environment(Path(app.instance_path)))
    app.config["CLOCK"] = utcnow
    app.config["STALL_LIMITS"] = limits_from_environment()
    if test_config:
        app.config.from_mapping(test_config)
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {
        **engine_options(app.config["SQLALCHEMY_DATABASE_URI"]),
        **app.config.get("SQLALCHEMY_ENGINE_OPTIONS", {}),
    }
    app.json.sort_keys = False  # type: ignore[attr-defined]

    from app import (
        api,
        cache,
        cli,
        errors,
        health,
        identity,
        metrics,
        openapi,
        operate,
        pages,
        reporting,
        schema,
        security,
        tokens,
    )
    from app.models import close_read_connection, db

    db.init_app(app)
    schema.init_app(app)
    app.teardown_request(close_read_connection)
    with app.app_context():
        for engine in db.engines.values():  # the primary, and the read replica if any
            configure_engine(engine)
            configure_time_limits(
                engine,
                app.config["STATEMENT_TIMEOUT_MS"],
                app.config["DATABASE_CONNECT_TIMEOUT_SECONDS"],
            )
    metrics.init_app(app)
    health.init_app(app)
    cache.init_app(app)
    identity.init_app(app)
    app.url_map.converters["task"] = api.TaskIdConverter
    app.register_blueprint(api.bp)
    app.register_blueprint(operate.bp)
    app.register_blueprint(reporting.bp)
    app.register_blueprint(openapi.bp)
    pages.init_app(app)
    security.init_app(app)
    errors.init_app(app)
    cli.init_app(app)
    tokens.init_app(app)
    if proxies := app.config["TRUSTED_PROXIES"]:
        # The prefix ProxyFix takes from X-Forwarded-Prefix is checked before Flask sees it.
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            security.plain_prefix(app.wsgi_app),
            x_for=proxies,
            x_proto=proxies,
            x_host=proxies,
            x_prefix=proxies,
        )
    return app


def configure_engine(engine: sa.Engine) -> None:
    """Settings every new connection gets, per engine."""
    if engine.dialect.name == "postgresql":
        sa.event.listen(engine, "connect", plan_once)
    if engine.dialect.name != "sqlite":
        return

    # Foreign keys, readers beside a writer, a busy wait: what a web app needs of SQLite.
    @sa.event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        # The busy wait first: the first connection to a WAL file recovers its index under
        # a lock, and a worker opening its own at that moment must wait, not fail.
        cursor.execute("PRAGMA busy_timeout = 10000")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.close()


def plan_once(dbapi_connection: Any, _record: Any) -> None:
    """Let PostgreSQL plan each prepared statement once, whatever its values, and run it
    without compiling it first.

    Every member of the query module's statements is written to walk one index whatever
    the values (see app/query/), so a plan made for the values gains nothing. Left to
    choose, PostgreSQL keeps planning a statement with a time window anew on every run: it
    cannot see how far back `finished_at >= $1` reaches and guesses a third of the table,
    which makes the one plan look costlier than planning again, and planning a statement of
    fifteen members costs more than running it.

    JIT compilation is for statements that read millions of rows. A capped count carries
    the exact count it falls back to when its probe finds the threshold is not passed; at
    ten million tasks that never-run branch is estimated past `jit_above_cost`, and each
    count of a big status spent 20 to 60 ms compiling (emission alone) to read 10,001
    index entries in 3 ms: the counts of one view grew tenfold from 1M to 10M.
    """
    with dbapi_connection.cursor() as cursor:
        cursor.execute("SET plan_cache_mode = force_generic_plan")
        cursor.execute("SET jit = off")
    dbapi_connection.commit()
