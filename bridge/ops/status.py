"""What the bridge is doing right now: queue depths, the oldest waiting job, LionDesk
authorisation and the last LionDesk poll. Read live from Redis by /healthz, /metrics,
`bridge jobs stats` and the console overview."""

from __future__ import annotations

import time
from dataclasses import asdict
from datetime import timezone

from rq.registry import FailedJobRegistry, ScheduledJobRegistry

from bridge import defaults
from bridge.clients.oauth import auth_state
from bridge.queue import event_queue, poll_queue
from bridge.storage import polls

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


def liondesk_channels(conn, settings=None, *, echo: bool = False, now: float | None = None) -> dict:
    """Return the LionDesk channels in use: the task channel (v2.1 or v2.0) and the v1 channel's last answer.

    With `echo`, a v1 channel not checked within LIONDESK_V1_ECHO_MAX_AGE_SECONDS is checked
    now with v1 `Echo` (changes nothing; short timeouts, so a dead v1 cannot hang /healthz).
    """
    from bridge.clients.liondesk import channels, record_v1_answer
    from bridge.clients.liondesk_v1 import LionDeskV1Client
    from bridge.exceptions import UpstreamError

    now = time.time() if now is None else now
    enabled = bool(settings is not None and settings.liondesk_v1_enabled)
    current = channels(conn)
    checked = current["v1"]["checked_at"]
    if echo and enabled and (checked is None or now - float(checked) > defaults.LIONDESK_V1_ECHO_MAX_AGE_SECONDS):
        client = LionDeskV1Client(settings)
        client.service.timeout = (defaults.HTTP_CONNECT_TIMEOUT_SECONDS, defaults.V1_ECHO_TIMEOUT_SECONDS)
        try:
            client.echo()
            record_v1_answer(conn, True, now=now)
        except UpstreamError as exc:
            record_v1_answer(conn, False, str(exc), now=now)
        current = channels(conn)
    v1 = {**current["v1"], "state": current["v1"]["state"] if enabled else "off"}
    return {"tasks": current["tasks"], "v1": v1}


def poll_status(conn) -> dict:
    """Return what the last LionDesk poll recorded (last_run, cursor, outcome); empty before the first poll."""
    return asdict(polls.load(conn))
