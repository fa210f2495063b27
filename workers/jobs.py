"""RQ entry points. Each is a thin shell over one wrapper (`_run`): load what the job names, call
the sync core; the wrapper records the outcome (story, metrics, stats, log line) the same way for
every kind of job, and the failure policy steers retries."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable

from rq import get_current_job

from bridge.context import Context, get_context
from bridge.exceptions import EventNotFound
from bridge.ops import logs
from bridge.ops.jobs import record_outcome
from bridge.ops.status import redis_trouble
from bridge.storage import events, history, kinds, mappings, pending
from bridge.sync import handlers, reverse
from workers import failure, poll_trigger

log = logging.getLogger("bridge.jobs")


@dataclass
class Run:
    """One job run as its story, metrics and log line tell it; the work fills in what it learns."""

    kind: str
    """event, poll or contact: the label of its metrics and outcome stats."""
    facts: dict = field(default_factory=dict)
    """What the run works on (event id and action, contact id...), for the story and the log line."""
    lead_id: str | None = None
    """The Real Geeks lead whose story the run's outcome goes into, once known."""
    story_facts: dict = field(default_factory=dict)
    """Facts for the story only (the direction of a reverse run); the log line leaves them out."""


def _run(kind: str, facts: dict, work: Callable[[Context, Run], str],
         given_up: Callable[[Context, object], None] | None = None,
         settled: Callable[[Context, Run], None] | None = None) -> str:
    """Run `work` as one job: outcome, metrics, history and the log line recorded once, alike for every kind.

    `given_up` runs when the job failed for good; `settled` when it is done either way
    (processed, or failed for good), not while it retries or waits.
    """
    context = get_context()
    job = get_current_job()
    started = time.perf_counter()
    run = Run(kind, {**facts, "attempt": _attempt_number(job)})
    try:
        summary = work(context, run)
    except BaseException as exc:
        if redis_trouble(exc) is not None:
            raise  # nothing can be recorded now: the worker retries the attempt at once when Redis is back
        outcome = failure.outcome(job, exc)  # the worker's exception handler applies the policy
        if outcome == failure.FAILED and given_up is not None and job is not None:
            given_up(context, job)
        delay = failure.next_delay(job, exc) if outcome != failure.FAILED else None
        later = {} if delay is None else {"next_attempt_at": round(time.time() + delay, 3)}  # the story says when
        if outcome == failure.FAILED and settled is not None:
            settled(context, run)
        _record(context, run, started, outcome, job_id=job and job.id, error_class=exc.__class__.__name__,
                error=str(exc)[:500], **later)
        raise
    _record(context, run, started, "processed", summary=summary)
    if settled is not None:
        settled(context, run)
    return summary


def _record(context: Context, run: Run, started: float, outcome: str, **facts) -> None:
    """Write one run's outcome everywhere it is read: the lead's story, metrics, stats and the log."""
    facts = {**run.facts, "outcome": outcome, **facts}
    if run.lead_id:
        story = {**run.story_facts, **facts}
        if outcome == "processed":
            del story["outcome"]  # the entry's kind says it
        history.append(context.redis, run.lead_id, kinds.PROCESSED if outcome == "processed" else kinds.ATTEMPT_FAILED,
                       **story)
    context.metrics.job(outcome, run.kind)
    record_outcome(context.redis, outcome, run.kind)
    context.metrics.observe_job_latency(time.perf_counter() - started)
    facts.pop("summary", None)  # the story keeps the summary; the log line stays one short line
    logs.event_line(log, "job", job_kind=run.kind, lead_id=run.lead_id, duration_ms=_ms(started), **facts)


def process_event(event_id: str) -> str:
    """Process one stored webhook event through the Real Geeks → LionDesk sync."""

    def work(context: Context, run: Run) -> str:
        event = events.load(context.redis, event_id)
        if event is None:
            raise EventNotFound(f"event {event_id} is no longer stored")
        run.facts["action"], run.lead_id = event.action, event.lead_id
        return handlers.handle_event(context, event)

    def no_longer_waiting(context: Context, run: Run) -> None:
        if run.lead_id:
            pending.remove(context.redis, run.lead_id, event_id)

    return _run("event", {"event_id": event_id}, work, settled=no_longer_waiting)


def poll_liondesk(slot_start: int | None = None) -> str:
    """Run one LionDesk → Real Geeks poll: the job the poll trigger enqueues once per slot."""

    def work(context: Context, run: Run) -> str:
        if slot_start is not None and poll_trigger.superseded(context.redis, slot_start):
            return "superseded: the poll of a later slot reads the same changes"
        return reverse.poll(context).summary()

    return _run("poll", {"slot_start": slot_start}, work,
                given_up=lambda context, job: poll_trigger.mark_failed(context.redis, job.id))


def sync_liondesk_contact(contact_id) -> str:
    """Sync one LionDesk contact to Real Geeks: a contact the poll handed over after a failure of its own."""

    def work(context: Context, run: Run) -> str:
        run.lead_id = mappings.lead_of_contact(context.redis, contact_id)
        run.story_facts["direction"] = "reverse"
        return reverse.sync_one(context, contact_id)

    return _run("contact", {"contact_id": contact_id}, work)


def _attempt_number(job) -> int:
    """Which attempt this is, counting the first run as 1."""
    if job is None or job.retries_left is None or not job.retry_intervals:
        return 1
    return len(job.retry_intervals) - job.retries_left + 1


def _ms(started: float) -> float:
    """Milliseconds since `started` (a perf_counter reading)."""
    return round((time.perf_counter() - started) * 1000, 2)
