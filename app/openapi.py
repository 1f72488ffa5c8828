"""The API's published contract: an OpenAPI 3.1 description, and a page that renders it.

The description is built, never written: each query parameter is a field of the filter
form (`TaskFilterForm`), with the field's name, description, range, choices and whether it
repeats, so a field added to the form appears here by itself. Response bodies come from the
list's fields (`TaskRow`), the task tables' columns and the error documents of
`app.errors`; the operations' summaries are their views' docstrings.
"""

from __future__ import annotations

import dataclasses
import re
import typing
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime
from importlib import metadata
from typing import Any

import sqlalchemy as sa
from flask import Blueprint, Flask, Response, current_app, jsonify, render_template, request
from wtforms import Field, Form, SelectField, StringField
from wtforms.validators import NumberRange

from app.api import CHART_REFUSES, ERRORS_REFUSE
from app.error_groups import ERROR_GROUP_MAX_LENGTH
from app.errors import PROBLEM_TYPE, RETRY_AFTER_SECONDS
from app.export import EXPORT_FORMATS, PAGE_PARAMETERS
from app.filters import (
    EARLIEST,
    MAX_TAGS,
    STATUSES,
    ActorField,
    ErrorGroupField,
    RepeatableField,
    SearchField,
    StrictIntegerField,
    TagListField,
    TaskFilter,
    TaskFilterForm,
    TimestampField,
)
from app.idempotency import HEADER as IDEMPOTENCY_HEADER
from app.idempotency import IN_PROGRESS_RETRY_SECONDS, KEY_PATTERN, MAX_BODY_BYTES, REPLAYED_HEADER
from app.models import (
    ACTOR_MAX_LENGTH,
    CONTROL_CHARACTER_RANGE,
    MODEL_FOR_TYPE,
    TAG_MAX_LENGTH,
    TASK_TYPES,
    EventKind,
)
from app.query import Facets, TaskRow, Total
from app.query.histogram import MAX_BARS
from app.reporting import ERROR_FIELD, PROGRESS_FIELD, TAG_FIELD, TASK_TYPE_FIELD
from app.search import MAX_SEARCH_LENGTH, valid_search_pattern
from app.task_fields import Field as BodyField
from app.task_fields import input_fields, object_schema, result_fields

bp = Blueprint("contract", __name__)

OPENAPI_VERSION = "3.1.0"
SWAGGER_UI_VERSION = "5.35.0"
SWAGGER_UI_FOLDER = f"vendor/swagger-ui-{SWAGGER_UI_VERSION}"
JsonSchema = dict[str, Any]

# The API's own defaults, where a parameter left out means a value: a page of 20, from the
# start, newest first.
DEFAULTS = {
    field.name: field.default
    for field in dataclasses.fields(TaskFilter)
    if type(field.default) in (int, str)
}


def ref(kind: str, name: str) -> JsonSchema:
    """A reference to a component of the description."""
    return {"$ref": f"#/components/{kind}/{name}"}


# -- query parameters, from the form ---------------------------------------------------------


def years_from(year: int) -> str:
    """A regular expression for a four-digit year no earlier than `year`."""
    digits = f"{year:04d}"
    alternatives = [digits[:3] + f"[{digits[3]}-9]"]
    for position in range(2, -1, -1):
        if digits[position] != "9":
            rest = 3 - position
            alternatives.append(
                f"{digits[:position]}[{int(digits[position]) + 1}-9][0-9]{{{rest}}}"
            )
    return "(" + "|".join(alternatives) + ")"


def number_range(field: Field) -> JsonSchema:
    """An integer with the bounds of the field's NumberRange."""
    schema: JsonSchema = {"type": "integer"}
    for validator in field.validators:
        if isinstance(validator, NumberRange):
            if validator.min is not None:
                schema["minimum"] = validator.min
            if validator.max is not None:
                schema["maximum"] = validator.max
    return schema


def choice_values(field: Field) -> list[str]:
    """The values a choice field takes, aliases included."""
    return [str(choice) for choice in field.choices] + list(getattr(field, "aliases", {}))


def plain_text_schema(max_length: int) -> JsonSchema:
    """Text of 1 to `max_length` characters without control characters: what the form's
    checks of a tag, an actor's name and an error group's key have in common."""
    return {
        "type": "string",
        "minLength": 1,
        "maxLength": max_length,
        "pattern": f"^[^{CONTROL_CHARACTER_RANGE}]*$",
    }


def tag_schema(_field: Field) -> JsonSchema:
    """One tag: what `tag_problem` accepts, and not empty."""
    return plain_text_schema(TAG_MAX_LENGTH)


def search_schema(_field: Field) -> JsonSchema:
    """The search box's text: what `parse_search` accepts, as a pattern that Python and
    JSON Schema's dialect (ECMA-262 with the `u` flag) read alike."""
    return {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_SEARCH_LENGTH,
        "pattern": valid_search_pattern(),
    }


def error_group_schema(_field: Field) -> JsonSchema:
    """An error group's key: what `ErrorGroupField` accepts, and not empty."""
    return plain_text_schema(ERROR_GROUP_MAX_LENGTH)


def timestamp_schema(_field: Field) -> JsonSchema:
    """An instant with a zone, no earlier than the filter's earliest year."""
    return {
        "type": "string",
        "format": "date-time",
        "pattern": f"^{years_from(EARLIEST.year)}-",
    }


def actor_schema(_field: Field) -> JsonSchema:
    """An actor's name: what `actor_problem` accepts."""
    return plain_text_schema(ACTOR_MAX_LENGTH)


# One value of a field, by its class; the first class that matches wins (subclasses first).
# A field of a new class has no schema until it gets one here, and the description fails.
VALUE_SCHEMAS: list[tuple[type[Field], Callable[[Field], JsonSchema]]] = [
    (TagListField, tag_schema),
    (ActorField, actor_schema),
    (SearchField, search_schema),
    (ErrorGroupField, error_group_schema),
    (StrictIntegerField, number_range),
    (TimestampField, timestamp_schema),
    (SelectField, lambda field: {"type": "string", "enum": choice_values(field)}),
    (StringField, lambda _field: {"type": "string", "minLength": 1}),
]


def value_schema(field: Field) -> JsonSchema:
    """The JSON Schema of one value of a form field."""
    for field_class, schema in VALUE_SCHEMAS:
        if isinstance(field, field_class):
            return schema(field)
    raise TypeError(f"{field.name}: no schema for a {type(field).__name__}; add one here")


def field_parameter(field: Field) -> JsonSchema:
    """A form field as an OpenAPI query parameter."""
    schema = value_schema(field)
    if field.name in DEFAULTS:
        schema["default"] = DEFAULTS[field.name]
    parameter: JsonSchema = {
        "name": field.name,
        "in": "query",
        "required": False,
        "description": field.description,
    }
    if isinstance(field, RepeatableField):
        array: JsonSchema = {"type": "array", "items": schema}
        if isinstance(field, TagListField):
            array["maxItems"] = MAX_TAGS
        return {**parameter, "style": "form", "explode": True, "schema": array}
    return {**parameter, "schema": schema}


def filter_parameters(form_class: type[Form] = TaskFilterForm) -> dict[str, JsonSchema]:
    """Every field of the filter form, as a parameter, in the form's order."""
    return {field.name: field_parameter(field) for field in form_class()}


def parameter_refs(refused: Iterable[str] = ()) -> list[JsonSchema]:
    """References to the filter's parameters an endpoint reads: all but `refused`."""
    return [ref("parameters", name) for name in filter_parameters() if name not in refused]


# -- response bodies -------------------------------------------------------------------------

SCALARS: dict[type, JsonSchema] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    dict: {"type": "object"},
    uuid.UUID: {"type": "string", "format": "uuid"},
    datetime: {"type": "string", "format": "date-time"},
}
# Fields whose text is one of a known set.
ENUMS = {"task_type": list(TASK_TYPES), "status": list(STATUSES)}
# What a list item's field means, where its name does not say.
FIELD_DESCRIPTIONS = {
    "cancel_requested_at": "When an operator asked the running task to stop; its module "
    "confirms (until then the pages show it as Cancelling…).",
}


def nullable(schema: JsonSchema, may_be_null: bool) -> JsonSchema:
    """The schema, or null as well."""
    return {**schema, "type": [schema["type"], "null"]} if may_be_null else schema


def annotation_schema(annotation: Any) -> JsonSchema:
    """The JSON value of a Python annotation such as `datetime | None`."""
    members = typing.get_args(annotation) or (annotation,)
    present = [member for member in members if member is not type(None)]
    return nullable(SCALARS[present[0]], len(present) < len(members))


def column_schema(column: sa.ColumnElement[Any]) -> JsonSchema:
    """The JSON value of a table column as the API writes it."""
    python_type = dict if isinstance(column.type, sa.JSON) else column.type.python_type
    return nullable(SCALARS[python_type], bool(getattr(column, "nullable", False)))


def closed_object(properties: dict[str, JsonSchema], **extra: Any) -> JsonSchema:
    """An object with exactly these properties, all present."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
        **extra,
    }


def task_properties() -> dict[str, JsonSchema]:
    """A list item's fields, the id first, as `api.task_json` writes them."""
    hints = typing.get_type_hints(TaskRow)
    names = ["id", *(name for name in TaskRow._fields if name != "id")]
    return {name: field_schema(name, hints[name]) for name in names}


def field_schema(name: str, annotation: Any) -> JsonSchema:
    """A list item's field: its JSON value, its values if they are a known set, its meaning."""
    schema = {**annotation_schema(annotation)}  # a copy: SCALARS is shared
    if name in ENUMS:
        schema["enum"] = ENUMS[name]
    if name in FIELD_DESCRIPTIONS:
        schema["description"] = FIELD_DESCRIPTIONS[name]
    return schema


def details_schemas() -> dict[str, JsonSchema]:
    """The fields only each type of task has, by type."""
    return {
        task_type: closed_object(
            {column.name: column_schema(column.element) for column in model.detail_columns()},
            title=f"Details of {task_type} tasks",
        )
        for task_type, model in MODEL_FOR_TYPE.items()
    }


def lifecycle_properties() -> dict[str, JsonSchema]:
    """A task's retry links, shown with the task alone."""
    task_id = {"type": ["string", "null"], "format": "uuid"}
    return {
        "retry_of": {**task_id, "description": "The failed or cancelled task this one retries."},
        "retried_as": {**task_id, "description": "The task that retries this one."},
    }


def task_with_details() -> JsonSchema:
    """One task: a list item's fields and the details of its type, chosen by task_type."""
    return {
        **closed_object(
            {**task_properties(), **lifecycle_properties(), "details": {"type": "object"}}
        ),
        "oneOf": [
            {
                "properties": {
                    "task_type": {"const": task_type},
                    "details": ref("schemas", f"Details_{task_type}"),
                }
            }
            for task_type in MODEL_FOR_TYPE
        ],
    }


def counts_of(keys: Iterable[str]) -> JsonSchema:
    """An object counting tasks for each of `keys`, zero-filled, each count a Total."""
    return closed_object({key: ref("schemas", "Total") for key in keys})


def new_task_schema(task_type: str) -> JsonSchema:
    """A new task of one type: its type (exactly), an optional tag and the type's inputs."""
    schema = object_schema(
        [TASK_TYPE_FIELD, TAG_FIELD, *input_fields(task_type)], title=f"A new {task_type} task"
    )
    schema["properties"]["task_type"] = {"type": "string", "const": task_type}
    return schema


def every_result_field() -> list[BodyField]:
    """The result fields of every type, once each, saying which types have them."""
    types: dict[str, list[str]] = {}
    fields: dict[str, BodyField] = {}
    for task_type in MODEL_FOR_TYPE:
        for field in result_fields(task_type):
            fields.setdefault(field.name, field)
            types.setdefault(field.name, []).append(task_type)
    return [
        dataclasses.replace(field, description=f"Of {', '.join(types[name])} tasks.")
        for name, field in fields.items()
    ]


def request_schemas() -> dict[str, JsonSchema]:
    """The bodies the reporting API reads, from the same fields that check them."""
    return {
        "NewTask": {
            "oneOf": [new_task_schema(task_type) for task_type in MODEL_FOR_TYPE],
            "description": "A task to create: its type, an optional tag and its type's inputs.",
        },
        "Progress": object_schema([PROGRESS_FIELD]),
        "Failure": object_schema([ERROR_FIELD]),
        "Results": object_schema(
            every_result_field(),
            description=(
                "What the task produced: the result fields of its type (each says which types "
                "have it), each optional; another type's field is a 422."
            ),
        ),
    }


def response_schemas() -> dict[str, JsonSchema]:
    """The bodies the API answers with."""
    parameters = filter_parameters()
    relations = list(typing.get_args(typing.get_type_hints(Total)["relation"]))
    counted = {"status": counts_of(STATUSES), "task_type": counts_of(TASK_TYPES)}
    problem = {
        "type": {"type": "string", "format": "uri-reference"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
    }
    invalid_parameter = closed_object(
        {"parameter": {"type": "string"}, "detail": {"type": "string"}}
    )
    invalid_part = {
        "oneOf": [
            invalid_parameter,
            closed_object({"field": {"type": "string"}, "detail": {"type": "string"}}),
        ]
    }
    return {
        "Task": closed_object(task_properties()),
        "TaskWithDetails": task_with_details(),
        **{f"Details_{name}": schema for name, schema in details_schemas().items()},
        "Total": closed_object(
            {
                "value": {"type": "integer", "minimum": 0},
                "relation": {"type": "string", "enum": relations},
            },
            description='How many tasks match: exact ("eq"), or at least this many ("gte").',
        ),
        "TaskPage": closed_object(
            {
                "items": {"type": "array", "items": ref("schemas", "Task")},
                "total": ref("schemas", "Total"),
                "limit": parameters["limit"]["schema"],
                "offset": parameters["offset"]["schema"],
                "next_cursor": {"type": ["string", "null"], "minLength": 1},
            }
        ),
        "Counts": closed_object(
            {
                field.name: counted.get(field.name, ref("schemas", "Total"))
                for field in dataclasses.fields(Facets)
            }
        ),
        "Event": closed_object(
            {
                "task_type": {"type": "string", "enum": list(TASK_TYPES)},
                "task_id": {"type": "string", "format": "uuid"},
                "kind": {"type": "string", "enum": [kind.value for kind in EventKind]},
                "actor": actor_schema(StringField()),
                "at": {"type": "string", "format": "date-time"},
                "note": {"type": ["string", "null"]},
            },
            description="One change of a task: what happened, who did it, when.",
        ),
        "TaskEvents": closed_object(
            {
                "task_id": {"type": "string", "format": "uuid"},
                "items": {"type": "array", "items": ref("schemas", "Event")},
            },
            description="A task's events, oldest first; kept when the task is deleted.",
        ),
        "Histogram": closed_object(
            {
                "start": {"type": ["string", "null"], "format": "date-time"},
                "end": {"type": ["string", "null"], "format": "date-time"},
                "bucket_seconds": {"type": ["integer", "null"], "minimum": 60},
                "buckets": {
                    "type": "array",
                    "maxItems": MAX_BARS,
                    "items": closed_object(
                        {
                            "start": {"type": "string", "format": "date-time"},
                            "end": {"type": "string", "format": "date-time"},
                            "counts": closed_object(
                                {status: {"type": "integer", "minimum": 0} for status in STATUSES}
                            ),
                            "total": {"type": "integer", "minimum": 0},
                        }
                    ),
                },
                "total": {"type": "integer", "minimum": 0},
            },
            description=(
                "Matching tasks per bucket of created_at, oldest first; no buckets when the "
                "window lies after now."
            ),
        ),
        "ErrorGroups": closed_object(
            {
                "groups": {
                    "type": "array",
                    "items": closed_object(
                        {
                            "error_group": {"type": "string"},
                            "count": {"type": "integer", "minimum": 1},
                            "message": {"type": "string"},
                            "task_types": {
                                "type": "array",
                                "items": {"type": "string", "enum": list(TASK_TYPES)},
                            },
                            "first_seen": {"type": "string", "format": "date-time"},
                            "last_seen": {"type": "string", "format": "date-time"},
                            "tasks_url": {"type": "string", "format": "uri-reference"},
                        }
                    ),
                }
            },
            description="Error groups of the matching failed tasks, most frequent first.",
        ),
        "Problem": {
            "type": "object",
            "properties": problem,
            "required": list(problem),
            "description": "An RFC 9457 problem document.",
        },
        "ActionResult": closed_object(
            {
                "id": {"type": "string", "format": "uuid"},
                "task_type": {"type": "string", "enum": list(TASK_TYPES)},
                "outcome": {"type": "string", "enum": ["cancelled", "cancel_requested"]},
                "status": {"type": "string", "enum": list(STATUSES)},
            },
            description=(
                "What a cancel did: `cancelled` (the task was queued) or `cancel_requested` "
                "(it runs, shown as Cancelling…, until its module stops and confirms)."
            ),
        ),
        "RetryResult": closed_object(
            {
                "id": {"type": "string", "format": "uuid"},
                "task_type": {"type": "string", "enum": list(TASK_TYPES)},
                "outcome": {"type": "string", "const": "retried"},
                "status": {"type": "string", "const": "queued"},
                "new_task_id": {"type": "string", "format": "uuid"},
            },
            description="The retry: a new queued task, `new_task_id`, whose `retry_of` is `id`.",
        ),
        "BulkResult": {
            "type": "object",
            "properties": {
                "action": {"type": "string", "enum": ["cancel", "retry"]},
                "dry_run": {"type": "boolean"},
                "count": {"type": "integer", "minimum": 0, "maximum": 1000},
                "ids": {"type": "array", "items": {"type": "string", "format": "uuid"}},
                "changed": {"type": "array", "items": {"type": "object"}},
                "unchanged": {
                    "type": "array",
                    "items": closed_object(
                        {
                            "id": {"type": "string", "format": "uuid"},
                            "task_type": {"type": "string", "enum": list(TASK_TYPES)},
                            "status": {"type": "string"},
                            "reason": {"type": "string"},
                        }
                    ),
                },
            },
            "required": ["action", "dry_run", "count", "unchanged"],
            "additionalProperties": False,
            "description": (
                "A dry run: `count` and `ids` of the tasks that would change. Otherwise "
                "`count` and `changed` (each as a single action answers) and, for both, "
                "`unchanged`: matched tasks left as they were, with the reason."
            ),
        },
        "ActionConflict": {
            "allOf": [ref("schemas", "Problem")],
            "type": "object",
            "properties": {
                "task_status": {"type": "string", "enum": list(STATUSES)},
                "retried_as": {"type": "string", "format": "uuid"},
                "cancel_requested": {
                    "type": "boolean",
                    "description": (
                        "On the reporting API: true when a progress report or heartbeat was "
                        "refused because an operator asked the task to stop (stop the work, "
                        "then confirm with `POST /tasks/{task_id}/cancel`)."
                    ),
                },
            },
            "required": ["task_status"],
            "description": "The task's status does not allow the action; `task_status` is it.",
        },
        "InProgress": {
            "allOf": [ref("schemas", "Problem")],
            "type": "object",
            "properties": {"title": {"const": "Request in progress"}},
            "description": "A request with the same Idempotency-Key is still being performed.",
        },
        "WriteConflict": {
            "anyOf": [ref("schemas", "ActionConflict"), ref("schemas", "InProgress")],
            "description": "The task's status does not allow the write, or its key is in use.",
        },
        "InvalidBody": {
            "allOf": [ref("schemas", "Problem")],
            "type": "object",
            "properties": {"errors": {"type": "array", "items": invalid_part, "minItems": 1}},
            "required": ["errors"],
            "description": (
                "A problem document that names every bad field of the body (`field`), or a bad "
                "`Idempotency-Key` (`parameter`), and why."
            ),
        },
        **request_schemas(),
        "InvalidQuery": {
            "allOf": [ref("schemas", "Problem")],
            "type": "object",
            "properties": {"errors": {"type": "array", "items": invalid_parameter, "minItems": 1}},
            "required": ["errors"],
            "description": "A problem document that names every bad parameter and why.",
        },
    }


def problem_response(description: str, **extra: Any) -> JsonSchema:
    """A response whose body is a problem document of the given schema."""
    schema = extra.pop("schema", "Problem")
    return {
        "description": description,
        "content": {PROBLEM_TYPE: {"schema": ref("schemas", schema)}},
        **extra,
    }


def shared_responses() -> dict[str, JsonSchema]:
    """The error answers several operations share."""
    return {
        "NotFound": problem_response("No task has this id, or the id is not a UUID."),
        "InvalidQuery": problem_response(
            "A parameter is unknown, empty, repeated when it may not be, or out of its "
            "range; every bad parameter is named.",
            schema="InvalidQuery",
        ),
        "Unauthorized": problem_response(
            "No identity (or a token that is malformed, unknown or revoked); the detail says "
            "which role is needed and how to sign in.",
            headers={"WWW-Authenticate": {"schema": {"type": "string"}}},
        ),
        "Forbidden": problem_response("Known, but the role does not allow this; it is named."),
        "CsrfRefused": problem_response(
            "A write with the sign-on identity but without the page's CSRF token (send a "
            "bearer token instead from a script)."
        ),
        "Conflict": problem_response(
            "The task's status does not allow the action.", schema="ActionConflict"
        ),
        "WriteConflict": problem_response(
            "The task's status does not allow it (`task_status` is it; on the reporting API, "
            "`cancel_requested: true` means an operator asked the task to stop). Or a request "
            "with the same Idempotency-Key is still being performed (with Retry-After).",
            schema="WriteConflict",
            headers={"Retry-After": RETRY_AFTER_IN_PROGRESS},
        ),
        "InvalidBody": problem_response(
            "A field of the body is unknown, missing, or not a value it takes; or the "
            "Idempotency-Key is malformed, or was sent before with another request. Every bad "
            "field is named.",
            schema="InvalidBody",
        ),
        "TooLarge": problem_response(f"The body is longer than {MAX_BODY_BYTES:,} bytes."),
        "NotJson": problem_response("The body is not sent as application/json."),
        "UriTooLong": {
            "description": (
                "The request line is longer than the server takes (gunicorn's "
                "limit_request_line, 4094 bytes by default); the body is the server's own."
            )
        },
        "Unavailable": problem_response(
            "The database cannot be reached right now.",
            headers={
                "Retry-After": {
                    "description": "Seconds to wait before trying again.",
                    "required": True,
                    "schema": {"type": "integer", "minimum": 0, "examples": [RETRY_AFTER_SECONDS]},
                }
            },
        ),
    }


# -- operations ------------------------------------------------------------------------------


def json_ok(schema: str, description: str, **extra: Any) -> JsonSchema:
    """A 200 answer with a JSON body of the given schema."""
    return {
        "description": description,
        "content": {"application/json": {"schema": ref("schemas", schema)}},
        **extra,
    }


def export_ok(kind: str) -> JsonSchema:
    """A 200 answer that is a download of every match."""
    export_format = EXPORT_FORMATS[kind]
    return {
        "description": f"Every matching task as {kind.upper()}, streamed, one record per task.",
        "headers": {
            "Content-Disposition": {
                "description": "attachment, with a file name that carries the time of the export",
                "schema": {"type": "string"},
            }
        },
        "content": {export_format.mimetype: {"schema": {"type": "string"}}},
    }


LINK_HEADER = {
    "description": 'The next page\'s full URL, as `<url>; rel="next"`; absent on the last page.',
    "schema": {"type": "string", "pattern": '^<[^>]+>; rel="next"$'},
}


def filtered(ok: JsonSchema, refused: Iterable[str] = ()) -> JsonSchema:
    """An operation that reads the filter (all of it but `refused`)."""
    return {
        "parameters": parameter_refs(refused),
        "responses": {
            "200": ok,
            "401": ref("responses", "Unauthorized"),
            "414": ref("responses", "UriTooLong"),
            "422": ref("responses", "InvalidQuery"),
            "503": ref("responses", "Unavailable"),
        },
    }


TASK_ID_PARAMETER = {
    "name": "task_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "format": "uuid"},
}


def action(operation_id: str, ok_status: str, ok: JsonSchema) -> JsonSchema:
    """An operator's POST on one task: who may, and what it answers."""
    return {
        "method": "post",
        "operationId": operation_id,
        "security": WRITE_SECURITY,
        "parameters": [TASK_ID_PARAMETER],
        "responses": {
            ok_status: ok,
            "400": ref("responses", "CsrfRefused"),
            "401": ref("responses", "Unauthorized"),
            "403": ref("responses", "Forbidden"),
            "404": ref("responses", "NotFound"),
            "409": ref("responses", "Conflict"),
            "414": ref("responses", "UriTooLong"),
            "503": ref("responses", "Unavailable"),
        },
    }


# Writes need a bearer token or the sign-on identity (with the page's CSRF token).
WRITE_SECURITY = [{"bearerToken": []}, {"singleSignOn": []}]
# Reporters are modules: they always send a token.
REPORT_SECURITY = [{"bearerToken": []}]

RETRY_AFTER_IN_PROGRESS = {
    "description": "With a request still in progress: seconds to wait before sending it again.",
    "schema": {"type": "integer", "minimum": 0, "examples": [IN_PROGRESS_RETRY_SECONDS]},
}
IDEMPOTENCY_KEY_PARAMETER = {
    "name": IDEMPOTENCY_HEADER,
    "in": "header",
    "required": False,
    "description": (
        "Any unique string (a UUID): the same request sent again with the same key, by the "
        "same token, within 24 hours, gets the first answer again instead of acting twice."
    ),
    "schema": {"type": "string", "pattern": KEY_PATTERN},
}
REPLAYED = {
    REPLAYED_HEADER: {
        "description": "`true` when this is the stored answer to an earlier request.",
        "schema": {"type": "string", "const": "true"},
    }
}


def with_replayed(ok: JsonSchema) -> JsonSchema:
    """An answer that may be the stored one of an earlier request with the same key."""
    return {**ok, "headers": {**ok.get("headers", {}), **REPLAYED}}


def json_body(schema: str, description: str, required: bool = True) -> JsonSchema:
    """A JSON request body of the given schema."""
    return {
        "description": description,
        "required": required,
        "content": {"application/json": {"schema": ref("schemas", schema)}},
    }


def written_once(operation: JsonSchema) -> JsonSchema:
    """A write that honours Idempotency-Key: its header, and what a bad key answers."""
    responses = operation["responses"]
    responses["409"] = ref("responses", "WriteConflict")
    responses.setdefault("413", ref("responses", "TooLarge"))
    responses.setdefault("422", ref("responses", "InvalidBody"))
    for status, answer in responses.items():
        if status.startswith("2"):
            responses[status] = with_replayed(answer)
    parameters = [*operation.get("parameters", []), IDEMPOTENCY_KEY_PARAMETER]
    return {**operation, "parameters": parameters}


def report(
    operation_id: str, ok: JsonSchema, body: JsonSchema | None = None, ok_status: str = "200"
) -> JsonSchema:
    """A reporter's POST on one task: a move of the recorder, answered with the task."""
    operation = {
        "method": "post",
        "operationId": operation_id,
        "tags": ["reporting"],
        "security": REPORT_SECURITY,
        "parameters": [] if ok_status == "201" else [TASK_ID_PARAMETER],
        "responses": {
            ok_status: ok,
            "401": ref("responses", "Unauthorized"),
            "403": ref("responses", "Forbidden"),
            **({} if ok_status == "201" else {"404": ref("responses", "NotFound")}),
            "409": ref("responses", "WriteConflict"),
            "413": ref("responses", "TooLarge"),
            "414": ref("responses", "UriTooLong"),
            "415": ref("responses", "NotJson"),
            "422": ref("responses", "InvalidBody"),
            "503": ref("responses", "Unavailable"),
        },
    }
    if body is not None:
        operation["requestBody"] = body
    return written_once(operation)


def reporting_operations() -> dict[str, JsonSchema]:
    """The reporting API's operations, for modules with a reporter token."""
    moved = json_ok("TaskWithDetails", "The task after the move.")
    created = {
        **json_ok("TaskWithDetails", "The new task, queued."),
        "headers": {"Location": {"description": "The task's URL.", "schema": {"type": "string"}}},
    }
    return {
        "reporting.create_task_json": report(
            "createTask", created, json_body("NewTask", "The task to create."), ok_status="201"
        ),
        "reporting.start_task_json": report("startTask", moved),
        "reporting.report_progress_json": report(
            "reportProgress", moved, json_body("Progress", "How far the task has got.")
        ),
        "reporting.heartbeat_json": report("sendHeartbeat", moved),
        "reporting.complete_task_json": report(
            "completeTask",
            moved,
            json_body("Results", "The results of the task's type, if any.", required=False),
        ),
        "reporting.fail_task_json": report(
            "failTask", moved, json_body("Failure", "Why the task failed.")
        ),
    }


def cancel_operation() -> JsonSchema:
    """One URL, two roles: an operator cancels or asks to stop; a module confirms it stopped."""
    operation = action(
        "cancelTask",
        "200",
        json_ok(
            "ActionResult",
            "An operator's cancel: the task is cancelled (it was queued) or cancelling (it "
            "runs, until its module confirms). A module's (a reporter's): it is cancelled.",
        ),
    )
    operation["description"] = (
        "With an operator's identity, cancels a queued task at once and asks a running one to "
        "stop. With a reporter's token, the module confirms that it stopped the task (queued "
        "or running): it is cancelled."
    )
    return written_once(operation)


def security_schemes(app: Flask) -> dict[str, JsonSchema]:
    """A bearer token always; the sign-on proxy's header when one is configured and believed."""
    schemes: dict[str, JsonSchema] = {
        "bearerToken": {
            "type": "http",
            "scheme": "bearer",
            "description": "A token from `flask --app wsgi tokens create --name NAME --role ROLE`.",
        }
    }
    header = app.config["AUTH_USER_HEADER"]
    if header and app.config["TRUSTED_PROXIES"]:
        schemes["singleSignOn"] = {
            "type": "apiKey",
            "in": "header",
            "name": header,
            "description": "Set by the single sign-on proxy; OPERATORS decides who operates.",
        }
    return schemes


def read_security(app: Flask) -> list[JsonSchema]:
    """Reading needs no identity unless AUTH_REQUIRED is on."""
    known = [scheme for scheme in WRITE_SECURITY if next(iter(scheme)) in security_schemes(app)]
    return known if app.config["AUTH_REQUIRED"] else [{}, *known]


DRY_RUN_PARAMETER = {
    "name": "dry_run",
    "in": "query",
    "required": False,
    "description": "1 (or true): change nothing, answer how many tasks and which would change.",
    "schema": {"type": "string", "enum": ["1", "true", "0", "false"]},
}


def bulk_action(operation_id: str) -> JsonSchema:
    """An operator's POST on every task the list's filter matches (paging aside)."""
    return {
        "method": "post",
        "operationId": operation_id,
        "security": WRITE_SECURITY,
        "parameters": [*parameter_refs(refused=PAGE_PARAMETERS), DRY_RUN_PARAMETER],
        "responses": {
            "200": json_ok(
                "BulkResult", "The dry run's count and ids, or what changed and what did not."
            ),
            "400": ref("responses", "CsrfRefused"),
            "401": ref("responses", "Unauthorized"),
            "403": ref("responses", "Forbidden"),
            "414": ref("responses", "UriTooLong"),
            "422": ref("responses", "InvalidQuery"),
            "503": ref("responses", "Unavailable"),
        },
    }


def operations() -> dict[str, JsonSchema]:
    """Each JSON endpoint's operation, by endpoint name (its path comes from the URL map)."""
    return {
        "operate.cancel_many_json": bulk_action("cancelTasks"),
        "operate.retry_many_json": bulk_action("retryTasks"),
        "operate.cancel_json": cancel_operation(),
        **reporting_operations(),
        "operate.retry_json": action(
            "retryTask",
            "201",
            {
                **json_ok("RetryResult", "The new task, queued."),
                "description": "The new task, queued.",
                "headers": {
                    "Location": {
                        "description": "The new task's URL.",
                        "schema": {"type": "string"},
                    }
                },
            },
        ),
        "api.list_tasks_json": {
            "operationId": "listTasks",
            **filtered(json_ok("TaskPage", "A page of tasks.", headers={"Link": LINK_HEADER})),
        },
        "api.count_tasks_json": {
            "operationId": "countTasks",
            **filtered(json_ok("Counts", "Counts by status and by type, and the total.")),
        },
        "api.histogram_json": {
            "operationId": "taskHistogram",
            **filtered(
                json_ok("Histogram", "Matching tasks per bucket and status."),
                refused=CHART_REFUSES,
            ),
        },
        "api.errors_json": {
            "operationId": "topErrors",
            **filtered(
                json_ok("ErrorGroups", "The most common errors, limit groups at most."),
                refused=ERRORS_REFUSE,
            ),
        },
        "api.export_csv": {
            "operationId": "exportTasksCsv",
            **filtered(export_ok("csv"), refused=PAGE_PARAMETERS),
        },
        "api.export_ndjson": {
            "operationId": "exportTasksNdjson",
            **filtered(export_ok("ndjson"), refused=PAGE_PARAMETERS),
        },
        "api.show_task_json": {
            "operationId": "getTask",
            "parameters": [TASK_ID_PARAMETER],
            "responses": {
                "200": json_ok("TaskWithDetails", "The task."),
                "401": ref("responses", "Unauthorized"),
                "404": ref("responses", "NotFound"),
                "414": ref("responses", "UriTooLong"),
                "503": ref("responses", "Unavailable"),
            },
        },
        "api.task_events_json": {
            "operationId": "getTaskEvents",
            "parameters": [TASK_ID_PARAMETER],
            "responses": {
                "200": json_ok("TaskEvents", "The task's events, oldest first."),
                "404": problem_response(
                    "No task has this id and no events name it, or the id is not a UUID."
                ),
                "414": ref("responses", "UriTooLong"),
                "503": ref("responses", "Unavailable"),
            },
        },
        "contract.openapi_json": {
            "operationId": "getOpenApi",
            "responses": {
                "200": {
                    "description": "This description.",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            },
        },
    }


def openapi_path(rule: str) -> str:
    """A Flask rule such as `/tasks/<task:task_id>` as an OpenAPI path, `/tasks/{task_id}`."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def first_line(text: str | None) -> str:
    """The first line of a docstring."""
    return (text or "").strip().splitlines()[0] if text else ""


def paths(app: Flask) -> dict[str, JsonSchema]:
    """Every described endpoint at its path, summarised by its view's docstring."""
    rules = {rule.endpoint: rule.rule for rule in app.url_map.iter_rules()}
    described: dict[str, JsonSchema] = {}
    schemes = security_schemes(app)
    for endpoint, operation in operations().items():
        summary = first_line(app.view_functions[endpoint].__doc__)
        method = operation.pop("method", "get")
        security = operation.pop("security", None)
        if security is None and endpoint != "contract.openapi_json":
            security = read_security(app)
        if security is not None:
            operation["security"] = [s for s in security if not s or next(iter(s)) in schemes]
        path = described.setdefault(openapi_path(rules[endpoint]), {})
        path[method] = {"summary": summary, **operation}
    return described


def openapi_document(app: Flask, server_url: str = "/") -> JsonSchema:
    """The whole description of the JSON API."""
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Vectorize Tasks",
            "version": metadata.version("vectorize-tasks"),
            "description": (
                "Every background task of the platform's five task tables as one list. "
                "Parameters combine with AND; repeats of a repeatable one combine with OR. "
                "An unknown parameter, an empty value or a single-valued parameter given "
                "twice answers 422, never a silent match-all."
            ),
        },
        "servers": [{"url": server_url}],
        "paths": paths(app),
        "components": {
            "parameters": filter_parameters(),
            "schemas": response_schemas(),
            "responses": shared_responses(),
            "securitySchemes": security_schemes(app),
        },
    }


@bp.get("/openapi.json")
def openapi_json() -> Response:
    """The OpenAPI 3.1 description of the JSON API."""
    return jsonify(openapi_document(current_app, request.script_root or "/"))


@bp.get("/api")
def api_page() -> Response:
    """The description rendered for people."""
    return Response(render_template("api.html", swagger_ui=SWAGGER_UI_FOLDER), mimetype="text/html")
