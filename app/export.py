"""Every matching task as a CSV or NDJSON download, streamed row by row.

Rows come from `query.iter_tasks`, which reads one keyset batch at a time, and leave as soon
as they are written: exporting a million tasks holds one batch in memory, never the list.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import chain, islice
from typing import Any

from flask import Response, stream_with_context
from werkzeug.datastructures import MultiDict

from app.query import LIST_COLUMNS, TaskRow

Serialise = Callable[[TaskRow], dict[str, Any]]

# The same fields in the same order as an item of the JSON list.
EXPORT_COLUMNS = ("id", *(name for name in LIST_COLUMNS if name != "id"))
# A page does not make sense for a download of every match.
PAGE_PARAMETERS = ("limit", "offset", "cursor")
PAGE_PARAMETER_MESSAGE = "an export streams every match; leave out limit, offset and cursor"
# Rows per chunk handed to the server: small enough to stay flat, large enough to be quick.
CHUNK_ROWS = 500
# Free-text cells a spreadsheet would run as a formula if they started with one of these.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
TEXT_COLUMNS = frozenset({"tag", "error_msg", "summary"})


def page_parameter_errors(args: MultiDict[str, str]) -> dict[str, list[str]]:
    """The paging parameters an export refuses, each with the reason."""
    return {name: [PAGE_PARAMETER_MESSAGE] for name in PAGE_PARAMETERS if name in args}


def csv_cell(column: str, value: Any) -> str:
    """One CSV cell: empty for null, and text that looks like a formula kept as text."""
    if value is None:
        return ""
    text = str(value)
    if column in TEXT_COLUMNS and text.startswith(FORMULA_PREFIXES):
        return "'" + text
    return text


def csv_line(cells: Iterable[str]) -> str:
    """One CSV record, quoted as RFC 4180 says, ending in CRLF."""
    buffer = io.StringIO()
    csv.writer(buffer).writerow(list(cells))
    return buffer.getvalue()


def csv_record(item: dict[str, Any]) -> str:
    """A task as a CSV record, in the header's column order."""
    return csv_line(csv_cell(column, item[column]) for column in EXPORT_COLUMNS)


def ndjson_record(item: dict[str, Any]) -> str:
    """A task as one line of JSON, the same object the JSON list holds."""
    return json.dumps(item, ensure_ascii=False) + "\n"


@dataclass(frozen=True)
class ExportFormat:
    """A download format: its media type, file extension, header and record writer."""

    mimetype: str
    extension: str
    header: str
    record: Callable[[dict[str, Any]], str]


EXPORT_FORMATS = {
    "csv": ExportFormat("text/csv", "csv", csv_line(EXPORT_COLUMNS), csv_record),
    "ndjson": ExportFormat("application/x-ndjson", "ndjson", "", ndjson_record),
}


def chunks(
    first: list[TaskRow],
    rows: Generator[TaskRow, None, None],
    export_format: ExportFormat,
    serialise: Serialise,
) -> Iterator[str]:
    """The download's text, a chunk of rows at a time.

    When the download ends, finished or cut off, `rows` is closed at once, and with it
    the connection it reads from, rather than whenever it is collected.
    """
    try:
        if export_format.header:
            yield export_format.header
        remaining = chain(first, rows)
        while batch := list(islice(remaining, CHUNK_ROWS)):
            yield "".join(export_format.record(serialise(row)) for row in batch)
    finally:
        rows.close()


def export_response(
    rows: Generator[TaskRow, None, None],
    export_format: ExportFormat,
    serialise: Serialise,
    now: datetime,
) -> Response:
    """A streamed download of `rows`.

    The first batch is read before the response starts, so a database that cannot be
    reached answers 503 instead of a download cut off after its header.
    """
    first = list(islice(rows, 1))
    body = stream_with_context(chunks(first, rows, export_format, serialise))
    response = Response(body, mimetype=export_format.mimetype)
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    filename = f"tasks-{stamp}.{export_format.extension}"
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    # Proxies such as nginx would otherwise hold the whole download before sending it on.
    response.headers["X-Accel-Buffering"] = "no"
    return response
