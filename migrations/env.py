"""Run the revisions on the app's own database (the primary, never a replica)."""

from __future__ import annotations

import logging
from logging.config import fileConfig

from alembic import context
from flask import current_app

from app.schema import alembic_options

config = context.config
if config.config_file_name and not logging.getLogger().handlers:
    # Only from the command line: inside the app (init-db, tests) its logging stays as it is.
    fileConfig(config.config_file_name, disable_existing_loggers=False)

migrate = current_app.extensions["migrate"]


def options() -> dict:
    """The project's options over Flask-Migrate's, and the models to compare with."""
    engine_options = alembic_options(migrate.db.engine.dialect)
    return {**migrate.configure_args, **engine_options, "target_metadata": migrate.db.metadata}


def run_migrations_offline() -> None:
    """Print the SQL of the revisions (`flask db upgrade --sql`) instead of running it."""
    url = migrate.db.engine.url.render_as_string(hide_password=False)
    context.configure(url=url, literal_binds=True, **options())
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run the revisions in one transaction where the engine allows DDL in one."""
    engine = migrate.db.engine
    with engine.connect() as connection:
        context.configure(connection=connection, **options())
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
