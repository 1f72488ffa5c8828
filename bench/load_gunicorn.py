"""Load the app through gunicorn on loopback and print throughput and latency percentiles.

Two loads, each against DATABASE_URL served by `gunicorn wsgi:app` with threaded workers:

- the API mix (the default): list, count and deep-cursor requests from several client
  threads for a bounded time. Every answer must be 200.

      .venv/bin/python bench/load_gunicorn.py --database-url sqlite:///bench/tasks.sqlite3

- live viewers (`--live`): N open pages, each refreshing its results region every 5 s as
  the page's script does (htmx's headers and `If-None-Match` with the region's ETag), spread
  over 20 views, while a writer changes 1% of the tasks every minute in SQL and a few
  scripts page through the API by cursor. For each N it prints the refreshes' throughput,
  p50/p95/p99 latency and errors. The database is seeded first if it holds no tasks
  (`flask seed-demo --if-empty`), so a second run reuses it.

      .venv/bin/python bench/load_gunicorn.py --live \\
          --database-url postgresql://postgres@127.0.0.1:5432/vt_live_viewers

The project's gunicorn.conf.py is read as well; the flags given here win.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import http.client
import json
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

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

# Twenty views people keep open, each a canonical URL of the page or the embed.
LIVE_VIEWS = [
    "/",
    "/?status=running",
    "/?status=queued&status=running",
    "/?status=failed&within_hours=24",
    "/?within_hours=1",
    "/?within_hours=6",
    "/?within_hours=24",
    "/?task_type=training",
    "/?task_type=training&status=running",
    "/?task_type=evaluation&within_hours=24",
    "/?task_type=model_upload&task_type=dataset_upload",
    "/?task_type=synthesis&status=queued",
    "/?status=completed&within_hours=24",
    "/?tag=exp-7",
    "/?tag=nightly&within_hours=168",
    "/?within_hours=6&order=asc",
    "/?status=running&limit=50",
    "/?status=running&offset=20",
    "/embed?task_type=training&status=running&hide=filters",
    "/embed?within_hours=24",
]
# What htmx sends with the live refresh (static/app.js adds If-None-Match).
REFRESH_HEADERS = {"HX-Request": "true", "HX-Trigger": "live-refresh", "HX-Target": "results"}
REGION_ETAG = re.compile(r'<section id="results"[^>]* data-etag="([^"]*)"')


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


@contextmanager
def gunicorn(database_url: str, workers: int, threads: int, cache_url: str = "") -> Iterator[int]:
    """Serve the database through gunicorn's threaded workers; yield the port.

    With `cache_url` the workers share counts there, under a key prefix of this run's own
    whose keys are deleted afterwards.
    """
    port = free_port()
    environment = {**os.environ, "DATABASE_URL": database_url}
    environment.setdefault("SECRET_KEY", "load-test")
    prefix = f"vectorize-tasks-bench-{random.getrandbits(64):016x}:"
    if cache_url:
        environment |= {"CACHE_URL": cache_url, "CACHE_KEY_PREFIX": prefix}
    server = subprocess.Popen(
        [
            str(BIN / "gunicorn"),
            f"--config={ROOT / 'gunicorn.conf.py'}",
            f"--workers={workers}",
            "--worker-class=gthread",
            f"--threads={threads}",
            # Browsers keep their connection between refreshes; 2 s (the default) would not.
            "--keep-alive=10",
            "--backlog=4096",
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
        yield port
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        if cache_url:
            delete_keys(cache_url, prefix)


def delete_keys(cache_url: str, prefix: str) -> None:
    """Delete this run's keys, and no others."""
    import redis

    client = redis.Redis.from_url(cache_url)
    if keys := list(client.scan_iter(match=prefix + "*")):
        client.delete(*keys)
    client.close()


def percentile(values: list[float], fraction: float) -> float:
    """The value below which `fraction` of the sorted values fall."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def latency_text(latencies: list[float]) -> str:
    """Median, p95, p99 and max, in ms."""
    return (
        f"median {statistics.median(latencies) * 1000:.1f}, "
        f"p95 {percentile(latencies, 0.95) * 1000:.1f}, "
        f"p99 {percentile(latencies, 0.99) * 1000:.1f}, "
        f"max {max(latencies) * 1000:.1f}"
    )


# -- the API mix -----------------------------------------------------------------------------


def deep_cursor_path(port: int, pages: int) -> str:
    """A /tasks URL `pages` pages of 100 deep, reached by following next_cursor."""
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


def api_mix(args: argparse.Namespace) -> None:
    """Load the API from client threads; print the numbers."""
    with gunicorn(args.database_url, args.workers, args.threads) as port:
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

    print(f"gunicorn workers={args.workers}, clients={args.clients}, {elapsed:.1f} s")
    print(f"requests: {len(latencies)}  ({len(latencies) / elapsed:.0f} per second)")
    print(f"statuses: {dict(sorted(statuses.items()))}")
    print(f"latency ms: {latency_text(latencies)}")
    if set(statuses) != {200}:
        raise SystemExit("some requests did not answer 200")


# -- live viewers ----------------------------------------------------------------------------


@dataclass
class Tally:
    """What one load step saw."""

    refreshes: list[float] = field(default_factory=list)
    statuses: Counter[int | str] = field(default_factory=Counter)
    api_pages: list[float] = field(default_factory=list)
    api_errors: int = 0
    changed: int = 0


async def open_views(session, base: str) -> dict[str, str]:
    """Each view's region ETag, as a page just loaded shows it in `data-etag`."""
    etags = {}
    for view in LIVE_VIEWS:
        async with session.get(base + view) as response:
            page = await response.text()
            if response.status != 200 or not (found := REGION_ETAG.search(page)):
                raise SystemExit(f"{view} answered {response.status} without a results region")
            etags[view] = html.unescape(found.group(1))
    return etags


async def viewer(
    session, base: str, view: str, etag: str, interval: float, stop_at: float, tally: Tally
) -> None:
    """One open page: a refresh of its results every `interval`, kept on schedule."""
    loop = asyncio.get_running_loop()
    headers = {**REFRESH_HEADERS, "HX-Current-URL": base + view}
    due = loop.time() + random.uniform(0, interval)  # pages were opened at different times
    while True:
        await asyncio.sleep(max(0.0, min(due, stop_at) - loop.time()))
        if loop.time() >= stop_at:
            return
        started = time.perf_counter()
        try:
            async with session.get(base + view, headers={**headers, "If-None-Match": etag}) as r:
                await r.read()
                status: int | str = r.status
                if r.status == 200:  # the script keeps the swapped region's ETag
                    etag = r.headers.get("ETag", "")
        except Exception as error:  # any failure is one error in the table
            status = type(error).__name__
        tally.refreshes.append(time.perf_counter() - started)
        tally.statuses[status] += 1
        due += interval


async def api_script(
    session, base: str, query: str, pause: float, stop_at: float, tally: Tally
) -> None:
    """A script that follows the `Link: rel="next"` header, page after page."""
    loop = asyncio.get_running_loop()
    url = f"{base}/tasks?{query}"
    while loop.time() < stop_at:
        started = time.perf_counter()
        try:
            async with session.get(url) as response:
                await response.read()
                if response.status != 200:
                    tally.api_errors += 1
                following = response.links.get("next")
        except Exception:
            tally.api_errors += 1
            following = None
        tally.api_pages.append(time.perf_counter() - started)
        url = str(following["url"]) if following else f"{base}/tasks?{query}"
        await asyncio.sleep(pause)


def change_tasks(engine, fraction: float) -> int:
    """Flip `fraction` of the tasks between completed and cancelled, in plain SQL, setting
    updated_at as every writer must; return how many changed."""
    import sqlalchemy as sa

    from app.models import MODEL_FOR_TYPE

    changed = 0
    with engine.begin() as connection:
        for model in MODEL_FOR_TYPE.values():
            table = model.__table__
            total = connection.execute(sa.select(sa.func.count()).select_from(table)).scalar()
            wanted = max(1, int(total * fraction))
            # Tasks from a random place in id order: random tasks, found on the primary key.
            start = uuid.uuid4()
            chosen = (
                sa.select(table.c.id)
                .where(table.c.id >= start, table.c.status.in_(["completed", "cancelled"]))
                .order_by(table.c.id)
                .limit(wanted)
                .scalar_subquery()
            )
            flipped = sa.case((table.c.status == "completed", "cancelled"), else_="completed")
            statement = (
                table.update()
                .where(table.c.id.in_(chosen))
                .values(status=flipped, updated_at=datetime.now(UTC))
            )
            changed += connection.execute(statement).rowcount
    return changed


async def writer(engine, fraction: float, every: float, stop_at: float, tally: Tally) -> None:
    """Change `fraction` of the tasks every `every` seconds, from the middle of the first."""
    loop = asyncio.get_running_loop()
    due = loop.time() + every / 2
    while True:
        await asyncio.sleep(max(0.0, min(due, stop_at) - loop.time()))
        if loop.time() >= stop_at:
            return
        tally.changed += await asyncio.to_thread(change_tasks, engine, fraction)
        due += every


async def live_step(args: argparse.Namespace, base: str, engine, viewers: int) -> Tally:
    """N viewers, the writer and the API scripts for `args.seconds`."""
    import aiohttp

    tally = Tally()
    connector = aiohttp.TCPConnector(limit=0, force_close=False)  # a connection per viewer
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        etags = await open_views(session, base)
        stop_at = asyncio.get_running_loop().time() + args.seconds
        jobs = [
            viewer(session, base, view, etags[view], args.interval, stop_at, tally)
            for view in (LIVE_VIEWS[index % len(LIVE_VIEWS)] for index in range(viewers))
        ]
        queries = ["limit=100", "status=completed&limit=100", "within_hours=168&limit=100"]
        jobs += [
            api_script(session, base, queries[index % len(queries)], args.api_pause, stop_at, tally)
            for index in range(args.api_scripts)
        ]
        jobs.append(writer(engine, args.change_fraction, args.change_every, stop_at, tally))
        await asyncio.gather(*jobs)
    return tally


def seed_if_empty(database_url: str, tasks: int) -> None:
    """Bring the schema to the newest revision and add demo tasks unless some exist."""
    environment = {**os.environ, "DATABASE_URL": database_url}
    environment.setdefault("SECRET_KEY", "load-test")
    command = [str(BIN / "flask"), "--app", "wsgi", "seed-demo", "--if-empty"]
    subprocess.run([*command, "--tasks", str(tasks)], cwd=ROOT, env=environment, check=True)


def live_viewers(args: argparse.Namespace) -> None:
    """Run every viewer count in turn against one server; print a table."""
    import sqlalchemy as sa

    sys.path.insert(0, str(ROOT))
    from app.config import normalise_database_url

    seed_if_empty(args.database_url, args.tasks)
    engine = sa.create_engine(normalise_database_url(args.database_url))
    rows = []
    with gunicorn(args.database_url, args.workers, args.threads, args.cache_url) as port:
        base = f"http://127.0.0.1:{port}"
        asyncio.run(
            live_step(argparse.Namespace(**{**vars(args), "seconds": 10}), base, engine, 50)
        )
        for viewers in args.viewers:
            tally = asyncio.run(live_step(args, base, engine, viewers))
            rows.append((viewers, tally))
            print_live_row(viewers, tally, args.seconds)
    engine.dispose()
    print()
    print_live_table(args, rows)


def errors_of(tally: Tally) -> int:
    """Refreshes that answered neither 200 nor 304, or failed."""
    return sum(count for status, count in tally.statuses.items() if status not in (200, 304))


def print_live_row(viewers: int, tally: Tally, seconds: float) -> None:
    """One step's numbers as soon as it ends."""
    print(
        f"{viewers} viewers: {len(tally.refreshes)} refreshes "
        f"({len(tally.refreshes) / seconds:.0f}/s, wanted {viewers / 5:.0f}/s), "
        f"statuses {dict(tally.statuses)}, {latency_text(tally.refreshes)}; "
        f"API pages {len(tally.api_pages)} (errors {tally.api_errors}), "
        f"tasks changed {tally.changed}",
        flush=True,
    )


def print_live_table(args: argparse.Namespace, rows: list[tuple[int, Tally]]) -> None:
    """The Markdown table the README shows."""
    print(
        f"gunicorn {args.workers} workers of {args.threads} threads, {os.cpu_count()} cores, "
        f"{args.seconds:.0f} s per step, refresh every {args.interval:.0f} s, "
        f"{args.change_fraction:.0%} of the tasks changed every {args.change_every:.0f} s, "
        f"{args.api_scripts} API scripts, counts cached {args.cache_url or 'in each process'}"
    )
    print("| viewers | refreshes/s | 304 | p50 ms | p95 ms | p99 ms | errors |")
    print("|--:|--:|--:|--:|--:|--:|--:|")
    for viewers, tally in rows:
        done = len(tally.refreshes)
        print(
            f"| {viewers:,} | {done / args.seconds:.0f} | "
            f"{tally.statuses[304] / max(done, 1):.0%} | "
            f"{percentile(tally.refreshes, 0.50) * 1000:.1f} | "
            f"{percentile(tally.refreshes, 0.95) * 1000:.1f} | "
            f"{percentile(tally.refreshes, 0.99) * 1000:.1f} | "
            f"{errors_of(tally) + tally.api_errors} |"
        )


def main() -> None:
    """Start gunicorn, load it, print numbers, stop it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=4, help="per worker")
    parser.add_argument("--seconds", type=float, default=20.0, help="per step")
    parser.add_argument("--clients", type=int, default=8, help="API mix: client threads")
    parser.add_argument("--max-requests", type=int, default=20_000, help="API mix: per client")
    parser.add_argument("--deep-pages", type=int, default=100, help="API mix: cursor depth")
    parser.add_argument("--live", action="store_true", help="live viewers instead of the API mix")
    parser.add_argument("--viewers", type=int, nargs="+", default=[100, 300, 1000, 3000])
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between refreshes")
    parser.add_argument("--tasks", type=int, default=1_000_000, help="seeded when empty")
    parser.add_argument("--change-fraction", type=float, default=0.01)
    parser.add_argument("--change-every", type=float, default=60.0, help="seconds")
    parser.add_argument("--api-scripts", type=int, default=3)
    parser.add_argument("--api-pause", type=float, default=1.0, help="seconds between pages")
    parser.add_argument("--cache-url", default="", help="CACHE_URL for the servers (redis://…)")
    args = parser.parse_args()
    if args.live:
        live_viewers(args)
    else:
        api_mix(args)


if __name__ == "__main__":
    main()
