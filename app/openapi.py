"""The API's published contract: an OpenAPI 3.1 description, and a page that renders it.

The description is built, never written: each query parameter is a field of the filter
form (`TaskFilterForm`), with the field's name, description, range, choices and whether it
repeats, so a field added to the form appears here by itself. Response bodies come from the
list's fields (`TaskRow`), the task tables' columns and the error documents of
`app.errors`; the operations' summaries are their views' docstrings.
"""

from __future__ import annotations

import dataclasses
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
    ErrorGroupField,
    RepeatableField,
    StrictIntegerField,
    TagListField,
    TaskFilter,
    TaskFilterForm,
    TimestampField,
)
from app.models import CONTROL_CHARACTER_RANGE, MODEL_FOR_TYPE, TAG_MAX_LENGTH, TASK_TYPES
from app.query import Facets, TaskRow, Total
from app.query.histogram import MAX_BARS

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


def tag_schema(_field: Field) -> JsonSchema:
    """One tag: what `tag_problem` accepts, and not empty."""
    return {
        "type": "string",
        "minLength": 1,
        "maxLength": TAG_MAX_LENGTH,
        "pattern": f"^[^{CONTROL_CHARACTER_RANGE}]*$",
    }


def error_group_schema(_field: Field) -> JsonSchema:
    """An error group's key: what `ErrorGroupField` accepts, and not empty."""
    return {
        "type": "string",
        "minLength": 1,
        "maxLength": ERROR_GROUP_MAX_LENGTH,
        "pattern": f"^[^{CONTROL_CHARACTER_RANGE}]*$",
    }


def timestamp_schema(_field: Field) -> JsonSchema:
    """An instant with a zone, no earlier than the filter's earliest year."""
    return {
        "type": "string",
        "format": "date-time",
        "pattern": f"^{years_from(EARLIEST.year)}-",
    }


# One value of a field, by its class; the first class that matches wins (subclasses first).
# A field of a new class has no schema until it gets one here, and the description fails.
VALUE_SCHEMAS: list[tuple[type[Field], Callable[[Field], JsonSchema]]] = [
    (TagListField, tag_schema),
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
    return {
        name: {**annotation_schema(hints[name]), **({"enum": ENUMS[name]} if name in ENUMS else {})}
        for name in names
    }


def details_schemas() -> dict[str, JsonSchema]:
    """The fields only each type of task has, by type."""
    return {
        task_type: closed_object(
            {column.name: column_schema(column.element) for column in model.detail_columns()},
            title=f"Details of {task_type} tasks",
        )
        for task_type, model in MODEL_FOR_TYPE.items()
    }


def task_with_details() -> JsonSchema:
    """One task: a list item's fields and the details of its type, chosen by task_type."""
    return {
        **closed_object({**task_properties(), "details": {"type": "object"}}),
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
            "414": ref("responses", "UriTooLong"),
            "422": ref("responses", "InvalidQuery"),
            "503": ref("responses", "Unavailable"),
        },
    }


def operations() -> dict[str, JsonSchema]:
    """Each JSON endpoint's operation, by endpoint name (its path comes from the URL map)."""
    return {
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
            "parameters": [
                {
                    "name": "task_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "format": "uuid"},
                }
            ],
            "responses": {
                "200": json_ok("TaskWithDetails", "The task."),
                "404": ref("responses", "NotFound"),
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
    """A Flask rule such as `/tasks/<task_id>` as an OpenAPI path, `/tasks/{task_id}`."""
    return rule.replace("<", "{").replace(">", "}")


def first_line(text: str | None) -> str:
    """The first line of a docstring."""
    return (text or "").strip().splitlines()[0] if text else ""


def paths(app: Flask) -> dict[str, JsonSchema]:
    """Every described endpoint at its path, summarised by its view's docstring."""
    rules = {rule.endpoint: rule.rule for rule in app.url_map.iter_rules()}
    described: dict[str, JsonSchema] = {}
    for endpoint, operation in operations().items():
        summary = first_line(app.view_functions[endpoint].__doc__)
        described[openapi_path(rules[endpoint])] = {"get": {"summary": summary, **operation}}
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
