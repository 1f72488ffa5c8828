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
        "HTMX_LOCAL_ONLY": os.environ.get("HTMX_LOCAL_ONLY", "").lower() in {"1", "true", "yes"},
        # Reverse proxies in front of the app whose X-Forwarded-* headers are believed, so
        # that absolute URLs (the Link header, the curl command) carry the public scheme/host.
        "TRUSTED_PROXIES": int(os.environ.get("TRUSTED_PROXIES", "0")),
        # How often the list refreshes itself while the shown page holds queued or running tasks.
        "LIVE_REFRESH_SECONDS": int(os.environ.get("LIVE_REFRESH_SECONDS", "5")),
        # Where viewers of one view share its counts: empty keeps them in each process,
        # redis://host:port/db shares them between every server behind one address.
        "CACHE_URL": os.environ.get("CACHE_URL", ""),
        # Put before every key in Redis, so that apps sharing one Redis keep apart.
        "CACHE_KEY_PREFIX": os.environ.get("CACHE_KEY_PREFIX", "vectorize-tasks:"),
    }
