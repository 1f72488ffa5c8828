"""What a gunicorn config names: a logger without probe lines, and the metrics' server hooks.

In gunicorn.conf.py:

    from app.serving import child_exit, on_starting
    logger_class = "app.serving.QuietProbesLogger"

Nothing here imports prometheus_client when loaded: gunicorn's master loads this module,
and prometheus_client picks its multi-process mode when first imported, which must happen
after PROMETHEUS_MULTIPROC_DIR is set.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

from gunicorn.glogging import Logger

# The probe and scrape routes (app/health.py, app/metrics.py): asked every few seconds by
# machines, they would bury the requests of people and scripts in the access log.
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class QuietProbesLogger(Logger):
    """gunicorn's logger, without access lines for health checks and metrics scrapes."""

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: timedelta) -> None:
        if environ.get("PATH_INFO") in QUIET_PATHS:
            return
        super().access(resp, req, environ, request_time)


def metrics_directory() -> Path | None:
    """The folder of the workers' metric files, when multi-process mode is on."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return Path(folder) if folder else None


def on_starting(server: Any) -> None:
    """Forget the metric files of an earlier run: counts start at zero with the server."""
    folder = metrics_directory()
    if folder is None:
        return
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()


def child_exit(server: Any, worker: Any) -> None:
    """Let prometheus_client drop what only a live worker may report."""
    if metrics_directory() is None:
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
