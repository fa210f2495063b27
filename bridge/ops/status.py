"""What the bridge is doing right now: queue depths, the oldest waiting job, LionDesk
authorisation, the last LionDesk poll and Redis memory. Read live from Redis by /healthz, /metrics,
`bridge jobs stats` and the console overview."""

from __future__ import annotations

import time
from dataclasses import asdict
from datetime import timezone

from rq.registry import FailedJobRegistry, ScheduledJobRegistry

from bridge import defaults
from bridge.clients.oauth import auth_state
from bridge.queue import event_queue, poll_queue
from bridge.storage import polls, usage

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


def liondesk_auth(conn, settings=None) -> dict:
    """Return LionDesk's authorisation state as the OAuth client records it (`state`, `reason`, `since`; no token)."""

    return {"reason": None, "since": None, **auth_state(conn, settings)}


def poll_status(conn) -> dict:
    """Return what the last LionDesk poll recorded (last_run, cursor, outcome); empty before the first poll."""
    return asdict(polls.load(conn))


def redis_memory(conn, settings=None) -> dict:
    """Return Redis memory used against its maxmemory: bytes, percent, level (ok / warning / full / unlimited),
    `warning` (above the threshold or full) and a headline for people."""
    percent = settings.redis_memory_warning_percent if settings is not None else defaults.REDIS_MEMORY_WARNING_PERCENT
    state = usage.memory_state(conn, percent)
    return {**state.to_json(), "warning": state.level in (usage.WARNING, usage.FULL), "headline": state.headline()}
