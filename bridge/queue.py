"""Putting work on RQ queues: one job per event, with the retry ladder attached."""

from __future__ import annotations

from rq import Queue, Retry
from rq.exceptions import DuplicateJobError as JobAlreadyQueued
from rq.timeouts import BaseTimeoutException as JobTimedOut

from bridge import defaults

__all__ = ["JobAlreadyQueued", "JobTimedOut"]  # RQ's names, so that only this module and workers/ import rq


def event_job_id(event_id: str) -> str:
    """The RQ job id of an event: derived from it, so an event can never be queued twice."""
    return f"event-{event_id}"


def event_id_of_job(job_id: str) -> str | None:
    """The event id an event job's id was derived from; None for poll and contact jobs."""
    prefix = event_job_id("")
    return job_id[len(prefix):] if job_id.startswith(prefix) else None


def retry_ladder(intervals=defaults.RETRY_INTERVALS_SECONDS) -> Retry:
    """A fresh retry budget: one retry per step of the ladder (seconds between attempts)."""
    return Retry(max=len(intervals), interval=list(intervals))


def event_queue(connection) -> Queue:
    """The queue of webhook event jobs."""
    return Queue(defaults.EVENT_QUEUE, connection=connection)


def poll_queue(connection) -> Queue:
    """The queue of LionDesk poll jobs."""
    return Queue(defaults.POLL_QUEUE, connection=connection)


def _enqueue(queue: Queue, function: str, argument, job_id: str, *, intervals, result_ttl: int,
             description: str, unique: bool, pipeline=None):
    """Queue one bridge job: its id, the retry ladder, the run-time cap and how long its traces stay."""
    return queue.enqueue_call(
        function,
        args=(argument,),
        job_id=job_id,
        retry=retry_ladder(intervals),
        timeout=defaults.JOB_TIMEOUT_SECONDS,
        failure_ttl=defaults.FAILED_JOB_TTL_SECONDS,
        result_ttl=result_ttl,
        description=description,
        unique=unique,
        pipeline=pipeline,
    )


def enqueue_event(queue: Queue, event_id: str, *, intervals=defaults.RETRY_INTERVALS_SECONDS,
                  description: str | None = None, unique: bool = False, pipeline=None):
    """Queue the job that processes a stored event; `unique` refuses a second job for it."""
    return _enqueue(queue, "workers.jobs.process_event", event_id, event_job_id(event_id), intervals=intervals,
                    result_ttl=defaults.EVENT_RESULT_TTL_SECONDS,  # `jobs stats` counts from its own record
                    description=description or f"process event {event_id}", unique=unique, pipeline=pipeline)


def poll_job_id(slot_start: int) -> str:
    """The RQ job id of the LionDesk poll of one slot (unix seconds of its start): one job per slot."""
    return f"poll-{slot_start}"


def enqueue_poll(queue: Queue, slot_start: int, *, intervals=defaults.RETRY_INTERVALS_SECONDS):
    """Queue the poll of one slot; refuses (DuplicateJobError) a second job for the same slot."""
    return _enqueue(queue, "workers.jobs.poll_liondesk", slot_start, poll_job_id(slot_start), intervals=intervals,
                    result_ttl=defaults.POLL_RESULT_TTL_SECONDS, unique=True,
                    description=f"poll LionDesk for changed contacts (slot {slot_start})")


def contact_job_id(contact_id: int | str) -> str:
    """The RQ job id syncing one LionDesk contact back to Real Geeks: one job per contact at a time."""
    return f"liondesk-contact-{contact_id}"


def enqueue_contact_sync(queue: Queue, contact_id: int | str, *, intervals=defaults.RETRY_INTERVALS_SECONDS,
                         description: str | None = None):
    """Queue a job syncing one LionDesk contact to Real Geeks; refuses (DuplicateJobError) while one exists."""
    return _enqueue(queue, "workers.jobs.sync_liondesk_contact", contact_id, contact_job_id(contact_id),
                    intervals=intervals, unique=True,
                    result_ttl=0,  # a finished job must not keep the contact's next failure from getting a job
                    description=description or f"sync LionDesk contact {contact_id} to Real Geeks")


def rq_key_prefix() -> str:
    """The prefix of every key RQ writes ("rq:" unless RQ_KEY_PREFIX says otherwise)."""
    from rq.job import Job

    return Job.redis_job_namespace_prefix[: -len("job:")]


def finished_jobs(connection) -> dict[str, list[str]]:
    """Every finished event and poll job: job id → the keys RQ keeps for it (its hash, its results)."""
    from rq.registry import FinishedJobRegistry

    found = {}
    for queue in (event_queue(connection), poll_queue(connection)):
        for job_id in FinishedJobRegistry(queue=queue).get_job_ids():
            found[job_id] = [f"{rq_key_prefix()}job:{job_id}", f"{rq_key_prefix()}results:{job_id}"]
    return found


def forget_finished_jobs(connection, job_ids: list[str]) -> None:
    """Take finished jobs out of RQ's finished registries and delete their hash and results (memory trim)."""
    from rq.registry import FinishedJobRegistry

    for queue in (event_queue(connection), poll_queue(connection)):
        registry = FinishedJobRegistry(queue=queue)
        with connection.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                registry.remove(job_id, pipeline=pipe)
            pipe.execute()
    keys = [key for job_id in job_ids for key in (f"{rq_key_prefix()}job:{job_id}", f"{rq_key_prefix()}results:{job_id}")]
    for start in range(0, len(keys), 500):
        connection.delete(*keys[start:start + 500])
