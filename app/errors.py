"""Errors as `application/problem+json` (RFC 9457) for the API, as pages for browsers.

Never a stack trace: a database that cannot be reached is a 503 that says so.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import Flask, Response, current_app, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

PROBLEM_TYPE = "application/problem+json"
# What SQLAlchemy raises when the database cannot be reached or drops the connection.
DATABASE_ERRORS = (sa.exc.OperationalError, sa.exc.InterfaceError)
UNAVAILABLE_TITLE = "Database unavailable"
UNAVAILABLE_DETAIL = "The task database cannot be reached right now; try again shortly."
RETRY_AFTER_SECONDS = 5


def problem(status: int, title: str, detail: str, **extra: Any) -> Response:
    """A problem document: what went wrong, for a script to print or to branch on."""
    response = jsonify({"type": "about:blank", "title": title, "status": status, "detail": detail})
    if extra:
        response = jsonify({**response.get_json(), **extra})
    response.status_code = status
    response.mimetype = PROBLEM_TYPE
    return response


def invalid_query(errors: dict[str, list[str]]) -> Response:
    """422 naming every bad parameter and why."""
    listed = [
        {"parameter": name, "detail": message}
        for name, messages in errors.items()
        for message in messages
    ]
    detail = "; ".join(f"{item['parameter']}: {item['detail']}" for item in listed)
    return problem(422, "Invalid query parameters", detail, errors=listed)


def wants_problem_json() -> bool:
    """API paths, and clients that prefer JSON to HTML, get problem documents."""
    if request.blueprint == "api" or request.path.startswith("/tasks"):
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def error_page(status: int, title: str, detail: str) -> Response:
    """The same failure as a page a person can read, with a way back to the list."""
    body = render_template("error.html", status=status, title=title, detail=detail)
    return Response(body, status=status, mimetype="text/html")


def log_database_error(error: sa.exc.DBAPIError) -> None:
    """Keep the driver's message for the operator; the visitor gets a plain sentence."""
    current_app.logger.error("database unavailable: %s", error.orig)


def init_app(app: Flask) -> None:
    """Register the handlers that turn every failure into a clear answer."""

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Any:
        if error.code is None or error.code < 400:
            return error
        if wants_problem_json():
            response = problem(error.code, error.name, error.description or error.name)
        else:
            response = error_page(error.code, error.name, error.description or error.name)
        # Keep what the exception adds, such as the Allow header of a 405.
        for name, value in error.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    def database_unavailable(error: sa.exc.DBAPIError) -> Any:
        log_database_error(error)
        if wants_problem_json():
            response = problem(503, UNAVAILABLE_TITLE, UNAVAILABLE_DETAIL)
        else:
            response = error_page(503, UNAVAILABLE_TITLE, UNAVAILABLE_DETAIL)
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response

    for database_error in DATABASE_ERRORS:
        app.register_error_handler(database_error, database_unavailable)
