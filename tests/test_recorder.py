"""The recording API: legal moves, refused moves, timestamps, the database's own rules, races."""

from __future__ import annotations

import math
import random
import threading
import time
import uuid
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import pytest
import sqlalchemy as sa
from oracle import NOW, STATUSES, insert_tasks, make_task

from app.demo import type_fields
from app.models import MODEL_FOR_TYPE, TASK_TYPES, TERMINAL_STATUSES
from app.recorder import IllegalTransition, Recorder, TaskNotFound

TERMINAL = {s.value for s in TERMINAL_STATUSES}


class SettableClock:
    """A clock that shows whatever instant the test last set."""

    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> SettableClock:
    # Microseconds, to see that every engine keeps them.
    return SettableClock(NOW + timedelta(microseconds=123_456))


@pytest.fixture
def recorder(empty_engine: sa.Engine, clock: SettableClock) -> Recorder:
    return Recorder(empty_engine, clock)


def fields_of(task_type: str) -> dict[str, Any]:
    """The type-specific columns a module gives when it creates a task."""
    return type_fields(task_type, random.Random(1), finished_ok=False)


def stored(engine: sa.Engine, task_type: str, task_id: uuid.UUID) -> dict[str, Any]:
    """The task's row as the database holds it."""
    table = MODEL_FOR_TYPE[task_type].__table__
    with engine.connect() as connection:
        row = connection.execute(sa.select(table).where(table.c.id == task_id)).one()
    return dict(row._mapping)


def task_in(recorder: Recorder, status: str, task_type: str = "training") -> uuid.UUID:
    """A task brought to `status` by legal moves only."""
    task_id = recorder.create(task_type, tag="exp-1", **fields_of(task_type))
    if status in {"running", "completed"}:
        recorder.start(task_type, task_id)
    if status == "completed":
        recorder.complete(task_type, task_id)
    elif status == "failed":
        recorder.fail(task_type, task_id, "worker lost")
    elif status == "cancelled":
        recorder.cancel(task_type, task_id)
    return task_id


# Each lifecycle call, the status it moves to, and the statuses it may start from.
MOVES: dict[str, tuple[Any, str, set[str]]] = {
    "start": (lambda r, t, i: r.start(t, i), "running", {"queued"}),
    "report_progress": (lambda r, t, i: r.report_progress(t, i, 0.5), "running", {"running"}),
    "complete": (lambda r, t, i: r.complete(t, i), "completed", {"running"}),
    "fail": (lambda r, t, i: r.fail(t, i, "boom"), "failed", {"queued", "running"}),
    "cancel": (lambda r, t, i: r.cancel(t, i), "cancelled", {"queued", "running"}),
}
LEGAL = [(move, status) for move, (_, _, allowed) in MOVES.items() for status in sorted(allowed)]
ILLEGAL = [
    (move, status)
    for move, (_, _, allowed) in MOVES.items()
    for status in STATUSES
    if status not in allowed
]


# -- the life of a task ----------------------------------------------------------------------


@pytest.mark.parametrize("task_type", TASK_TYPES)
def test_create_records_a_queued_task(recorder, empty_engine, clock, task_type):
    task_id = recorder.create(task_type, tag="exp-7", **fields_of(task_type))
    row = stored(empty_engine, task_type, task_id)
    assert row["status"] == "queued"
    assert row["tag"] == "exp-7"
    assert row["created_at"] == row["updated_at"] == clock.now
    assert (row["started_at"], row["finished_at"], row["progress"], row["error_msg"]) == (
        None,
        None,
        None,
        None,
    )


def test_create_keeps_the_type_specific_fields(recorder, empty_engine):
    fields = fields_of("evaluation") | {"metrics": {"accuracy": 0.5}}
    task_id = recorder.create("evaluation", **fields)
    row = stored(empty_engine, "evaluation", task_id)
    assert {name: row[name] for name in fields} == fields


def test_start_moves_queued_to_running(recorder, empty_engine, clock):
    task_id = task_in(recorder, "queued")
    created = clock.now
    clock.now += timedelta(minutes=3)
    recorder.start("training", task_id)
    row = stored(empty_engine, "training", task_id)
    assert row["status"] == "running"
    assert row["started_at"] == row["updated_at"] == clock.now
    assert row["created_at"] == created
    assert row["progress"] == 0.0
    assert row["finished_at"] is None


def test_progress_is_recorded_while_running(recorder, empty_engine, clock):
    task_id = task_in(recorder, "running")
    started = clock.now
    clock.now += timedelta(minutes=5)
    recorder.report_progress("training", task_id, 0.42)
    row = stored(empty_engine, "training", task_id)
    assert (row["status"], row["progress"]) == ("running", 0.42)
    assert row["updated_at"] == clock.now
    assert row["started_at"] == started


def test_complete_moves_running_to_completed_with_results(recorder, empty_engine, clock):
    task_id = task_in(recorder, "running")
    started = clock.now
    clock.now += timedelta(hours=2)
    recorder.complete("training", task_id, output_model="acme/qwen-support-lora")
    row = stored(empty_engine, "training", task_id)
    assert row["status"] == "completed"
    assert row["output_model"] == "acme/qwen-support-lora"
    assert row["progress"] == 1.0
    assert row["finished_at"] == row["updated_at"] == clock.now
    assert row["started_at"] == started


@pytest.mark.parametrize("start_status", ["queued", "running"])
def test_fail_records_why(recorder, empty_engine, clock, start_status):
    task_id = task_in(recorder, start_status)
    clock.now += timedelta(minutes=1)
    recorder.fail("training", task_id, "CUDA out of memory")
    row = stored(empty_engine, "training", task_id)
    assert (row["status"], row["error_msg"]) == ("failed", "CUDA out of memory")
    assert row["finished_at"] == row["updated_at"] == clock.now


@pytest.mark.parametrize("start_status", ["queued", "running"])
def test_cancel_stops_a_task(recorder, empty_engine, clock, start_status):
    task_id = task_in(recorder, start_status)
    clock.now += timedelta(minutes=1)
    recorder.cancel("training", task_id)
    row = stored(empty_engine, "training", task_id)
    assert row["status"] == "cancelled"
    assert row["finished_at"] == row["updated_at"] == clock.now
    assert row["error_msg"] is None


def test_cancelled_queued_task_never_started(recorder, empty_engine):
    task_id = task_in(recorder, "cancelled")
    assert stored(empty_engine, "training", task_id)["started_at"] is None


@pytest.mark.parametrize(("move", "start_status"), LEGAL)
def test_legal_move_reaches_its_status(recorder, empty_engine, move, start_status):
    call, target, _ = MOVES[move]
    task_id = task_in(recorder, start_status)
    call(recorder, "training", task_id)
    assert stored(empty_engine, "training", task_id)["status"] == target


@pytest.mark.parametrize(
    "path",
    [
        ["start", "report_progress", "complete"],
        ["start", "report_progress", "fail"],
        ["start", "cancel"],
        ["fail"],
        ["cancel"],
    ],
)
def test_finished_at_is_set_exactly_when_terminal(recorder, empty_engine, clock, path):
    task_id = task_in(recorder, "queued")
    for move in path:
        clock.now += timedelta(seconds=30)
        MOVES[move][0](recorder, "training", task_id)
        row = stored(empty_engine, "training", task_id)
        assert (row["finished_at"] is not None) == (row["status"] in TERMINAL)
        assert row["updated_at"] == clock.now


def test_timestamps_follow_the_life_in_order(recorder, empty_engine, clock):
    task_id = task_in(recorder, "queued")
    for move in ["start", "report_progress", "complete"]:
        clock.now += timedelta(minutes=7)
        MOVES[move][0](recorder, "training", task_id)
    row = stored(empty_engine, "training", task_id)
    assert row["created_at"] < row["started_at"] < row["finished_at"] == row["updated_at"]


# -- refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize(("move", "start_status"), ILLEGAL)
def test_illegal_move_is_refused_clearly(recorder, move, start_status):
    call, target, _ = MOVES[move]
    task_id = task_in(recorder, start_status)
    with pytest.raises(IllegalTransition) as refused:
        call(recorder, "training", task_id)
    assert (refused.value.task_id, refused.value.current) == (task_id, start_status)
    assert refused.value.target == target
    message = str(refused.value)
    assert str(task_id) in message
    assert f"is {start_status}" in message


@pytest.mark.parametrize(("move", "start_status"), ILLEGAL)
def test_illegal_move_changes_nothing(recorder, empty_engine, clock, move, start_status):
    task_id = task_in(recorder, start_status)
    before = stored(empty_engine, "training", task_id)
    clock.now += timedelta(minutes=1)
    with pytest.raises(IllegalTransition):
        MOVES[move][0](recorder, "training", task_id)
    assert stored(empty_engine, "training", task_id) == before


@pytest.mark.parametrize("move", MOVES)
def test_unknown_task_is_task_not_found(recorder, move):
    task_in(recorder, "running")  # another task exists; this id does not
    with pytest.raises(TaskNotFound, match="no training task has id"):
        MOVES[move][0](recorder, "training", uuid.uuid4())


@pytest.mark.parametrize("move", MOVES)
def test_task_of_another_type_is_not_found(recorder, move):
    task_id = task_in(recorder, "running", task_type="evaluation")
    with pytest.raises(TaskNotFound):
        MOVES[move][0](recorder, "training", task_id)


def test_unknown_task_type_is_refused(recorder):
    with pytest.raises(ValueError, match="unknown task type 'upload'"):
        recorder.create("upload", tag="x")


@pytest.mark.parametrize("progress", [-0.01, 1.01, 2.0, math.nan, math.inf])
def test_progress_out_of_range_is_refused(recorder, empty_engine, progress):
    task_id = task_in(recorder, "running")
    before = stored(empty_engine, "training", task_id)
    with pytest.raises(ValueError, match=r"progress must be from 0\.0 to 1\.0"):
        recorder.report_progress("training", task_id, progress)
    assert stored(empty_engine, "training", task_id) == before


@pytest.mark.parametrize("progress", [0.0, 1.0])
def test_progress_bounds_are_accepted(recorder, empty_engine, progress):
    task_id = task_in(recorder, "running")
    recorder.report_progress("training", task_id, progress)
    assert stored(empty_engine, "training", task_id)["progress"] == progress


# -- the database's own rules ----------------------------------------------------------------

BAD_ROWS = {
    "unknown status": ({"status": "done"}, "status"),
    "finished but running": ({"status": "running", "finished_at": NOW}, "finished_when_terminal"),
    "finished but queued": ({"status": "queued", "finished_at": NOW}, "finished_when_terminal"),
    "completed without finished_at": (
        {"status": "completed", "finished_at": None},
        "finished_when_terminal",
    ),
    "cancelled without finished_at": (
        {"status": "cancelled", "finished_at": None},
        "finished_when_terminal",
    ),
    "progress above one": ({"progress": 1.5}, "progress"),
    "negative progress": ({"progress": -0.1}, "progress"),
}


@pytest.mark.parametrize("name", BAD_ROWS)
def test_database_refuses_bad_row_in_every_table(empty_engine, name):
    changes, constraint = BAD_ROWS[name]
    for task_type in TASK_TYPES:
        row = make_task(task_type, "running", NOW - timedelta(hours=1), rng=random.Random(3))
        table_name = MODEL_FOR_TYPE[task_type].__tablename__
        with pytest.raises(sa.exc.DBAPIError, match=f"ck_{table_name}_{constraint}"):
            insert_tasks(empty_engine, [row | changes])


@pytest.mark.parametrize("status", STATUSES)
def test_database_accepts_a_row_that_keeps_the_rules(empty_engine, status):
    row = make_task("synthesis", status, NOW - timedelta(hours=1), rng=random.Random(3))
    insert_tasks(empty_engine, [row])
    assert stored(empty_engine, "synthesis", row["id"])["status"] == status


# -- the cancel/complete race ----------------------------------------------------------------

RACE_ROUNDS = 20


class HeldUpdates:
    """Keep each racer's transaction open after its UPDATE until the other racer has sent its
    own, so the two compare-and-sets really overlap inside the database every round."""

    def __init__(self, engine: sa.Engine):
        self.engine = engine
        self.sent: dict[str, threading.Event] = {}
        self.overlapped: list[bool] = []

    def __enter__(self) -> HeldUpdates:
        sa.event.listen(self.engine, "before_cursor_execute", self.before)
        sa.event.listen(self.engine, "after_cursor_execute", self.after)
        return self

    def __exit__(self, *exc_info: object) -> None:
        sa.event.remove(self.engine, "before_cursor_execute", self.before)
        sa.event.remove(self.engine, "after_cursor_execute", self.after)

    def new_round(self, racers: list[str]) -> None:
        self.sent = {name: threading.Event() for name in racers}

    def _racer(self, statement: str) -> str | None:
        name = threading.current_thread().name
        is_update = statement.lstrip().upper().startswith("UPDATE")
        return name if is_update and name in self.sent else None

    def before(self, _conn, _cursor, statement, *_args) -> None:
        if name := self._racer(statement):
            self.sent[name].set()

    def after(self, _conn, _cursor, statement, *_args) -> None:
        if name := self._racer(statement):
            others = [event for racer, event in self.sent.items() if racer != name]
            self.overlapped.append(all(event.wait(timeout=10) for event in others))
            # Give the other UPDATE time to reach the database and wait on our lock.
            time.sleep(0.02)


def race(calls: dict[str, Any]) -> dict[str, BaseException | None]:
    """Run the calls on their own threads, released together; what each one raised."""
    outcomes: dict[str, BaseException | None] = {}
    barrier = threading.Barrier(len(calls))

    def run(name: str) -> None:
        barrier.wait()
        try:
            calls[name]()
            outcomes[name] = None
        except BaseException as error:  # handed to the main thread
            outcomes[name] = error

    threads = [threading.Thread(target=run, args=(name,), name=name) for name in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert set(outcomes) == set(calls), "a racer did not finish"
    return outcomes


def test_cancel_racing_completion_ends_in_one_terminal_state(recorder, empty_engine):
    final_status = {"complete": "completed", "cancel": "cancelled"}
    with HeldUpdates(empty_engine) as held:
        for _ in range(RACE_ROUNDS):
            task_id = task_in(recorder, "running")
            held.new_round(list(final_status))
            outcomes = race(
                {
                    "complete": partial(recorder.complete, "training", task_id),
                    "cancel": partial(recorder.cancel, "training", task_id),
                }
            )
            winners = [name for name, error in outcomes.items() if error is None]
            assert len(winners) == 1, outcomes
            (loser,) = set(outcomes) - set(winners)
            refused = outcomes[loser]
            assert isinstance(refused, IllegalTransition), refused
            winner_status = final_status[winners[0]]
            assert refused.current == winner_status
            row = stored(empty_engine, "training", task_id)
            assert row["status"] == winner_status
            assert row["finished_at"] is not None
    assert len(held.overlapped) == 2 * RACE_ROUNDS
    assert all(held.overlapped), "the racers' transactions did not overlap"


@pytest.mark.parametrize("tag", ["x" * 129, "exp\t7", "a\x00b"])
def test_create_refuses_a_tag_the_api_could_not_filter_by(empty_engine, tag):
    with pytest.raises(ValueError, match="tag"):
        Recorder(empty_engine).create(
            "training", tag=tag, base_model="m", dataset_name="d", method="lora", epochs=1
        )
