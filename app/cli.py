"""Commands: `flask --app wsgi init-db` and `flask --app wsgi seed-demo --tasks N`.

The revisions themselves run through Flask-Migrate: `flask --app wsgi db upgrade`, …
"""

from __future__ import annotations

import click
import sqlalchemy as sa
from flask import Flask, current_app
from flask.cli import with_appcontext

from app.demo import seed_demo
from app.models import MODEL_FOR_TYPE, db
from app.schema import SchemaMismatch, upgrade_database


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


def init_app(app: Flask) -> None:
    """Register the commands with `flask`."""
    app.cli.add_command(init_db_command)
    app.cli.add_command(seed_demo_command)
