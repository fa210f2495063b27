"""Every lead has a story: an append-only list of what happened to it, in Redis.

Entries are small JSON objects with `at` (unix seconds) and `kind` (one of `kinds.py`); callers add the
facts support needs (event id, call made and its status, error, who replayed).
Tokens and secrets never go in here.
"""

from __future__ import annotations

import json
import time

import redis

from bridge import defaults
from bridge.jsonlimits import parse
from bridge.storage import keys
from bridge.storage.kinds import UNREADABLE, WRITTEN


def entry(kind: str, **facts) -> dict:
    """Build one history entry stamped with the current time; `kind` is one of `kinds.py` (ValueError otherwise)."""
    if kind not in WRITTEN:  # a kind nobody named would be stored and never recognised by its readers
        raise ValueError(f"not a history kind: {kind!r} (name it in bridge/storage/kinds.py)")
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
    """Return a lead's story, oldest entry first.

    Each entry is parsed within the intake's JSON limits: one entry nested past them or
    holding a huge integer (written by an older version, or by hand) would otherwise stop
    every reader of the story (the console page, the CLI, the poll) with an error. Such an
    entry, or one that is not a JSON object, reads as an `unreadable` placeholder saying why.
    """
    return [_entry_of(raw) for raw in conn.lrange(keys.lead_history(lead_id), 0, -1)]


def _entry_of(raw: bytes) -> dict:
    """One stored entry as a dict, or a placeholder naming the problem and the entry's size."""
    parsed = parse(raw)
    if parsed.problem is None and isinstance(parsed.value, dict):
        return parsed.value
    return {"at": None, "kind": UNREADABLE, "problem": parsed.problem or "not a JSON object", "bytes": len(raw)}
