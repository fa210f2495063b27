"""The Redis locks: one way to hold one (`holding`), and the locks of the sync (per lead, the poll).

Every lock expires on its own after its timeout, so a process killed while holding one blocks
the others for at most that long; a lock that expired while held is left to whoever holds it now.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from bridge import defaults
from bridge.exceptions import LockTimeout
from bridge.storage import keys

log = logging.getLogger(__name__)


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
def lead_lock(conn: redis.Redis, lead_id: str, *, wait: float = defaults.LEAD_LOCK_WAIT_SECONDS) -> Iterator[None]:
    """Hold the lock of one lead for the duration of the block, or raise LockTimeout (all its work, one job at a time)."""
    with holding(conn, keys.lead_lock(lead_id), timeout=defaults.LEAD_LOCK_TIMEOUT_SECONDS, wait=wait) as held:
        if not held:
            raise LockTimeout(f"lead {lead_id} stayed locked by another job for {wait} s")
        yield


@contextmanager
def poll_lock(conn: redis.Redis) -> Iterator[bool]:
    """Hold the poll lock for the block if no other poll holds it; yield whether it is held (one poll at a time)."""
    with holding(conn, keys.poll_lock(), timeout=defaults.POLL_LOCK_TIMEOUT_SECONDS) as held:
        yield held
