"""The five task tables the platform's modules write, with the shared columns defined once."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from flask import current_app, g
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.dialects import mysql
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column

from app.config import REPLICA_BIND
from app.error_groups import ERROR_GROUP_MAX_LENGTH
from app.timeouts import limit_statements


class Status(StrEnum):
    """A task's place in its life: queued → running → completed | failed | cancelled."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE_STATUSES = (Status.QUEUED, Status.RUNNING)
# The values a column takes, kept here for its CHECK constraint and for the reporting API's
# checks of what a module sends (`info={"choices": …}`, `info={"minimum": …}`, see
# app/task_fields.py).
MODEL_SOURCES = ("huggingface", "github", "local")
DATASET_SOURCES = ("huggingface", "local")
TRAINING_METHODS = ("full", "lora", "qlora")
TERMINAL_STATUSES = (Status.COMPLETED, Status.FAILED, Status.CANCELLED)
TAG_MAX_LENGTH = 128
# C0 and C1 controls and DEL, as a character-class range (the API's description reuses it).
CONTROL_CHARACTER_RANGE = r"\x00-\x1f\x7f-\x9f"
CONTROL_CHARACTERS = re.compile(f"[{CONTROL_CHARACTER_RANGE}]")


def sql_constant(value: object) -> sa.ColumnElement[Any]:
    """A constant of the code's own (a status, a separator, a number), written into the SQL.

    Sent as a parameter it would lengthen the parameter list of every statement: psycopg
    re-parses statements with more than 50 parameters on every run, and a plan made for
    parameters cannot see which status a member reads. Never for user input: only a
    string without quotes or backslashes is accepted.
    """
    if type(value) is int:
        return sa.literal_column(str(value), sa.Integer)
    if not isinstance(value, str) or "'" in value or "\\" in value:
        raise ValueError(f"{value!r} cannot be written as an SQL constant")
    return sa.literal_column(f"'{value}'", sa.String)


def tag_problem(tag: str) -> str | None:
    """What makes a tag unusable, or None: the recorder and the filter form share the rule."""
    if len(tag) > TAG_MAX_LENGTH:
        return f"a tag has at most {TAG_MAX_LENGTH} characters"
    if CONTROL_CHARACTERS.search(tag):
        return "a tag cannot contain control characters"
    return None


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A UTC instant on every engine: aware datetimes in, aware UTC datetimes out.

    PostgreSQL keeps `timestamptz`; SQLite and MariaDB have no zone, so they store the UTC
    wall time (MariaDB with microseconds, which `DATETIME` drops by default).
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name in {"mysql", "mariadb"}:
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(sa.DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("timestamps must carry a time zone")
        value = value.astimezone(UTC)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# MariaDB's native UUID type sorts in its own segment order; CHAR(32) of the hex keeps the
# same order as PostgreSQL's uuid and SQLite, so `id` breaks ties identically everywhere.
UUIDType = sa.Uuid().with_variant(sa.Uuid(native_uuid=False), "mysql", "mariadb")

# Tags match exactly: MariaDB's default collation ignores case and trailing spaces.
TagType = sa.String(TAG_MAX_LENGTH).with_variant(
    mysql.VARCHAR(TAG_MAX_LENGTH, collation="utf8mb4_nopad_bin"), "mysql", "mariadb"
)

# Error groups match exactly too (case and spaces are part of a message).
ErrorGroupType = sa.String(ERROR_GROUP_MAX_LENGTH).with_variant(
    mysql.VARCHAR(ERROR_GROUP_MAX_LENGTH, collation="utf8mb4_nopad_bin"), "mysql", "mariadb"
)


class SecondsBetween(sa.sql.functions.FunctionElement[float]):
    """Seconds from one timestamp column to another, as each engine computes it in a column.

    Used only as the expression of a generated column, so the arguments are bare column
    names. SQLite's and MariaDB's values may fall short of the true span by under a second
    (day fractions in floating point; whole seconds): readers allow for that.
    """

    type = sa.Double()
    name = "seconds_between"
    inherit_cache = True


@compiles(SecondsBetween)
def _seconds_between_postgresql(element: SecondsBetween, compiler: Any, **kw: Any) -> str:
    start, end = (compiler.process(arg, **kw) for arg in element.clauses)
    return f"CAST(EXTRACT(EPOCH FROM {end} - {start}) AS DOUBLE PRECISION)"


@compiles(SecondsBetween, "sqlite")
def _seconds_between_sqlite(element: SecondsBetween, compiler: Any, **kw: Any) -> str:
    start, end = (compiler.process(arg, **kw) for arg in element.clauses)
    return f"(julianday({end}) - julianday({start})) * 86400.0"


@compiles(SecondsBetween, "mysql")
@compiles(SecondsBetween, "mariadb")
def _seconds_between_mariadb(element: SecondsBetween, compiler: Any, **kw: Any) -> str:
    start, end = (compiler.process(arg, **kw) for arg in element.clauses)
    return f"TIMESTAMPDIFF(SECOND, {start}, {end})"


class Base(DeclarativeBase):
    """Declarative base with one naming convention, so constraint names are stable."""

    metadata = sa.MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


db = SQLAlchemy(model_class=Base)


class ReplicaUnreachable(sa.exc.OperationalError):
    """The read replica cannot be reached (and falling back to the primary is off)."""


def connect_for_reading(limit_ms: int | None = None) -> sa.Connection:
    """A new connection for reading tasks, from the replica if there is one; the caller closes it.

    Its statements stop after `limit_ms` (an export's longer limit), else after the normal
    STATEMENT_TIMEOUT_MS. On PostgreSQL it reads in autocommit. Each statement there sees
    its own snapshot in any case (READ COMMITTED), and without a transaction nothing ends in
    ROLLBACK, which would make psycopg drop its prepared statements: a page's statement would
    then be planned anew on every request, which costs more than running it. MariaDB keeps a
    transaction, and with it one snapshot for everything a request reads; SQLite's driver
    begins none for reads, so there too each statement sees the latest data.
    """
    connection = connect_to_reading_engine()
    if connection.dialect.name == "postgresql":
        connection = connection.execution_options(isolation_level="AUTOCOMMIT")
    g.statement_limit_ms = limit_ms or current_app.config["STATEMENT_TIMEOUT_MS"]
    limit_statements(connection, g.statement_limit_ms)
    return connection


def connect_to_reading_engine() -> sa.Connection:
    """A connection to the read replica when one is set, else to the primary.

    A replica that cannot be reached raises ReplicaUnreachable, or with REPLICA_FALLBACK
    on, the primary answers instead (and the log says so).
    """
    replica = db.engines.get(REPLICA_BIND)
    if replica is None:
        return db.engine.connect()
    try:
        return replica.connect()
    except sa.exc.DBAPIError as error:
        if not current_app.config["REPLICA_FALLBACK"]:
            raise ReplicaUnreachable(error.statement, error.params, error.orig) from error
        current_app.logger.warning("read replica unreachable, reading the primary: %s", error.orig)
        return db.engine.connect()


def read_connection() -> sa.Connection:
    """The request's one connection for reading tasks, closed when the request ends."""
    if "read_connection" not in g:
        g.read_connection = connect_for_reading()
    return g.read_connection


def close_read_connection(_error: BaseException | None = None) -> None:
    """Give the request's connection back to the pool, if it took one."""
    connection = g.pop("read_connection", None)
    if connection is not None:
        connection.close()


def _in_list(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{value}'" for value in values)


class TaskColumns:
    """The columns, rules and indexes every task table shares."""

    id: Mapped[uuid.UUID] = mapped_column(
        UUIDType, primary_key=True, default=uuid.uuid4, sort_order=-1
    )
    status: Mapped[str] = mapped_column(sa.String(16), default=Status.QUEUED.value, sort_order=-1)
    tag: Mapped[str | None] = mapped_column(TagType, sort_order=-1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, sort_order=-1)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, sort_order=-1)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, sort_order=-1)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, sort_order=-1)
    progress: Mapped[float | None] = mapped_column(sa.Double, sort_order=-1)
    error_msg: Mapped[str | None] = mapped_column(sa.Text, sort_order=-1)
    # When an operator asked a running task to stop: the module learns it when it next
    # reports, and confirms by cancelling (app/actions.py, app/recorder.py).
    cancel_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime, sort_order=-1)
    # The failed or cancelled task this one retries (same table). Unique: a task is retried
    # once, so two operators pressing Retry together make one new task, not two.
    retry_of: Mapped[uuid.UUID | None] = mapped_column(UUIDType, sort_order=-1)
    # A failed task's error with its variable parts taken out (app/error_groups.py): what
    # the most common errors are grouped by, and what a link to one group filters on.
    error_group: Mapped[str | None] = mapped_column(ErrorGroupType, sort_order=-1)
    # Kept by the database, never written: how long a finished task took from creation.
    # Its longest value per status bounds how old a task finished inside a time window can
    # be, which lets a page stop walking the created_at order there (see app/query/shapes.py).
    seconds_to_finish: Mapped[float | None] = mapped_column(
        sa.Double,
        sa.Computed(
            SecondsBetween(sa.column("created_at"), sa.column("finished_at")), persisted=True
        ),
        deferred=True,
        sort_order=-1,
    )

    @declared_attr.directive
    @classmethod
    def __table_args__(cls) -> tuple[Any, ...]:
        table = cls.__tablename__
        return (
            sa.CheckConstraint(f"status IN ({_in_list(tuple(Status))})", name="status"),
            sa.CheckConstraint(
                f"(status IN ({_in_list(TERMINAL_STATUSES)})) = (finished_at IS NOT NULL)",
                name="finished_when_terminal",
            ),
            sa.CheckConstraint("progress >= 0 AND progress <= 1", name="progress"),
            # Every listing walks one of these in (created_at, id) order. Each also holds
            # the other filtered columns, so a walk reads only the rows it returns.
            sa.Index(f"ix_{table}_created", "created_at", "id", "status", "finished_at"),
            sa.Index(f"ix_{table}_status_created", "status", "created_at", "id", "finished_at"),
            sa.Index(f"ix_{table}_tag_created", "tag", "created_at", "id", "status", "finished_at"),
            # A tag and a status: a page of both, and a capped count of one status of a tag.
            sa.Index(f"ix_{table}_tag_status", "tag", "status", "created_at", "id", "finished_at"),
            # Counts by status, and the time window's "finished recently" half, by status.
            sa.Index(f"ix_{table}_status_finished", "status", "finished_at"),
            # The longest time to finish per status, read in one step (app/query/shapes.py).
            sa.Index(f"ix_{table}_status_seconds", "status", "seconds_to_finish"),
            # The newest change, read in one step: the data version (app/query/versions.py).
            sa.Index(f"ix_{table}_updated", "updated_at"),
            # Running tasks not heard from since a moment: a range of this index, whatever
            # the table's size (stalled tasks, app/stalled.py; the metrics' silent gauge),
            # with created_at for a "Created between…" bound beside it (revision 0014).
            sa.Index(f"ix_{table}_status_updated", "status", "updated_at", "created_at"),
            # The retry of a task, found from the task (its "retried as" link).
            sa.Index(f"ix_{table}_retry_of", "retry_of", unique=True),
            # Failed tasks by error group (the most common errors, app/query/errors.py), and
            # one group's tasks in created_at order (a link from the errors panel).
            sa.Index(
                f"ix_{table}_status_error_group",
                "status",
                "error_group",
                "created_at",
                "id",
                "finished_at",
            ),
            *cls.extra_table_args(),
        )

    @classmethod
    def extra_table_args(cls) -> tuple[Any, ...]:
        """Constraints and indexes of one kind of task only."""
        return ()

    # The type's own columns that a module fills in as results, not as inputs: a retry
    # copies every other column of the type.
    result_columns: tuple[str, ...] = ()

    @classmethod
    def input_columns(cls) -> list[str]:
        """The type's own columns a task is created with (what a retry copies)."""
        return [
            column.key
            for column in sa.inspect(cls).columns
            if column.key not in COMMON_COLUMNS
            and column.computed is None
            and column.key not in cls.result_columns
        ]

    @classmethod
    def detail_columns(cls) -> list[sa.ColumnElement[Any]]:
        """The columns only this kind of task has, labelled with their names."""
        return [
            column.label(column.key)
            for column in sa.inspect(cls).columns
            if column.key not in COMMON_COLUMNS and column.computed is None
        ]


COMMON_COLUMNS = (
    "id",
    "status",
    "tag",
    "created_at",
    "updated_at",
    "started_at",
    "finished_at",
    "progress",
    "error_msg",
    "cancel_requested_at",
    "retry_of",
    "error_group",
)


class UploadTask(TaskColumns, db.Model):
    """A model brought onto the platform from Hugging Face, GitHub or a local file."""

    __tablename__ = "upload_task"
    task_type = "model_upload"
    result_columns = ("size_bytes",)

    source: Mapped[str] = mapped_column(sa.String(16), info={"choices": MODEL_SOURCES})
    model_name: Mapped[str] = mapped_column(sa.String(200))
    source_uri: Mapped[str] = mapped_column(sa.String(500))
    revision: Mapped[str | None] = mapped_column(sa.String(100))
    size_bytes: Mapped[int | None] = mapped_column(sa.BigInteger, info={"minimum": 0})

    @classmethod
    def extra_table_args(cls) -> tuple[Any, ...]:
        return (sa.CheckConstraint(f"source IN ({_in_list(MODEL_SOURCES)})", name="source"),)

    @classmethod
    def summary(cls) -> sa.ColumnElement[str]:
        """Describe the task in a few words, in SQL so lists need no second query."""
        return cls.model_name + sql_constant(" from ") + cls.source


class UploadDatasetTask(TaskColumns, db.Model):
    """A dataset uploaded from a local file or downloaded from Hugging Face."""

    __tablename__ = "upload_dataset_task"
    task_type = "dataset_upload"
    result_columns = ("row_count", "size_bytes")

    source: Mapped[str] = mapped_column(sa.String(16), info={"choices": DATASET_SOURCES})
    dataset_name: Mapped[str] = mapped_column(sa.String(200))
    source_uri: Mapped[str] = mapped_column(sa.String(500))
    row_count: Mapped[int | None] = mapped_column(sa.BigInteger, info={"minimum": 0})
    size_bytes: Mapped[int | None] = mapped_column(sa.BigInteger, info={"minimum": 0})

    @classmethod
    def extra_table_args(cls) -> tuple[Any, ...]:
        return (sa.CheckConstraint(f"source IN ({_in_list(DATASET_SOURCES)})", name="source"),)

    @classmethod
    def summary(cls) -> sa.ColumnElement[str]:
        """Describe the task in a few words, in SQL so lists need no second query."""
        return cls.dataset_name + sql_constant(" from ") + cls.source


class TrainingTask(TaskColumns, db.Model):
    """A training or fine-tuning run of a base model on a dataset."""

    __tablename__ = "training_task"
    task_type = "training"
    result_columns = ("output_model",)

    base_model: Mapped[str] = mapped_column(sa.String(200))
    dataset_name: Mapped[str] = mapped_column(sa.String(200))
    method: Mapped[str] = mapped_column(sa.String(16), info={"choices": TRAINING_METHODS})
    epochs: Mapped[int] = mapped_column(sa.Integer, info={"minimum": 1})
    output_model: Mapped[str | None] = mapped_column(sa.String(200))
    dataset_task_id: Mapped[uuid.UUID | None] = mapped_column(
        UUIDType, sa.ForeignKey("upload_dataset_task.id"), index=True
    )

    @classmethod
    def extra_table_args(cls) -> tuple[Any, ...]:
        return (
            sa.CheckConstraint(f"method IN ({_in_list(TRAINING_METHODS)})", name="method"),
            sa.CheckConstraint("epochs >= 1", name="epochs"),
        )

    @classmethod
    def summary(cls) -> sa.ColumnElement[str]:
        """Describe the task in a few words, in SQL so lists need no second query."""
        on, opening, closing = (sql_constant(text) for text in (" on ", " (", ")"))
        return cls.base_model + on + cls.dataset_name + opening + cls.method + closing


class EvaluationTask(TaskColumns, db.Model):
    """A model scored against a benchmark dataset."""

    __tablename__ = "evaluation_task"
    task_type = "evaluation"
    result_columns = ("metrics",)

    model_name: Mapped[str] = mapped_column(sa.String(200))
    dataset_name: Mapped[str] = mapped_column(sa.String(200))
    benchmark: Mapped[str] = mapped_column(sa.String(100))
    metrics: Mapped[dict[str, float] | None] = mapped_column(sa.JSON)
    training_task_id: Mapped[uuid.UUID | None] = mapped_column(
        UUIDType, sa.ForeignKey("training_task.id"), index=True
    )

    @classmethod
    def summary(cls) -> sa.ColumnElement[str]:
        """Describe the task in a few words, in SQL so lists need no second query."""
        return cls.model_name + sql_constant(" on ") + cls.benchmark


class SynthesisTask(TaskColumns, db.Model):
    """Synthetic data generated by a model, optionally seeded from a dataset."""

    __tablename__ = "synthesis_task"
    task_type = "synthesis"
    result_columns = ("generated_rows",)

    generator_model: Mapped[str] = mapped_column(sa.String(200))
    source_dataset: Mapped[str | None] = mapped_column(sa.String(200))
    output_dataset: Mapped[str] = mapped_column(sa.String(200))
    target_rows: Mapped[int] = mapped_column(sa.Integer, info={"minimum": 1})
    generated_rows: Mapped[int | None] = mapped_column(sa.Integer, info={"minimum": 0})

    @classmethod
    def extra_table_args(cls) -> tuple[Any, ...]:
        return (sa.CheckConstraint("target_rows >= 1", name="target_rows"),)

    @classmethod
    def summary(cls) -> sa.ColumnElement[str]:
        """Describe the task in a few words, in SQL so lists need no second query."""
        return cls.output_dataset + sql_constant(" by ") + cls.generator_model


TaskModel = type[UploadTask | UploadDatasetTask | TrainingTask | EvaluationTask | SynthesisTask]

# The API's task types, in the order the platform lists them.
MODEL_FOR_TYPE: dict[str, TaskModel] = {
    model.task_type: model
    for model in (UploadTask, UploadDatasetTask, TrainingTask, EvaluationTask, SynthesisTask)
}
TASK_TYPES = tuple(MODEL_FOR_TYPE)


class EventKind(StrEnum):
    """What happened to a task, as its timeline says it."""

    CREATED = "created"
    STARTED = "started"
    PROGRESS = "progress"
    CANCEL_REQUESTED = "cancel_requested"
    CANCELLED = "cancelled"
    COMPLETED = "completed"
    FAILED = "failed"
    RETRIED = "retried"


ACTOR_MAX_LENGTH = 200
# Actors match exactly, as tags do: MariaDB's default collation ignores case and spaces.
ActorType = sa.String(ACTOR_MAX_LENGTH).with_variant(
    mysql.VARCHAR(ACTOR_MAX_LENGTH, collation="utf8mb4_nopad_bin"), "mysql", "mariadb"
)


class TaskEvent(db.Model):
    """One change of one task, who made it and when: written once, never edited.

    The task is named by type and id without a foreign key, so that deleting a task keeps
    its events readable.
    """

    __tablename__ = "task_event"

    id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    task_type: Mapped[str] = mapped_column(sa.String(32))
    task_id: Mapped[uuid.UUID] = mapped_column(UUIDType)
    kind: Mapped[str] = mapped_column(sa.String(32))
    actor: Mapped[str] = mapped_column(ActorType)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    note: Mapped[str | None] = mapped_column(sa.Text)

    __table_args__ = (
        sa.CheckConstraint(f"kind IN ({_in_list(tuple(EventKind))})", name="kind"),
        # A task's timeline, in order: one range of this index.
        sa.Index("ix_task_event_task", "task_id", "at", "id"),
        # Tasks someone acted on (the list's `actor=`): the actor's entries alone.
        sa.Index("ix_task_event_actor", "actor", "task_type", "task_id"),
    )


class Role(StrEnum):
    """What an identity may do: read, also cancel and retry, or report its tasks' progress."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    REPORTER = "reporter"


class ApiToken(db.Model):
    """A token scripts and modules send as `Authorization: Bearer …`; only its hash is kept.

    Revoking keeps the row (with `revoked_at`), so a name stays tied to what it did.
    """

    __tablename__ = "api_token"
    __table_args__ = (sa.CheckConstraint(f"role IN ({_in_list(tuple(Role))})", name="role"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(sa.String(100), unique=True)
    role: Mapped[str] = mapped_column(sa.String(16))
    # SHA-256 of the token, hex: the token is random (256 bits), so no salt or slow hash is
    # needed, and a lookup by hash is one index step.
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


# An Idempotency-Key is at most this long; its owner is a token's or a person's name.
IDEMPOTENCY_KEY_MAX_LENGTH = 255
IDEMPOTENCY_OWNER_MAX_LENGTH = 300
# Keys and owners match exactly: MariaDB's default collation ignores case and trailing spaces.
IdempotencyKeyType = sa.String(IDEMPOTENCY_KEY_MAX_LENGTH).with_variant(
    mysql.VARCHAR(IDEMPOTENCY_KEY_MAX_LENGTH, collation="utf8mb4_nopad_bin"), "mysql", "mariadb"
)
IdempotencyOwnerType = sa.String(IDEMPOTENCY_OWNER_MAX_LENGTH).with_variant(
    mysql.VARCHAR(IDEMPOTENCY_OWNER_MAX_LENGTH, collation="utf8mb4_nopad_bin"), "mysql", "mariadb"
)

# An answer's body: MariaDB's TEXT holds 64 KB, less than an answer may be.
AnswerType = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")


class IdempotencyKey(db.Model):
    """A write sent with an `Idempotency-Key`: claimed before it is performed, then its answer.

    One row per owner (token or person) and key, so a repeat is answered from here; a claim
    without an answer (`status_code` NULL) is a request still being performed. Rows are
    purged after a day (app/idempotency.py), a range of the `created_at` index.
    """

    __tablename__ = "idempotency_key"

    owner: Mapped[str] = mapped_column(IdempotencyOwnerType, primary_key=True)
    key: Mapped[str] = mapped_column(IdempotencyKeyType, primary_key=True)
    # SHA-256 of the method, path and body: the same key with another request is refused.
    request_hash: Mapped[str] = mapped_column(sa.String(64))
    status_code: Mapped[int | None] = mapped_column(sa.Integer)
    content_type: Mapped[str | None] = mapped_column(sa.String(100))
    location: Mapped[str | None] = mapped_column(sa.String(500))
    body: Mapped[str | None] = mapped_column(AnswerType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
