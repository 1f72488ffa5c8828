"""The web page: the task list with htmx filters, the task page and the embed view.

One blueprint (`pages`, blueprint.py) with its routes beside what they render:

- list_page.py: `/`, `/embed` and their results region and chart (`/insights`)
- task_page.py: one task, `/task/<id>` and `/embed/task/<id>`
- views.py: which list (the page or the embed), its URLs, reading the query string
- results.py: what the results region shows: chips, applied filters, pager, links
- etags.py: a list's ETag, known before it is rendered
- words.py: labels, and times, durations and counts as people read them
- htmx.py: where htmx comes from and how it is configured
"""

from __future__ import annotations

from typing import Any

from flask import Flask

from app.filters import STATUSES, format_timestamp
from app.models import TASK_TYPES
from app.pages import list_page, task_page  # noqa: F401 (their routes join the blueprint)
from app.pages.blueprint import bp
from app.pages.etags import render_fingerprint
from app.pages.htmx import HTMX_CONFIG, HtmxAsset, htmx_asset
from app.pages.list_page import RESULTS_ID
from app.pages.results import LIVE_STATUSES
from app.pages.views import PAGE_SIZES, WINDOW_CHOICES
from app.pages.words import (
    CANCELLING_ICON,
    ERROR_PREVIEW_CHARACTERS,
    EVENT_LABELS,
    STATUS_ICONS,
    STATUS_LABELS,
    TYPE_LABELS,
    stalled_text,
    task_duration,
    thousands,
    time_ago,
    total_text,
    utc_text,
)
from app.search import mark_words


def template_helpers(asset: HtmxAsset) -> dict[str, Any]:
    """Names every template may use."""
    return {
        "htmx": asset,
        "htmx_config": HTMX_CONFIG,
        "results_id": RESULTS_ID,
        "type_labels": TYPE_LABELS,
        "status_labels": STATUS_LABELS,
        "status_icons": STATUS_ICONS,
        "cancelling_icon": CANCELLING_ICON,
        "window_choices": WINDOW_CHOICES,
        "page_sizes": PAGE_SIZES,
        "task_types": TASK_TYPES,
        "statuses": STATUSES,
        "live_statuses": LIVE_STATUSES,
        "error_preview": ERROR_PREVIEW_CHARACTERS,
        "time_ago": time_ago,
        "task_duration": task_duration,
        "stalled_text": stalled_text,
        "event_labels": EVENT_LABELS,
    }


def init_app(app: Flask) -> None:
    """Register the pages and their template helpers."""
    asset = htmx_asset(app)
    app.extensions["render_fingerprint"] = render_fingerprint(app)
    app.register_blueprint(bp)
    app.context_processor(lambda: template_helpers(asset))
    app.add_template_filter(format_timestamp, "iso")
    app.add_template_filter(utc_text, "utc")
    app.add_template_filter(thousands, "thousands")
    app.add_template_filter(total_text, "total_text")
    app.add_template_filter(mark_words, "mark")
