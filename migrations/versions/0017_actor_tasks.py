"""Each actor's tasks, kept by the database: counted per type and status, and listed in
created order.

A filter by actor (`actor=`) told how many of each table's tasks the actor acted on by
reading task_event's (actor, task_type, task_id) index up to 10,001 distinct tasks, counted
its matches by testing each task for an event, and read a page of a person's few thousand
tasks by reading every one of them by key and sorting them: at a million tasks on SQLite, a
module's own tasks (every task of its table) took 14 ms for a first page and 99 ms for its
counts (261 ms at ten million), and a person's 2,000 training runs 7 to 10 ms for a page.

- `actor_task_count (actor, task_type, status, tasks)`: how many tasks of that type, now in
  that status, have at least one event by that actor. The lookup of an actor is one read of
  its few rows, and the counts of an actor with types and statuses are exact sums of them.
- `actor_task (actor, task_type, created_at, task_id)`, its primary key in that order: one
  row per task and actor of its events. A page of an actor's tasks of a table walks its
  range newest first and reads each task by key (app/query/pages.py).

A task is one row and counts once per actor however many events it has from them, and only
while its own row exists. Triggers keep both:

- on task_event, an insert adds the task for its actor (at the task's status and
  created_at) when it is the actor's first event of that task, a delete takes it away when
  it was the last, and an update that changes the actor or the task does both (events are
  never edited, but a module writing in plain SQL could);
- on the five task tables, an insert adds the task for each actor whose events already name
  it, a delete takes it away for each, a change of `status` moves its counts and a change of
  `created_at` its rows.

PostgreSQL runs the task_event triggers BEFORE the row is written, because an AFTER row
trigger there sees every row of its statement, and two events of one actor and task
written by one statement would each see the other. Those triggers lock the task's row
before they read it, so that a task changing status while its actor's first event is
written waits for it (or it for the task) and the count moves with it; MariaDB's INSERT …
SELECT reads the task row with a lock of its own, and SQLite has one writer. A count that
falls to zero stays, as in task_hourly_count.

The tasks already there are counted and listed from the actors' events joined to their
tasks, in one pass per table for each.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

COUNTS = "actor_task_count"
LISTED = "actor_task"
TASK_TYPES = {
    "upload_task": "model_upload",
    "upload_dataset_task": "dataset_upload",
    "training_task": "training",
    "evaluation_task": "evaluation",
    "synthesis_task": "synthesis",
}
MARIADB = ("mysql", "mariadb")
ACTOR = sa.String(200).with_variant(mysql.VARCHAR(200, collation="utf8mb4_nopad_bin"), *MARIADB)
UUID = sa.Uuid().with_variant(sa.Uuid(native_uuid=False), *MARIADB)
INSTANT = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), *MARIADB)
EVENT_FUNCTION = "actor_tasks_event"
TASK_FUNCTION = "actor_tasks_task"
# What an update of an event or a task may change that moves it.
EVENT_MOVED = (
    "OLD.actor <> NEW.actor OR OLD.task_type <> NEW.task_type OR OLD.task_id <> NEW.task_id"
)
STATUS_MOVED = "OLD.status <> NEW.status"
CREATED_MOVED = "OLD.created_at <> NEW.created_at"


def counts_table() -> sa.Table:
    """The counts as this revision makes them."""
    return sa.Table(
        COUNTS,
        sa.MetaData(),
        sa.Column("actor", ACTOR, primary_key=True),
        sa.Column("task_type", sa.String(32), primary_key=True),
        sa.Column("status", sa.String(16), primary_key=True),
        sa.Column("tasks", sa.BigInteger, nullable=False),
    )


def listed_table() -> sa.Table:
    """The rows of each actor's tasks as this revision makes them."""
    return sa.Table(
        LISTED,
        sa.MetaData(),
        sa.Column("actor", ACTOR, primary_key=True),
        sa.Column("task_type", sa.String(32), primary_key=True),
        sa.Column("created_at", INSTANT, primary_key=True),
        sa.Column("task_id", UUID, primary_key=True),
    )


def added(dialect: str) -> str:
    """How an INSERT of a difference adds it to a count that is there already."""
    if dialect in MARIADB:
        return "ON DUPLICATE KEY UPDATE tasks = tasks + VALUES(tasks)"
    return (
        "ON CONFLICT (actor, task_type, status) "
        f"DO UPDATE SET tasks = {COUNTS}.tasks + excluded.tasks"
    )


def insert_listed(dialect: str) -> str:
    """The start of an INSERT of rows of actor_task that leaves a row already there alone
    (its end, on PostgreSQL, is `listed_once`)."""
    ignore = {"sqlite": " OR IGNORE", "mysql": " IGNORE", "mariadb": " IGNORE"}.get(dialect, "")
    return f"INSERT{ignore} INTO {LISTED} (actor, task_type, created_at, task_id)"


def listed_once(dialect: str) -> str:
    return "ON CONFLICT DO NOTHING" if dialect == "postgresql" else ""


def only_event(row: str) -> str:
    """No other event of `row`'s actor names its task (`row`: NEW or OLD of task_event)."""
    return (
        f"NOT EXISTS (SELECT 1 FROM task_event o WHERE o.actor = {row}.actor "
        f"AND o.task_type = {row}.task_type AND o.task_id = {row}.task_id AND o.id <> {row}.id)"
    )


def event_changes(table: str, row: str, difference: int, dialect: str) -> list[str]:
    """What an event (`row`) of one table's task adds (1) or takes away (-1), if it is its
    actor's only event of the task and the task is there: its count and its row."""
    of_task = (
        f"FROM {table} t WHERE {row}.task_type = '{TASK_TYPES[table]}' "
        f"AND t.id = {row}.task_id AND {only_event(row)}"
    )
    counted = (
        f"INSERT INTO {COUNTS} (actor, task_type, status, tasks) "
        f"SELECT {row}.actor, {row}.task_type, t.status, {difference} {of_task} {added(dialect)}"
    )
    if difference > 0:
        listed = (
            f"{insert_listed(dialect)} SELECT {row}.actor, {row}.task_type, t.created_at, t.id "
            f"{of_task} {listed_once(dialect)}"
        )
    else:
        created = f"(SELECT t.created_at FROM {table} t WHERE t.id = {row}.task_id)"
        listed = (
            f"DELETE FROM {LISTED} WHERE {row}.task_type = '{TASK_TYPES[table]}' "
            f"AND actor = {row}.actor AND task_type = {row}.task_type "
            f"AND created_at = {created} AND task_id = {row}.task_id AND {only_event(row)}"
        )
    return [counted, listed]


def events_changes(row: str, difference: int, dialect: str) -> str:
    """`event_changes` of the event's table, as statements: on SQLite each table's, whose
    type test leaves all but one without a row; elsewhere only the one its type picks, which
    PostgreSQL first locks (see `task_locked`)."""
    if dialect == "sqlite":
        return "; ".join(
            statement
            for table in TASK_TYPES
            for statement in event_changes(table, row, difference, dialect)
        )
    otherwise = "ELSIF" if dialect == "postgresql" else "ELSEIF"
    branches = []
    for number, table in enumerate(TASK_TYPES):
        statements = event_changes(table, row, difference, dialect)
        if dialect == "postgresql":
            statements.insert(0, task_locked(table, row))
        test = f"{row}.task_type = '{TASK_TYPES[table]}'"
        branches.append(f"{otherwise if number else 'IF'} {test} THEN {'; '.join(statements)};")
    return " ".join(branches) + " END IF"


def task_counted(task_type: str, row: str, difference: int, dialect: str) -> str:
    """Add `difference` at a task's status (`row`: NEW or OLD) for each actor of its events
    (`task_type`: the task's type, as SQL)."""
    return (
        f"INSERT INTO {COUNTS} (actor, task_type, status, tasks) "
        f"SELECT DISTINCT e.actor, {task_type}, {row}.status, {difference} "
        f"FROM task_event e WHERE e.task_id = {row}.id "
        f"AND e.task_type = {task_type} {added(dialect)}"
    )


def task_listed(task_type: str, row: str, dialect: str) -> str:
    """A row of the task (`row`: NEW) for each actor of its events."""
    return (
        f"{insert_listed(dialect)} SELECT DISTINCT e.actor, {task_type}, {row}.created_at, "
        f"{row}.id FROM task_event e WHERE e.task_id = {row}.id "
        f"AND e.task_type = {task_type} {listed_once(dialect)}"
    )


def task_unlisted(task_type: str, row: str, dialect: str) -> str:
    """The task's rows (`row`: OLD), one for each actor of its events: each one step into
    the key (MariaDB joins, as it reads a whole table for a DELETE … IN (SELECT …))."""
    events = f"e.task_id = {row}.id AND e.task_type = {task_type}"

    def key(of: str) -> str:
        return (
            f"{of}task_type = {task_type} AND {of}created_at = {row}.created_at "
            f"AND {of}task_id = {row}.id"
        )

    if dialect in MARIADB:
        return (
            f"DELETE a FROM {LISTED} a JOIN task_event e ON a.actor = e.actor "
            f"WHERE {events} AND {key('a.')}"
        )
    return (
        f"DELETE FROM {LISTED} WHERE {key('')} "
        f"AND actor IN (SELECT e.actor FROM task_event e WHERE {events})"
    )


def task_changes(task_type: str, dialect: str, new: str, old: str) -> dict[str, str]:
    """What a task's row adds when written (`new`) and takes away when gone (`old`): its
    counts by status (`counted`, `uncounted`) and its rows (`listed`, `unlisted`)."""
    return {
        "counted": task_counted(task_type, new, 1, dialect),
        "uncounted": task_counted(task_type, old, -1, dialect),
        "listed": task_listed(task_type, new, dialect),
        "unlisted": task_unlisted(task_type, old, dialect),
    }


def sqlite_triggers() -> list[str]:
    """Row triggers, each run as its row is written (so later rows see earlier ones)."""
    plus, minus = (events_changes(row, n, "sqlite") for row, n in (("new", 1), ("old", -1)))
    statements = [
        f"CREATE TRIGGER task_event_actors_insert AFTER INSERT ON task_event BEGIN {plus}; END",
        f"CREATE TRIGGER task_event_actors_delete AFTER DELETE ON task_event BEGIN {minus}; END",
        "CREATE TRIGGER task_event_actors_update AFTER UPDATE OF actor, task_type, task_id "
        f"ON task_event WHEN {EVENT_MOVED} BEGIN {minus}; {plus}; END",
    ]
    for table, task_type in TASK_TYPES.items():
        change = task_changes(f"'{task_type}'", "sqlite", "new", "old")
        statements += [
            f"CREATE TRIGGER {table}_actors_insert AFTER INSERT ON {table} "
            f"BEGIN {change['counted']}; {change['listed']}; END",
            f"CREATE TRIGGER {table}_actors_delete AFTER DELETE ON {table} "
            f"BEGIN {change['uncounted']}; {change['unlisted']}; END",
            f"CREATE TRIGGER {table}_actors_update AFTER UPDATE OF status ON {table} "
            f"WHEN {STATUS_MOVED} BEGIN {change['uncounted']}; {change['counted']}; END",
            f"CREATE TRIGGER {table}_actors_move AFTER UPDATE OF created_at ON {table} "
            f"WHEN {CREATED_MOVED} BEGIN {change['unlisted']}; {change['listed']}; END",
        ]
    return statements


def mariadb_triggers() -> list[str]:
    """The same on MariaDB, whose update triggers cannot name columns and test in their body."""
    plus, minus = (events_changes(row, n, "mariadb") for row, n in (("NEW", 1), ("OLD", -1)))
    each_row = "FOR EACH ROW"
    statements = [
        f"CREATE TRIGGER task_event_actors_insert AFTER INSERT ON task_event {each_row} "
        f"BEGIN {plus}; END",
        f"CREATE TRIGGER task_event_actors_delete AFTER DELETE ON task_event {each_row} "
        f"BEGIN {minus}; END",
        f"CREATE TRIGGER task_event_actors_update AFTER UPDATE ON task_event {each_row} "
        f"BEGIN IF {EVENT_MOVED} THEN {minus}; {plus}; END IF; END",
    ]
    for table, task_type in TASK_TYPES.items():
        change = task_changes(f"'{task_type}'", "mariadb", "NEW", "OLD")
        statements += [
            f"CREATE TRIGGER {table}_actors_insert AFTER INSERT ON {table} {each_row} "
            f"BEGIN {change['counted']}; {change['listed']}; END",
            f"CREATE TRIGGER {table}_actors_delete AFTER DELETE ON {table} {each_row} "
            f"BEGIN {change['uncounted']}; {change['unlisted']}; END",
            f"CREATE TRIGGER {table}_actors_update AFTER UPDATE ON {table} {each_row} BEGIN "
            f"IF {STATUS_MOVED} THEN {change['uncounted']}; {change['counted']}; END IF; "
            f"IF {CREATED_MOVED} THEN {change['unlisted']}; {change['listed']}; END IF; END",
        ]
    return statements


def task_locked(table: str, row: str) -> str:
    """PostgreSQL: wait for the event's task (`row`'s) to be free, and keep others off it, so
    that the next statements read its status and its events as they stand."""
    return f"PERFORM 1 FROM {table} WHERE id = {row}.task_id FOR UPDATE"


def postgresql_functions() -> list[str]:
    """One function for task_event's triggers, and one for the task tables' (the type is the
    trigger's argument)."""
    plus, minus = (events_changes(row, n, "postgresql") for row, n in (("NEW", 1), ("OLD", -1)))
    event = (
        f"CREATE FUNCTION {EVENT_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"IF TG_OP <> 'INSERT' THEN {minus}; END IF; "
        f"IF TG_OP <> 'DELETE' THEN {plus}; RETURN NEW; END IF; "
        "RETURN OLD; END $$"
    )
    change = task_changes("TG_ARGV[0]", "postgresql", "NEW", "OLD")
    updated = "TG_OP = 'UPDATE' AND "
    task = (
        f"CREATE FUNCTION {TASK_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"IF TG_OP = 'DELETE' OR ({updated}{STATUS_MOVED}) THEN {change['uncounted']}; END IF; "
        f"IF TG_OP = 'INSERT' OR ({updated}{STATUS_MOVED}) THEN {change['counted']}; END IF; "
        f"IF TG_OP = 'DELETE' OR ({updated}{CREATED_MOVED}) THEN {change['unlisted']}; END IF; "
        f"IF TG_OP = 'INSERT' OR ({updated}{CREATED_MOVED}) THEN {change['listed']}; END IF; "
        "RETURN NULL; END $$"
    )
    return [event, task]


def postgresql_triggers() -> list[str]:
    """task_event's triggers before each row is written, the task tables' after."""
    event = f"FOR EACH ROW EXECUTE FUNCTION {EVENT_FUNCTION}()"
    statements = [
        f"CREATE TRIGGER task_event_actors BEFORE INSERT OR DELETE ON task_event {event}",
        "CREATE TRIGGER task_event_actors_update BEFORE UPDATE OF actor, task_type, task_id "
        f"ON task_event FOR EACH ROW WHEN ({EVENT_MOVED}) EXECUTE FUNCTION {EVENT_FUNCTION}()",
    ]
    for table, task_type in TASK_TYPES.items():
        statements.append(
            f"CREATE TRIGGER {table}_actors AFTER INSERT OR DELETE OR UPDATE OF status, "
            f"created_at ON {table} FOR EACH ROW EXECUTE FUNCTION {TASK_FUNCTION}('{task_type}')"
        )
    return statements


def existing_tasks(table: str) -> tuple[str, str]:
    """The counts and the rows of one table's tasks as they stand: each actor's distinct
    tasks of it, joined to them."""
    task_type = TASK_TYPES[table]
    acted = (
        f"(SELECT DISTINCT actor, task_id FROM task_event WHERE task_type = '{task_type}') acted "
        f"JOIN {table} t ON t.id = acted.task_id"
    )
    return (
        f"INSERT INTO {COUNTS} (actor, task_type, status, tasks) "
        f"SELECT acted.actor, '{task_type}', t.status, COUNT(*) FROM {acted} "
        "GROUP BY acted.actor, t.status",
        f"INSERT INTO {LISTED} (actor, task_type, created_at, task_id) "
        f"SELECT acted.actor, '{task_type}', t.created_at, t.id FROM {acted}",
    )


def create_unmodelled(connection: sa.Connection) -> None:
    """Make the counts, the rows and their triggers, and fill both from the events there.

    That reads every event twice: no statement limit applies meanwhile (for this
    transaction on PostgreSQL; restored afterwards on MariaDB).
    """
    dialect = connection.dialect.name
    if dialect == "postgresql":
        connection.exec_driver_sql("SET LOCAL statement_timeout = 0")
        statements = postgresql_functions() + postgresql_triggers()
    elif dialect in MARIADB:
        connection.exec_driver_sql("SET @actor_limit = @@SESSION.max_statement_time")
        connection.exec_driver_sql("SET SESSION max_statement_time = 0")
        statements = mariadb_triggers()
    else:
        statements = sqlite_triggers()
    try:
        counts_table().create(connection)
        listed_table().create(connection)
        for statement in statements:
            connection.exec_driver_sql(statement)
        for table in TASK_TYPES:
            for statement in existing_tasks(table):
                connection.exec_driver_sql(statement)
    finally:
        if dialect in MARIADB:
            connection.exec_driver_sql("SET SESSION max_statement_time = @actor_limit")


def drop_unmodelled(connection: sa.Connection) -> None:
    """Remove the triggers, the counts and the rows wherever they are (a table may be gone
    already)."""
    dialect = connection.dialect.name
    if dialect == "postgresql":
        # The triggers depend on the functions and go with them.
        for function in (EVENT_FUNCTION, TASK_FUNCTION):
            connection.exec_driver_sql(f"DROP FUNCTION IF EXISTS {function}() CASCADE")
    else:
        for change in ("insert", "delete", "update", "move"):
            connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS task_event_actors_{change}")
            for table in TASK_TYPES:
                connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {table}_actors_{change}")
    for table in (COUNTS, LISTED):
        connection.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")


def upgrade() -> None:
    create_unmodelled(op.get_bind())


def downgrade() -> None:
    drop_unmodelled(op.get_bind())
