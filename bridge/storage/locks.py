"""The Redis locks: one way to hold a simple one (`holding`: the poll, the token refresh), and
the per-lead lock under which all work on one Real Geeks lead happens one job at a time.

Every lock expires on its own after its timeout. In a worker process the per-lead lock's
token names the process (`set_holder`), so that a lock whose holder died can be taken over at
once instead of blocking the lead until it expires: the holder is dead when its heartbeat
record (`storage/beats.py`) is gone, or, for a lock this very process holds on paper, when no
job of the process holds it any more (a job cut short by a Redis outage could not release it).
Tokens of processes that do not beat (the web, the CLI) carry no name and are only ever waited out.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from bridge import defaults
from bridge.exceptions import LockTimeout
from bridge.storage import beats, keys
from bridge.storage.redis import delete_if_equal, text

log = logging.getLogger(__name__)

TAKEOVER_CHECK_SECONDS = 1.0
"""How often a job waiting for a lead's lock looks whether its holder died, in seconds."""

SEPARATOR = "|"
"""Between the holder's process name and the random part of a token."""

_holder: str | None = None
_held: set[str] = set()  # tokens the jobs of this process hold right now
_left: dict[str, str] = {}  # key -> token of locks whose release Redis refused (it was away or full)
_held_guard = threading.Lock()


def set_holder(process: str | None) -> None:
    """Name the process whose jobs take locks from now on (a worker that beats); None for anonymous tokens."""
    global _holder
    _holder = process


def holder_of(token: str | None) -> str | None:
    """The process a lock token names, or None for an anonymous token."""
    if not token or SEPARATOR not in token:
        return None
    return token.rpartition(SEPARATOR)[0]


@contextmanager
def holding(conn: redis.Redis, key: str, *, timeout: float, wait: float = 0, sleep: float = 0.1) -> Iterator[bool]:
    """Hold the lock `key` for the block if it is free within `wait` seconds (0: only if free now); yield whether it is.

    `timeout` (seconds) is how long it lasts when never released; `sleep` how often a waiter tries again.
    """
    lock = conn.lock(key, timeout=timeout, blocking_timeout=wait or None, sleep=sleep, thread_local=False)
    held = lock.acquire(blocking=wait > 0)
    try:
        yield held
    finally:
        if held:
            try:
                lock.release()
            except redis.exceptions.LockNotOwnedError:
                log.warning("lock %s expired before its holder released it (held over %s s)", key, timeout)


@contextmanager
def lead_lock(conn: redis.Redis, lead_id: str, *, wait: float = defaults.LEAD_LOCK_WAIT_SECONDS):
    """Hold the lock of one lead for the duration of the block, or raise LockTimeout.

    The lock expires on its own after LEAD_LOCK_TIMEOUT_SECONDS; while waiting, a lock
    whose holder died is taken over (see the module's docstring).
    """
    key = keys.lead_lock(lead_id)
    token = f"{_holder}{SEPARATOR}{uuid.uuid4().hex}" if _holder else uuid.uuid4().hex
    lock = conn.lock(key, timeout=defaults.LEAD_LOCK_TIMEOUT_SECONDS, thread_local=False)
    deadline = time.monotonic() + wait
    while not lock.acquire(token=token, blocking_timeout=max(min(TAKEOVER_CHECK_SECONDS,
                                                                 deadline - time.monotonic()), 0)):
        if take_over_if_dead(conn, key):
            continue
        if time.monotonic() >= deadline:
            raise LockTimeout(f"lead {lead_id} stayed locked by another job for {wait} s")
    with _held_guard:
        _held.add(token)
    try:
        yield lock
    finally:
        with _held_guard:
            _held.discard(token)
        try:
            lock.release()
        except redis.exceptions.LockNotOwnedError:
            pass  # it expired (or was taken over) while we worked; whoever holds it now keeps it
        except redis.RedisError:
            with _held_guard:
                _left[key] = token  # released by `release_left` once Redis is back
            raise


def release_left(conn: redis.Redis) -> int:
    """Release the locks this process's jobs could not release while Redis was away; return how many.

    Without this, another worker retrying the interrupted job would wait for the lock's
    lifetime (this process is alive, so its locks are never taken over by others).
    """
    with _held_guard:
        left = dict(_left)
    released = 0
    for key, token in left.items():
        released += int(delete_if_equal(conn, key, token))
        with _held_guard:
            _left.pop(key, None)
    return released


def take_over_if_dead(conn: redis.Redis, key: str) -> bool:
    """Delete the lock at `key` if its holder is dead; return whether it was deleted.

    Deleted only if it still carries the token that was judged (compare-and-delete), so a
    lock taken meanwhile by a live job is never touched.
    """
    token = text(conn.get(key))
    process = holder_of(token)
    if process is None:
        return False
    if process == _holder:
        with _held_guard:
            if token in _held:
                return False  # a job of ours holds it now
    elif beats.alive(conn, process):
        return False
    if not delete_if_equal(conn, key, token):
        return False
    log.warning("took over %s from %s, which no longer runs the job that held it", key,
                "this process" if process == _holder else f"dead worker {process}")
    return True


@contextmanager
def poll_lock(conn: redis.Redis) -> Iterator[bool]:
    """Hold the poll lock for the block if no other poll holds it; yield whether it is held (one poll at a time)."""
    with holding(conn, keys.poll_lock(), timeout=defaults.POLL_LOCK_TIMEOUT_SECONDS) as held:
        yield held
