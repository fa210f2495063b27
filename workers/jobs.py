"""RQ entry points. Each is a thin shell: load what the job names, call the sync core,
record the outcome in the lead's history, and let the failure policy steer retries."""

from __future__ import annotations

import logging
import time

from rq import get_current_job

from bridge.context import get_context
from bridge.exceptions import EventNotFound
from bridge.ops import logs
from bridge.ops.jobs import record_outcome
from bridge.storage import events, history, mappings
from bridge.sync import handlers, reverse
from workers import failure, poll_trigger

log = logging.getLogger("bridge.jobs")


def process_event(event_id: str) -> str:
    """Process one stored webhook event through the Real Geeks → LionDesk sync."""
    context = get_context()
    job = get_current_job()
    started = time.perf_counter()
    attempt = _attempt_number(job)
    event = None
    try:
        event = events.load(context.redis, event_id)
        if event is None:
            raise EventNotFound(f"event {event_id} is no longer stored")
        summary = handlers.handle_event(context, event)
    except BaseException as exc:
        outcome = failure.outcome(job, exc)  # the worker's exception handler applies the policy
        facts = dict(event_id=event_id, action=event and event.action, lead_id=event and event.lead_id,
                     outcome=outcome, attempt=attempt, error_class=exc.__class__.__name__, error=str(exc)[:500])
        if event is not None and event.lead_id:
            # the lead id is the history's key, not one of its facts (passing it twice was a TypeError)
            history.append(context.redis, event.lead_id, "attempt_failed",
                           **{name: value for name, value in facts.items() if name != "lead_id"})
        context.metrics.job(outcome)
        record_outcome(context.redis, outcome)
        context.metrics.observe_job_latency(time.perf_counter() - started)
        logs.event_line(log, "job", duration_ms=_ms(started), **facts)
        raise
    if event.lead_id:
        history.append(context.redis, event.lead_id, "processed", event_id=event_id,
                       action=event.action, attempt=attempt, summary=summary)
    context.metrics.job("processed")
    record_outcome(context.redis, "processed")
    context.metrics.observe_job_latency(time.perf_counter() - started)
    logs.event_line(log, "job", event_id=event_id, action=event.action, lead_id=event.lead_id,
                    outcome="processed", attempt=attempt, duration_ms=_ms(started))
    return summary


def _attempt_number(job) -> int:
    """Which attempt this is, counting the first run as 1."""
    if job is None or job.retries_left is None or not job.retry_intervals:
        return 1
    return len(job.retry_intervals) - job.retries_left + 1


def _ms(started: float) -> float:
    """Milliseconds since `started` (a perf_counter reading)."""
    return round((time.perf_counter() - started) * 1000, 2)


def poll_liondesk(slot_start: int | None = None) -> str:
    """Run one LionDesk → Real Geeks poll: the job the poll trigger enqueues once per slot."""
    context = get_context()
    job = get_current_job()
    if slot_start is not None and poll_trigger.superseded(context.redis, slot_start):
        return "superseded: the poll of a later slot reads the same changes"
    try:
        report = reverse.poll(context)
    except BaseException as exc:
        outcome = failure.outcome(job, exc)
        if outcome == failure.FAILED and job is not None:
            poll_trigger.mark_failed(context.redis, job.id)
        logs.event_line(log, "job", job_id=job and job.id, outcome=outcome, attempt=_attempt_number(job),
                        error_class=exc.__class__.__name__, error=str(exc)[:500])
        raise
    return report.summary()


def sync_liondesk_contact(contact_id) -> str:
    """Sync one LionDesk contact to Real Geeks: a contact the poll handed over after a failure of its own."""
    context = get_context()
    job = get_current_job()
    started = time.perf_counter()
    attempt = _attempt_number(job)
    try:
        summary = reverse.sync_one(context, contact_id)
    except BaseException as exc:
        outcome = failure.outcome(job, exc)
        facts = dict(contact_id=contact_id, job_id=job and job.id, outcome=outcome, attempt=attempt,
                     error_class=exc.__class__.__name__, error=str(exc)[:500])
        lead_id = mappings.lead_of_contact(context.redis, contact_id)
        if lead_id:
            history.append(context.redis, lead_id, "attempt_failed", direction="reverse", **facts)
        context.metrics.job(outcome)
        record_outcome(context.redis, outcome)
        logs.event_line(log, "job", lead_id=lead_id, duration_ms=_ms(started), **facts)
        raise
    context.metrics.job("processed")
    record_outcome(context.redis, "processed")
    logs.event_line(log, "job", contact_id=contact_id, outcome="processed", attempt=attempt,
                    duration_ms=_ms(started))
    return summary
