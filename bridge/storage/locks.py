"""The per-lead lock: all work on one Real Geeks lead happens one job at a time."""

from __future__ import annotations

from contextlib import contextmanager

import redis

from bridge import defaults
from bridge.exceptions import LockTimeout
from bridge.storage import keys


@contextmanager
def lead_lock(conn: redis.Redis, lead_id: str, *, wait: float = defaults.LEAD_LOCK_WAIT_SECONDS):
    """Hold the lock of one lead for the duration of the block, or raise LockTimeout.

    The lock expires on its own after LEAD_LOCK_TIMEOUT_SECONDS, so a worker killed
    while holding it blocks that lead for at most that long.
    """
    lock = conn.lock(keys.lead_lock(lead_id), timeout=defaults.LEAD_LOCK_TIMEOUT_SECONDS,
                     blocking_timeout=wait, thread_local=False)
    if not lock.acquire():
        raise LockTimeout(f"lead {lead_id} stayed locked by another job for {wait} s")
    try:
        yield lock
    finally:
        try:
            lock.release()
        except redis.exceptions.LockNotOwnedError:
            pass  # it expired while we worked; whoever holds it now keeps it
