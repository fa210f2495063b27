"""Console sessions kept in Redis: the browser holds only a random session id (in Flask's
signed cookie), so logging out, `bridge admin logout-all` or a password change ends a
session for every copy of that cookie at once.

Each session is a hash named after a digest of its id (a Redis dump or MONITOR shows no
usable id) that expires with the session's lifetime, and a sorted set lists every
session by expiry time so all of them (or one user's) can be ended.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from bridge import defaults
from bridge.storage import keys
from bridge.storage.redis import text, text_hash
from bridge.translate.text import folded


@dataclass(frozen=True)
class Session:
    """One open console session."""

    user: str
    version: str
    """The version of the user's password the session was opened with (a change ends it)."""
    created_at: float
    address: str


def create(conn, user: str, version: str, address: str, now: float | None = None) -> str:
    """Open a session for `user`; return its id, for the cookie (only its digest is stored)."""
    now = time.time() if now is None else now
    session_id = secrets.token_urlsafe(32)
    key = keys.console_session(_digest(session_id))
    pipe = conn.pipeline(transaction=True)
    pipe.hset(key, mapping={"user": user, "version": version, "created_at": now, "address": address})
    pipe.expire(key, defaults.ADMIN_SESSION_SECONDS)
    pipe.zadd(keys.console_sessions(), {_digest(session_id): now + defaults.ADMIN_SESSION_SECONDS})
    pipe.zremrangebyscore(keys.console_sessions(), "-inf", now)  # the list forgets sessions that expired
    pipe.execute()
    return session_id


def load(conn, session_id: str) -> Session | None:
    """The open session with this id, or None (never opened, ended, or expired)."""
    if not isinstance(session_id, str) or not session_id:
        return None
    return _session_of(text_hash(conn.hgetall(keys.console_session(_digest(session_id)))))


def _session_of(stored: dict) -> Session | None:
    """A stored session hash as a Session; None when absent or unreadable."""
    try:
        return Session(user=stored["user"], version=stored["version"], created_at=float(stored["created_at"]),
                       address=stored.get("address", ""))
    except (KeyError, ValueError):
        return None


def list_open(conn) -> list[Session]:
    """Every open session, oldest first."""
    digests = [text(digest) for digest in conn.zrangebyscore(keys.console_sessions(), time.time(), "+inf")]
    pipe = conn.pipeline(transaction=False)
    for digest in digests:
        pipe.hgetall(keys.console_session(digest))
    found = [_session_of(text_hash(raw)) for raw in pipe.execute()]
    return sorted((session for session in found if session), key=lambda session: session.created_at)


def end(conn, session_id: str) -> None:
    """End one session."""
    if isinstance(session_id, str) and session_id:
        digest = _digest(session_id)
        conn.delete(keys.console_session(digest))
        conn.zrem(keys.console_sessions(), digest)


def end_all(conn, user: str | None = None) -> int:
    """End every open session (or only `user`'s, any case); return how many were open."""
    digests = [text(digest) for digest in conn.zrangebyscore(keys.console_sessions(), time.time(), "+inf")]
    if user is not None:
        pipe = conn.pipeline(transaction=False)
        for digest in digests:
            pipe.hget(keys.console_session(digest), "user")
        owners = pipe.execute()
        digests = [digest for digest, owner in zip(digests, owners)
                   if owner is not None and folded(text(owner)) == folded(user)]
    if not digests:
        return 0
    pipe = conn.pipeline(transaction=True)
    pipe.delete(*(keys.console_session(digest) for digest in digests))
    pipe.zrem(keys.console_sessions(), *digests)
    ended, _ = pipe.execute()
    return ended


def _digest(session_id: str) -> str:
    """The stored form of a session id."""
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()[:40]
