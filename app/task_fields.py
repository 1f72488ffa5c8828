"""The fields a module sends over HTTP, each checked and described from one definition.

A task's inputs (on create) and results (on complete) are its table's own columns: their
type, length, whether they may be null, and the choices and minimum the models keep in
`info` beside their CHECK constraints. Each becomes a `Field`, which both checks a value
from a JSON body (the reporting API's 422 names every bad field) and describes it as JSON
Schema (the API's description), so the two cannot disagree. A value the description
accepts is stored as is; a value it refuses never reaches the database, whose own limits
(MariaDB's string lengths, PostgreSQL's refusal of NUL characters) would otherwise turn it
into a 500.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa

from app.models import CONTROL_CHARACTER_RANGE, CONTROL_CHARACTERS, MODEL_FOR_TYPE, TaskModel

JsonSchema = dict[str, Any]
Kind = Literal["text", "integer", "number", "uuid", "metrics"]

# The integer ranges of the columns' types, the same on every engine.
INTEGER_LIMITS = {"integer": 2**31 - 1, "big": 2**63 - 1}
UUID_PATTERN = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
# An evaluation's metrics: names to numbers, a bounded handful.
METRICS_MAX = 100
METRIC_NAME_MAX_LENGTH = 100
# A refused value longer than this is not repeated in the 422.
SHOWN_VALUE_LENGTH = 40
# Messages may hold newlines and tabs (a traceback), never NUL, which PostgreSQL refuses.
NUL_FREE_PATTERN = r"^[^\x00]*$"
PLAIN_TEXT_PATTERN = f"^[^{CONTROL_CHARACTER_RANGE}]*$"


@dataclass(frozen=True)
class Field:
    """One field of a JSON body: what it holds, whether it is required or may be null."""

    name: str
    kind: Kind
    required: bool = False
    nullable: bool = False
    max_length: int | None = None
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    # Text with newlines and other controls (an error message); else plain text only.
    any_text: bool = False
    # The task type a UUID field names (a foreign key): it must exist.
    references: str | None = None
    description: str | None = None

    def schema(self) -> JsonSchema:
        """The field's value as JSON Schema."""
        schema = self.value_schema()
        if self.nullable:
            schema = {"anyOf": [schema, {"type": "null"}]}
        return schema | ({"description": self.description} if self.description else {})

    def value_schema(self) -> JsonSchema:
        if self.choices:
            return {"type": "string", "enum": list(self.choices)}
        if self.kind == "text":
            pattern = NUL_FREE_PATTERN if self.any_text else PLAIN_TEXT_PATTERN
            schema = {"type": "string", "minLength": 1, "pattern": pattern}
            return schema | ({"maxLength": self.max_length} if self.max_length else {})
        if self.kind in ("integer", "number"):
            schema = {"type": self.kind}
            bounds = {"minimum": self.minimum, "maximum": self.maximum}
            return schema | {name: bound for name, bound in bounds.items() if bound is not None}
        if self.kind == "uuid":
            return {"type": "string", "format": "uuid", "pattern": UUID_PATTERN}
        return {
            "type": "object",
            "maxProperties": METRICS_MAX,
            "propertyNames": {
                "minLength": 1,
                "maxLength": METRIC_NAME_MAX_LENGTH,
                "pattern": PLAIN_TEXT_PATTERN,
            },
            "additionalProperties": {"type": "number"},
        }

    def check(self, value: Any) -> tuple[Any, str | None]:
        """The value to store, or the problem with it (in words, for the 422)."""
        if value is None:
            return None, None if self.nullable else "must not be null"
        return CHECKS[self.kind](self, value)


def text_value(field: Field, value: Any) -> tuple[Any, str | None]:
    if not isinstance(value, str):
        return None, "must be text"
    if field.choices and value not in field.choices:
        shown_value = repr(value) if len(value) <= SHOWN_VALUE_LENGTH else "this value"
        return None, f"unknown value {shown_value}; expected one of: {', '.join(field.choices)}"
    if not value:
        return None, "must not be empty"
    if field.max_length is not None and len(value) > field.max_length:
        return None, f"at most {field.max_length:,} characters"
    if field.any_text and "\x00" in value:
        return None, "must not contain NUL characters"
    if not field.any_text and CONTROL_CHARACTERS.search(value):
        return None, "must not contain control characters"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return None, "must be valid Unicode (no lone surrogates)"
    return value, None


def shown(bound: float) -> str:
    """A bound as the 422 writes it: 1, 0.5, 9223372036854775807."""
    return str(bound) if isinstance(bound, int) else f"{bound:g}"


def in_range(field: Field, value: float) -> str | None:
    """Whether a number lies within the field's bounds, in words when not."""
    low, high = field.minimum, field.maximum
    if (low is not None and value < low) or (high is not None and value > high):
        if high is None:
            return f"must be at least {shown(low)}"
        if low is None:
            return f"must be at most {shown(high)}"
        return f"must be from {shown(low)} to {shown(high)}"
    return None


def integer_value(field: Field, value: Any) -> tuple[Any, str | None]:
    # JSON Schema counts 3.0 as an integer; true and false are not numbers at all.
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        return None, "must be a whole number"
    return value, in_range(field, value)


def number_value(field: Field, value: Any) -> tuple[Any, str | None]:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None, "must be a number"
    if not math.isfinite(value):
        return None, "must be a finite number"
    return float(value), in_range(field, value)


def uuid_value(_field: Field, value: Any) -> tuple[Any, str | None]:
    if not isinstance(value, str) or not re.fullmatch(UUID_PATTERN, value):
        return None, "must be a task id (a UUID such as 3f2a9b1c-41d4-4e8a-9c1b-0d2e4f6a8b0c)"
    return uuid.UUID(value), None


def metrics_value(_field: Field, value: Any) -> tuple[Any, str | None]:
    if not isinstance(value, dict):
        return None, "must be an object of metric names to numbers"
    if len(value) > METRICS_MAX:
        return None, f"at most {METRICS_MAX} metrics"
    for name, number in value.items():
        if not name or len(name) > METRIC_NAME_MAX_LENGTH or CONTROL_CHARACTERS.search(name):
            return None, (
                f"metric names have 1 to {METRIC_NAME_MAX_LENGTH} characters and no control "
                "characters"
            )
        if isinstance(number, bool) or not isinstance(number, int | float):
            return None, f"{name!r} must be a number"
        if not math.isfinite(number):
            return None, f"{name!r} must be a finite number"
    return value, None


CHECKS = {
    "text": text_value,
    "integer": integer_value,
    "number": number_value,
    "uuid": uuid_value,
    "metrics": metrics_value,
}


def column_field(column: sa.Column[Any], *, inputs: bool) -> Field:
    """A task table's own column as a field: an input is required unless the column may be
    null; a result never is."""
    column_type = column.type
    nullable = bool(column.nullable)
    base: dict[str, Any] = {
        "name": column.key,
        "required": inputs and not nullable,
        "nullable": nullable,
    }
    if isinstance(column_type, sa.Uuid):
        (foreign_key,) = column.foreign_keys
        target = next(
            model.task_type
            for model in MODEL_FOR_TYPE.values()
            if model.__table__ is foreign_key.column.table
        )
        return Field(
            **base, kind="uuid", references=target, description=f"The id of a {target} task."
        )
    if isinstance(column_type, sa.JSON):
        return Field(**base, kind="metrics", description="Metric names and their values.")
    if isinstance(column_type, sa.Integer):
        limit = INTEGER_LIMITS["big" if isinstance(column_type, sa.BigInteger) else "integer"]
        minimum = column.info.get("minimum", -limit - 1)
        return Field(**base, kind="integer", minimum=minimum, maximum=limit)
    choices = tuple(column.info.get("choices", ()))
    return Field(**base, kind="text", max_length=column_type.length, choices=choices)


def own_columns(model: TaskModel, names: Iterable[str]) -> list[sa.Column[Any]]:
    table = model.__table__
    return [table.c[name] for name in names]


def input_fields(task_type: str) -> list[Field]:
    """What a task of this type is created with (its inputs), in the table's order."""
    model = MODEL_FOR_TYPE[task_type]
    return [column_field(c, inputs=True) for c in own_columns(model, model.input_columns())]


def result_fields(task_type: str) -> list[Field]:
    """What a module may record when a task of this type completes, each optional."""
    model = MODEL_FOR_TYPE[task_type]
    return [column_field(c, inputs=False) for c in own_columns(model, model.result_columns)]


def check_body(
    fields: Iterable[Field], body: Mapping[str, Any], *, known_elsewhere: Iterable[str] = ()
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The body's values, checked: (the values to store, every problem by field name).

    A field the body does not know is named too; `known_elsewhere` are names the caller
    reads itself.
    """
    by_name = {field.name: field for field in fields}
    values: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    for name, value in body.items():
        field = by_name.get(name)
        if field is None:
            if name not in known_elsewhere:
                expected = ", ".join([*known_elsewhere, *by_name]) or "no fields"
                errors[name] = [f"unknown field; this takes: {expected}"]
            continue
        checked, problem = field.check(value)
        if problem:
            errors[name] = [problem]
        else:
            values[name] = checked
    for name, field in by_name.items():
        if field.required and name not in body:
            errors[name] = ["required"]
    return values, errors


def object_schema(fields: Iterable[Field], **extra: Any) -> JsonSchema:
    """A closed JSON object of these fields, the required ones listed."""
    listed = list(fields)
    schema: JsonSchema = {
        "type": "object",
        "properties": {field.name: field.schema() for field in listed},
        "additionalProperties": False,
    }
    if required := [field.name for field in listed if field.required]:
        schema["required"] = required
    return schema | extra
