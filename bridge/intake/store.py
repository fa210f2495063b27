"""Persist, then acknowledge: store a signed delivery in ONE atomic Redis call.

A Lua script checks the 7-day dedupe key, stores the event, indexes it, starts or continues
the lead's story with its `received` entry, adds the lead to the search index (queued
deliveries) and appends the event id to the intake stream, all or nothing, in one round
trip. So an accepted lead is visible to support (its story, search) the moment it is
acknowledged, whether or not a worker runs. The worker's relay (workers/relay.py) turns
intake entries into RQ jobs within milliseconds; keeping RQ's job bookkeeping and the
schema validation off the request path is what lets the intake answer at close to a bare
endpoint's speed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import redis

from bridge import defaults
from bridge.intake import identity
from bridge.intake.classify import Verdict
from bridge.intake.signature import TIMESTAMP_HEADER
from bridge.storage import events, history, keys, kinds, search
from bridge.storage.redis import text

# KEYS: dedupe, event, events index, rejected index, intake stream, lead history, webhook metric,
#       then the search-index sets the lead belongs in (none for deliveries not queued)
# ARGV: event id, dedupe ttl, event ttl, received at, status, history entry (or ""),
#       history max, history ttl, stream max length, lead id, then the event's hash fields as pairs
_STORE = """
local existing = redis.call('GET', KEYS[1])
if existing then
  redis.call('HINCRBY', KEYS[7], 'duplicate', 1)
  return {0, existing}
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('HSET', KEYS[2], unpack(ARGV, 11))
redis.call('EXPIRE', KEYS[2], ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
if ARGV[5] == 'rejected' then redis.call('ZADD', KEYS[4], ARGV[4], ARGV[1]) end
if ARGV[6] ~= '' then
  redis.call('RPUSH', KEYS[6], ARGV[6])
  redis.call('LTRIM', KEYS[6], -tonumber(ARGV[7]), -1)
  redis.call('EXPIRE', KEYS[6], ARGV[8])
end
for i = 8, #KEYS do
  redis.call('SADD', KEYS[i], ARGV[10])
  redis.call('EXPIRE', KEYS[i], ARGV[8])
end
if ARGV[5] == 'queued' then
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[9], '*', 'event', ARGV[1])
end
redis.call('HINCRBY', KEYS[7], ARGV[5], 1)
return {1, ARGV[1]}
"""


def received_entry(event: events.Event) -> dict:
    """The history entry saying a delivery arrived, stamped with its receipt time."""
    record = history.entry(kinds.RECEIVED, event_id=event.id, action=event.action, status=event.status,
                           errors=event.errors or None, ordered_by=event.ordered_by, order_note=event.order_note)
    record["at"] = round(event.received_at, 3)
    return record


@dataclass
class Receipt:
    """What the intake did with a delivery."""

    event_id: str
    status: str
    duplicate: bool = False


class DeliveryStore:
    """Stores deliveries through the registered Lua script of one Redis client."""

    def __init__(self, conn: redis.Redis):
        self.conn = conn
        self._script = conn.register_script(_STORE)

    def store(self, body: bytes, headers: dict, verdict: Verdict, received_at: float) -> Receipt:
        """Store a delivery at most once (same bytes, same timestamp header); raises redis.RedisError
        when Redis cannot take it."""
        body_sha256 = hashlib.sha256(body).hexdigest()
        stamp = headers.get(TIMESTAMP_HEADER)
        order = identity.ordering(stamp, received_at)
        event = events.Event(
            id=events.new_event_id(received_at), body=body, headers=headers, received_at=received_at,
            status=verdict.status, action=verdict.action, lead_id=verdict.lead_id, errors=verdict.errors,
            body_sha256=body_sha256, order_ns=order.ns, ordered_by=order.by, order_note=order.note,
        )
        lead_id = verdict.lead_id
        entry = json.dumps(received_entry(event), separators=(",", ":")) if lead_id else ""
        index = search.token_keys(verdict.payload) if lead_id and verdict.payload is not None else []
        fields = [part for pair in event.to_redis().items() for part in pair]
        created, event_id = self._script(
            keys=[keys.delivery_dedupe(identity.delivery_digest(body_sha256, stamp)), keys.event(event.id),
                  keys.events_by_time(), keys.rejected_events(), keys.intake_stream(),
                  keys.lead_history(lead_id or "-"), keys.metric("webhooks"), *index],
            args=[event.id, defaults.DEDUPE_TTL_SECONDS, defaults.EVENT_TTL_SECONDS, repr(received_at),
                  verdict.status, entry, defaults.HISTORY_MAX_ENTRIES, defaults.HISTORY_TTL_SECONDS,
                  defaults.INTAKE_STREAM_MAX_LENGTH, lead_id or "", *fields],
        )
        event_id = text(event_id)
        return Receipt(event_id, verdict.status, duplicate=not created)
