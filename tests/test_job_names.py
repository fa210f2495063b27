"""Jobs already queued keep working across the layering moves: RQ stores a job's function by its dotted
name, so the names the previous release queued under must still import.

The moves (workers/queue.py -> bridge/queue.py, workers/context.py -> bridge/context.py, ...) left the
job functions themselves in workers/jobs.py under their old names, and a job stores nothing else that
names a module (its arguments are ids, its result a text), so no shim module is needed; this test
is what says so, and fails the day a job function moves without one.
"""

from __future__ import annotations

from rq import Queue
from rq.utils import import_attribute

from bridge import defaults
from bridge.context import Context, set_context
from bridge.queue import enqueue_contact_sync, enqueue_event, enqueue_poll, event_queue, poll_queue
from bridge.storage import history
from bridge.sync import handlers
from tests.ops_support import deliver, succeeding
from workers.worker import build_worker

PREVIOUS_RELEASE = ("workers.jobs.process_event", "workers.jobs.poll_liondesk", "workers.jobs.sync_liondesk_contact")
"""The dotted names jobs were queued under by the previous release."""


def test_the_names_jobs_were_queued_under_still_import():
    functions = [import_attribute(name) for name in PREVIOUS_RELEASE]
    assert len(functions) == 3 and all(callable(function) for function in functions)


def test_the_queue_api_still_queues_under_those_names(redis_conn):
    jobs = [enqueue_event(event_queue(redis_conn), "e1"), enqueue_poll(poll_queue(redis_conn), 1700000040),
            enqueue_contact_sync(poll_queue(redis_conn), 9001)]
    assert tuple(job.func_name for job in jobs) == PREVIOUS_RELEASE


def test_a_job_queued_by_the_previous_release_runs(client, redis_conn, settings, webhook_secret, monkeypatch):
    lead = deliver(client, webhook_secret)  # stored (its story begins); queued by hand below, as before
    Queue(defaults.EVENT_QUEUE, connection=redis_conn).enqueue_call(PREVIOUS_RELEASE[0], args=(lead["event_id"],),
                                                                    job_id=f"event-{lead['event_id']}")
    monkeypatch.setattr(handlers, "handle_event", succeeding)
    try:
        build_worker(Context(settings=settings, redis=redis_conn)).work(burst=True, logging_level="WARNING")
    finally:
        set_context(None)
    assert [entry["kind"] for entry in history.read(redis_conn, lead["id"])] == ["received", "processed"]
