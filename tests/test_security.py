"""Allowed hosts and the security headers, on every route of the url_map."""

from __future__ import annotations

import pytest
from conftest import csp_directives, make_app
from server_support import real_values

from app.config import allowed_hosts
from app.pages.htmx import HTMX_CDN_URL
from app.pages.views import EMBED_ENDPOINTS

RULES = sorted(make_app("sqlite://").url_map.iter_rules(), key=lambda rule: rule.rule)
ROUTES = [pytest.param(rule, id=rule.rule) for rule in RULES]
HOSTS_NOT_ALLOWED = ["evil.example", "a" * 70, "a..b", "-x-.example", "[::1", "127.0.0.1:99999", ""]


def route_paths(client, rule, tasks) -> list[str]:
    """The route with a real task (or file), and with a value that names nothing."""
    adapter = client.application.url_map.bind("localhost")
    real = real_values(rule, str(tasks[0]["id"]))
    junk = dict.fromkeys(rule.arguments, "no-such-thing")
    return [adapter.build(rule.endpoint, values) for values in (real, junk) if values or real]


@pytest.mark.parametrize("rule", ROUTES)
def test_every_answer_carries_the_security_headers(client, tasks, rule):
    for path in route_paths(client, rule, tasks):
        response = client.get(path)
        policy = csp_directives(response)
        assert policy["default-src"] == "'self'"
        assert policy["script-src"] == f"'self' {HTMX_CDN_URL}"
        assert "unsafe" not in response.headers["Content-Security-Policy"]
        framers = "'none'" if rule.endpoint in EMBED_ENDPOINTS else "'self'"
        assert policy["frame-ancestors"] == framers, path
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "same-origin"
        assert response.headers["Cross-Origin-Opener-Policy"] == "same-origin"
        assert "Strict-Transport-Security" not in response.headers


@pytest.mark.parametrize("rule", ROUTES)
def test_a_host_label_over_63_characters_is_a_400_on_every_route(client, tasks, rule):
    for path in route_paths(client, rule, tasks):
        response = client.get(path, headers={"Host": "a" * 70})
        assert response.status_code == 400, path
        assert "Content-Security-Policy" in response.headers


def test_local_only_htmx_leaves_the_cdn_out_of_the_policy(known_database):
    response = make_app(known_database[0], HTMX_LOCAL_ONLY=True).test_client().get("/")
    assert csp_directives(response)["script-src"] == "'self'"


def test_strict_transport_security_over_https_behind_the_trusted_proxy(known_database):
    client = make_app(known_database[0], TRUSTED_PROXIES=1).test_client()
    secure = client.get("/tasks?limit=1", headers={"X-Forwarded-Proto": "https"})
    assert secure.headers["Strict-Transport-Security"] == "max-age=31536000"
    assert "Strict-Transport-Security" not in client.get("/tasks?limit=1").headers


def test_forwarded_https_is_not_believed_without_a_trusted_proxy(client):
    response = client.get("/", headers={"X-Forwarded-Proto": "https"})
    assert "Strict-Transport-Security" not in response.headers


# -- allowed hosts ---------------------------------------------------------------------------


@pytest.mark.parametrize("host", HOSTS_NOT_ALLOWED)
def test_a_host_not_allowed_is_a_400_problem_on_the_api(client, host):
    response = client.get("/tasks?limit=1", headers={"Host": host})
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["title"] == "Host not allowed"
    assert "Link" not in response.headers


@pytest.mark.parametrize("host", HOSTS_NOT_ALLOWED)
@pytest.mark.parametrize("path", ["/", "/embed", "/task/x", "/static/style.css", "/nope"])
def test_a_host_not_allowed_is_a_400_page_for_people(client, host, path):
    response = client.get(path, headers={"Host": host, "Accept": "text/html"})
    html = response.get_data(as_text=True)
    assert response.status_code == 400 and response.mimetype == "text/html"
    assert "Host not allowed" in html and 'href="/static/style.css"' in html
    assert not host or f"//{host}" not in html


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "127.0.0.1:5000", "localhost:8000"])
def test_the_default_names_are_served_on_any_port(client, host):
    response = client.get("/tasks?limit=1", headers={"Host": host})
    assert response.status_code == 200
    assert response.headers["Link"].startswith(f"<http://{host}/tasks?")


def test_the_page_links_name_the_allowed_host_it_was_asked_by(known_database):
    app = make_app(known_database[0], ALLOWED_HOSTS="tasks.example.com, tasks.internal")
    client = app.test_client()
    html = client.get("/", headers={"Host": "tasks.internal"}).get_data(as_text=True)
    assert "curl -sS http://tasks.internal/tasks" in html
    refused = client.get("/", headers={"Host": "localhost"})
    assert refused.status_code == 400


def test_a_leading_dot_allows_every_subdomain(known_database):
    client = make_app(known_database[0], ALLOWED_HOSTS=".example.com").test_client()
    assert client.get("/tasks", headers={"Host": "tasks.example.com"}).status_code == 200
    assert client.get("/tasks", headers={"Host": "example.org"}).status_code == 400
    # Within the allowed domain a name that is not one still gets a 400, not a 500.
    deep = client.get("/tasks", headers={"Host": "a" * 70 + ".example.com"})
    assert deep.status_code == 400 and deep.mimetype == "application/problem+json"


def test_a_forwarded_host_not_allowed_is_a_400_behind_the_trusted_proxy(known_database):
    client = make_app(known_database[0], TRUSTED_PROXIES=1).test_client()
    response = client.get("/tasks?limit=1", headers={"X-Forwarded-Host": "evil.example"})
    assert response.status_code == 400 and "Link" not in response.headers


def test_a_forwarded_prefix_serves_the_site_under_that_path(known_database):
    client = make_app(known_database[0], TRUSTED_PROXIES=1).test_client()
    html = client.get("/", headers={"X-Forwarded-Prefix": "/ops/tasks"}).get_data(as_text=True)
    assert 'href="/ops/tasks/static/style.css"' in html


@pytest.mark.parametrize("prefix", ["//evil.example", "/\\evil.example", "/a b"])
def test_a_forwarded_prefix_that_would_lead_links_elsewhere_is_ignored(known_database, prefix):
    client = make_app(known_database[0], TRUSTED_PROXIES=1).test_client()
    response = client.get("/", headers={"X-Forwarded-Prefix": prefix})
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert 'href="/static/style.css"' in html and "evil.example" not in html


@pytest.mark.parametrize(
    ("value", "names"),
    [
        ("127.0.0.1 localhost", ["127.0.0.1", "localhost"]),
        ("tasks.example.com,tasks.internal", ["tasks.example.com", "tasks.internal"]),
        (" Tasks.Example.com , .internal ", ["tasks.example.com", ".internal"]),
    ],
)
def test_allowed_hosts_are_split_on_spaces_and_commas(value, names):
    assert allowed_hosts(value) == names


@pytest.mark.parametrize("value", ["", "x:80", "http://x", "*", "a..b", "a" * 64, "[::1]"])
def test_an_allowed_host_that_is_not_a_name_fails_at_start_up(known_database, value):
    with pytest.raises(ValueError, match="ALLOWED_HOSTS"):
        make_app(known_database[0], ALLOWED_HOSTS=value)
