"""Errors as `application/problem+json` (RFC 9457) for the API, never a stack trace."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

PROBLEM_TYPE = "application/problem+json"


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


def init_app(app: Flask) -> None:
    """Register the handlers that turn every failure into a clear answer."""

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Any:
        if not wants_problem_json():
            return error
        return problem(error.code or 500, error.name, error.description or error.name)

    @app.errorhandler(sa.exc.OperationalError)
    @app.errorhandler(sa.exc.InterfaceError)
    def database_unavailable(error: sa.exc.DBAPIError) -> Any:
        current_app.logger.error("database unavailable: %s", error.orig)
        response = problem(
            503,
            "Database unavailable",
            "The task database cannot be reached right now; try again shortly.",
        )
        response.headers["Retry-After"] = "5"
        return response
