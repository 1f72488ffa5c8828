"""The one filter definition: a WTForms form bound to the query string.

The API and the page both call `parse_filter` on `request.args`. It returns the bound form
(for the page to render), the field errors, and, when there are none, a small immutable
`TaskFilter` value: the only thing that crosses into the query module. `TaskFilter.to_args`
turns the value back into query-string pairs for pager links, `hx-push-url` and `Link`
headers, and parsing those pairs gives the same value back.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import MAXYEAR, UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from werkzeug.datastructures import MultiDict
from wtforms import Field, Form, SelectField, SelectMultipleField, StringField
from wtforms.validators import NumberRange, Optional, StopValidation, ValidationError

from app.error_groups import ERROR_GROUP_MAX_LENGTH
from app.events import actor_problem
from app.models import CONTROL_CHARACTERS, TASK_TYPES, Status, tag_problem
from app.search import MAX_SEARCH_LENGTH, Search, SearchError, parse_search
from app.stalled import StallLimits

if TYPE_CHECKING:
    from app.query.actors import ActorTasks
    from app.query.search import SearchReach

STATUSES = tuple(status.value for status in Status)
# The one-letter codes of the earlier /tasks implementation, still accepted.
STATUS_ALIASES = {"Q": "queued", "R": "running", "D": "completed", "F": "failed", "C": "cancelled"}
ORDERS = ("desc", "asc")
DEFAULT_LIMIT = 20
MAX_LIMIT = 100
MAX_OFFSET = 10_000
MAX_WITHIN_HOURS = 8760
MAX_TAGS = 20
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime.max.replace(tzinfo=UTC)

Order = Literal["desc", "asc"]
DEFAULT_STALL_LIMITS = StallLimits()


@dataclass(frozen=True)
class Cursor:
    """A position in the (created_at, id) order: the last row of the page before."""

    created_at: datetime
    id: uuid.UUID
    order: Order = "desc"
    token: str = field(default="", compare=False)


@dataclass(frozen=True)
class TaskFilter:
    """What to list. Empty tuples mean "no restriction" on that dimension."""

    task_types: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    within_hours: int | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    tags: tuple[str, ...] = ()
    search: Search | None = None
    error_group: str | None = None
    limit: int = DEFAULT_LIMIT
    offset: int = 0
    cursor: Cursor | None = None
    order: Order = "desc"
    exact_count: bool = False
    actor: str | None = None
    stalled: bool = False
    # Not a parameter: the server's setting, which `stalled` is read with.
    stall_limits: StallLimits = DEFAULT_STALL_LIMITS
    # Not a parameter: the actor's tasks per table, looked up once a request reads the
    # tables (see app/query/actors.py).
    actor_tasks: ActorTasks | None = field(default=None, compare=False)
    # Not a parameter: where the search's words are, looked up with the actor's tasks
    # (SQLite, see app/query/search.py).
    search_reach: SearchReach | None = field(default=None, compare=False)

    def to_args(self, **changes: Any) -> list[tuple[str, str]]:
        """Query-string pairs that parse back to this filter (with `changes` applied).

        Defaults are left out, so links stay short and a page URL reads like what the
        user chose.
        """
        value = replace(self, **changes) if changes else self
        args: list[tuple[str, str]] = [("task_type", t) for t in value.task_types]
        args += [("status", s) for s in value.statuses]
        if value.within_hours is not None:
            args.append(("within_hours", str(value.within_hours)))
        if value.created_after is not None:
            args.append(("created_after", format_timestamp(value.created_after)))
        if value.created_before is not None:
            args.append(("created_before", format_timestamp(value.created_before)))
        args += [("tag", tag) for tag in value.tags]
        if value.actor is not None:
            args.append(("actor", value.actor))
        if value.stalled:
            args.append(("stalled", "true"))
        if value.search is not None:
            args.append(("q", value.search.text))
        if value.error_group is not None:
            args.append(("error_group", value.error_group))
        if value.order != "desc":
            args.append(("order", value.order))
        if value.limit != DEFAULT_LIMIT:
            args.append(("limit", str(value.limit)))
        if value.cursor is not None:
            args.append(("cursor", value.cursor.token))
        elif value.offset:
            args.append(("offset", str(value.offset)))
        if value.exact_count:
            args.append(("count", "exact"))
        return args

    @property
    def first_page(self) -> TaskFilter:
        """The same filter, back at its first page."""
        return replace(self, offset=0, cursor=None)


def format_timestamp(moment: datetime) -> str:
    """ISO 8601 in UTC with `Z`, the one way the API writes instants."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


# -- cursors ---------------------------------------------------------------------------------


class CursorError(ValueError):
    """A cursor that was not made by this server with this secret key."""


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(payload: str, secret_key: str) -> str:
    digest = hmac.new(secret_key.encode(), payload.encode(), hashlib.sha256).digest()
    return _b64(digest[:16])


def sign_cursor(created_at: datetime, task_id: uuid.UUID, order: Order, secret_key: str) -> Cursor:
    """Make the opaque, tamper-evident token for a position."""
    payload = _b64(f"{order}|{format_timestamp(created_at)}|{task_id.hex}".encode())
    token = f"{payload}.{_signature(payload, secret_key)}"
    return Cursor(created_at.astimezone(UTC), task_id, order, token)


def read_cursor(token: str, secret_key: str) -> Cursor:
    """Check a token's signature and decode its position."""
    payload, dot, signature = token.partition(".")
    # Compared as bytes: compare_digest refuses str with non-ASCII characters (a TypeError).
    expected = _signature(payload, secret_key).encode()
    if not dot or not hmac.compare_digest(signature.encode(), expected):
        raise CursorError("cursor is malformed or was altered; pass next_cursor back as is")
    try:
        order, created, task_hex = _unb64(payload).decode().split("|")
        if order not in ORDERS:
            raise ValueError(order)
        return Cursor(datetime.fromisoformat(created), uuid.UUID(hex=task_hex), order, token)
    except (ValueError, UnicodeDecodeError, binascii.Error) as error:
        raise CursorError("cursor is malformed; pass next_cursor back as is") from error


# -- fields ----------------------------------------------------------------------------------

ASCII_INTEGER = re.compile(r"-?[0-9]+")
# Beyond any range a field allows; longer numbers are read as this (with their sign) so that
# the field's range check names the range, and Python never converts thousands of digits.
NUMBER_CEILING = 10**12


class ParsedField(Field):
    """A field whose parse error is its only error: no range check on a value never read."""

    def pre_validate(self, form: Form) -> None:
        if self.process_errors:
            raise StopValidation()


class StrictIntegerField(ParsedField):
    """An integer written in plain ASCII digits.

    Python's `int()` also takes "1_000", " 7 " and non-ASCII digits; a script author
    passing those has a bug we should tell them about.
    """

    def process_formdata(self, valuelist: list[str]) -> None:
        if not valuelist:
            return
        raw = valuelist[0]
        if not ASCII_INTEGER.fullmatch(raw):
            self.data = None
            raise ValueError(f"{raw!r} is not a whole number")
        digits = raw.lstrip("-").lstrip("0")
        if len(digits) > len(str(NUMBER_CEILING)):
            self.data = -NUMBER_CEILING if raw.startswith("-") else NUMBER_CEILING
        else:
            self.data = int(raw)

    def _value(self) -> str:
        if self.raw_data:
            return self.raw_data[0]
        return "" if self.data is None else str(self.data)


class RepeatableField(Field):
    """A parameter that may be given more than once; its values are a list."""


class MultiChoiceField(SelectMultipleField, RepeatableField):
    """A repeatable parameter whose every value must be one of `choices`."""

    def __init__(self, *args: Any, aliases: Mapping[str, str] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.aliases = dict(aliases or {})

    def process_formdata(self, valuelist: list[str]) -> None:
        self.data = [self.aliases.get(value, value) for value in valuelist]

    def pre_validate(self, form: Form) -> None:
        known = [str(choice) for choice in self.choices]
        for value in self.data or ():
            if value not in known:
                raise ValidationError(
                    f"unknown value {value!r}; expected one of: {', '.join(known)}"
                )


class TagListField(RepeatableField):
    """A repeatable exact-match tag; several tags mean any of them."""

    def process_formdata(self, valuelist: list[str]) -> None:
        self.data = list(valuelist)

    def pre_validate(self, form: Form) -> None:
        tags = self.data or []
        if len(tags) > MAX_TAGS:
            raise ValidationError(f"at most {MAX_TAGS} tags at once")
        for tag in tags:
            if problem := tag_problem(tag):
                raise ValidationError(problem)

    def _value(self) -> str:
        return (self.data or [""])[0]


class SearchField(ParsedField):
    """The search box: ids, words and "quoted phrases" (see app/search.py)."""

    def process_formdata(self, valuelist: list[str]) -> None:
        if not valuelist:
            return
        self.data = None
        try:
            self.data = parse_search(valuelist[0])
        except SearchError as error:
            raise ValueError(str(error)) from None

    def _value(self) -> str:
        if self.raw_data:
            return self.raw_data[0]
        return "" if self.data is None else self.data.text


class ErrorGroupField(StringField):
    """One error group's key, as `/tasks/errors` gives it: exact, whole."""

    def pre_validate(self, form: Form) -> None:
        if not self.data:
            return
        if len(self.data) > ERROR_GROUP_MAX_LENGTH:
            raise ValidationError(f"an error group has at most {ERROR_GROUP_MAX_LENGTH} characters")
        if CONTROL_CHARACTERS.search(self.data):
            raise ValidationError("an error group cannot contain control characters")


class TimestampField(ParsedField):
    """An ISO 8601 instant. Without a zone it is an error, or UTC where `assume_utc`."""

    def process_formdata(self, valuelist: list[str]) -> None:
        if not valuelist:
            return
        raw = valuelist[0]
        try:
            # RFC 3339 allows a lower-case z, which fromisoformat does not read.
            moment = datetime.fromisoformat(raw[:-1] + "Z" if raw.endswith("z") else raw)
        except ValueError:
            self.data = None
            raise ValueError(
                f"{raw!r} is not an ISO 8601 timestamp such as 2026-11-28T09:00:00Z"
            ) from None
        if moment.tzinfo is None:
            if not getattr(self.meta, "assume_utc", False):
                self.data = None
                raise ValueError(
                    f"{raw!r} needs a time and a zone, such as 2026-11-28T09:00:00Z or +01:00"
                )
            moment = moment.replace(tzinfo=UTC)
        try:
            self.data = moment.astimezone(UTC)
        except OverflowError:
            # Past the year 9999 in UTC (its last day, west of UTC) is later than every task:
            # the last instant Python holds says the same. The other end is before 1970.
            self.data = LATEST if moment.year == MAXYEAR else datetime.min.replace(tzinfo=UTC)
        if self.data < EARLIEST:
            self.data = None
            raise ValueError("must not be before 1970")

    def _value(self) -> str:
        if self.raw_data:
            return self.raw_data[0]
        return "" if self.data is None else format_timestamp(self.data)


class ActorField(StringField):
    """Who acted on a task (a module, a token, a person, "system"): an exact name."""

    def pre_validate(self, form: Form) -> None:
        if self.data and (problem := actor_problem(self.data)):
            raise StopValidation(problem)


class TaskFilterForm(Form):
    """Every query parameter of `/tasks`, its type, its range and its message."""

    class Meta:
        assume_utc = False
        secret_key = ""
        stall_limits = DEFAULT_STALL_LIMITS

    task_type = MultiChoiceField(
        "Task type",
        choices=list(TASK_TYPES),
        description="Only tasks of these types; the other tables are not read.",
    )
    status = MultiChoiceField(
        "Status",
        choices=list(STATUSES),
        aliases=STATUS_ALIASES,
        description=(
            "Only tasks in these statuses. The one-letter codes "
            + ", ".join(f"{code} ({status})" for code, status in STATUS_ALIASES.items())
            + " are aliases."
        ),
    )
    within_hours = StrictIntegerField(
        "Active within (hours)",
        validators=[
            Optional(),
            NumberRange(1, MAX_WITHIN_HOURS, message=f"must be from 1 to {MAX_WITHIN_HOURS}"),
        ],
        description=(
            "Active within the last N hours: still queued or running, or finished at or "
            "after now minus N hours."
        ),
    )
    created_after = TimestampField(
        "Created at or after",
        description="Created at or after this instant: ISO 8601 with a zone, from 1970.",
    )
    created_before = TimestampField(
        "Created before",
        description="Created strictly before this instant; must be later than created_after.",
    )
    tag = TagListField(
        "Tag",
        description="Exact match, case and spaces included; several tags mean any of them.",
    )
    actor = ActorField(
        "Acted on by",
        description=(
            "Only tasks someone acted on: an event of the task names this actor exactly "
            "(a module's or token's name, a person, or system)."
        ),
    )
    stalled = SelectField(
        "Stalled",
        choices=["true", "false"],
        validate_choice=False,
        description=(
            "true: only running tasks not heard from (progress or heartbeat) for longer "
            "than their type's limit; false, the default, does not filter."
        ),
    )
    q = SearchField(
        "Search",
        description=(
            "A task id, or its first 8 or more characters; or words of the task's summary "
            "(model, dataset, method, source), its error message or its tag, each of which "
            'must appear; "quoted words" must appear together. Case-insensitive, at most '
            f"{MAX_SEARCH_LENGTH} characters, no search operators."
        ),
    )
    error_group = ErrorGroupField(
        "Error group",
        description=(
            "Only failed tasks whose error is this group: a key from /tasks/errors, matched "
            "exactly."
        ),
    )
    limit = StrictIntegerField(
        "Page size",
        validators=[
            Optional(),
            NumberRange(1, MAX_LIMIT, message=f"must be from 1 to {MAX_LIMIT}"),
        ],
        description="How many tasks a page holds.",
    )
    offset = StrictIntegerField(
        "Offset",
        validators=[
            Optional(),
            NumberRange(
                0,
                MAX_OFFSET,
                message=f"must be from 0 to {MAX_OFFSET}; reach deeper pages with cursor",
            ),
        ],
        description="Skip this many matches; deeper pages are reached by cursor.",
    )
    cursor = StringField(
        "Cursor",
        description=(
            "The next_cursor of an earlier page, passed back as is: the page after it, stable "
            "while new tasks arrive. Not together with offset; keeps the order it was made for."
        ),
    )
    order = SelectField(
        "Order",
        choices=list(ORDERS),
        validate_choice=False,
        description="Newest (desc) or oldest (asc) first, by created_at then id.",
    )
    count = SelectField(
        "Count",
        choices=["exact"],
        validate_choice=False,
        description="exact: count every match for total, however many.",
    )

    def validate_order(self, field: Field) -> None:
        if field.raw_data and field.data not in ORDERS:
            raise ValidationError(f"unknown value {field.data!r}; expected one of: desc, asc")

    def validate_stalled(self, field: Field) -> None:
        if field.raw_data and field.data not in ("true", "false"):
            raise ValidationError(f"unknown value {field.data!r}; expected one of: true, false")

    def validate_count(self, field: Field) -> None:
        if field.raw_data and field.data != "exact":
            raise ValidationError(f"unknown value {field.data!r}; the only value is exact")

    def validate_cursor(self, field: Field) -> None:
        if not field.data:
            return
        if self.offset.raw_data:
            raise StopValidation("give either offset or cursor, not both")
        try:
            cursor = read_cursor(field.data, self.meta.secret_key)
        except CursorError as error:
            raise StopValidation(str(error)) from None
        if self.order.raw_data and self.order.data != cursor.order:
            raise StopValidation(f"this cursor belongs to order={cursor.order}")
        field.position = cursor

    def validate_created_before(self, field: Field) -> None:
        after, before = self.created_after.data, field.data
        if after is not None and before is not None and after >= before:
            raise ValidationError("must be later than created_after")

    def task_filter(self) -> TaskFilter:
        """The validated form as a filter value, in canonical order."""
        cursor: Cursor | None = getattr(self.cursor, "position", None)
        order = cursor.order if cursor else (self.order.data if self.order.raw_data else "desc")
        return TaskFilter(
            task_types=_canonical(self.task_type.data, TASK_TYPES),
            statuses=_canonical(self.status.data, STATUSES),
            within_hours=self.within_hours.data,
            created_after=self.created_after.data,
            created_before=self.created_before.data,
            tags=tuple(sorted(set(self.tag.data or ()))),
            search=self.q.data,
            error_group=self.error_group.data or None,
            limit=self.limit.data or DEFAULT_LIMIT,
            offset=self.offset.data or 0,
            cursor=cursor,
            order=order,
            exact_count=bool(self.count.raw_data),
            actor=self.actor.data or None,
            stalled=bool(self.stalled.raw_data) and self.stalled.data == "true",
            stall_limits=self.meta.stall_limits,
        )


def _canonical(values: Iterable[str] | None, order: Sequence[str]) -> tuple[str, ...]:
    chosen = set(values or ())
    return tuple(value for value in order if value in chosen)


REPEATABLE = frozenset(
    field.name for field in TaskFilterForm() if isinstance(field, RepeatableField)
)
PARAMETERS = frozenset(TaskFilterForm().data)


@dataclass
class ParsedFilter:
    """A bound form, its errors by parameter, and the filter value when there are none."""

    form: TaskFilterForm
    errors: dict[str, list[str]]
    value: TaskFilter | None


def strict_argument_errors(args: MultiDict[str, str]) -> dict[str, list[str]]:
    """What the API refuses before field validation: typos, blanks and repeats."""
    errors: dict[str, list[str]] = {}
    for name in args:
        values = args.getlist(name)
        if name not in PARAMETERS:
            errors[name] = [f"unknown parameter; known ones: {', '.join(sorted(PARAMETERS))}"]
        elif any(value == "" for value in values):
            errors[name] = ["must not be empty"]
        elif len(values) > 1 and name not in REPEATABLE:
            errors[name] = ["given more than once"]
    return errors


def lenient_arguments(args: MultiDict[str, str]) -> MultiDict[str, str]:
    """What a plain HTML form sends, read kindly: blanks are "not set", unknown names ignored.

    Of a single-valued parameter sent twice the last value counts: the page's form sends the
    time window's preset and then its custom box, and a number typed in the box is meant.
    """
    kept = [(name, value) for name, value in args.items(multi=True) if name in PARAMETERS and value]
    last = {name: value for name, value in kept if name not in REPEATABLE}
    return MultiDict(
        [(name, value) for name, value in kept if name in REPEATABLE or last[name] == value]
    )


def parse_filter(
    args: MultiDict[str, str],
    *,
    secret_key: str,
    strict: bool,
    stall_limits: StallLimits | None = None,
) -> ParsedFilter:
    """Validate query-string arguments into a filter value, or say what is wrong with them.

    `strict` is the API's reading; the page passes False to accept what an HTML form submits.
    `stall_limits` is the server's setting that `stalled=true` is read with.
    """
    early_errors = strict_argument_errors(args) if strict else {}
    formdata = MultiDict(
        [(k, v) for k, v in args.items(multi=True) if k not in early_errors and k in PARAMETERS]
    )
    if not strict:
        formdata = lenient_arguments(formdata)
    meta = {"secret_key": secret_key, "assume_utc": not strict}
    meta["stall_limits"] = stall_limits or DEFAULT_STALL_LIMITS
    form = TaskFilterForm(formdata, meta=meta)
    form.validate()
    errors = {**early_errors, **{name: list(msgs) for name, msgs in form.errors.items()}}
    return ParsedFilter(form, errors, None if errors else form.task_filter())
