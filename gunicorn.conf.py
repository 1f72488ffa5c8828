"""gunicorn's settings for Vectorize Tasks: `gunicorn --config gunicorn.conf.py wsgi:app`.

The command line may add to them (`--workers`, `--bind`, log files); the limits and timeouts
below are the ones the app is built for.
"""

from __future__ import annotations

import math

import gunicorn.http.message

from app.config import statement_timeout_ms
from app.filters import MAX_TAGS
from app.models import TAG_MAX_LENGTH

# Metrics under several workers (PROMETHEUS_MULTIPROC_DIR): an earlier run's files are
# forgotten at start, and a worker that exits is told to prometheus_client.
from app.serving import child_exit, on_starting  # noqa: F401  (gunicorn hooks, by name)

# -- request limits: the longest request the API accepts, and no more ----------------------

# A tag character percent-encoded as UTF-8 takes up to 12 bytes (four bytes, each "%XX").
ENCODED_CHARACTER_BYTES = 12
# Every other parameter at its longest (five types, five statuses, both timestamps with
# microseconds and an offset, a cursor, limit, order, count, the names and separators of
# all of them), the longest path, the method and the version: under 1 KB; this leaves room.
OTHER_REQUEST_LINE_BYTES = 2048
# 20 tags of 128 characters: 30,720 bytes of tags, 32,768 in all.
limit_request_line = MAX_TAGS * TAG_MAX_LENGTH * ENCODED_CHARACTER_BYTES + OTHER_REQUEST_LINE_BYTES
# A header may carry the same URL: htmx sends the page's address in HX-Current-URL, and the
# browser in Referer, with the scheme and a host name of up to 253 characters in front.
limit_request_field_size = limit_request_line + 1024
limit_request_fields = 100

# gunicorn takes a request line of at most 8,190 bytes, or an unlimited one (0). The API's
# longest is four times that, and unlimited would let one client fill a worker's memory, so
# the ceiling is raised to our limit. Fail at start-up rather than cut requests short
# should a gunicorn release move the ceiling elsewhere.
if not hasattr(gunicorn.http.message, "MAX_REQUEST_LINE"):
    raise RuntimeError("gunicorn.http.message.MAX_REQUEST_LINE is gone: check limit_request_line")
gunicorn.http.message.MAX_REQUEST_LINE = max(
    gunicorn.http.message.MAX_REQUEST_LINE, limit_request_line
)

# -- workers and timeouts ----------------------------------------------------------------------

# Threads let a long export stream while the same worker serves other requests.
worker_class = "gthread"
threads = 4

# The database ends a statement after STATEMENT_TIMEOUT_MS (a list, a count, a task) and an
# export's after EXPORT_STATEMENT_TIMEOUT_MS, read here as the app reads them. A worker is
# given the longer of the two and a margin to answer with the timeout's error before
# gunicorn would kill it, and a restart lets a running export finish the same way.
MARGIN_SECONDS = 30
longest_ms = max(statement_timeout_ms(), statement_timeout_ms(export=True))
timeout = math.ceil(longest_ms / 1000) + MARGIN_SECONDS
graceful_timeout = timeout
keepalive = 5

# Each worker is replaced, gracefully, after about this many requests, so that memory a
# worker gathers over days is given back; the jitter keeps workers from restarting together.
max_requests = 10_000
max_requests_jitter = 1_000

# -- proxies ----------------------------------------------------------------------------------

# X-Forwarded-* headers are the app's to believe or not (TRUSTED_PROXIES). By default gunicorn
# believes them from 127.0.0.1 too, and would take any local client's X-Forwarded-Proto for
# the scheme; here it believes no one.
forwarded_allow_ips = ""

# -- logs -------------------------------------------------------------------------------------

accesslog = "-"
# Health checks and scrapes stay out of the access log.
logger_class = "app.serving.QuietProbesLogger"
# Client, request line, status, response bytes, time taken, referrer and user agent.
access_log_format = '%(h)s "%(r)s" %(s)s %(B)s %(M)sms "%(f)s" "%(a)s"'
