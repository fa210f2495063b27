"""Deliveries parked until Real Geeks identifies their lead (owner of the parked records).

A site connected after go-live sends `activity_added` and partial `updated` deliveries
for leads the bridge never saw (docs/vendors/realgeeks-api.md §7, "Leads from before
go-live"). Such a delivery cannot reach LionDesk yet (no contact, nothing to create one
from) and retrying it cannot help: only a later delivery that names the person can. So
it waits here, off the retry ladder, until that delivery arrives or the window expires.

Records: one list per lead (event ids, in arrival order) and one sorted set of the
leads that have any (scored by when the first was parked), for counts and expiry.
"""

from __future__ import annotations

import time

from bridge.storage import keys
from bridge.storage.redis import text

WAITING_FOR_DETAILS = "waiting for Real Geeks to send this lead's details"
"""What the story, console, CLI and /healthz say about a parked delivery."""

# Append unless already there (a retried job parks the same event again); index the lead
# by its first parking time only.
_PARK = """
for _, id in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  if id == ARGV[1] then return 0 end
end
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], 'NX', ARGV[2], ARGV[3])
return 1
"""

# Remove one event; the lead leaves the index with its last event.
_DONE = """
redis.call('LREM', KEYS[1], 0, ARGV[1])
if redis.call('LLEN', KEYS[1]) == 0 then redis.call('ZREM', KEYS[2], ARGV[2]) end
return 1
"""


def park(conn, lead_id: str, event_id: str, now: float | None = None) -> bool:
    """Park an event of a lead; False when it was parked already."""
    now = time.time() if now is None else now
    return bool(conn.eval(_PARK, 2, keys.parked_events(lead_id), keys.parked_leads(), event_id, now, lead_id))


def waiting(conn, lead_id: str) -> list[str]:
    """The lead's parked event ids, oldest first."""
    return [text(raw) for raw in conn.lrange(keys.parked_events(lead_id), 0, -1)]


def done(conn, lead_id: str, event_id: str) -> None:
    """Take an event out of the parked records (applied, or given up)."""
    conn.eval(_DONE, 2, keys.parked_events(lead_id), keys.parked_leads(), event_id, lead_id)


def counts(conn, *, now: float | None = None) -> dict:
    """How many leads and deliveries wait for their details, and how long the oldest has waited (s)."""
    now = time.time() if now is None else now
    leads = [(text(member), score) for member, score in conn.zrange(keys.parked_leads(), 0, -1, withscores=True)]
    with conn.pipeline(transaction=False) as pipe:
        for lead_id, _ in leads:
            pipe.llen(keys.parked_events(lead_id))
        lengths = pipe.execute() if leads else []
    oldest = min((score for _, score in leads), default=None)
    return {"leads": len(leads), "deliveries": sum(lengths),
            "oldest_age_seconds": None if oldest is None else round(max(now - oldest, 0.0), 1)}


def expire(conn, before: float) -> list[tuple[str, list[str]]]:
    """Drop the parked events of leads first parked before `before`; return (lead id, event ids) of each."""
    dropped = []
    for raw in conn.zrangebyscore(keys.parked_leads(), "-inf", f"({before}"):
        lead_id = text(raw)
        with conn.pipeline() as pipe:
            pipe.lrange(keys.parked_events(lead_id), 0, -1)
            pipe.delete(keys.parked_events(lead_id))
            pipe.zrem(keys.parked_leads(), lead_id)
            event_ids, _, removed = pipe.execute()
        if removed:  # another worker may have expired it in the meantime
            dropped.append((lead_id, [text(event_id) for event_id in event_ids]))
    return dropped
