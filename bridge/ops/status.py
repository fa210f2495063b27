"""What the bridge is doing right now: the intake backlog, queue depths, the oldest waiting
job, LionDesk authorisation and the last LionDesk poll. Read live from Redis by /healthz, /metrics,
`bridge jobs stats` and the console overview."""

from __future__ import annotations

import time
from dataclasses import asdict
from datetime import timezone

from rq.registry import FailedJobRegistry, ScheduledJobRegistry

from bridge import defaults
from bridge.clients.oauth import auth_state
from bridge.queue import event_queue, poll_queue
from bridge.storage import keys, polls
from bridge.storage.redis import text

QUEUE_NAMES = (defaults.EVENT_QUEUE, defaults.POLL_QUEUE)
"""The RQ queues the bridge runs; their scheduled and failed registries are summed."""

NEEDS_REAUTHORIZATION = "needs_reauthorization"
"""The LionDesk authorisation state in which no job can reach LionDesk."""


def queue_depths(conn) -> dict[str, int]:
    """Return how many jobs wait on each queue, wait for a retry (scheduled), and sit in the failed store."""
    return {
        "events": event_queue(conn).count,
        "poll": poll_queue(conn).count,
        "scheduled": sum(ScheduledJobRegistry(name, connection=conn).count for name in QUEUE_NAMES),
        "failed": sum(FailedJobRegistry(name, connection=conn).count for name in QUEUE_NAMES),
    }


def oldest_waiting_age(conn, now: float | None = None) -> float | None:
    """Return the age in seconds of the job that has waited longest on any queue, or None when none waits."""
    now = time.time() if now is None else now
    ages = []
    for queue in (event_queue(conn), poll_queue(conn)):
        head = queue.get_job_ids(0, 1)
        job = queue.fetch_job(head[0]) if head else None
        if job is not None and job.enqueued_at is not None:
            enqueued = job.enqueued_at
            if enqueued.tzinfo is None:  # RQ stores naive UTC
                enqueued = enqueued.replace(tzinfo=timezone.utc)
            ages.append(max(now - enqueued.timestamp(), 0.0))
    return round(max(ages), 1) if ages else None


def intake_backlog(conn, now: float | None = None) -> dict:
    """Deliveries accepted but not yet relayed onto the job queue: how many (`entries`) and the
    age in seconds of the oldest (`oldest_age_seconds`, None when none waits).

    These are the intake stream's entries the relays' consumer group has not acknowledged:
    those no relay has read yet, and those read by a relay that has not finished with them
    (or died). A backlog that only grows means no worker is running, or none reaches this
    Redis. Redis 7 reports the unread count itself (the group's `lag`); older servers are
    counted by reading, at most INTAKE_BACKLOG_COUNT_LIMIT entries (the figure is then a floor).
    """
    now = time.time() if now is None else now
    stream = keys.intake_stream()
    if not conn.exists(stream):
        return {"entries": 0, "oldest_age_seconds": None}
    group = next((g for g in conn.xinfo_groups(stream) if text(g.get("name")) == defaults.RELAY_GROUP), None)
    if group is None:  # no worker ever started on this Redis: every entry waits
        unread, after, pending, oldest_pending = conn.xlen(stream), "-", 0, None
    else:
        after = "(" + text(group["last-delivered-id"])
        pending = int(group.get("pending") or 0)
        oldest_pending = text(conn.xpending(stream, defaults.RELAY_GROUP)["min"]) if pending else None
        unread = group.get("lag")
        if unread is None:  # Redis < 7, or a lag Redis cannot know after deletions
            unread = len(conn.xrange(stream, min=after, count=defaults.INTAKE_BACKLOG_COUNT_LIMIT))
    first_unread = conn.xrange(stream, min=after, count=1) if unread else []
    oldest = [entry for entry in (oldest_pending, text(first_unread[0][0]) if first_unread else None) if entry]
    ages = [max(now - int(entry.split("-")[0]) / 1000, 0.0) for entry in oldest]
    return {"entries": int(unread) + pending, "oldest_age_seconds": round(max(ages), 1) if ages else None}


def liondesk_auth(conn, settings=None) -> dict:
    """Return LionDesk's authorisation state as the OAuth client records it (`state`, `reason`, `since`; no token)."""

    return {"reason": None, "since": None, **auth_state(conn, settings)}


def poll_status(conn) -> dict:
    """Return what the last LionDesk poll recorded (last_run, cursor, outcome); empty before the first poll."""
    return asdict(polls.load(conn))
