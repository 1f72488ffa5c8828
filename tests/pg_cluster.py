"""Private PostgreSQL clusters for tests that stop, freeze or replicate a server.

Each cluster lives in a temporary folder on a free port and is started with PostgreSQL's own
tools (`initdb`, `pg_ctl`, `pg_basebackup`); the shared server on 5432 is never touched.
initdb and postgres refuse to run as root, so as root they run as the `postgres` user.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import unavailable
from server_support import free_port


def server_tools() -> Path:
    """Where initdb, pg_ctl and pg_basebackup are: POSTGRESQL_BIN, else Debian's newest."""
    if folder := os.environ.get("POSTGRESQL_BIN"):
        return Path(folder)
    installed = Path("/usr/lib/postgresql").glob("*/bin")
    return max(installed, key=lambda bin_: float(bin_.parent.name), default=Path("/nonexistent"))


BIN = server_tools()
# Small and unsafe on purpose: these clusters hold a few rows and die with the test run.
SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "shared_buffers": "'16MB'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "wal_level": "replica",
    "max_wal_senders": "4",
    "hot_standby": "on",
    "logging_collector": "off",
}


def as_postgres(*command: str | Path) -> list[str]:
    """The command, run as the `postgres` user when we are root."""
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    return [*prefix, *map(str, command)]


def run(*command: str | Path) -> None:
    """Run a PostgreSQL tool; its output becomes the failure message if it fails."""
    done = subprocess.run(as_postgres(*command), capture_output=True, text=True, timeout=120)
    if done.returncode:
        raise RuntimeError(f"{command[0]} failed:\n{done.stdout}{done.stderr}")


class Cluster:
    """One PostgreSQL server in a folder of its own."""

    def __init__(self, root: Path, name: str):
        self.data = root / name
        self.log = root / f"{name}.log"
        self.port = free_port()

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of its `postgres` database."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def init(self) -> Cluster:
        """A new, empty cluster whose settings suit a throwaway test server."""
        run(BIN / "initdb", "-D", self.data, "-U", "postgres", "-A", "trust", "--no-sync")
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{name} = {value}\n" for name, value in SETTINGS.items())
        return self

    def copy_of(self, primary: Cluster) -> Cluster:
        """A streaming replica of `primary` (pg_basebackup -R writes the standby settings)."""
        run(
            BIN / "pg_basebackup",
            *("-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres"),
            *("-D", self.data, "-R", "-X", "stream", "-c", "fast", "--no-sync"),
        )
        return self

    def start(self) -> Cluster:
        """Start the server and wait until it accepts connections."""
        options = f"-p {self.port} -k {self.data}"
        run(BIN / "pg_ctl", "-D", self.data, "-l", self.log, "-o", options, "-w", "start")
        return self

    def stop(self, mode: str = "immediate") -> None:
        """Stop the server (at once by default), cutting off its clients."""
        self.thaw()
        run(BIN / "pg_ctl", "-D", self.data, "-m", mode, "-w", "stop")

    def processes(self) -> list[int]:
        """The server's process ids: the postmaster and every process it started."""
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == postmaster:
                children.append(int(stat.parent.name))
        return [postmaster, *children]

    def signal(self, number: signal.Signals) -> None:
        """Send every process of the server the same signal."""
        for pid in self.processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, number)

    def freeze(self) -> None:
        """Stop every process of the server (SIGSTOP): connections open but nothing answers."""
        self.signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """Let a frozen server run again (SIGCONT)."""
        if (self.data / "postmaster.pid").exists():
            self.signal(signal.SIGCONT)


def cluster_folder() -> Iterator[Path]:
    """A temporary folder the `postgres` user owns, removed afterwards."""
    if not (BIN / "initdb").exists():
        unavailable(f"PostgreSQL's server tools are not in {BIN} (set POSTGRESQL_BIN)")
    root = Path(tempfile.mkdtemp(prefix="vt-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def pg_server() -> Iterator[Cluster]:
    """A private PostgreSQL server, started for one test module and stopped after it."""
    for root in cluster_folder():
        primary = Cluster(root, "primary").init().start()
        try:
            yield primary
        finally:
            primary.stop()


@pytest.fixture(scope="module")
def pg_replica(pg_server: Cluster) -> Iterator[Cluster]:
    """A streaming replica of `pg_server`, made by pg_basebackup -R on another port."""
    replica = Cluster(pg_server.data.parent, "replica").copy_of(pg_server).start()
    try:
        yield replica
    finally:
        replica.stop()
