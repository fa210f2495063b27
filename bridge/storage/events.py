"""Stored webhook deliveries: the raw body, its headers, when it came and what became of it."""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field

import redis

from bridge.storage import keys
from bridge.storage.redis import text

QUEUED, IGNORED, REJECTED = "queued", "ignored", "rejected"
"""What the intake decided about a delivery."""


def new_event_id(now: float | None = None) -> str:
    """Return a new event id that sorts by receipt time: 12 hex digits of ms, 8 random."""
    millis = int((time.time() if now is None else now) * 1000)
    return f"{millis:012x}{secrets.token_hex(4)}"


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
        """Rebuild an event from its stored hash fields (bytes keys and values)."""
        meta = json.loads(fields[b"meta"])
        return cls(id=event_id, body=fields[b"body"], headers=meta["headers"],
                   received_at=meta["received_at"], status=meta["status"], action=meta["action"],
                   lead_id=meta["lead_id"], errors=meta["errors"], body_sha256=meta["body_sha256"],
                   order_ns=meta.get("order_ns"), ordered_by=meta.get("ordered_by"), order_note=meta.get("order_note"))


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
