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
import logging
import os
import threading
from dataclasses import dataclass

import redis

from bridge import defaults
from bridge.intake import identity
from bridge.intake.classify import Verdict
from bridge.intake.signature import TIMESTAMP_HEADER
from bridge.storage import events, history, keys, kinds, search
from bridge.storage.redis import text

log = logging.getLogger("bridge.intake")

# KEYS: dedupe, event, events index, rejected index, intake stream, lead history, webhook metric,
#       then the search-index bucket (only when there are index members)
# ARGV: event id, dedupe ttl, event ttl, received at, status, history entry (or ""),
#       history max, history ttl, stream max length, lead id, index ttl, the number n of index
#       members, the n members, then the event's hash fields as pairs
_STORE = """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then
  redis.call('HINCRBY', KEYS[7], 'duplicate', 1)
  return {0, redis.call('GET', KEYS[1])}
end
local members = tonumber(ARGV[12])
redis.call('HSET', KEYS[2], unpack(ARGV, 13 + members))
redis.call('EXPIRE', KEYS[2], ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
if ARGV[5] == 'rejected' then redis.call('ZADD', KEYS[4], ARGV[4], ARGV[1]) end
if ARGV[6] ~= '' then
  if redis.call('RPUSH', KEYS[6], ARGV[6]) > tonumber(ARGV[7]) then
    redis.call('LTRIM', KEYS[6], -tonumber(ARGV[7]), -1)
  end
  redis.call('EXPIRE', KEYS[6], ARGV[8])
end
if members > 0 then
  for i = 13, 12 + members do redis.call('ZADD', KEYS[8], 0, ARGV[i]) end
  redis.call('EXPIRE', KEYS[8], ARGV[11])
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
    """Stores deliveries through the Lua script, each request thread on a Redis connection of its own.

    The script runs by EVALSHA straight on the thread's connection, without the client's
    connection pool: taking and returning a pooled connection (a lock shared by every
    thread) cost more CPU than the call itself, and the intake makes this one call per
    delivery. The connection is still made from the client's pool settings (address,
    TLS, timeouts, health checks).
    """

    ATTEMPTS = 3
    """Tries of one store call: a connection Redis closed while idle, then a script Redis forgot (NOSCRIPT)."""

    def __init__(self, conn: redis.Redis):
        self.conn = conn
        self._script = conn.register_script(_STORE)
        self._local = threading.local()

    def _connection(self):
        """This thread's own connection (a new one in a forked child: a connection is never shared across processes)."""
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            local.connection, local.pid = self.conn.connection_pool.make_connection(), os.getpid()
        return local.connection

    def _run(self, keys_: list, args: list):
        """EVALSHA the store script once; raises redis.RedisError when Redis cannot take it.

        A connection error, or a timeout after the script may have run, is retried on a fresh
        connection: the script's dedupe key makes a second run answer "already stored".
        """
        connection = self._connection()
        for attempt in range(1, self.ATTEMPTS + 1):
            try:
                connection.send_command("EVALSHA", self._script.sha, len(keys_), *keys_, *args)
                return connection.read_response()
            except redis.exceptions.NoScriptError:
                if attempt == self.ATTEMPTS:
                    raise
                self._script.sha = self.conn.script_load(_STORE)  # Redis restarted or flushed its scripts
            except (redis.ConnectionError, redis.TimeoutError):
                connection.disconnect()
                if attempt == self.ATTEMPTS:
                    raise

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
        index = search.entries(lead_id, verdict.payload) if lead_id and verdict.payload is not None else []
        fields = [part for pair in event.to_redis().items() for part in pair]
        created, event_id = self._run(
            [keys.delivery_dedupe(identity.delivery_digest(body_sha256, stamp)), keys.event(event.id),
             keys.events_by_time(), keys.rejected_events(), keys.intake_stream(),
             keys.lead_history(lead_id or "-"), keys.metric("webhooks"),
             *([search.bucket_key(received_at)] if index else [])],
            [event.id, defaults.DEDUPE_TTL_SECONDS, defaults.EVENT_TTL_SECONDS, repr(received_at),
             verdict.status, entry, defaults.HISTORY_MAX_ENTRIES, defaults.HISTORY_TTL_SECONDS,
             defaults.INTAKE_STREAM_MAX_LENGTH, lead_id or "", search.INDEX_TTL_SECONDS, len(index), *index,
             *fields],
        )
        event_id = text(event_id)
        if not created:
            self._log_duplicate(event_id, verdict, received_at)
        return Receipt(event_id, verdict.status, duplicate=not created)

    def _log_duplicate(self, original_id: str, verdict: Verdict, received_at: float) -> None:
        """Put a repeated delivery in the deliveries log and the lead's story (support sees every delivery).

        A second round trip, for repeats only: the first delivery is stored and the answer does not
        depend on this, so a Redis error here is logged and the repeat still acknowledged.
        """
        try:
            pipe = self.conn.pipeline(transaction=False)
            events.record_duplicate(pipe, original_id, received_at, verdict.action, verdict.lead_id)
            if verdict.lead_id:
                record = history.entry(kinds.DUPLICATE, event_id=original_id, action=verdict.action)
                record["at"] = round(received_at, 3)
                history.append_entry(pipe, verdict.lead_id, record)
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("repeated delivery of %s not logged: redis error %s", original_id, exc.__class__.__name__)
