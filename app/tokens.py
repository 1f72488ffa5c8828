"""API tokens: made and revoked on the command line, checked on every request that sends one.

A token is shown once, when made; the database keeps its SHA-256 alone. The token is 256
random bits, so its hash needs no salt or slow function: nobody can guess their way back,
and a lookup by hash is one index step. A token never reaches a log: it is neither echoed
in an answer nor accepted in a URL.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import click
import sqlalchemy as sa
from flask import Flask, current_app
from flask.cli import AppGroup

from app.identity import Identity, Unauthorized
from app.models import ApiToken, Role, db

TOKEN_PREFIX = "vt_"
# A token as made here is the prefix and 43 URL-safe characters; anything far longer is
# refused before it is hashed.
TOKEN_MAX_LENGTH = 200
# Last use is written at most this often per token, so a busy script does not write per call.
LAST_USED_STEP = timedelta(minutes=1)
NAME_MAX_LENGTH = 100


class TokenNameTaken(ValueError):
    """A token (in use or revoked) already has that name."""


def token_hash(token: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class TokenInfo:
    """A token as `tokens list` shows it: never the token itself."""

    name: str
    role: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


def create_token(engine: sa.Engine, name: str, role: Role, now: datetime) -> str:
    """Make a token for `name` with `role`; return the token, which is not kept."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    values = {"name": name, "role": role.value, "token_hash": token_hash(token), "created_at": now}
    try:
        with engine.begin() as connection:
            connection.execute(sa.insert(ApiToken).values(values))
    except sa.exc.IntegrityError:
        raise TokenNameTaken(
            f"a token named {name!r} exists (revoked ones keep their name)"
        ) from None
    return token


def list_tokens(engine: sa.Engine) -> list[TokenInfo]:
    """Every token, by name."""
    columns = (ApiToken.name, ApiToken.role, ApiToken.created_at, ApiToken.last_used_at)
    statement = sa.select(*columns, ApiToken.revoked_at).order_by(ApiToken.name)
    with engine.connect() as connection:
        return [TokenInfo(*row) for row in connection.execute(statement)]


def revoke_token(engine: sa.Engine, name: str, now: datetime) -> bool:
    """Stop the token named `name` from working; False when no token in use has that name."""
    statement = (
        sa.update(ApiToken)
        .where(ApiToken.name == name, ApiToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    with engine.begin() as connection:
        return connection.execute(statement).rowcount == 1


def bearer_token(authorization: str) -> str | None:
    """The token of an `Authorization: Bearer …` header, or None when it is not one."""
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > TOKEN_MAX_LENGTH:
        return None
    if not token.isascii() or not token.isprintable() or " " in token:
        return None
    return token


def identity_for_authorization(authorization: str) -> Identity:
    """The identity of a token in use; a 401 for anything else (never the token in words)."""
    token = bearer_token(authorization)
    if token is None:
        raise Unauthorized("The Authorization header is not `Bearer <token>`.")
    found = find_token(db.engine, token, current_app.config["CLOCK"]())
    if found is None:
        raise Unauthorized("The token is not known, or has been revoked.")
    name, role = found
    return Identity(name, Role(role), "token")


def find_token(engine: sa.Engine, token: str, now: datetime) -> tuple[str, str] | None:
    """The name and role of a token in use, noting its use (at most once a minute)."""
    wanted = ApiToken.token_hash == token_hash(token)
    lookup = sa.select(ApiToken.id, ApiToken.name, ApiToken.role).where(
        wanted, ApiToken.revoked_at.is_(None)
    )
    with engine.begin() as connection:
        row = connection.execute(lookup).first()
        if row is None:
            return None
        stale = sa.or_(
            ApiToken.last_used_at.is_(None), ApiToken.last_used_at < now - LAST_USED_STEP
        )
        connection.execute(
            sa.update(ApiToken).where(ApiToken.id == row.id, stale).values(last_used_at=now)
        )
    return row.name, row.role


# -- commands ---------------------------------------------------------------------------------

tokens_cli = AppGroup("tokens", help="Make, list and revoke API tokens.")


@tokens_cli.command("create")
@click.option("--name", required=True, help="Who or what uses it, e.g. ci-bot.")
@click.option(
    "--role",
    required=True,
    type=click.Choice([role.value for role in Role]),
    help="viewer reads, operator also cancels and retries, reporter records its tasks.",
)
def create_command(name: str, role: str) -> None:
    """Make a token and print it once: only its hash is kept."""
    name = name.strip()
    if not name or len(name) > NAME_MAX_LENGTH or not name.isprintable():
        raise click.BadParameter(f"1 to {NAME_MAX_LENGTH} printable characters", param_hint="name")
    try:
        token = create_token(db.engine, name, Role(role), current_app.config["CLOCK"]())
    except TokenNameTaken as taken:
        raise click.ClickException(str(taken)) from None
    click.echo(f"Token for {name} ({role}); it is shown this once:", err=True)
    click.echo(token)


def when(moment: datetime | None) -> str:
    """A time for the table, to the second, or a dash."""
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


@tokens_cli.command("list")
def list_command() -> None:
    """Every token's name, role, when it was made and last used, and whether it is revoked."""
    rows = [("NAME", "ROLE", "CREATED (UTC)", "LAST USED (UTC)", "REVOKED (UTC)")]
    for info in list_tokens(db.engine):
        rows.append(
            (
                info.name,
                info.role,
                when(info.created_at),
                when(info.last_used_at),
                when(info.revoked_at),
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


@tokens_cli.command("revoke")
@click.argument("name")
def revoke_command(name: str) -> None:
    """Stop a token from working at once; its name stays in the list."""
    if not revoke_token(db.engine, name, current_app.config["CLOCK"]()):
        raise click.ClickException(f"no token in use is named {name!r}")
    click.echo(f"Revoked the token {name}.")


def init_app(app: Flask) -> None:
    """Register `flask --app wsgi tokens …`."""
    app.cli.add_command(tokens_cli)
