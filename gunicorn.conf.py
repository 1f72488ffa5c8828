"""gunicorn's settings for Vectorize Tasks: `gunicorn --config gunicorn.conf.py wsgi:app`.

The command line may add to them (`--workers`, `--bind`, log files); the limits and timeouts
below are the ones the app is built for.
"""

from __future__ import annotations

import math
import os

import gunicorn.http.message

from app.filters import MAX_TAGS
from app.models import TAG_MAX_LENGTH

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
# export's after EXPORT_STATEMENT_TIMEOUT_MS; these are the same variables, with the same
# defaults, that the app reads. A worker is given the longer of the two and a margin to
# answer with the timeout's error before gunicorn would kill it, and a restart lets a
# running export finish the same way.
STATEMENT_TIMEOUT_MS = int(os.environ.get("STATEMENT_TIMEOUT_MS", "10000"))
EXPORT_STATEMENT_TIMEOUT_MS = int(os.environ.get("EXPORT_STATEMENT_TIMEOUT_MS", "300000"))
MARGIN_SECONDS = 30
timeout = math.ceil(max(STATEMENT_TIMEOUT_MS, EXPORT_STATEMENT_TIMEOUT_MS) / 1000) + MARGIN_SECONDS
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
# Client, request line, status, response bytes, time taken, referrer and user agent.
access_log_format = '%(h)s "%(r)s" %(s)s %(B)s %(M)sms "%(f)s" "%(a)s"'
