"""The worker process: runs event and poll jobs, and the scheduler that fires retries."""

from __future__ import annotations

import logging
import os
import socket
import uuid

from rq import SimpleWorker

from bridge import defaults
from bridge.ops import logs
from bridge.sync.poll_schedule import start_poll_trigger
from workers import failure
from workers.context import Context, set_context
from workers.queue import event_queue, poll_queue
from workers.relay import Relay, start_relay_thread

log = logging.getLogger("bridge.worker")


class BridgeWorker(SimpleWorker):
    """An RQ worker that runs jobs in its own process instead of forking one per job.

    Keeping the process keeps its HTTP connection pools and cached tokens warm across
    jobs: to LionDesk that is one TLS handshake per worker, not one per lead. A crash
    or SIGKILL leaves the job in RQ's started registry; once its heartbeat lapses, the
    maintenance sweep of any worker retries it or moves it to the failed store.
    On SIGTERM RQ finishes the job in hand and stops (a warm shutdown); jobs are
    bounded by JOB_TIMEOUT_SECONDS, inside Heroku's 30 s shutdown window.
    """


def build_worker(context: Context, *, name: str | None = None) -> BridgeWorker:
    """Build a worker over the event and poll queues; its jobs run with `context`."""
    set_context(context)
    conn = context.redis
    return BridgeWorker(
        [event_queue(conn), poll_queue(conn)],
        connection=conn,
        name=name or f"{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:6]}",
        maintenance_interval=defaults.WORKER_MAINTENANCE_SECONDS,
        exception_handlers=[failure.exception_handler],
    )


def run(context: Context, *, burst: bool = False, name: str | None = None) -> bool:
    """Run a worker with its scheduler until stopped (or, with `burst`, until the queues are empty)."""
    logs.configure()
    worker = build_worker(context, name=name)
    log.info("worker %s listening on %s", worker.name, ", ".join(q.name for q in worker.queues))
    if burst:
        Relay(context.redis, worker.name, context.settings.retry_intervals).drain()
        return worker.work(burst=True, with_scheduler=True, logging_level="WARNING")
    _, stop_relay = start_relay_thread(context.redis, worker.name, context.settings.retry_intervals)
    _, stop_poll_trigger = start_poll_trigger(context.redis, context.settings)  # one LionDesk poll per slot
    try:
        return worker.work(with_scheduler=True, logging_level="WARNING")
    finally:
        stop_relay.set()
        stop_poll_trigger.set()
