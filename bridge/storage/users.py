"""Named console users: who may log in to the support console, with a password hash each.

One Redis hash, field = the casefolded name, value = a JSON record: the name as given, the
password hashed with scrypt (memory-hard: a stolen record costs an attacker tens of MiB of
memory per guess, not a GPU's microseconds), when it was set, and a version that changes
with every password change so the user's open sessions end with it. ADMIN_USERNAME and
ADMIN_PASSWORD are the first user, kept in the environment, not here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass

from bridge import defaults
from bridge.jsonlimits import parse
from bridge.storage import keys
from bridge.translate.text import folded

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
"""A console user name: what the audit lines show, so plain and at most 64 characters."""

SCHEME = "scrypt"


@dataclass(frozen=True)
class User:
    """One named console user as stored (never the password itself)."""

    name: str
    password_hash: str
    version: str
    created_at: float
    password_set_at: float


def name_problem(name: str) -> str | None:
    """Why `name` cannot be a console user name, or None when it can."""
    if not NAME_PATTERN.fullmatch(name):
        return "use 1 to 64 letters, digits, dots, dashes, underscores or @, starting with a letter or digit"
    return None


def password_problem(name: str, password: str) -> str | None:
    """Why `password` is too weak for a console user, or None when it will do."""
    if len(password) < defaults.ADMIN_PASSWORD_MIN_CHARACTERS:
        return f"use at least {defaults.ADMIN_PASSWORD_MIN_CHARACTERS} characters"
    if folded(password) == folded(name):
        return "the password must not be the user name"
    return None


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """Hash a password with scrypt; the text carries the parameters and salt, so they can be raised later."""
    n, r, p = defaults.ADMIN_SCRYPT_N, defaults.ADMIN_SCRYPT_R, defaults.ADMIN_SCRYPT_P
    salt = salt or secrets.token_bytes(16)
    digest = _scrypt(password, salt, n, r, p)
    return "$".join((SCHEME, str(n), str(r), str(p), _b64(salt), _b64(digest)))


def verify_password(stored: str, password: str) -> bool:
    """Whether `password` matches a hash made by hash_password (False for any unreadable hash)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != SCHEME:
            return False
        expected = base64.b64decode(digest)
        return hmac.compare_digest(_scrypt(password, base64.b64decode(salt), int(n), int(r), int(p)), expected)
    except (ValueError, TypeError):
        return False


_DUMMY_HASH = None


def burn_time(password: str) -> None:
    """Spend the time one verification takes, for a name that has no record: a failed login
    then answers in the same time whether or not the name exists."""
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = hash_password(secrets.token_urlsafe(16))
    verify_password(_DUMMY_HASH, password)


def get(conn, name: str) -> User | None:
    """The stored user called `name` (any case), or None."""
    return _user_of(conn.hget(keys.console_users(), _field(name)))


def list_all(conn) -> list[User]:
    """Every stored user, by name."""
    users = [_user_of(raw) for raw in conn.hvals(keys.console_users())]
    return sorted((user for user in users if user), key=lambda user: user.name.casefold())


def save(conn, name: str, password: str, *, now: float | None = None) -> tuple[User, bool]:
    """Store a user with a new password (a new version); return it and whether it is new."""
    now = time.time() if now is None else now
    previous = get(conn, name)
    user = User(name=previous.name if previous else name.strip(), password_hash=hash_password(password),
                version=secrets.token_urlsafe(12), created_at=previous.created_at if previous else now,
                password_set_at=now)
    conn.hset(keys.console_users(), _field(name), json.dumps(user.__dict__, separators=(",", ":")))
    return user, previous is None


def remove(conn, name: str) -> bool:
    """Delete a user; whether there was one."""
    return bool(conn.hdel(keys.console_users(), _field(name)))


def authenticate(conn, name: str, password: str) -> User | None:
    """The stored user `name` when `password` is theirs, else None (in about the same time either way)."""
    user = get(conn, name) if NAME_PATTERN.fullmatch(name.strip()) else None
    if user is None:
        burn_time(password)
        return None
    return user if verify_password(user.password_hash, password) else None


def _user_of(raw) -> User | None:
    """A stored record as a User; None when absent or unreadable."""
    if raw is None:
        return None
    value = parse(raw).value
    try:
        return User(**value) if isinstance(value, dict) else None
    except TypeError:  # a record missing a field or with one too many
        return None


def _field(name: str) -> str:
    """The hash field of a user name: names are unique whatever their case."""
    return folded(name)


_AT_ONCE = threading.BoundedSemaphore(defaults.ADMIN_PASSWORD_CHECKS_AT_ONCE)
"""Password checks one process runs at a time: each takes 128·N·r bytes, and a burst of logins
(an attack from many addresses) must queue, not take a small dyno's memory."""


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    """scrypt with room for its memory (128·n·r bytes) and some, a bounded number at a time."""
    with _AT_ONCE:
        return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p,
                              maxmem=256 * n * r + 1024 * 1024, dklen=32)


def _b64(data: bytes) -> str:
    """Bytes as base64 text."""
    return base64.b64encode(data).decode("ascii")
