"""/metrics: request counts and latencies by endpoint and status, task gauges that agree with
a plain-Python count over known tasks on every engine, and METRICS=0 turning it off."""

from __future__ import annotations

import random
import uuid
from datetime import timedelta
from typing import Any

import pytest
from conftest import make_app
from flask.testing import FlaskClient
from oracle import NOW, insert_tasks, known_tasks, make_task
from prometheus_client.parser import text_string_to_metric_families

from app.models import ACTIVE_STATUSES, TASK_TYPES, TERMINAL_STATUSES

HOUR = timedelta(hours=1)
Samples = dict[str, dict[frozenset[tuple[str, str]], float]]


def parse_samples(text: str) -> Samples:
    """Every sample of a scrape: by sample name, then by its labels."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[frozenset(sample.labels.items())] = sample.value
    return samples


def scrape(client: FlaskClient) -> Samples:
    """The app's metrics, parsed."""
    response = client.get("/metrics")
    assert response.status_code == 200
    return parse_samples(response.get_data(as_text=True))


def by_labels(samples: Samples, name: str, *labels: str) -> dict[tuple[str, ...], float]:
    """One metric's values keyed by the given labels' values."""
    return {
        tuple(dict(key)[label] for label in labels): value
        for key, value in samples.get(name, {}).items()
    }


def requests_counted(samples: Samples, endpoint: str, status: str) -> float:
    """The request counter of one endpoint and status (0 before its first request)."""
    counts = by_labels(samples, "vectorize_tasks_http_requests_total", "endpoint", "status")
    return counts.get((endpoint, status), 0)


def edge_tasks() -> list[dict[str, Any]]:
    """Tasks on either side of the hour's edges, for both the finished and the silent counts."""
    rng = random.Random(11)
    tasks = []
    for task_type in TASK_TYPES:
        for status in TERMINAL_STATUSES:
            # Finished 59, 60 (the edge counts) and 61 minutes ago.
            for minutes in (59, 60, 61):
                created = NOW - timedelta(hours=3)
                after = NOW - timedelta(minutes=minutes) - created
                tasks.append(make_task(task_type, status, created, finished_after=after, rng=rng))
        # Running, last updated (one minute after creation) 59, 60 and 61 minutes ago.
        for minutes in (60, 61, 62):
            created = NOW - timedelta(minutes=minutes)
            tasks.append(make_task(task_type, "running", created, rng=rng))
    return tasks


def expected_gauges(tasks: list[dict[str, Any]]) -> dict[str, dict[tuple[str, ...], float]]:
    """The task gauges, counted in Python by their documented rules."""
    since = NOW - HOUR
    active = {(t, s.value): 0.0 for t in TASK_TYPES for s in ACTIVE_STATUSES}
    finished = {(t, s.value): 0.0 for t in TASK_TYPES for s in TERMINAL_STATUSES}
    silent = {(t,): 0.0 for t in TASK_TYPES}
    for task in tasks:
        key = (task["task_type"], task["status"])
        if key in active:
            active[key] += 1
        elif task["finished_at"] >= since:
            finished[key] += 1
        if task["status"] == "running" and task["updated_at"] < since:
            silent[(task["task_type"],)] += 1
    return {"active": active, "finished_last_hour": finished, "running_silent": silent}


def test_task_gauges_agree_with_the_oracle(scratch_app, scratch_engine):
    tasks = known_tasks() + edge_tasks()
    insert_tasks(scratch_engine, tasks)
    samples = scrape(scratch_app.test_client())
    expected = expected_gauges(tasks)
    assert (
        by_labels(samples, "vectorize_tasks_active", "task_type", "status") == (expected["active"])
    )
    assert (
        by_labels(samples, "vectorize_tasks_finished_last_hour", "task_type", "status")
        == (expected["finished_last_hour"])
    )
    assert (
        by_labels(samples, "vectorize_tasks_running_silent", "task_type")
        == (expected["running_silent"])
    )
    assert by_labels(samples, "vectorize_tasks_database_up") == {(): 1.0}


def test_a_request_moves_its_counter_and_its_histogram(client):
    before = scrape(client)
    assert client.get("/tasks?status=failed").status_code == 200
    after = scrape(client)
    labels = frozenset({("endpoint", "api.list_tasks_json"), ("status", "200")})
    histogram = "vectorize_tasks_http_request_duration_seconds_count"
    for name in ("vectorize_tasks_http_requests_total", histogram):
        assert after[name][labels] == before.get(name, {}).get(labels, 0) + 1


def test_requests_are_labelled_by_endpoint_never_by_path(client):
    task_id = uuid.uuid4()
    assert client.get(f"/tasks/{task_id}").status_code == 404
    assert client.get(f"/no/such/page/{task_id}").status_code == 404
    samples = scrape(client)
    assert requests_counted(samples, "api.show_task_json", "404") >= 1
    assert requests_counted(samples, "unmatched", "404") >= 1
    endpoints = {dict(key)["endpoint"] for key in samples["vectorize_tasks_http_requests_total"]}
    assert not any(str(task_id) in endpoint or "/" in endpoint for endpoint in endpoints)


def test_a_scrape_without_the_database_keeps_the_request_metrics():
    app = make_app("postgresql+psycopg://postgres@127.0.0.1:1/none")
    client = app.test_client()
    client.get("/healthz")
    samples = scrape(client)
    assert by_labels(samples, "vectorize_tasks_database_up") == {(): 0.0}
    assert requests_counted(samples, "health.healthz", "200") >= 1
    assert "vectorize_tasks_active" not in samples


@pytest.mark.parametrize("value", ["0", "false", "off"])
def test_metrics_off_answers_404(known_database, monkeypatch, value):
    monkeypatch.setenv("METRICS", value)
    app = make_app(known_database[0])
    assert app.test_client().get("/metrics").status_code == 404


def test_a_metrics_setting_that_is_not_yes_or_no_stops_the_start(known_database, monkeypatch):
    monkeypatch.setenv("METRICS", "maybe")
    with pytest.raises(ValueError, match="METRICS: 'maybe'"):
        make_app(known_database[0])
