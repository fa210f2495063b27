"""What the bridge is doing right now: queue depths, the oldest waiting job, LionDesk
authorisation and the last LionDesk poll. Read live from Redis by /healthz, /metrics,
`bridge jobs stats` and the console overview."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

from rq import Worker
from rq.job import Job
from rq.registry import FailedJobRegistry, ScheduledJobRegistry

from bridge import defaults
from bridge.clients.oauth import auth_state
from bridge.queue import event_queue, poll_queue
from bridge.storage import polls

QUEUE_NAMES = (defaults.EVENT_QUEUE, defaults.POLL_QUEUE)
"""The RQ queues the bridge runs; their scheduled and failed registries are summed."""

NEEDS_REAUTHORIZATION = "needs_reauthorization"
"""The LionDesk authorisation state in which no job can reach LionDesk."""

LAST_FAILURE = "last_failure"
"""RQ job meta field where the worker's failure policy (workers/failure.py) keeps the last failed
attempt: error class and text, outcome, when, when the job first failed, which vendor failed."""

LIONDESK_SERVICES = ("liondesk", "liondesk_v1")
"""Service names of LionDesk's APIs in an UpstreamError."""

LIONDESK_FAILING, REAUTHORIZE, NO_WORKER, REDIS_FULL = "liondesk_failing", "reauthorize", "no_worker", "redis_full"
"""What the console's banner can ask a person to look at."""


@dataclass
class Notice:
    """One thing that needs a person, for the banner at the top of every console page."""

    kind: str
    text: str
    since: float | None = None
    count: int | None = None


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


def waiting_jobs(conn, limit: int = defaults.CONSOLE_BANNER_SCAN_JOBS) -> dict:
    """Count the lead jobs waiting for a next attempt: on LionDesk failing (and since when), and on an operator.

    Read from what the failure policy keeps on each job, not from every lead's story, so that
    the banner of every console page costs two round trips even during a long outage.
    """
    ids = [raw.decode() if isinstance(raw, bytes) else raw
           for raw in conn.zrange(ScheduledJobRegistry(defaults.EVENT_QUEUE, connection=conn).key, 0, limit - 1)]
    failing, waiting, since = 0, 0, None
    for job in Job.fetch_many(ids, connection=conn):
        failure = job.meta.get(LAST_FAILURE) if job is not None and isinstance(job.meta, dict) else None
        if not isinstance(failure, dict):
            continue
        if failure.get("outcome") == "waiting":
            waiting += 1
        elif failure.get("service") in LIONDESK_SERVICES:
            failing += 1
            first = failure.get("first_at")
            if isinstance(first, (int, float)) and not isinstance(first, bool):
                since = first if since is None else min(since, first)
    return {"liondesk_failing": failing, "waiting_for_operator": waiting, "liondesk_failing_since": since}


def live_workers(conn) -> int:
    """How many RQ workers are registered (each renews its registration while it lives)."""
    return Worker.count(connection=conn)


def redis_memory(conn) -> dict:
    """Redis memory in use and its `maxmemory` limit in bytes (limit None when Redis has none)."""
    info = conn.info("memory")
    limit = info.get("maxmemory") or None
    return {"used_bytes": info.get("used_memory"), "max_bytes": limit}


def attention(conn, settings=None, now: float | None = None) -> list[Notice]:
    """What needs a person right now, most urgent first: LionDesk refusing the bridge's access,
    LionDesk failing with leads waiting, no worker running, Redis full."""
    notices = []
    waiting = waiting_jobs(conn)
    auth = liondesk_auth(conn, settings)
    if auth.get("state") == NEEDS_REAUTHORIZATION:
        held = waiting["waiting_for_operator"]
        notices.append(Notice(REAUTHORIZE, "LionDesk needs re-authorisation: it refused the bridge's access"
                              + (f" ({auth['reason']})" if auth.get("reason") else "")
                              + (f"; {held} lead{'s' if held != 1 else ''} waiting for it" if held else ""),
                              since=_unix(auth.get("since")), count=held))
    if waiting["liondesk_failing"]:
        count = waiting["liondesk_failing"]
        notices.append(Notice(LIONDESK_FAILING, f"LionDesk is failing: {count} lead{'s' if count != 1 else ''} "
                              "waiting for their next attempt", since=waiting["liondesk_failing_since"], count=count))
    if live_workers(conn) == 0:
        notices.append(Notice(NO_WORKER, "No worker is running: deliveries are stored but nothing processes them"))
    memory = redis_memory(conn)
    if memory["max_bytes"] and memory["used_bytes"] >= memory["max_bytes"] * defaults.REDIS_FULL_FRACTION:
        share = memory["used_bytes"] / memory["max_bytes"]
        notices.append(Notice(REDIS_FULL, f"Redis is full ({share:.0%} of its memory limit): new deliveries "
                              "are refused (Real Geeks delivers them again later)"))
    return notices


def _unix(value) -> float | None:
    """A time the OAuth state reports (ISO 8601 text or unix seconds) as unix seconds, or None."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()
    return None


def next_attempt_at(conn, job_id: str) -> float | None:
    """When RQ's scheduler runs a waiting job next (unix seconds), or None when it is not waiting."""
    for name in QUEUE_NAMES:
        score = conn.zscore(ScheduledJobRegistry(name, connection=conn).key, job_id)
        if score is not None:
            return score
    return None
