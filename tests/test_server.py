"""gunicorn.conf.py: limits that fit the API's longest request, and timeouts that fit exports."""

from __future__ import annotations

import json
import runpy
from urllib.parse import quote, urlencode

import pytest
from server_support import CONFIG, Server, exchange

from app.filters import MAX_LIMIT, MAX_TAGS, MAX_WITHIN_HOURS, STATUSES
from app.models import TAG_MAX_LENGTH, TASK_TYPES

# Four bytes of UTF-8 each, twelve once percent-encoded: the longest a character can take.
WIDE_CHARACTER = "\N{GRINNING FACE}"
DEFAULT_GUNICORN_REQUEST_LINE = 4094


def gunicorn_settings(monkeypatch: pytest.MonkeyPatch, **environment: str) -> dict:
    """The names gunicorn.conf.py defines, read under this environment."""
    for name in ("STATEMENT_TIMEOUT_MS", "EXPORT_STATEMENT_TIMEOUT_MS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(CONFIG))


def get(server: Server, target: str, headers: dict[str, str] | None = None) -> bytes:
    """A GET request as bytes, with these headers."""
    lines = [f"GET {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def a_cursor(server: Server) -> str:
    """A real cursor from the server (signed with its key), the longest parameter there is."""
    answer = exchange(server.port, get(server, "/tasks?limit=1"))
    return json.loads(answer.body)["next_cursor"]


def longest_query(cursor: str) -> str:
    """Every parameter of /tasks at its longest: 20 tags of 128 four-byte characters."""
    tags = [WIDE_CHARACTER * TAG_MAX_LENGTH] * MAX_TAGS
    args = [("task_type", name) for name in TASK_TYPES] + [("status", name) for name in STATUSES]
    args += [
        ("within_hours", str(MAX_WITHIN_HOURS)),
        ("created_after", "2020-11-28T09:00:00.123456+14:00:59.999999"),
        ("created_before", "2026-11-28T09:00:00.123456-12:00:59.999999"),
        *[("tag", tag) for tag in tags],
        ("limit", str(MAX_LIMIT)),
        ("order", "desc"),
        ("cursor", cursor),
        ("count", "exact"),
    ]
    return urlencode(args, quote_via=quote)


@pytest.mark.parametrize("path", ["/tasks", "/tasks/counts", "/", "/embed"])
def test_the_longest_request_the_api_accepts_is_served(gunicorn_server, path):
    target = f"{path}?{longest_query(a_cursor(gunicorn_server))}"
    assert len(target) > 7 * DEFAULT_GUNICORN_REQUEST_LINE
    answer = exchange(gunicorn_server.port, get(gunicorn_server, target))
    assert answer.status == 200, answer.body[:300]


def test_htmx_may_send_the_longest_page_url_back_in_a_header(gunicorn_server):
    url = f"http://127.0.0.1/?{longest_query(a_cursor(gunicorn_server))}"
    headers = {"HX-Request": "true", "HX-Target": "results", "HX-Current-URL": url}
    answer = exchange(gunicorn_server.port, get(gunicorn_server, "/", headers))
    assert answer.status == 200


def test_a_request_line_over_the_limit_gets_a_short_answer(gunicorn_server, monkeypatch):
    limit = gunicorn_settings(monkeypatch)["limit_request_line"]
    workers = gunicorn_server.worker_pids()
    answer = exchange(gunicorn_server.port, get(gunicorn_server, "/tasks?tag=" + "a" * limit))
    assert answer.status == 414
    assert len(answer.body) < 1024 and answer.header("Connection") == "close"
    assert gunicorn_server.worker_pids() == workers and gunicorn_server.trouble() == []


def test_a_header_over_the_limit_gets_a_short_answer(gunicorn_server, monkeypatch):
    limit = gunicorn_settings(monkeypatch)["limit_request_field_size"]
    workers = gunicorn_server.worker_pids()
    request = get(gunicorn_server, "/tasks", {"X-Padding": "a" * limit})
    answer = exchange(gunicorn_server.port, request)
    assert answer.status == 431
    assert len(answer.body) < 1024 and answer.header("Connection") == "close"
    assert gunicorn_server.worker_pids() == workers and gunicorn_server.trouble() == []


def test_a_local_client_cannot_claim_https_through_gunicorn(gunicorn_server):
    # The app's proxy setting decides; gunicorn itself believes no X-Forwarded-Proto.
    answer = exchange(gunicorn_server.port, get(gunicorn_server, "/tasks?limit=1"))
    assert answer.header("Link").startswith("<http://127.0.0.1/")
    assert answer.header("Strict-Transport-Security") is None


@pytest.mark.parametrize(
    ("environment", "longest_statement"),
    [
        ({}, 300),
        ({"EXPORT_STATEMENT_TIMEOUT_MS": "600000"}, 600),
        ({"STATEMENT_TIMEOUT_MS": "900000", "EXPORT_STATEMENT_TIMEOUT_MS": "1000"}, 900),
    ],
)
def test_workers_outlast_the_longest_statement(monkeypatch, environment, longest_statement):
    settings = gunicorn_settings(monkeypatch, **environment)
    assert longest_statement < settings["timeout"] <= longest_statement + 60
    assert settings["graceful_timeout"] == settings["timeout"]


def test_workers_restart_gracefully_and_not_together(monkeypatch):
    settings = gunicorn_settings(monkeypatch)
    assert settings["max_requests"] > 0 and settings["max_requests_jitter"] > 0
    assert settings["worker_class"] == "gthread"
    assert "%(s)s" in settings["access_log_format"]
