"""The filter definition: args round trips, strict and lenient readings, signed cursors."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import parse_qsl, urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st
from werkzeug.datastructures import MultiDict

from app.filters import (
    LATEST,
    MAX_LIMIT,
    MAX_OFFSET,
    MAX_TAGS,
    MAX_WITHIN_HOURS,
    ORDERS,
    STATUSES,
    Cursor,
    CursorError,
    TaskFilter,
    _b64,
    _signature,
    format_timestamp,
    parse_filter,
    read_cursor,
    sign_cursor,
)
from app.models import TAG_MAX_LENGTH, TASK_TYPES

KEY = "test-secret"

ZONES = st.sampled_from(
    [UTC, timezone(timedelta(hours=14)), timezone(-timedelta(hours=9, minutes=30))]
)
INSTANTS = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(9998, 12, 31), timezones=ZONES
)
# What a tag may hold: any printable text, spaces at either end included.
TAG_TEXT = st.text(
    st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=TAG_MAX_LENGTH
)


def subsets(values: tuple[str, ...]) -> st.SearchStrategy[tuple[str, ...]]:
    """A subset in the canonical order the parser gives."""
    return st.sets(st.sampled_from(values)).map(
        lambda chosen: tuple(v for v in values if v in chosen)
    )


@st.composite
def task_filters(draw: st.DrawFn) -> TaskFilter:
    """Any filter the parser can give."""
    created_after = draw(st.none() | INSTANTS)
    created_before = draw(st.none() | INSTANTS)
    if created_after is not None and created_before is not None:
        created_after, created_before = sorted((created_after, created_before))
        if created_after == created_before:
            created_before = None
    order = draw(st.sampled_from(ORDERS))
    cursor = None
    offset = 0
    if draw(st.booleans()):
        cursor = sign_cursor(draw(INSTANTS), draw(st.uuids()), order, KEY)
    else:
        offset = draw(st.integers(0, MAX_OFFSET))
    return TaskFilter(
        task_types=draw(subsets(TASK_TYPES)),
        statuses=draw(subsets(STATUSES)),
        within_hours=draw(st.none() | st.integers(1, MAX_WITHIN_HOURS)),
        created_after=created_after,
        created_before=created_before,
        tags=tuple(sorted(draw(st.sets(TAG_TEXT, max_size=MAX_TAGS)))),
        limit=draw(st.integers(1, MAX_LIMIT)),
        offset=offset,
        cursor=cursor,
        order=order,
        exact_count=draw(st.booleans()),
    )


def parse(args, *, strict: bool = True):
    return parse_filter(MultiDict(args), secret_key=KEY, strict=strict)


# -- round trips -----------------------------------------------------------------------------


@given(task_filters())
def test_parsing_to_args_gives_the_same_filter(task_filter):
    parsed = parse(task_filter.to_args())
    assert parsed.errors == {}
    assert parsed.value == task_filter


@given(task_filters())
def test_args_survive_a_query_string(task_filter):
    query = urlencode(task_filter.to_args())
    assert parse(parse_qsl(query, keep_blank_values=True)).value == task_filter


@given(task_filters())
def test_lenient_reading_of_to_args_gives_the_same_filter(task_filter):
    assert parse(task_filter.to_args(), strict=False).value == task_filter


@given(task_filters())
def test_round_trip_keeps_the_cursor_position(task_filter):
    parsed = parse(task_filter.to_args()).value
    if task_filter.cursor is None:
        assert parsed.cursor is None
    else:
        original, reread = task_filter.cursor, parsed.cursor
        assert (reread.created_at, reread.id, reread.order) == (
            original.created_at,
            original.id,
            original.order,
        )


def test_default_filter_has_no_args():
    assert TaskFilter().to_args() == []


def test_to_args_applies_changes_without_touching_the_filter():
    task_filter = TaskFilter(statuses=("failed",), offset=40)
    assert task_filter.to_args(offset=60) == [("status", "failed"), ("offset", "60")]
    assert task_filter.offset == 40


def test_first_page_drops_offset_and_cursor():
    cursor = sign_cursor(datetime(2026, 1, 1, tzinfo=UTC), uuid.uuid4(), "desc", KEY)
    assert TaskFilter(offset=5, cursor=cursor).first_page == TaskFilter()


def test_parse_gives_the_canonical_order():
    args = [("status", "failed"), ("status", "Q"), ("task_type", "synthesis")]
    args += [("task_type", "model_upload"), ("tag", "b"), ("tag", "a"), ("tag", "b")]
    value = parse(args).value
    assert value.statuses == ("queued", "failed")
    assert value.task_types == ("model_upload", "synthesis")
    assert value.tags == ("a", "b")


# -- strict and lenient ----------------------------------------------------------------------

EMPTY_VALUES = [("status", ""), ("task_type", ""), ("within_hours", ""), ("tag", "")]
EMPTY_VALUES += [("created_after", ""), ("limit", ""), ("cursor", ""), ("order", "")]


@pytest.mark.parametrize(("name", "value"), EMPTY_VALUES)
def test_strict_refuses_an_empty_value(name, value):
    assert parse([(name, value)]).errors == {name: ["must not be empty"]}


@pytest.mark.parametrize(("name", "value"), EMPTY_VALUES)
def test_lenient_reads_an_empty_value_as_not_set(name, value):
    parsed = parse([(name, value)], strict=False)
    assert (parsed.errors, parsed.value) == ({}, TaskFilter())


def test_lenient_keeps_the_other_values_beside_empty_ones():
    args = [("status", ""), ("status", "failed"), ("within_hours", ""), ("limit", "50")]
    assert parse(args, strict=False).value == TaskFilter(statuses=("failed",), limit=50)


@pytest.mark.parametrize("name", ["statuss", "page", "query", "Status"])
def test_strict_refuses_an_unknown_name(name):
    errors = parse([(name, "failed")]).errors
    assert list(errors) == [name]
    assert errors[name][0].startswith("unknown parameter")


@pytest.mark.parametrize("name", ["statuss", "page", "query", "Status"])
def test_lenient_ignores_an_unknown_name(name):
    parsed = parse([(name, "failed")], strict=False)
    assert (parsed.errors, parsed.value) == ({}, TaskFilter())


@pytest.mark.parametrize("name", ["created_after", "created_before"])
@pytest.mark.parametrize("raw", ["2026-11-01T09:30:00", "2026-11-01"])
def test_strict_refuses_a_timestamp_without_zone_showing_one_that_works(name, raw):
    errors = parse([(name, raw)]).errors
    assert errors[name] == [
        f"{raw!r} needs a time and a zone, such as 2026-11-28T09:00:00Z or +01:00"
    ]


def test_a_lower_case_z_is_utc_as_rfc_3339_allows():
    value = parse([("created_after", "2026-11-01t09:30:00z")]).value
    assert value.created_after == datetime(2026, 11, 1, 9, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "errors", "instant"),
    [
        ("9999-12-31T23:00:00-05:00", {}, LATEST),
        ("0001-01-01T00:30:00+01:00", {"created_after": ["must not be before 1970"]}, None),
    ],
)
def test_an_instant_past_the_calendar_is_the_last_one_or_before_1970(raw, errors, instant):
    parsed = parse([("created_after", raw)])
    assert parsed.errors == errors
    assert (parsed.value.created_after if parsed.value else None) == instant


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("limit", "9999999999999", "must be from 1 to 100"),
        ("limit", "1" + "0" * 5000, "must be from 1 to 100"),
        ("offset", "-" + "9" * 40, "must be from 0 to 10000; reach deeper pages with cursor"),
        ("within_hours", "00000000000000000024", None),
    ],
)
def test_a_number_of_many_digits_is_out_of_range_not_malformed(name, raw, message):
    parsed = parse([(name, raw)])
    assert parsed.errors == ({name: [message]} if message else {})


@pytest.mark.parametrize("name", ["created_after", "created_before"])
def test_lenient_reads_a_timestamp_without_zone_as_utc(name):
    value = parse([(name, "2026-11-01T09:30:00")], strict=False).value
    assert getattr(value, name) == datetime(2026, 11, 1, 9, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "instant"),
    [
        ("2026-11-01T09:30:00Z", datetime(2026, 11, 1, 9, 30, tzinfo=UTC)),
        ("2026-11-01T10:30:00+01:00", datetime(2026, 11, 1, 9, 30, tzinfo=UTC)),
        ("2026-11-01T09:30:00.000001Z", datetime(2026, 11, 1, 9, 30, 0, 1, tzinfo=UTC)),
        ("2026-11-01", datetime(2026, 11, 1, tzinfo=UTC)),
    ],
)
def test_lenient_reads_timestamps_as_instants(raw, instant):
    assert parse([("created_after", raw)], strict=False).value.created_after == instant


@pytest.mark.parametrize("strict", [True, False])
@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("status", "done"),
        ("within_hours", "0"),
        ("limit", "abc"),
        ("created_after", "yesterday"),
        ("created_after", "1969-12-31T23:59:59Z"),
        ("tag", "x" * (TAG_MAX_LENGTH + 1)),
        ("cursor", "garbage"),
    ],
)
def test_both_readings_refuse_a_bad_value(strict, name, value):
    assert name in parse([(name, value)], strict=strict).errors


def test_strict_refuses_a_repeated_single_value():
    assert parse([("order", "asc"), ("order", "asc")]).errors == {"order": ["given more than once"]}


def test_too_many_tags_are_refused():
    errors = parse([("tag", f"t{n}") for n in range(MAX_TAGS + 1)]).errors
    assert list(errors) == ["tag"]


# -- cursors ---------------------------------------------------------------------------------


@given(INSTANTS, st.uuids(), st.sampled_from(ORDERS))
def test_a_signed_cursor_reads_back_as_its_position(created_at, task_id, order):
    token = sign_cursor(created_at, task_id, order, KEY).token
    assert read_cursor(token, KEY) == Cursor(created_at, task_id, order)


@given(INSTANTS, st.uuids(), st.sampled_from(ORDERS))
def test_a_cursor_token_is_url_safe(created_at, task_id, order):
    token = sign_cursor(created_at, task_id, order, KEY).token
    assert urlencode({"cursor": token}) == f"cursor={token}"


@given(
    st.uuids(),
    st.integers(min_value=0),
    st.characters(categories=("L", "N", "P", "S")),
)
def test_a_changed_character_is_refused(task_id, position, replacement):
    token = sign_cursor(datetime(2026, 11, 28, tzinfo=UTC), task_id, "desc", KEY).token
    index = position % len(token)
    if token[index] == replacement:
        replacement = "A" if replacement != "A" else "B"
    tampered = token[:index] + replacement + token[index + 1 :]
    with pytest.raises(CursorError):
        read_cursor(tampered, KEY)


def test_a_cursor_signed_with_another_key_is_refused():
    token = sign_cursor(datetime(2026, 11, 28, tzinfo=UTC), uuid.uuid4(), "desc", "other").token
    with pytest.raises(CursorError, match="altered"):
        read_cursor(token, KEY)


@pytest.mark.parametrize("token", ["", "no-dot-at-all", ".", "a.b", "a.b.c"])
def test_a_token_that_was_never_signed_is_refused(token):
    with pytest.raises(CursorError):
        read_cursor(token, KEY)


@pytest.mark.parametrize("token", ["abc.\u00e9", "\u00e9.abc", "ZGVzYw.\u2713\u2713", "\u00e9"])
def test_a_token_with_non_ascii_characters_is_refused(token):
    with pytest.raises(CursorError):
        read_cursor(token, KEY)


@pytest.mark.parametrize(
    "payload",
    [
        "desc|2026-11-28T00:00:00Z",
        "newest|2026-11-28T00:00:00Z|" + "0" * 32,
        "desc|not-a-time|" + "0" * 32,
        "desc|2026-11-28T00:00:00Z|not-hex",
    ],
)
def test_a_signed_but_malformed_payload_is_refused(payload):
    encoded = _b64(payload.encode())
    with pytest.raises(CursorError, match="malformed"):
        read_cursor(f"{encoded}.{_signature(encoded, KEY)}", KEY)


def test_a_signed_payload_that_is_not_text_is_refused():
    encoded = _b64(b"\xff\xfe\xfd")
    with pytest.raises(CursorError, match="malformed"):
        read_cursor(f"{encoded}.{_signature(encoded, KEY)}", KEY)


def test_cursor_order_must_match_the_order_asked_for():
    token = sign_cursor(datetime(2026, 11, 28, tzinfo=UTC), uuid.uuid4(), "asc", KEY).token
    assert "cursor" in parse([("cursor", token), ("order", "desc")]).errors
    assert parse([("cursor", token)]).value.order == "asc"


def test_cursor_with_offset_is_refused():
    token = sign_cursor(datetime(2026, 11, 28, tzinfo=UTC), uuid.uuid4(), "desc", KEY).token
    errors = parse([("cursor", token), ("offset", "20")]).errors
    assert errors == {"cursor": ["give either offset or cursor, not both"]}


def test_cursor_with_offset_zero_is_refused_too():
    token = sign_cursor(datetime(2026, 11, 28, tzinfo=UTC), uuid.uuid4(), "desc", KEY).token
    assert parse([("cursor", token), ("offset", "0")]).errors == {
        "cursor": ["give either offset or cursor, not both"]
    }


def test_timestamps_are_written_in_utc_with_z():
    moment = datetime(2026, 11, 28, 10, 0, 0, 5, tzinfo=timezone(timedelta(hours=1)))
    assert format_timestamp(moment) == "2026-11-28T09:00:00.000005Z"
