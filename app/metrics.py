"""Prometheus metrics at /metrics: requests by endpoint and status, and the tasks themselves.

Request metrics are kept by each process. Under gunicorn, with PROMETHEUS_MULTIPROC_DIR set
before the app is imported, every worker writes them to files in that folder and the worker
that answers a scrape adds up every worker's files (prometheus_client's multi-process mode).

The task gauges describe the database, not a process, so they are never kept in a process:
the worker that answers a scrape reads them from the database, through the same read
connection as the list, and reports them once. Kept per worker, they would be added up
across workers (or, in a "mostrecent" gauge, be as old as the last worker to set them).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import sqlalchemy as sa
from flask import Blueprint, Flask, Response, current_app, g, request
from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector

from app.clock import request_time
from app.models import ACTIVE_STATUSES, TERMINAL_STATUSES, read_connection
from app.query.gauges import task_gauges

NAMESPACE = "vectorize_tasks"
# "Recent" for the task gauges: finished in the last hour, or running without a report for one.
RECENT_HOURS = 1
UNMATCHED = "unmatched"

# A `_created` series per counter says when this process first counted it: noise beside the
# counts, and absent in multi-process mode anyway.
disable_created_metrics()

# Labelled by the Flask endpoint, never the path, so that the number of series stays bounded.
REQUESTS = Counter(
    "http_requests",
    "Requests answered, by Flask endpoint and status code",
    ["endpoint", "status"],
    namespace=NAMESPACE,
    registry=None,
)
LATENCY = Histogram(
    "http_request_duration_seconds",
    "Time to build each response (to its first byte for a streamed export), "
    "by Flask endpoint and status code",
    ["endpoint", "status"],
    namespace=NAMESPACE,
    registry=None,
)

bp = Blueprint("metrics", __name__)


def init_app(app: Flask) -> None:
    """Count every request and serve /metrics, unless METRICS is off."""
    if not app.config["METRICS"]:
        return
    app.before_request(start_timer)
    app.after_request(record_request)
    app.register_blueprint(bp)


def start_timer() -> None:
    """Note when the request reached the app."""
    g.metrics_started = time.perf_counter()


def record_request(response: Response) -> Response:
    """Count the request and its time under its endpoint and status."""
    started = g.pop("metrics_started", None)
    if started is not None:
        labels = (request.endpoint or UNMATCHED, str(response.status_code))
        REQUESTS.labels(*labels).inc()
        LATENCY.labels(*labels).observe(time.perf_counter() - started)
    return response


@bp.get("/metrics")
def metrics() -> Response:
    """Every metric, in the text format the scraper asks for."""
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    response = Response(encode(scrape_registry()), content_type=content_type)
    response.headers["Cache-Control"] = "no-store"
    response.vary.add("Accept")
    return response


def scrape_registry() -> CollectorRegistry:
    """A registry for one scrape: this process's or every worker's requests, and the tasks."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
    else:
        registry.register(REQUESTS)
        registry.register(LATENCY)
    registry.register(TaskCollector())
    return registry


class TaskCollector:
    """The task gauges, read from the database when a scrape collects them."""

    def collect(self) -> Iterator[Metric]:
        """Yield the gauges; without a database, say so and keep the request metrics."""
        up = GaugeMetricFamily(
            f"{NAMESPACE}_database_up",
            "1 when this scrape read the task gauges from the database, 0 when it could not",
        )
        try:
            gauges = task_gauges(read_connection(), request_time(), RECENT_HOURS)
        except sa.exc.DBAPIError as error:
            current_app.logger.warning("task gauges not read: %s", error.orig)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield status_gauge(
            "active",
            "Tasks queued or running now, by type and status",
            gauges.by_status,
            ACTIVE_STATUSES,
        )
        yield status_gauge(
            "finished_last_hour",
            "Tasks that ended in the last hour, by type and status",
            gauges.by_status,
            TERMINAL_STATUSES,
        )
        silent = GaugeMetricFamily(
            f"{NAMESPACE}_running_silent",
            "Running tasks that have not reported (updated_at) in the last hour, by type",
            labels=["task_type"],
        )
        for task_type, tasks in gauges.silent.items():
            silent.add_metric([task_type], tasks)
        yield silent


def status_gauge(
    name: str, documentation: str, counts: dict[tuple[str, str], int], statuses: tuple[str, ...]
) -> GaugeMetricFamily:
    """One gauge of the counts by (type, status), for the given statuses only."""
    gauge = GaugeMetricFamily(f"{NAMESPACE}_{name}", documentation, labels=["task_type", "status"])
    for (task_type, status), tasks in counts.items():
        if status in statuses:
            gauge.add_metric([task_type, status], tasks)
    return gauge
