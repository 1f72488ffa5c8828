"""Commands: `flask --app wsgi init-db`, `seed-demo --tasks N` and `fail-stalled`.

The revisions themselves run through Flask-Migrate: `flask --app wsgi db upgrade`, …
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import click
import sqlalchemy as sa
from flask import Flask, current_app
from flask.cli import with_appcontext

from app.demo import seed_demo
from app.models import MODEL_FOR_TYPE, db
from app.schema import SchemaMismatch, upgrade_database
from app.stalled import fail_stalled, parse_duration


def task_count() -> int:
    """How many tasks the five tables hold."""
    # Its own connection, closed at once: seeding may drop and build indexes next, which
    # an open transaction's locks on the tables would hold up.
    with db.engine.connect() as connection:
        return sum(
            connection.execute(sa.select(sa.func.count()).select_from(model)).scalar_one()
            for model in MODEL_FOR_TYPE.values()
        )


@click.command("init-db")
@with_appcontext
def init_db_command() -> None:
    """Create the task tables, or bring them to the newest revision (rows are kept)."""
    prepare_database()


def prepare_database() -> None:
    """Bring the database to the newest revision, or stop with what differs."""
    try:
        for step in upgrade_database():
            click.echo(step)
    except SchemaMismatch as mismatch:
        raise click.ClickException(str(mismatch)) from None


@click.command("seed-demo")
@click.option("--tasks", default=5000, show_default=True, type=click.IntRange(1, 10_000_000))
@click.option("--weeks", default=6, show_default=True, type=click.IntRange(1, 520))
@click.option("--seed", type=int, help="Random seed, for the same tasks every time.")
@click.option("--if-empty", is_flag=True, help="Do nothing when tasks already exist.")
@with_appcontext
def seed_demo_command(tasks: int, weeks: int, seed: int | None, if_empty: bool) -> None:
    """Add realistic demo tasks over the last weeks, with active ones in the last hours."""
    prepare_database()
    if if_empty and (existing := task_count()):
        click.echo(f"{existing} tasks already there; no demo tasks added.")
        return
    with click.progressbar(length=tasks, label="Adding demo tasks") as bar:
        now = current_app.config["CLOCK"]()
        seed_demo(db.engine, tasks, now, weeks=weeks, seed=seed, on_progress=bar.update)
    click.echo(f"Added {tasks} demo tasks.")


class DurationType(click.ParamType):
    """A duration such as 90m, 2h or 3d."""

    name = "duration"

    def convert(self, value: Any, param: Any, ctx: Any) -> timedelta:
        if isinstance(value, timedelta):
            return value
        try:
            return parse_duration(value)
        except ValueError as error:
            self.fail(str(error), param, ctx)


@click.command("fail-stalled")
@click.option(
    "--older-than",
    type=DurationType(),
    help="Not heard from for longer than this (90m, 2h, 3d), whatever the type; "
    "by default each type's STALLED_AFTER_MINUTES.",
)
@click.option("--dry-run", is_flag=True, help="Only list the tasks that would be failed.")
@with_appcontext
def fail_stalled_command(older_than: timedelta | None, dry_run: bool) -> None:
    """Fail running tasks whose module stopped reporting; safe to run on several servers."""
    clock = current_app.config["CLOCK"]
    now = clock()
    if older_than is None:
        heard_before = current_app.config["STALL_LIMITS"].heard_before(now)
    else:
        heard_before = dict.fromkeys(MODEL_FOR_TYPE, now - older_than)
    result = fail_stalled(db.engine, heard_before, clock=clock, dry_run=dry_run)
    done = set(result.found if dry_run else result.failed)
    for task_type, task_id in result.found:
        if (task_type, task_id) in done:
            click.echo(f"{'would fail' if dry_run else 'failed'} {task_type} {task_id}")
    if dry_run:
        click.echo(f"{len(result.found)} stalled tasks would be failed (dry run).")
        return
    click.echo(f"Failed {len(result.failed)} stalled tasks.")
    if result.moved_on:
        click.echo(f"{len(result.moved_on)} moved on meanwhile (reported, or failed elsewhere).")


def init_app(app: Flask) -> None:
    """Register the commands with `flask`."""
    app.cli.add_command(init_db_command)
    app.cli.add_command(seed_demo_command)
    app.cli.add_command(fail_stalled_command)
