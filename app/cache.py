"""Counts and rendered lists shared by everyone watching the same view.

A view's counts (the page's chips, `/tasks/counts`) are kept under its filter and the data
version (app/query/versions.py), and its rendered list under its ETag: while no task
changes, a thousand viewers of one view cost one count and one rendering a minute. They are
kept in the process by default (a small LRU whose entries expire), or in Redis when
`CACHE_URL=redis://…` is set, so that every server behind one address shares them. A cache
that cannot be reached is skipped, with a warning in the log: the counts are then computed
and the lists rendered as if there were no cache, never an error.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from flask import Flask, current_app

from app.filters import DEFAULT_LIMIT, TaskFilter
from app.query import (
    DataVersion,
    ErrorGroup,
    Facets,
    Histogram,
    count_facets,
    data_version,
    task_histogram,
    top_errors,
)
from app.query.engines import Executor

logger = logging.getLogger(__name__)

# Entries never go stale (the data version is in the key); the time to live only lets the
# keys of versions gone by leave.
TTL_SECONDS = 300
MEMORY_ENTRIES = 512
# Rendered lists are larger (up to about 200 kB for 100 rows).
RENDERED_ENTRIES = 64
# Redis answers on a LAN in well under a millisecond; one that takes longer is treated as down.
SOCKET_TIMEOUT_SECONDS = 0.25
# After a failure, how long counts go without the cache before it is tried again.
RETRY_SECONDS = 5.0
# Bumped when what is kept under a key changes shape.
KEY_FORMAT = "counts-2"
REDIS_SCHEMES = ("redis", "rediss", "unix")


class Cache(Protocol):
    """Text kept under a key for a while."""

    def get(self, key: str) -> str | None:
        """The text kept under `key`, or None."""

    def set(self, key: str, value: str) -> None:
        """Keep `value` under `key`."""


class MemoryCache:
    """A bounded, thread-safe LRU in this process whose entries expire."""

    def __init__(
        self,
        entries: int = MEMORY_ENTRIES,
        ttl: float = TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.entries, self.ttl, self.clock = entries, ttl, clock
        self.kept: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: str) -> str | None:
        """The text kept under `key` if it has not expired."""
        with self.lock:
            found = self.kept.get(key)
            if found is None:
                return None
            if found[0] <= self.clock():
                del self.kept[key]
                return None
            self.kept.move_to_end(key)
            return found[1]

    def set(self, key: str, value: str) -> None:
        """Keep `value`, forgetting the least recently used entry when full."""
        with self.lock:
            self.kept[key] = (self.clock() + self.ttl, value)
            self.kept.move_to_end(key)
            while len(self.kept) > self.entries:
                self.kept.popitem(last=False)


class RedisCache:
    """Redis shared by every server; skipped for a few seconds after it fails to answer."""

    def __init__(self, url: str, prefix: str, ttl: int = TTL_SECONDS):
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self.errors: tuple[type[Exception], ...] = (redis.RedisError, OSError)
        self.client = redis.Redis.from_url(
            url,
            socket_timeout=SOCKET_TIMEOUT_SECONDS,
            socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
            # A request must not wait for a cache that is down: one try, then skip it.
            retry=Retry(NoBackoff(), 0),
        )
        self.where = redis_address(url)
        self.prefix, self.ttl = prefix, ttl
        self.skip_until = 0.0

    def get(self, key: str) -> str | None:
        """The text kept under `key`, or None (also when Redis cannot be reached)."""
        value = self.attempt(lambda: self.client.get(self.prefix + key))
        return value.decode() if isinstance(value, bytes) else None

    def set(self, key: str, value: str) -> None:
        """Keep `value` for the time to live; nothing when Redis cannot be reached."""
        self.attempt(lambda: self.client.set(self.prefix + key, value, ex=self.ttl))

    def ping(self) -> None:
        """Ask Redis for an answer now, raising if none comes (for /readyz)."""
        self.client.ping()

    def attempt(self, operation: Callable[[], Any]) -> Any:
        """Run `operation`, or skip it while Redis is known to be unreachable."""
        if time.monotonic() < self.skip_until:
            return None
        try:
            return operation()
        except self.errors as error:
            self.skip_until = time.monotonic() + RETRY_SECONDS
            logger.warning(
                "cache at %s cannot be reached (%s); counting without it for %.0f s",
                self.where,
                error,
                RETRY_SECONDS,
            )
            return None


# One lock per key being made in this process; a key's lock goes once nobody holds it.
MAKING: weakref.WeakValueDictionary[str, threading.Lock] = weakref.WeakValueDictionary()
MAKING_LOCK = threading.Lock()


def kept_or_made(cache: Cache, key: str, make: Callable[[], str]) -> str:
    """The text kept under `key`, or `make()` kept there.

    Of the threads of this process that miss the same key at once, one makes it and the
    others wait for it: when a view changes, its viewers all ask within one refresh, and
    each would otherwise count and render it again.
    """
    if (kept := cache.get(key)) is not None:
        return kept
    with MAKING_LOCK:
        lock = MAKING.setdefault(key, threading.Lock())
    with lock:
        if (kept := cache.get(key)) is not None:
            return kept
        made = make()
        cache.set(key, made)
        return made


def redis_address(url: str) -> str:
    """The URL without its password, for the log."""
    import redis

    kwargs = redis.connection.parse_url(url)
    if "path" in kwargs:
        return f"unix:{kwargs['path']}"
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"


def make_cache(url: str, prefix: str, entries: int = MEMORY_ENTRIES) -> Cache:
    """The cache `CACHE_URL` names: in this process (`entries` at most) when empty, else Redis."""
    if not url:
        return MemoryCache(entries)
    scheme = url.partition("://")[0].lower()
    if scheme not in REDIS_SCHEMES:
        raise ValueError(f"CACHE_URL: {scheme!r} is not redis://, rediss:// or unix://")
    return RedisCache(url, prefix)


def counts_key(task_filter: TaskFilter, version: DataVersion, kind: str = "counts") -> str:
    """The key of a view's counts (or chart, or top errors: `kind`): its filter without
    what does not change them, and the data version. Page, order and page size leave the
    counts as they are."""
    counted = task_filter.to_args(limit=DEFAULT_LIMIT, offset=0, cursor=None, order="desc")
    limits = task_filter.stall_limits.minutes  # the setting stalled tasks are counted by
    text = json.dumps([KEY_FORMAT, counted, limits, version.token])
    return f"{kind}:" + hashlib.sha256(text.encode()).hexdigest()[:32]


def shared_facets(
    executor: Executor,
    task_filter: TaskFilter,
    now: datetime,
    version: DataVersion | None = None,
) -> Facets:
    """The view's counts from the cache, or counted and kept there for the next viewer.

    `version` is read here unless the caller has read it already.
    """
    cache: Cache = current_app.extensions["counts_cache"]
    key = counts_key(task_filter, version or data_version(executor, now))
    kept = kept_or_made(
        cache, key, lambda: json.dumps(count_facets(executor, task_filter, now).as_json())
    )
    return Facets.from_json(json.loads(kept))


def shared_histogram(
    executor: Executor, task_filter: TaskFilter, now: datetime, version: DataVersion
) -> Histogram:
    """The view's chart from the cache, or counted and kept there, as its counts are."""
    cache: Cache = current_app.extensions["counts_cache"]
    key = counts_key(task_filter, version, "chart")

    def make() -> str:
        return json.dumps(task_histogram(executor, task_filter, now).as_json())

    return Histogram.from_json(json.loads(kept_or_made(cache, key, make)))


def shared_errors(
    executor: Executor, task_filter: TaskFilter, now: datetime, version: DataVersion, limit: int
) -> list[ErrorGroup]:
    """The view's `limit` most common errors from the cache, or grouped and kept there."""
    cache: Cache = current_app.extensions["counts_cache"]
    key = counts_key(task_filter, version, f"errors-{limit}")

    def make() -> str:
        groups = top_errors(executor, task_filter, now, limit)
        return json.dumps([group.as_json() for group in groups])

    return [ErrorGroup.from_json(group) for group in json.loads(kept_or_made(cache, key, make))]


def init_app(app: Flask) -> None:
    """Make the caches `CACHE_URL` names (a typo in it fails at start-up): one for counts,
    one for rendered lists (see app/pages/list_page.py), which are larger, so fewer are kept in a
    process."""
    url, prefix = app.config["CACHE_URL"], app.config["CACHE_KEY_PREFIX"]
    app.extensions["counts_cache"] = make_cache(url, prefix)
    app.extensions["rendered_lists"] = make_cache(url, prefix, RENDERED_ENTRIES)
