"""Forward work waiting, per Real Geeks lead: the events whose job is queued (or retrying, or waiting) and not settled.

This module is the record's only reader and writer. The relay adds an event before it
enqueues the event's job, a replay before it requeues one; the job removes it once it was
processed or failed for good. The reverse sync reads it to know which Real Geeks changes
are received but not yet applied (`bridge/sync/conflicts.py`).

Entries older than PENDING_EVENT_TTL_SECONDS no longer count and are dropped as the set is
written, and an idle lead's set expires: a job killed before it could settle leaves nothing
behind for longer than that.
"""

from __future__ import annotations

import time

import redis

from bridge import defaults
from bridge.storage import keys
from bridge.storage.redis import text


def add(conn: redis.Redis, lead_id: str, event_id: str, *, now: float | None = None) -> bool:
    """Record an event of the lead as waiting; True when it was not waiting already.

    Called BEFORE the job is queued: added after, a job quick to finish would settle before
    the add and leave the event waiting for good. A caller whose enqueue then turns out to
    be refused takes back an add that returned True (`remove`).
    """
    now = time.time() if now is None else now
    key = keys.lead_pending_events(lead_id)
    with conn.pipeline() as pipe:
        pipe.zadd(key, {event_id: now}, nx=True)  # the first time it was queued is when it started waiting
        pipe.zremrangebyscore(key, "-inf", now - defaults.PENDING_EVENT_TTL_SECONDS)
        pipe.expire(key, defaults.PENDING_EVENT_TTL_SECONDS)
        added = pipe.execute()[0]
    return bool(added)


def remove(conn: redis.Redis, lead_id: str, event_id: str) -> None:
    """Record that an event's job settled (processed, or failed for good): no longer waiting."""
    conn.zrem(keys.lead_pending_events(lead_id), event_id)


def waiting(conn: redis.Redis, lead_id: str, *, now: float | None = None) -> list[str]:
    """The ids of the lead's events still waiting, oldest first (entries past their age left out)."""
    now = time.time() if now is None else now
    members = conn.zrangebyscore(keys.lead_pending_events(lead_id), now - defaults.PENDING_EVENT_TTL_SECONDS, "+inf")
    return [text(member) for member in members]
