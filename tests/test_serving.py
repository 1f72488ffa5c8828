"""A real gunicorn with two workers and the app's server hooks: probes and scrapes stay out of
the access log, and /metrics adds up every worker's requests and reports the tasks once."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from conftest import make_app
from oracle import insert_tasks, known_tasks
from test_health import at_newest_revision
from test_metrics import by_labels, expected_gauges, parse_samples, requests_counted

from app.serving import QUIET_PATHS

ROOT = Path(__file__).resolve().parent.parent
STARTUP_SECONDS = 30
# A count that an earlier run of the server left in the metrics folder.
EARLIER_RUN = (
    "from app.metrics import REQUESTS; REQUESTS.labels('api.count_tasks_json', '200').inc(5)"
)
CONFIG = """\
from app.serving import child_exit, on_starting

logger_class = "app.serving.QuietProbesLogger"
bind = "127.0.0.1:0"
workers = 2
accesslog = "{folder}/access.log"
errorlog = "{folder}/error.log"
"""


@dataclass(frozen=True)
class Server:
    """A running gunicorn: its address and its access log."""

    url: str
    access_log: Path
    tasks: list[dict]


def wait_for_start(error_log: Path, process: subprocess.Popen) -> str:
    """The address gunicorn listens at, once both workers have booted."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        assert process.poll() is None, error_log.read_text()
        text = error_log.read_text() if error_log.exists() else ""
        address = re.search(r"Listening at: (http://\S+)", text)
        if address and text.count("Booting worker") == 2:
            return address.group(1)
        time.sleep(0.1)
    raise AssertionError(f"gunicorn did not start within {STARTUP_SECONDS} s")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """gunicorn over an SQLite database of known tasks, in multi-process metrics mode."""
    folder = tmp_path_factory.mktemp("gunicorn")
    url = f"sqlite:///{folder / 'tasks.sqlite3'}"
    app = at_newest_revision(make_app(url))
    tasks = known_tasks()
    with app.app_context():
        engine = app.extensions["sqlalchemy"].engine
        insert_tasks(engine, tasks)
        engine.dispose()
    metrics = folder / "metrics"
    metrics.mkdir()
    environment = {
        **os.environ,
        "DATABASE_URL": url,
        "SECRET_KEY": "test-secret",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics),
    }
    environment.pop("METRICS", None)
    subprocess.run([sys.executable, "-c", EARLIER_RUN], env=environment, cwd=ROOT, check=True)
    config = folder / "gunicorn.conf.py"
    config.write_text(CONFIG.format(folder=folder))
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--config", str(config), "wsgi:app"],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        address = wait_for_start(folder / "error.log", process)
        yield Server(address, folder / "access.log", tasks)
    finally:
        process.terminate()
        process.wait(timeout=STARTUP_SECONDS)


def get(server: Server, path: str) -> tuple[int, str]:
    """Status and body of a GET."""
    with urllib.request.urlopen(server.url + path, timeout=10) as response:
        return response.status, response.read().decode()


def logged_tags(server) -> int:
    """How many of the test's tagged requests the access log holds."""
    return sum("/tasks?tag=logged-" in line for line in server.access_log.read_text().splitlines())


def test_probes_and_scrapes_stay_out_of_the_access_log(server):
    for path in sorted(QUIET_PATHS):
        assert get(server, path)[0] == 200
    for index in range(3):
        assert get(server, f"/tasks?tag=logged-{index}")[0] == 200
    # Each worker writes its own lines, so the three may land in any order.
    deadline = time.monotonic() + 10
    while logged_tags(server) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = server.access_log.read_text().splitlines()
    assert logged_tags(server) == 3
    assert not [line for line in lines if any(f'"GET {path} ' in line for path in QUIET_PATHS)]


def test_the_quiet_paths_are_the_apps_probe_and_scrape_routes(tmp_path):
    app = make_app(f"sqlite:///{tmp_path / 'tasks.sqlite3'}")
    routes = {rule.rule: rule.endpoint for rule in app.url_map.iter_rules()}
    assert {routes[path] for path in QUIET_PATHS} == {
        "health.healthz",
        "health.readyz",
        "metrics.metrics",
    }


def test_requests_of_both_workers_are_counted_together_from_zero(server):
    """One worker waits on a request whose headers are unfinished while the other serves the
    rest: the scrape must count both workers' requests, and none of the earlier run's."""
    address = urlsplit(server.url)
    served_by_the_other = 4
    with socket.create_connection((address.hostname, address.port), timeout=10) as held:
        held.sendall(b"GET /tasks/counts HTTP/1.0\r\nHost: 127.0.0.1\r\n")
        for _ in range(served_by_the_other):
            assert get(server, "/tasks/counts")[0] == 200
        held.sendall(b"\r\n")
        answer = b"".join(iter(lambda: held.recv(65536), b""))
    assert answer.startswith(b"HTTP/1.0 200") or answer.startswith(b"HTTP/1.1 200")
    samples = parse_samples(get(server, "/metrics")[1])
    assert requests_counted(samples, "api.count_tasks_json", "200") == served_by_the_other + 1


def test_task_gauges_are_reported_once_not_added_up_across_workers(server):
    samples = parse_samples(get(server, "/metrics")[1])
    # Queued and running tasks count whatever the time: the server's clock is the real one.
    assert (
        by_labels(samples, "vectorize_tasks_active", "task_type", "status")
        == (expected_gauges(server.tasks)["active"])
    )
