"""Persist, then acknowledge: store a signed delivery and queue its job in one Redis transaction."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import redis

from bridge import defaults
from bridge.intake.classify import Verdict
from bridge.storage import events, history, keys
from workers.queue import enqueue_event


@dataclass
class Receipt:
    """What the intake did with a delivery."""

    event_id: str
    status: str
    duplicate: bool = False


def accept(conn: redis.Redis, queue, body: bytes, headers: dict, verdict: Verdict, received_at: float,
           retry_intervals=defaults.RETRY_INTERVALS_SECONDS) -> Receipt:
    """Store the delivery (and queue its job when it is to be processed), at most once per body.

    The dedupe key, the event, the lead's history entry and the RQ job are written in
    one MULTI/EXEC, watched on the dedupe key: either all of it is durable or none of
    it is, and two identical deliveries racing each other yield one event and one job.
    Raises redis.RedisError when Redis cannot take it (the caller answers 503).
    """
    digest = hashlib.sha256(body).hexdigest()
    dedupe_key = keys.delivery_dedupe(digest)
    with conn.pipeline() as pipe:
        while True:
            try:
                pipe.watch(dedupe_key)
                existing = pipe.get(dedupe_key)
                if existing is not None:
                    pipe.reset()
                    return Receipt(existing.decode(), verdict.status, duplicate=True)
                event = events.Event(
                    id=events.new_event_id(received_at), body=body, headers=headers,
                    received_at=received_at, status=verdict.status, action=verdict.action,
                    lead_id=verdict.lead_id, errors=verdict.errors, body_sha256=digest,
                )
                pipe.multi()
                pipe.set(dedupe_key, event.id, ex=defaults.DEDUPE_TTL_SECONDS)
                events.save(pipe, event)
                if verdict.lead_id:
                    history.append(pipe, verdict.lead_id, "received", event_id=event.id,
                                   action=verdict.action, status=verdict.status,
                                   errors=verdict.errors or None)
                if verdict.status == events.QUEUED:
                    enqueue_event(queue, event.id, pipeline=pipe, intervals=retry_intervals,
                                  description=f"{verdict.action} lead {verdict.lead_id or '-'}")
                pipe.execute()
                return Receipt(event.id, verdict.status)
            except redis.WatchError:
                continue  # an identical delivery won the race: loop to report it as a duplicate
