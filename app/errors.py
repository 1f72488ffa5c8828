"""Errors as `application/problem+json` (RFC 9457) for the API, as pages for browsers.

Never a stack trace: a database that cannot be reached is a 503 that says so.
"""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from flask import Flask, Response, current_app, g, jsonify, render_template, request
from flask.globals import request_ctx
from werkzeug.exceptions import BadHost, HTTPException, SecurityError

from app.models import ReplicaUnreachable
from app.timeouts import is_statement_timeout

PROBLEM_TYPE = "application/problem+json"
# What SQLAlchemy raises when the database cannot be reached or drops the connection; the
# same classes also carry schema errors on some drivers (SQLite's "no such table").
DATABASE_ERRORS = (sa.exc.OperationalError, sa.exc.InterfaceError)
# A database reached but whose tables are missing or older than the app's, on any engine.
SCHEMA_PROBLEM = re.compile(
    r"no such (table|column)|does not exist|doesn't exist|unknown column", re.IGNORECASE
)
SCHEMA_TITLE = "Task tables missing or out of date"
SCHEMA_DETAIL = (
    "The database lacks the task tables this version needs; run `flask --app wsgi init-db`."
)
UNAVAILABLE_TITLE = "Database unavailable"
UNAVAILABLE_DETAIL = "The task database cannot be reached right now; try again shortly."
REPLICA_DETAIL = "The read replica cannot be reached right now; try again shortly."
TIMEOUT_TITLE = "Query too slow"
RETRY_AFTER_SECONDS = 5
HOST_TITLE = "Host not allowed"
# A Host header longer than any name is cut short in the message.
HOST_SHOWN_CHARACTERS = 100


def problem(status: int, title: str, detail: str, **extra: Any) -> Response:
    """A problem document: what went wrong, for a script to print or to branch on."""
    response = jsonify({"type": "about:blank", "title": title, "status": status, "detail": detail})
    if extra:
        response = jsonify({**response.get_json(), **extra})
    response.status_code = status
    response.mimetype = PROBLEM_TYPE
    return response


def invalid(title: str, naming: str, errors: dict[str, list[str]]) -> Response:
    """422 listing every bad part of a request (each under `naming`) and why."""
    listed = [
        {naming: name, "detail": message}
        for name, messages in errors.items()
        for message in messages
    ]
    detail = "; ".join(f"{item[naming]}: {item['detail']}" for item in listed)
    return problem(422, title, detail, errors=listed)


def invalid_query(errors: dict[str, list[str]]) -> Response:
    """422 naming every bad parameter and why."""
    return invalid("Invalid query parameters", "parameter", errors)


def invalid_body(errors: dict[str, list[str]]) -> Response:
    """422 naming every bad field of a JSON body and why."""
    return invalid("Invalid request body", "field", errors)


def api_root() -> str:
    """The path the API's routes start with, read from the url_map (no URL adapter needed)."""
    return next(current_app.url_map.iter_rules("api.list_tasks_json")).rule


def wants_problem_json() -> bool:
    """API paths, and clients that prefer JSON to HTML, get problem documents."""
    if request.blueprint == "api" or request.path.startswith(api_root()):
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def error_page(status: int, title: str, detail: str) -> Response:
    """The same failure as a page a person can read, with a way back to the list.

    Inside the portal's frame the way back is the embed, the one page the frame may show.
    """
    embed = (request.endpoint or "").startswith("pages.embed")
    body = render_template("error.html", status=status, title=title, detail=detail, embed=embed)
    return Response(body, status=status, mimetype="text/html")


def is_unreachable(error: sa.exc.DBAPIError) -> bool:
    """Whether a database error means "try again later" rather than a schema to fix."""
    return isinstance(error, DATABASE_ERRORS) and not SCHEMA_PROBLEM.search(str(error.orig))


def log_database_error(error: sa.exc.DBAPIError) -> None:
    """Keep the driver's message for the operator; the visitor gets a plain sentence."""
    current_app.logger.error("database unavailable: %s", error.orig)


def outage(error: sa.exc.DBAPIError) -> tuple[str, str]:
    """The title and sentence of a 503: a statement over its limit, the replica, or the database."""
    if is_statement_timeout(error):
        limit_ms = g.get("statement_limit_ms") or current_app.config["STATEMENT_TIMEOUT_MS"]
        detail = f"The query took longer than {limit_ms / 1000:g} s; narrow the filter."
        return TIMEOUT_TITLE, detail
    if isinstance(error, ReplicaUnreachable):
        return UNAVAILABLE_TITLE, REPLICA_DETAIL
    return UNAVAILABLE_TITLE, UNAVAILABLE_DETAIL


def ensure_url_adapter() -> None:
    """Let the error page build its links when the request's Host was refused.

    Flask binds a request's URL adapter to its Host, and a Host that is not allowed (or is
    not a valid name) leaves it none: the page's `url_for` calls would fail and turn the 400
    into a 500. The page's links are paths, so an adapter bound to an allowed name builds
    the very same ones, and an absolute URL could only name an allowed host.
    """
    if request_ctx.url_adapter is None:
        request_ctx.url_adapter = current_app.url_map.bind(
            current_app.config["ALLOWED_HOSTS"][0].strip("."),
            script_name=request.root_path or "/",
            url_scheme=request.scheme,
        )


def error_response(status: int, title: str, detail: str) -> Response:
    """A problem document for scripts, a page for people."""
    ensure_url_adapter()
    if wants_problem_json():
        return problem(status, title, detail)
    response = error_page(status, title, detail)
    # Outside the API the answer's form depends on Accept.
    response.vary.add("Accept")
    return response


def init_app(app: Flask) -> None:
    """Register the handlers that turn every failure into a clear answer."""

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Any:
        if error.code is None or error.code < 400:
            return error
        response = error_response(error.code, error.name, error.description or error.name)
        # Keep what the exception adds, such as the Allow header of a 405.
        for name, value in error.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    def database_error(error: sa.exc.DBAPIError) -> Any:
        if is_unreachable(error):
            log_database_error(error)
            response = error_response(503, *outage(error))
            response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
            return response
        if SCHEMA_PROBLEM.search(str(error.orig)):
            current_app.logger.error("task tables out of date: %s", error.orig)
            return error_response(500, SCHEMA_TITLE, SCHEMA_DETAIL)
        raise error

    @app.errorhandler(SecurityError)
    @app.errorhandler(BadHost)
    def host_error(_error: HTTPException) -> Response:
        # Not in ALLOWED_HOSTS (SecurityError), or not a name at all (BadHost).
        host = request.headers.get("Host", "")[:HOST_SHOWN_CHARACTERS]
        detail = f"This server does not answer to the host {host!r}; use one of its own names."
        return error_response(400, HOST_TITLE, detail)

    for error_class in (*DATABASE_ERRORS, sa.exc.ProgrammingError):
        app.register_error_handler(error_class, database_error)
