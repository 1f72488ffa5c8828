"""gunicorn started with the project's gunicorn.conf.py, and HTTP spoken over raw sockets.

The tests that need the real server (its limits, its workers, what it does with bytes no
client library would send) start it here, on a loopback port it picks itself.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from werkzeug.routing import Rule

ROOT = Path(__file__).resolve().parent.parent
GUNICORN = Path(sys.executable).parent / "gunicorn"
CONFIG = ROOT / "gunicorn.conf.py"
LISTENING = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)")
BOOTED = re.compile(r"Booting worker with pid: (\d+)")
# What the arbiter writes when a worker dies, is killed or is replaced, and what Flask writes
# when a view raises: none of it may appear while the server is probed.
TROUBLE = re.compile(r"WORKER TIMEOUT|exited with code|was sent SIG|Traceback|Exception on")
START_SECONDS = 30


def real_values(rule: Rule, task_id: str) -> dict[str, str]:
    """Values a route's variables really take: a task's id, and for static files one that exists."""
    return {name: "style.css" if name == "filename" else task_id for name in rule.arguments}


@dataclass
class Server:
    """A running gunicorn: its port and its error log (the arbiter's and the app's)."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def worker_pids(self) -> list[int]:
        """Every worker the arbiter has booted so far, in order."""
        return [int(pid) for pid in BOOTED.findall(self.log_text())]

    def trouble(self) -> list[str]:
        """Log lines that say a worker died or a view raised."""
        return [line for line in self.log_text().splitlines() if TROUBLE.search(line)]


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_log(log: Path, pattern: re.Pattern[str], process: subprocess.Popen[bytes]) -> str:
    """The first match of `pattern` in the log, once the server has written it."""
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace") if log.exists() else ""
        if match := pattern.search(text):
            return match.group(1)
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode}:\n{text}")
        time.sleep(0.05)
    raise RuntimeError(f"gunicorn did not log {pattern.pattern!r} within {START_SECONDS} s")


@contextmanager
def running_gunicorn(
    database_url: str, log: Path, workers: int = 2, **environment: str
) -> Iterator[Server]:
    """gunicorn serving `wsgi:app` over `database_url` with gunicorn.conf.py, until the end."""
    env = {**os.environ, "DATABASE_URL": database_url, "SECRET_KEY": "server-test", **environment}
    command = [
        str(GUNICORN),
        f"--config={CONFIG}",
        "--bind=127.0.0.1:0",
        f"--workers={workers}",
        "--log-level=info",
        f"--error-logfile={log}",
        "--access-logfile=/dev/null",
        "wsgi:app",
    ]
    process = subprocess.Popen(command, cwd=ROOT, env=env)
    try:
        port = int(wait_for_log(log, LISTENING, process))
        server = Server(process, port, log)
        deadline = time.monotonic() + START_SECONDS
        while len(set(server.worker_pids())) < workers and time.monotonic() < deadline:
            time.sleep(0.05)
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass(frozen=True)
class Answer:
    """What came back on one connection: the status (None when nothing did) and the rest."""

    status: int | None
    head: str
    body: bytes
    seconds: float
    timed_out: bool

    def header(self, name: str) -> str | None:
        """A header's value, by case-insensitive name."""
        for line in self.head.split("\r\n")[1:]:
            key, _, value = line.partition(":")
            if key.strip().lower() == name.lower():
                return value.strip()
        return None


STATUS_LINE = re.compile(r"HTTP/\d\.\d (\d{3})")


def exchange(port: int, data: bytes, timeout: float = 5.0) -> Answer:
    """Send `data` as is on a new connection, close our side, read until the server closes.

    Closing our side first means a request that promised more bytes than it sent ends
    rather than waits, so any answer slower than `timeout` is the server's own doing.
    """
    started = time.monotonic()
    received = bytearray()
    timed_out = False
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
        try:
            connection.sendall(data)
            connection.shutdown(socket.SHUT_WR)
        except OSError:  # the server answered and closed before taking every byte
            pass
        deadline = started + timeout
        while True:
            connection.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = connection.recv(65536)
            except TimeoutError:
                timed_out = True
                break
            except OSError:
                break
            if not chunk:
                break
            received += chunk
    head, _, body = bytes(received).partition(b"\r\n\r\n")
    # An interim answer (100 Continue) comes before the final one.
    while head.startswith(b"HTTP/1.1 1") and body.startswith(b"HTTP/"):
        head, _, body = body.partition(b"\r\n\r\n")
    head_text = head.decode("latin-1")
    match = STATUS_LINE.match(head_text)
    status = int(match.group(1)) if match else None
    return Answer(status, head_text, body, time.monotonic() - started, timed_out)
