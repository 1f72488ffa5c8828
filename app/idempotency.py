"""`Idempotency-Key`: a write sent again with the same key is answered once.

A module that lost its connection cannot know whether its report arrived; it sends it again
with the same key, and gets the first answer back (its status and body, with
`Idempotent-Replayed: true`) rather than a second task or a 409. Keys belong to who sent
them (a token's name, a person), so two modules never share one.

The key is claimed before the write is performed: an INSERT of (owner, key) that the
primary key lets one request win on every engine. Of two requests with one key at once, one
performs and the other is answered 409 "in progress" (with Retry-After), or the first's
answer once it is stored. The same key with another method, path or body is a 422. The
caller checks a request before it is answered once (app/reporting.py), so a refused body
spends no key; an answer of 500 or more, or an exception, gives the key back, so a retry
performs anew.

Keys are kept for a day (KEPT_FOR); a claim without an answer for longer than
ABANDONED_AFTER (its server stopped mid-request) is taken over. Each process purges the
expired keys at most once a minute, one range of the `created_at` index.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from flask import Response, current_app, request

from app.errors import invalid, problem
from app.identity import Identity, current_identity
from app.models import IDEMPOTENCY_KEY_MAX_LENGTH, IdempotencyKey, db

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
KEPT_FOR = timedelta(hours=24)
ABANDONED_AFTER = timedelta(minutes=5)
PURGE_EVERY = timedelta(minutes=1)
IN_PROGRESS_RETRY_SECONDS = 1
# A request answered once is read whole (its body is part of what a repeat must match), so
# its body is bounded: a larger one is a 413 before anything is claimed.
MAX_BODY_BYTES = 1024 * 1024
# Printable ASCII without spaces: a UUID, a hash, a "job-42-attempt-3".
KEY_PATTERN = f"^[!-~]{{1,{IDEMPOTENCY_KEY_MAX_LENGTH}}}$"
CLAIM_ATTEMPTS = 3


def key_problem(key: str) -> str | None:
    """What makes a header value unusable as a key, or None."""
    if not re.fullmatch(KEY_PATTERN, key):
        return (
            f"1 to {IDEMPOTENCY_KEY_MAX_LENGTH} printable ASCII characters without spaces, "
            "such as a UUID"
        )
    return None


def owner_of(identity: Identity) -> str:
    """Whose keys these are: the token's or the signed-in person's name."""
    return f"{identity.via}:{identity.name}"


def read_body() -> bytes:
    """The request's body, at most MAX_BODY_BYTES (else a 413), kept for the view to parse."""
    request.max_content_length = MAX_BODY_BYTES
    return request.get_data(cache=True)


def request_fingerprint() -> str:
    """The method, path and body, hashed: what a repeat with the same key must match."""
    digest = hashlib.sha256()
    for part in (request.method.encode(), request.path.encode(), read_body()):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def answered_once(perform: Callable[[], Response]) -> Response:
    """Perform the write, or, for a key seen before, answer as the first time did.

    The caller has checked who asks first. The body is read whole (at most MAX_BODY_BYTES).
    """
    key = request.headers.get(HEADER)
    if key is None:
        return perform()
    if reason := key_problem(key):
        return invalid("Invalid Idempotency-Key", "parameter", {HEADER: [reason]})
    engine = db.engine
    owner, fingerprint = owner_of(current_identity()), request_fingerprint()
    now = current_app.config["CLOCK"]()
    purge_now_and_then(engine, now)
    earlier = claim(engine, owner, key, fingerprint, now)
    if earlier is not None:
        return earlier_answer(earlier, fingerprint)
    try:
        response = perform()
    except BaseException:
        release(engine, owner, key)
        raise
    if response.status_code >= 500 or response.is_streamed:
        release(engine, owner, key)
    else:
        store(engine, owner, key, response)
    return response


def claim(engine: sa.Engine, owner: str, key: str, fingerprint: str, now: datetime) -> Any:
    """Claim the key for this request: None when claimed, else the row that holds it.

    The claim is one INSERT, which the primary key lets one request win. A key found
    expired, or a claim abandoned mid-request, is removed and claimed anew.
    """
    this = (IdempotencyKey.owner == owner, IdempotencyKey.key == key)
    row = {"owner": owner, "key": key, "request_hash": fingerprint, "created_at": now}
    for _ in range(CLAIM_ATTEMPTS):
        try:
            with engine.begin() as connection:
                connection.execute(sa.insert(IdempotencyKey).values(row))
            return None
        except sa.exc.IntegrityError:
            pass
        with engine.connect() as connection:
            found = connection.execute(sa.select(IdempotencyKey).where(*this)).first()
        if found is None:
            continue  # given back between our INSERT and our read: claim again
        if not is_stale(found, now):
            return found
        with engine.begin() as connection:
            connection.execute(sa.delete(IdempotencyKey).where(*this, stale_keys(now)))
    # A key that kept changing hands is answered as one still in progress.
    return IdempotencyKey(owner=owner, key=key, request_hash=fingerprint, created_at=now)


def stale_keys(now: datetime) -> sa.ColumnElement[bool]:
    """Keys past their day, and claims whose request was abandoned (see ABANDONED_AFTER)."""
    return sa.or_(
        IdempotencyKey.created_at < now - KEPT_FOR,
        sa.and_(
            IdempotencyKey.status_code.is_(None), IdempotencyKey.created_at < now - ABANDONED_AFTER
        ),
    )


def is_stale(found: Any, now: datetime) -> bool:
    """The same rule as `stale_keys`, for a row already read."""
    if found.created_at < now - KEPT_FOR:
        return True
    return found.status_code is None and found.created_at < now - ABANDONED_AFTER


def earlier_answer(earlier: Any, fingerprint: str) -> Response:
    """The stored answer; 422 for another request under the key; 409 while it is performed."""
    if earlier.request_hash != fingerprint:
        reason = (
            "this key was sent with another request (method, path or body); "
            "use a new key for a new request"
        )
        return invalid("Idempotency-Key reused", "parameter", {HEADER: [reason]})
    if earlier.status_code is None:
        response = problem(
            409,
            "Request in progress",
            "A request with this Idempotency-Key is being performed; "
            "send it again shortly for its answer.",
        )
        response.headers["Retry-After"] = str(IN_PROGRESS_RETRY_SECONDS)
        return response
    response = Response(earlier.body, earlier.status_code, content_type=earlier.content_type)
    if earlier.location:
        response.headers["Location"] = earlier.location
    response.headers[REPLAYED_HEADER] = "true"
    return response


def store(engine: sa.Engine, owner: str, key: str, response: Response) -> None:
    """Keep the answer under the claimed key."""
    values = {
        "status_code": response.status_code,
        "content_type": response.content_type,
        "location": response.headers.get("Location"),
        "body": response.get_data(as_text=True),
    }
    statement = (
        sa.update(IdempotencyKey)
        .where(IdempotencyKey.owner == owner, IdempotencyKey.key == key)
        .values(values)
    )
    with engine.begin() as connection:
        connection.execute(statement)


def release(engine: sa.Engine, owner: str, key: str) -> None:
    """Give the key back: the request it was claimed for did not get a lasting answer."""
    statement = sa.delete(IdempotencyKey).where(
        IdempotencyKey.owner == owner,
        IdempotencyKey.key == key,
        IdempotencyKey.status_code.is_(None),
    )
    with engine.begin() as connection:
        connection.execute(statement)


def purge_expired(engine: sa.Engine, now: datetime) -> int:
    """Delete every key older than KEPT_FOR; how many."""
    statement = sa.delete(IdempotencyKey).where(IdempotencyKey.created_at < now - KEPT_FOR)
    with engine.begin() as connection:
        return connection.execute(statement).rowcount


def purge_now_and_then(engine: sa.Engine, now: datetime) -> None:
    """Purge at most once per PURGE_EVERY in this process: a minute's worth of keys a time."""
    state = current_app.extensions.setdefault("idempotency", {"purged_at": None})
    last = state["purged_at"]
    if last is not None and last <= now < last + PURGE_EVERY:
        return
    state["purged_at"] = now
    purge_expired(engine, now)
