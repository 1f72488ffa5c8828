"""Settings read from the environment, with defaults that serve on a laptop."""

from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Iterable
from pathlib import Path

DRIVER_FOR_SCHEME = {
    "postgres": "postgresql+psycopg",
    "postgresql": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mariadb+pymysql",
}
# The Flask-SQLAlchemy bind that reads go to when DATABASE_REPLICA_URL is set.
REPLICA_BIND = "replica"


def normalise_database_url(url: str) -> str:
    """Give bare `postgresql://`, `mysql://` and `mariadb://` URLs the driver we install.

    SQLAlchemy would otherwise pick psycopg2 or mysqlclient, which we do not ship.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or "+" in scheme:
        return url
    return f"{DRIVER_FOR_SCHEME.get(scheme, scheme)}://{rest}"


def load_secret_key(instance_path: Path) -> str:
    """Use SECRET_KEY from the environment, else one kept in the instance folder.

    Cursors are signed with it, so it must survive restarts and be shared by every
    worker; a per-process random key would break cursors across gunicorn workers.
    """
    if key := os.environ.get("SECRET_KEY"):
        return key
    key_file = instance_path / "secret_key"
    instance_path.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: of workers starting together exactly one writes the key, readable by us alone.
        descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return read_secret_key(key_file)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secrets.token_hex(32))
    return read_secret_key(key_file)


def read_secret_key(key_file: Path, wait_seconds: float = 5.0) -> str:
    """Read the kept key, waiting briefly for a worker that is still writing it."""
    deadline = time.monotonic() + wait_seconds
    while not (key := key_file.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    if not key:
        raise RuntimeError(f"{key_file} is empty; delete it or set SECRET_KEY")
    return key


# A CSP source expression: an origin such as https://portal.example.com:8443, a scheme such as
# https:, a host wildcard, or 'self'. Anything else (a ';' above all) could smuggle in a directive.
FRAME_SOURCE = re.compile(r"'self'|[a-z][a-z0-9+.-]*:|([a-z][a-z0-9+.-]*://)?[\w*.:\[\]-]+", re.I)


def frame_ancestor_sources(value: str | Iterable[str]) -> list[str]:
    """The origins allowed to frame /embed, from a space-separated string or a list.

    Raises ValueError on an entry that is not a CSP source, so a typo fails at start-up
    rather than in the portal's browser.
    """
    sources = value.split() if isinstance(value, str) else [str(item) for item in value]
    for source in sources:
        if not FRAME_SOURCE.fullmatch(source):
            raise ValueError(f"EMBED_FRAME_ANCESTORS: {source!r} is not an origin")
    return sources


def environment_flag(name: str, default: bool) -> bool:
    """A yes/no setting: 1, true, yes or on for yes; 0, false, no or off for no."""
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"{name}: {value!r} is not one of 1, true, yes, on, 0, false, no, off")


def whole_number(name: str, default: int, low: int, high: int) -> int:
    """A whole-number setting within [low, high]; a bad value stops the start with its name."""
    text = os.environ.get(name, "").strip() or str(default)
    if not text.isdigit() or not low <= int(text) <= high:
        raise ValueError(f"{name}: {text!r} is not a whole number from {low} to {high}")
    return int(text)


def statement_timeout_ms(*, export: bool = False) -> int:
    """STATEMENT_TIMEOUT_MS, or an export's EXPORT_STATEMENT_TIMEOUT_MS (gunicorn reads both)."""
    if export:
        return whole_number("EXPORT_STATEMENT_TIMEOUT_MS", 300_000, 1, 86_400_000)
    return whole_number("STATEMENT_TIMEOUT_MS", 10_000, 1, 86_400_000)


def replica_binds() -> dict[str, str]:
    """The read replica as a Flask-SQLAlchemy bind, when DATABASE_REPLICA_URL is set."""
    url = os.environ.get("DATABASE_REPLICA_URL", "").strip()
    return {REPLICA_BIND: normalise_database_url(url)} if url else {}


# A host name as a Host header gives it (letters, digits, hyphens, dots) or an IPv4 address;
# a leading dot stands for every subdomain of the name. Werkzeug's check, which ALLOWED_HOSTS
# feeds, cannot match an IPv6 address.
HOST_NAME = re.compile(r"\.?[a-z0-9-]+(\.[a-z0-9-]+)*\.?", re.I)
DEFAULT_ALLOWED_HOSTS = "127.0.0.1 localhost"


def allowed_hosts(value: str | Iterable[str]) -> list[str]:
    """The host names the server answers to, from a space- or comma-separated string or a list.

    Raises ValueError on an entry that is not a host name (a port, a scheme, a wildcard, a
    label over 63 characters), so a typo fails at start-up rather than refusing every request.
    """
    names = value.replace(",", " ").split() if isinstance(value, str) else list(value)
    if not names:
        raise ValueError("ALLOWED_HOSTS is empty: list the names this server answers to")
    for name in names:
        if not HOST_NAME.fullmatch(name) or not is_idna(name.lstrip(".")):
            raise ValueError(f"ALLOWED_HOSTS: {name!r} is not a host name (no port, no scheme)")
    return [name.lower() for name in names]


def is_idna(name: str) -> bool:
    """Whether a name is one DNS could hold: labels of 1 to 63 characters, 253 in all."""
    try:
        name.encode("idna")
    except UnicodeError:
        return False
    return len(name) <= 253


def settings_from_environment(instance_path: Path) -> dict[str, object]:
    """Build the app's settings; every one can be set by an environment variable."""
    default_db = f"sqlite:///{instance_path / 'vectorize-tasks.sqlite3'}"
    return {
        "SECRET_KEY": load_secret_key(instance_path),
        "SQLALCHEMY_DATABASE_URI": normalise_database_url(
            os.environ.get("DATABASE_URL", default_db)
        ),
        # Origins allowed to frame /embed, separated by spaces; none when unset.
        "EMBED_FRAME_ANCESTORS": frame_ancestor_sources(
            os.environ.get("EMBED_FRAME_ANCESTORS", "")
        ),
        # Serve htmx only from static/ (no CDN), e.g. on a network without internet.
        "HTMX_LOCAL_ONLY": environment_flag("HTMX_LOCAL_ONLY", default=False),
        # The names (Host headers) the server answers to; any other gets a 400.
        "ALLOWED_HOSTS": allowed_hosts(os.environ.get("ALLOWED_HOSTS", DEFAULT_ALLOWED_HOSTS)),
        # Reverse proxies in front of the app whose X-Forwarded-* headers are believed, so
        # that absolute URLs (the Link header, the curl command) carry the public scheme/host.
        "TRUSTED_PROXIES": int(os.environ.get("TRUSTED_PROXIES", "0")),
        # How often the list refreshes itself while the shown page holds queued or running tasks.
        "LIVE_REFRESH_SECONDS": int(os.environ.get("LIVE_REFRESH_SECONDS", "5")),
        # Serve /metrics and count requests for it; off answers /metrics with 404.
        "METRICS": environment_flag("METRICS", default=True),
        # How long /readyz waits for its checks, and the limit on each of their steps.
        "READYZ_TIMEOUT_SECONDS": float(os.environ.get("READYZ_TIMEOUT_SECONDS", "2")),
        # Reads (lists, counts, exports, task pages) go to the replica; writes never do.
        "SQLALCHEMY_BINDS": replica_binds(),
        # A replica that cannot be reached: 503 on reads, or with this on, read the primary.
        "REPLICA_FALLBACK": environment_flag("REPLICA_FALLBACK", default=False),
        # Time limits on the database (app/timeouts.py): a statement, an export's statement,
        # and a connection attempt (or a pooled connection's check).
        "STATEMENT_TIMEOUT_MS": statement_timeout_ms(),
        "EXPORT_STATEMENT_TIMEOUT_MS": statement_timeout_ms(export=True),
        "DATABASE_CONNECT_TIMEOUT_SECONDS": whole_number(
            "DATABASE_CONNECT_TIMEOUT_SECONDS", 5, 1, 600
        ),
        # Where viewers of one view share its counts: empty keeps them in each process,
        # redis://host:port/db shares them between every server behind one address.
        "CACHE_URL": os.environ.get("CACHE_URL", ""),
        # Put before every key in Redis, so that apps sharing one Redis keep apart.
        "CACHE_KEY_PREFIX": os.environ.get("CACHE_KEY_PREFIX", "vectorize-tasks:"),
        # The header the single sign-on proxy names the user in (X-Forwarded-Email, say);
        # believed only with TRUSTED_PROXIES of 1 or more (app/identity.py).
        "AUTH_USER_HEADER": os.environ.get("AUTH_USER_HEADER", "").strip(),
        # The signed-in users who may cancel and retry: addresses, or @domain for a domain.
        "OPERATORS": os.environ.get("OPERATORS", ""),
        # Nobody reads without signing in or a token (the probes and /openapi.json aside).
        "AUTH_REQUIRED": environment_flag("AUTH_REQUIRED", default=False),
        # Offer cancel and retry inside the portal's frame too.
        "EMBED_ACTIONS": environment_flag("EMBED_ACTIONS", default=False),
    }
