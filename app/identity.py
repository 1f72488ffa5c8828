"""Who is asking, and what they may do.

Three ways in, each optional: the single sign-on proxy's user header (AUTH_USER_HEADER,
believed only behind a trusted proxy), an API token (`Authorization: Bearer …`, see
app/tokens.py), or nobody, who is a viewer. A viewer reads; an operator also cancels and
retries; a reporter is a module that records its own tasks. With AUTH_REQUIRED on, nobody
reads without an identity.

The page's forms are the one place a browser writes, so they carry a CSRF token
(Flask-WTF): the proxy's header arrives with any request the browser makes, a cross-site
form's included. A bearer token is never sent by a browser on its own, so a request that
carries one needs no CSRF token.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from flask import Flask, Response, current_app, g, request, session
from flask_wtf.csrf import CSRFProtect, generate_csrf
from werkzeug.exceptions import HTTPException

from app.models import CONTROL_CHARACTERS, Role

csrf = CSRFProtect()

# What each role may do; reading is everyone's, writing is a role's own.
READ, OPERATE, REPORT = "read", "operate", "report"
GRANTS: dict[Role, frozenset[str]] = {
    Role.VIEWER: frozenset({READ}),
    Role.OPERATOR: frozenset({READ, OPERATE}),
    Role.REPORTER: frozenset({READ, REPORT}),
}
# The role an action needs, named in a 401 or 403.
ROLE_FOR = {OPERATE: Role.OPERATOR, REPORT: Role.REPORTER, READ: Role.VIEWER}
# Routes anyone may reach even with AUTH_REQUIRED: probes, metrics, the API's description.
OPEN_BLUEPRINTS = frozenset({"health", "metrics", "contract"})
USER_MAX_LENGTH = 254
SIGN_IN_HINT = (
    "Open this site through the company's sign-in, or send an API token as "
    "`Authorization: Bearer <token>` (`flask --app wsgi tokens create` makes one)."
)


@dataclass(frozen=True)
class Identity:
    """Someone (or a module) known by name and role, or nobody (a viewer without a name)."""

    name: str | None
    role: Role
    via: Literal["nobody", "sso", "token"]

    def may(self, action: str) -> bool:
        """Whether this identity's role grants `action`."""
        return action in GRANTS[self.role]

    @property
    def known(self) -> bool:
        return self.via != "nobody"


NOBODY = Identity(None, Role.VIEWER, "nobody")


class Unauthorized(HTTPException):
    """401: no identity, or a token that is not (or no longer) one."""

    code = 401

    def get_headers(self, *args: object, **kwargs: object) -> list[tuple[str, str]]:
        return [*super().get_headers(), ("WWW-Authenticate", 'Bearer realm="tasks"')]


class Forbidden(HTTPException):
    """403: known, but the role does not allow it."""

    code = 403


def operator_rule(value: str | Iterable[str]) -> tuple[frozenset[str], frozenset[str]]:
    """OPERATORS as (exact users, domains), lower-cased: `alice@example.com, @ml-team.example`."""
    entries = value.replace(",", " ").split() if isinstance(value, str) else list(value)
    users = {entry.lower() for entry in entries if not entry.startswith("@")}
    domains = {entry[1:].lower() for entry in entries if entry.startswith("@") and len(entry) > 1}
    return frozenset(users), frozenset(domains)


def sso_role(user: str) -> Role:
    """An SSO user operates when OPERATORS names them or their domain; else they view."""
    users, domains = current_app.extensions["operator_rule"]
    lowered = user.lower()
    domain = lowered.rpartition("@")[2] if "@" in lowered else None
    return Role.OPERATOR if lowered in users or domain in domains else Role.VIEWER


def sso_user() -> str | None:
    """The user the sign-on proxy names, when its header is configured and believed."""
    header = current_app.config["AUTH_USER_HEADER"]
    if not header or not current_app.config["TRUSTED_PROXIES"]:
        return None
    user = request.headers.get(header, "").strip()
    if not user or len(user) > USER_MAX_LENGTH or CONTROL_CHARACTERS.search(user):
        return None
    return user


def resolve_identity() -> Identity:
    """Who the request comes from: a bearer token first, then the proxy's user, else nobody.

    A request that sends a token stands or falls by it: a bad one is a 401, not a viewer.
    """
    from app.tokens import identity_for_authorization

    authorization = request.headers.get("Authorization")
    if authorization is not None:
        return identity_for_authorization(authorization)
    if user := sso_user():
        return Identity(user, sso_role(user), "sso")
    return NOBODY


def current_identity() -> Identity:
    """The request's identity, resolved once."""
    if "identity" not in g:
        g.identity = resolve_identity()
    return g.identity


def shown_identity() -> Identity:
    """The identity a page shows: nobody when the request's token was refused (its 401 page)."""
    try:
        return current_identity()
    except Unauthorized:
        return NOBODY


def require(action: str, *alternatives: str) -> Identity:
    """The identity, if it may do `action` (or one of the `alternatives`); else 401 (nobody)
    or 403 (a role short), naming each role that would do."""
    identity = current_identity()
    actions = (action, *alternatives)
    needed = " or ".join(f"the {ROLE_FOR[each].value} role" for each in actions)
    if not identity.known and (action != READ or current_app.config["AUTH_REQUIRED"]):
        raise Unauthorized(f"Sign in first: this needs {needed}. {SIGN_IN_HINT}")
    if not any(identity.may(each) for each in actions):
        raise Forbidden(f"This needs {needed}; {identity.name} is a {identity.role.value}.")
    return identity


def protect_form() -> None:
    """Refuse a write without the page's CSRF token, unless a bearer token authenticated it."""
    if current_identity().via != "token":
        csrf.protect()


def require_to_read() -> None:
    """With AUTH_REQUIRED, nobody reads anything but the probes and the API's description."""
    if request.blueprint in OPEN_BLUEPRINTS or request.endpoint in (None, "static"):
        return
    require(READ)


def may_act_here(embed: bool) -> bool:
    """Whether the page offers the operator's buttons: the embed only with EMBED_ACTIONS."""
    allowed = current_app.config["EMBED_ACTIONS"] or not embed
    return allowed and shown_identity().may(OPERATE)


def rendering_key() -> str:
    """What a rendered page depends on about its viewer: their name and role, and for an
    operator the session's CSRF secret (pages with forms are never shared between sessions)."""
    identity = current_identity()
    parts = [identity.via, identity.name or "", identity.role.value]
    if identity.may(OPERATE):
        generate_csrf()
        parts.append(session.get(current_app.config["WTF_CSRF_FIELD_NAME"], ""))
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def vary_on_identity(response: Response) -> Response:
    """Say which request headers the answer depends on, so no cache mixes up two people."""
    if header := current_app.config["AUTH_USER_HEADER"]:
        response.vary.add(header)
    response.vary.add("Authorization")
    return response


HEADER_NAME = re.compile(r"[A-Za-z0-9-]+")


def init_app(app: Flask) -> None:
    """Check the settings, warn about an SSO header that cannot be believed, guard reading."""
    header = app.config.get("AUTH_USER_HEADER", "")
    if header and not HEADER_NAME.fullmatch(header):
        raise ValueError(f"AUTH_USER_HEADER: {header!r} is not a header name")
    if header and not app.config["TRUSTED_PROXIES"]:
        app.logger.warning(
            "AUTH_USER_HEADER=%s is ignored: no trusted proxy (set TRUSTED_PROXIES to the "
            "number of proxies in front of the app, the sign-on proxy included)",
            header,
        )
    app.extensions["operator_rule"] = operator_rule(app.config.get("OPERATORS", ""))
    # CSRF is checked where a form posts (protect_form), after the role: a bearer token
    # needs none, and nobody gets the 401 that says how to sign in.
    app.config["WTF_CSRF_CHECK_DEFAULT"] = False
    # Valid for the session, not an hour: a page left open for a day still cancels.
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", None)
    csrf.init_app(app)
    app.before_request(require_to_read)
    app.after_request(vary_on_identity)
    app.context_processor(lambda: {"identity": shown_identity(), "may_act_here": may_act_here})
