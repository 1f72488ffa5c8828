"""Load the API through gunicorn on loopback and print throughput and latency percentiles.

Starts `gunicorn wsgi:app` with the project's gunicorn.conf.py against DATABASE_URL (an
already seeded database, for example the one bench_tasks.py fills), sends a fixed mix of
list, count and deep-cursor requests from several client threads for a bounded time, then
stops the server. Every answer must be 200; any other status is counted and printed.

    .venv/bin/python bench/load_gunicorn.py --database-url sqlite:///bench/tasks.sqlite3
"""

from __future__ import annotations

import argparse
import http.client
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

REQUEST_MIX = [
    "/tasks",
    "/tasks?status=failed",
    "/tasks?status=completed&within_hours=24",
    "/tasks?task_type=training&task_type=evaluation&status=running",
    "/tasks?tag=exp-7&limit=50",
    "/tasks?within_hours=6&order=asc",
    "/tasks?offset=1000",
    "/tasks/counts",
    "/tasks/counts?within_hours=24",
]


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_serving(port: int, timeout: float = 30.0) -> None:
    """Block until the server answers, or fail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/tasks?limit=1")
            if connection.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"gunicorn did not answer on port {port} within {timeout:.0f} s")


def deep_cursor_path(port: int, pages: int) -> str:
    """A /tasks URL `pages` pages of 100 deep, reached by following next_cursor."""
    import json
    from urllib.parse import quote

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    path = "/tasks?limit=100"
    for _ in range(pages):
        connection.request("GET", path)
        cursor = json.loads(connection.getresponse().read())["next_cursor"]
        if cursor is None:
            break
        path = f"/tasks?limit=100&cursor={quote(cursor)}"
    return path.replace("limit=100", "limit=20")


def client_loop(
    port: int,
    paths: list[str],
    stop_at: float,
    max_requests: int,
    latencies: list[float],
    statuses: Counter[int],
    lock: threading.Lock,
) -> None:
    """Send requests over one keep-alive connection until time or count runs out."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    sent = 0
    while time.monotonic() < stop_at and sent < max_requests:
        path = paths[sent % len(paths)]
        started = time.perf_counter()
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()
            status = response.status
        except (OSError, http.client.HTTPException):
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            status = 0
        elapsed = time.perf_counter() - started
        with lock:
            latencies.append(elapsed)
            statuses[status] += 1
        sent += 1


def percentile(values: list[float], fraction: float) -> float:
    """The value below which `fraction` of the sorted values fall."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    """Start gunicorn, load it, print numbers, stop it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--max-requests", type=int, default=20_000, help="per client")
    parser.add_argument("--deep-pages", type=int, default=100, help="cursor depth, in pages")
    args = parser.parse_args()

    port = free_port()
    environment = {**os.environ, "DATABASE_URL": args.database_url}
    environment.setdefault("SECRET_KEY", "load-test")
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            f"--config={ROOT / 'gunicorn.conf.py'}",
            f"--workers={args.workers}",
            f"--bind=127.0.0.1:{port}",
            "--log-level=warning",
            "--access-logfile=/dev/null",
            "wsgi:app",
        ],
        cwd=ROOT,
        env=environment,
    )
    try:
        wait_until_serving(port)
        paths = [*REQUEST_MIX, deep_cursor_path(port, args.deep_pages)]
        latencies: list[float] = []
        statuses: Counter[int] = Counter()
        lock = threading.Lock()
        stop_at = time.monotonic() + args.seconds
        started = time.monotonic()
        threads = [
            threading.Thread(
                target=client_loop,
                args=(port, paths, stop_at, args.max_requests, latencies, statuses, lock),
            )
            for _ in range(args.clients)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)

    print(f"gunicorn workers={args.workers}, clients={args.clients}, {elapsed:.1f} s")
    print(f"requests: {len(latencies)}  ({len(latencies) / elapsed:.0f} per second)")
    print(f"statuses: {dict(sorted(statuses.items()))}")
    print(
        "latency ms: "
        f"median {statistics.median(latencies) * 1000:.1f}, "
        f"p95 {percentile(latencies, 0.95) * 1000:.1f}, "
        f"p99 {percentile(latencies, 0.99) * 1000:.1f}, "
        f"max {max(latencies) * 1000:.1f}"
    )
    if set(statuses) != {200}:
        raise SystemExit("some requests did not answer 200")


if __name__ == "__main__":
    main()
