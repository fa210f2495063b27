"""Stored webhook deliveries: the raw body, its headers, when it came and what became of it."""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field

import redis

from bridge import defaults
from bridge.jsonlimits import parse
from bridge.storage import keys
from bridge.storage.redis import text

QUEUED, IGNORED, REJECTED = "queued", "ignored", "rejected"
"""What the intake decided about a delivery."""


def new_event_id(now: float | None = None) -> str:
    """Return a new event id that sorts by receipt time: 12 hex digits of ms, 8 random.

    The random part need only differ between deliveries of one millisecond, not be secret:
    `random` (reseeded in every forked process) spares each delivery a system call.
    """
    millis = int((time.time() if now is None else now) * 1000)
    return f"{millis:012x}{random.getrandbits(32):08x}"


@dataclass
class Event:
    """One webhook delivery as stored."""

    id: str
    body: bytes
    headers: dict
    received_at: float
    status: str
    action: str | None = None
    lead_id: str | None = None
    errors: dict = field(default_factory=dict)
    body_sha256: str | None = None
    order_ns: int | None = None
    """When the change happened for ordering a lead's changes (unix ns), as the intake decided
    (bridge/intake/identity.py); None on events stored before the intake decided it."""
    ordered_by: str | None = None
    order_note: str | None = None

    def payload(self) -> dict:
        """Return the parsed JSON body (only call on events whose body was valid JSON)."""
        return json.loads(self.body)

    def meta(self) -> str:
        """Everything but the body, as the JSON stored next to it."""
        return json.dumps({
            "received_at": self.received_at, "status": self.status, "action": self.action,
            "lead_id": self.lead_id, "errors": self.errors, "headers": self.headers,
            "body_sha256": self.body_sha256, "order_ns": self.order_ns, "ordered_by": self.ordered_by,
            "order_note": self.order_note,
        }, separators=(",", ":"))

    def to_redis(self) -> dict:
        """Return the hash fields this event is stored as: the raw body and one JSON of the rest.

        Two fields instead of one per attribute keep the intake's single Redis call small.
        """
        return {"body": self.body, "meta": self.meta()}

    @classmethod
    def from_redis(cls, event_id: str, fields: dict) -> "Event":
        """Rebuild an event from its stored hash fields (bytes keys and values).

        Whatever the hash holds: a meta that is not JSON within the limits, or lacks fields,
        reads as an event of status `unreadable`, so one broken record cannot break a list of them.
        """
        meta = meta_of(fields.get(b"meta"))
        return cls(id=event_id, body=fields.get(b"body", b""), headers=meta["headers"],
                   received_at=meta["received_at"], status=meta["status"], action=meta["action"],
                   lead_id=meta["lead_id"], errors=meta["errors"], body_sha256=meta["body_sha256"],
                   order_ns=meta.get("order_ns"), ordered_by=meta.get("ordered_by"), order_note=meta.get("order_note"))


UNREADABLE = "unreadable"
"""Status an event reads with when its stored meta cannot be read."""


def meta_of(raw) -> dict:
    """A stored event's meta as a dict with every field, each of its type or None (pure)."""
    parsed = parse(raw or b"") if isinstance(raw, (bytes, str)) else None
    meta = parsed.value if parsed is not None and parsed.problem is None and isinstance(parsed.value, dict) else None
    if meta is None:
        return {"received_at": 0.0, "status": UNREADABLE, "action": None, "lead_id": None,
                "errors": {"meta": [parsed.problem if parsed and parsed.problem else "not a JSON object"]},
                "headers": {}, "body_sha256": None}

    def typed(name, kind, default=None):
        value = meta.get(name)
        return value if isinstance(value, kind) and not isinstance(value, bool) else default

    return {"received_at": typed("received_at", (int, float), 0.0), "status": typed("status", str, UNREADABLE),
            "action": typed("action", str), "lead_id": typed("lead_id", str),
            "errors": meta.get("errors") or {}, "headers": typed("headers", dict, {}),
            "body_sha256": typed("body_sha256", str), "order_ns": typed("order_ns", int),
            "ordered_by": typed("ordered_by", str), "order_note": typed("order_note", str)}


def recent(conn, *, before: float | None = None, since: float | None = None,
           count: int = 200) -> list[tuple[str, float]]:
    """Ids and receipt times of stored deliveries, newest first: received before `before` (exclusive)
    and at or after `since`."""
    top = f"({before!r}" if before is not None else "+inf"
    bottom = since if since is not None else "-inf"
    found = conn.zrevrangebyscore(keys.events_by_time(), top, bottom, start=0, num=count, withscores=True)
    return [(text(raw), score) for raw, score in found]


def metas(conn, event_ids: list[str]) -> list[tuple[dict | None, int]]:
    """Each delivery's meta (None when it expired) and its body's size in bytes, without reading the bodies."""
    pipe = conn.pipeline(transaction=False)
    for event_id in event_ids:
        pipe.hget(keys.event(event_id), "meta")
        pipe.hstrlen(keys.event(event_id), "body")
    replies = pipe.execute()
    return [(None if raw is None else meta_of(raw), size) for raw, size in zip(replies[::2], replies[1::2])]


def body_of(conn, event_id: str, limit: int) -> bytes | None:
    """A delivery's body when it is at most `limit` bytes, else None (a list reads small bodies only)."""
    if conn.hstrlen(keys.event(event_id), "body") > limit:
        return None
    return conn.hget(keys.event(event_id), "body")


def load(conn, event_id: str) -> Event | None:
    """Return the stored event, or None when it does not exist (or has expired)."""
    fields = conn.hgetall(keys.event(event_id))
    return Event.from_redis(event_id, fields) if fields else None


def list_rejected(conn, start: int = 0, count: int = 50) -> list[Event]:
    """Return rejected deliveries, newest first."""
    ids = conn.zrevrange(keys.rejected_events(), start, start + count - 1)
    found = (load(conn, text(raw)) for raw in ids)
    return [event for event in found if event is not None]


def mark_rejected(conn, event: Event, errors: dict) -> None:
    """Record that a stored event failed validation, so support sees it with its errors; `conn` may be
    an open pipeline (the relay's)."""
    event.status, event.errors = REJECTED, errors
    pipe = conn if isinstance(conn, redis.client.Pipeline) else conn.pipeline()
    pipe.hset(keys.event(event.id), "meta", event.meta())
    pipe.zadd(keys.rejected_events(), {event.id: event.received_at})
    if pipe is not conn:
        pipe.execute()


DUPLICATE = "duplicate"
"""Outcome of a delivery that repeated an earlier one (kept in its own log, not as an event)."""


def record_duplicate(pipe, original_id: str, received_at: float, action: str | None, lead_id: str | None) -> None:
    """Log, on an open pipeline, that a delivery repeated the one stored as `original_id`.

    Kept for the dedupe window and at most DUPLICATE_LOG_MAX_ENTRIES: a sender repeating itself
    forever cannot grow it without bound.
    """
    record = json.dumps({"of": original_id, "at": round(received_at, 6), "action": action, "lead_id": lead_id},
                        separators=(",", ":"))
    key = keys.duplicate_deliveries()
    pipe.zadd(key, {record: received_at})
    pipe.zremrangebyscore(key, "-inf", received_at - defaults.DEDUPE_TTL_SECONDS)
    pipe.zremrangebyrank(key, 0, -defaults.DUPLICATE_LOG_MAX_ENTRIES - 1)
    pipe.expire(key, defaults.DEDUPE_TTL_SECONDS)


def duplicates(conn, *, before: float | None = None, since: float | None = None,
               count: int = 200) -> list[tuple[dict, float]]:
    """Logged repeated deliveries, newest first (each `{"of", "at", "action", "lead_id"}`), like `recent`."""
    top = f"({before!r}" if before is not None else "+inf"
    bottom = since if since is not None else "-inf"
    found = conn.zrevrangebyscore(keys.duplicate_deliveries(), top, bottom, start=0, num=count, withscores=True)
    rows = []
    for raw, score in found:
        parsed = parse(raw)
        value = parsed.value if parsed.problem is None and isinstance(parsed.value, dict) else {}
        rows.append(({name: value.get(name) if isinstance(value.get(name), str) else None
                      for name in ("of", "action", "lead_id")}, score))
    return rows