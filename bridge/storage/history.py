"""Every lead has a story: an append-only list of what happened to it, in Redis.

Entries are small JSON objects with `at` (unix seconds) and `kind`; callers add the
facts support needs (event id, call made and its status, error, who replayed).
Tokens and secrets never go in here.
"""

from __future__ import annotations

import json
import time

import redis

from bridge import defaults
from bridge.storage import keys


def entry(kind: str, **facts) -> dict:
    """Build one history entry stamped with the current time."""
    return {"at": round(time.time(), 3), "kind": kind, **{k: v for k, v in facts.items() if v is not None}}


def append(conn, lead_id: str, kind: str, **facts) -> dict:
    """Append an entry to a lead's story; `conn` may be a client or an open pipeline."""
    return append_entry(conn, lead_id, entry(kind, **facts))


def append_entry(conn, lead_id: str, record: dict) -> dict:
    """Append a ready-made entry (see `entry`) to a lead's story."""
    key = keys.lead_history(lead_id)
    # One round trip, not three: a job writes a dozen entries, and on a hosted Redis
    # each round trip costs about a millisecond of the job's time.
    pipe = conn if isinstance(conn, redis.client.Pipeline) else conn.pipeline(transaction=False)
    pipe.rpush(key, json.dumps(record, default=str, separators=(",", ":")))
    pipe.ltrim(key, -defaults.HISTORY_MAX_ENTRIES, -1)
    pipe.expire(key, defaults.HISTORY_TTL_SECONDS)
    if pipe is not conn:
        pipe.execute()
    return record


def read(conn, lead_id: str) -> list[dict]:
    """Return a lead's story, oldest entry first."""
    return [json.loads(raw) for raw in conn.lrange(keys.lead_history(lead_id), 0, -1)]
