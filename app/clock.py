"""The current time, in one place, so tests can fix it."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import current_app


def utcnow() -> datetime:
    """The current instant, aware and in UTC."""
    return datetime.now(UTC)


def request_time() -> datetime:
    """The instant a request's time window is measured from (`CLOCK` in the app config)."""
    return current_app.config["CLOCK"]()


def display_now(now: datetime) -> datetime:
    """The request time to the minute: relative times then change once a minute, not on
    every request, so an unchanged list keeps its ETag (the page's script counts on)."""
    return now.replace(second=0, microsecond=0)
