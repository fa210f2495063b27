"""When to poll LionDesk: one poll per LIONDESK_POLL_SECONDS across every worker process and machine.

Every worker process runs a small trigger thread. Time is cut into slots of
LIONDESK_POLL_SECONDS by REDIS's clock, the one clock every machine shares. When a
slot begins, each trigger tries `SET poll:slot:<start> NX`; the one that sets it
enqueues that slot's poll job (id `poll-<start>`, unique, the normal retry ladder) on
the poll queue, and the others do nothing. The poll itself runs under the poll lock
(`reverse.poll`), so two polls never overlap, not even with `bridge poll --once`.

Why slots rather than a job that schedules its successor: a chain breaks for good when
one link is lost (a SIGKILL at the wrong moment, a flushed queue); slots start again
by themselves at the next boundary.

Retries: a failed poll retries on the ladder, but the next slot's poll reads the same
changes (the cursor did not move), so a poll job that finds a later slot already
enqueued ends at once as "superseded". During an outage polls therefore keep coming
once per slot instead of piling up retries. A poll that failed for good (a permanent
error) waits in the failed store and no new poll starts until support replays or
dismisses it: repeating a refused request every minute would only fill the store.
"""

from __future__ import annotations

import logging
import threading

import redis
from rq.registry import FailedJobRegistry

from bridge import defaults
from bridge.config import Settings
from bridge.queue import JobAlreadyQueued, enqueue_poll, poll_queue
from bridge.storage import keys, polls

log = logging.getLogger("bridge.poll")


def slot_start(now: float, poll_seconds: int) -> int:
    """The start (unix seconds) of the slot `now` falls in."""
    return int(now // poll_seconds) * poll_seconds


def redis_now(conn: redis.Redis) -> float:
    """Redis's clock, in unix seconds: the same for every process, whichever machine it runs on."""
    seconds, microseconds = conn.time()
    return seconds + microseconds / 1_000_000


def claim_slot(conn: redis.Redis, poll_seconds: int, now: float | None = None) -> int | None:
    """Claim the current slot for this process; return its start, or None when another process has it."""
    start = slot_start(redis_now(conn) if now is None else now, poll_seconds)
    claimed = conn.set(keys.poll_slot(start), 1, nx=True, ex=2 * poll_seconds + 1)
    return start if claimed else None


def blocking_job(conn: redis.Redis) -> str | None:
    """The poll job that failed for good and still waits in the failed store (new polls wait for it), or None."""
    job_id = polls.failed_job(conn)
    if not job_id:
        return None
    in_store = conn.zscore(FailedJobRegistry(defaults.POLL_QUEUE, connection=conn).key, job_id) is not None
    return job_id if in_store else None


def mark_failed(conn: redis.Redis, job_id: str) -> None:
    """Remember a poll job that failed for good: no new poll starts while it waits in the failed store."""
    polls.record_failed_job(conn, job_id)


def trigger_once(conn: redis.Redis, settings: Settings, now: float | None = None) -> str | None:
    """Enqueue the current slot's poll if this process claims the slot; return the job id, or None."""
    if blocking_job(conn) is not None:
        return None
    start = claim_slot(conn, settings.liondesk_poll_seconds, now)
    if start is None:
        return None
    try:
        job = enqueue_poll(poll_queue(conn), start, intervals=settings.retry_intervals)
    except JobAlreadyQueued:
        return None
    polls.record_slot(conn, start)
    return job.id


def superseded(conn: redis.Redis, start: int) -> bool:
    """Whether a poll of a later slot than `start` was enqueued (it covers this one's changes)."""
    last = polls.last_slot(conn)
    return last is not None and last > start


def run_trigger(conn: redis.Redis, settings: Settings, stop: threading.Event) -> None:
    """Check for a new slot until `stop` is set, surviving Redis hiccups.

    Runs as a companion thread of every worker process (`workers/liveness.py`), which starts
    it again should anything else end it.
    """
    interval = min(defaults.POLL_TRIGGER_CHECK_SECONDS, settings.liondesk_poll_seconds / 4)
    tried = None
    while not stop.is_set():
        try:
            now = redis_now(conn)
            if slot_start(now, settings.liondesk_poll_seconds) != tried:  # one claim attempt per slot and process
                job_id = trigger_once(conn, settings, now)
                tried = slot_start(now, settings.liondesk_poll_seconds)
                if job_id:
                    log.debug("enqueued %s", job_id)
        except redis.RedisError as exc:
            log.error("poll trigger paused: redis error %s", exc.__class__.__name__)
            stop.wait(1.0)
        stop.wait(interval)
