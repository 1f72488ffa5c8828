"""Failures answer clearly: schema problems, unreachable databases, and safe headers."""

from __future__ import annotations

import os
import sqlite3

import pytest

from app import create_app
from app.config import load_secret_key


@pytest.fixture
def tableless_client(tmp_path):
    """A client over an SQLite database that has no task tables."""
    path = tmp_path / "empty.sqlite3"
    sqlite3.connect(path).close()
    app = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{path}", "SECRET_KEY": "x"})
    return app.test_client()


def test_missing_tables_are_named_as_such_on_the_api(tableless_client):
    response = tableless_client.get("/tasks")
    assert response.status_code == 500
    assert response.mimetype == "application/problem+json"
    assert "init-db" in response.get_json()["detail"]


@pytest.mark.parametrize("path", ["/", "/embed"])
def test_missing_tables_are_not_reported_as_an_outage_on_the_page(tableless_client, path):
    response = tableless_client.get(path, headers={"Accept": "text/html"})
    assert response.status_code == 500
    assert "init-db" in response.get_data(as_text=True)
    assert "Retry-After" not in response.headers


@pytest.mark.parametrize("path", ["/", "/tasks", "/tasks.csv", "/static/style.css", "/nope"])
def test_every_answer_forbids_content_sniffing(client, path):
    assert client.get(path).headers["X-Content-Type-Options"] == "nosniff"


def test_error_pages_vary_on_accept(client):
    response = client.get("/no-such-page", headers={"Accept": "text/html"})
    assert response.status_code == 404
    assert "Accept" in response.vary


def test_kept_secret_key_is_private_and_stable(tmp_path, monkeypatch):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    first = load_secret_key(tmp_path / "instance")
    assert load_secret_key(tmp_path / "instance") == first
    assert len(first) == 64
    assert os.stat(tmp_path / "instance" / "secret_key").st_mode & 0o077 == 0


def test_empty_kept_secret_key_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    (tmp_path / "secret_key").write_text("")
    with pytest.raises(RuntimeError, match="empty"):
        load_secret_key(tmp_path)
