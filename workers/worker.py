"""The worker process: runs event and poll jobs, and the scheduler that fires retries."""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid

import redis
from rq import SimpleWorker
from rq.exceptions import StopRequested
from rq.executions import Execution

from bridge import defaults
from bridge.ops import logs
from bridge.storage import events, history, usage
from workers.poll_trigger import start_poll_trigger
from workers import failure
from bridge.context import Context, set_context
from bridge.queue import event_id_of_job, event_queue, poll_queue
from workers.relay import Relay, start_relay_thread

log = logging.getLogger("bridge.worker")


class BridgeWorker(failure.OneLineExpectedFailures, SimpleWorker):
    """An RQ worker that runs jobs in its own process instead of forking one per job.

    Keeping the process keeps its HTTP connection pools and cached tokens warm across
    jobs: to LionDesk that is one TLS handshake per worker, not one per lead. A crash
    or SIGKILL leaves the job in RQ's started registry; once its heartbeat lapses, the
    maintenance sweep of any worker retries it or moves it to the failed store.
    On SIGTERM RQ finishes the job in hand and stops (a warm shutdown); jobs are
    bounded by JOB_TIMEOUT_SECONDS, inside Heroku's 30 s shutdown window.
    """

    @property
    def dequeue_timeout(self) -> int:
        """Seconds to block on empty queues before the loop comes round again.

        RQ blocks for its worker TTL less 15 s (405 s by default), and its maintenance
        (abandoned jobs, taking over the scheduler of a worker that died) only runs
        between blocks: an idle worker would leave both undone for minutes.
        """
        return defaults.WORKER_DEQUEUE_BLOCK_SECONDS

    def run_maintenance_tasks(self):
        """RQ's maintenance, then the trim of what nothing reads again (relayed intake entries, index
        entries of events gone), so that neither grows with the number of leads."""
        super().run_maintenance_tasks()
        try:
            usage.trim_routine(self.connection)
        except redis.RedisError as exc:  # room is made at the next round; the worker carries on
            log.warning("worker %s: routine trim skipped (%s)", self.name, exc.__class__.__name__)


def process_name() -> str:
    """A name unique to this process: host, pid and a random part (pids repeat across dynos)."""
    return f"{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:6]}"


def build_worker(context: Context, *, name: str | None = None) -> BridgeWorker:
    """Build a worker over the event and poll queues; its jobs run with `context`."""
    set_context(context)
    conn = context.redis
    return BridgeWorker(
        [event_queue(conn), poll_queue(conn)],
        connection=conn,
        name=name or process_name(),
        maintenance_interval=defaults.WORKER_MAINTENANCE_SECONDS,
        exception_handlers=[failure.exception_handler],
    )


def redis_trouble(exc: BaseException) -> bool:
    """Whether `exc` is Redis being away or full, something to wait out rather than die of."""
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
        return True
    return isinstance(exc, redis.ResponseError) and str(exc).startswith(("OOM", "LOADING", "READONLY", "MISCONF"))


def wait_for_redis(conn: redis.Redis, delay: float) -> None:
    """Sleep `delay` seconds, then block (backing off) until Redis answers PING again."""
    while True:
        time.sleep(delay)
        try:
            conn.ping()
            return
        except redis.RedisError as exc:
            log.warning("Redis still unavailable (%s); next try in %.0f s", exc.__class__.__name__, delay)
            delay = min(delay * 2, defaults.WORKER_REDIS_BACKOFF_MAX_SECONDS)


def release_interrupted(worker: BridgeWorker) -> int:
    """Hand the jobs `worker` held when Redis went away to RQ's abandoned-job handling, now.

    The worker's loop has ended in this very process, so nothing still runs those jobs:
    instead of waiting minutes for their heartbeats to lapse, their started-registry
    entries are marked expired and RQ's own cleanup retries them (or fails them when
    their budget is spent) through the failure policy, which writes the story.
    Returns how many were released.
    """
    released = 0
    for queue in worker.queues:
        registry = queue.started_job_registry
        mine = []
        for job_id, execution_id in registry.get_job_and_execution_ids(cleanup=False):
            execution = Execution(id=execution_id, job_id=job_id, connection=worker.connection)
            if worker.connection.hget(execution.key, "worker_name") in (worker.name, worker.name.encode()):
                mine.append(execution.composite_key)
        if mine:
            worker.connection.zadd(registry.key, dict.fromkeys(mine, 0), xx=True)
            registry.cleanup(exception_handlers=[failure.exception_handler])
            released += len(mine)
            for composite_key in mine:
                _tell_the_story(worker.connection, composite_key.partition(":")[0])
    return released


def _tell_the_story(conn: redis.Redis, job_id: str) -> None:
    """Write into the lead's story that an attempt of `job_id` was cut short by Redis going away."""
    event_id = event_id_of_job(job_id)
    event = event_id and events.load(conn, event_id)
    if event and event.lead_id:
        history.append(conn, event.lead_id, "attempt_interrupted", event_id=event_id, action=event.action,
                       reason="Redis became unavailable during the attempt; it is retried on its ladder")


def run(context: Context, *, burst: bool = False, name: str | None = None) -> bool:
    """Run a worker with its scheduler until stopped (or, with `burst`, until the queues are empty).

    RQ's loop quits on any error it does not expect, and a Redis outage or a full Redis
    is such an error. A worker process that exits is no use to anyone (Heroku restarts
    crashed dynos with cool-offs of up to 20 minutes), so when RQ's loop ends without a
    stop having been asked for, this waits for Redis with a growing back-off and starts a
    fresh RQ worker in the same process. The job in hand when Redis went away stays in
    RQ's started registry; the maintenance sweep retries it once its heartbeat lapses.
    """
    logs.configure()
    if burst:
        worker = build_worker(context, name=name)
        Relay(context.redis, worker.name, context.settings.retry_intervals).drain()
        return worker.work(burst=True, with_scheduler=True, logging_level="WARNING")
    name = name or process_name()
    _, stop_relay = start_relay_thread(context.redis, name, context.settings.retry_intervals)
    _, stop_poll_trigger = start_poll_trigger(context.redis, context.settings)  # one LionDesk poll per slot
    worked, delay, generation = False, defaults.WORKER_REDIS_BACKOFF_FIRST_SECONDS, 0
    try:
        while True:
            # A restarted RQ worker gets a name of its own: its predecessor may still be registered.
            worker = build_worker(context, name=f"{name}.{generation}" if generation else name)
            generation += 1
            log.info("worker %s listening on %s", worker.name, ", ".join(q.name for q in worker.queues))
            started = time.monotonic()
            try:
                worked = worker.work(with_scheduler=True, logging_level="WARNING") or worked
                problem = "RQ's loop ended on an error"
            except StopRequested:
                return worked
            except Exception as exc:  # noqa: BLE001 - only Redis trouble is waited out; the rest re-raises
                if not redis_trouble(exc):
                    raise
                problem = f"Redis unavailable ({exc.__class__.__name__}: {exc})"
            if worker._shutdown_requested_date is not None:  # a warm shutdown (SIGTERM, Ctrl-C) ended the loop
                return worked
            if time.monotonic() - started > defaults.WORKER_REDIS_BACKOFF_MAX_SECONDS:
                delay = defaults.WORKER_REDIS_BACKOFF_FIRST_SECONDS  # it ran well for a while: start over
            log.error("worker %s stopped working: %s; waiting for Redis, then starting again", worker.name, problem)
            try:
                wait_for_redis(context.redis, delay)
                if released := release_interrupted(worker):
                    log.warning("worker %s: %d job(s) interrupted by the outage queued for retry", worker.name, released)
            except StopRequested:
                return worked
            except redis.RedisError as exc:  # Redis went away again while releasing: the next round retries
                log.error("worker %s: could not release interrupted jobs yet (%s)", worker.name, exc.__class__.__name__)
            delay = min(delay * 2, defaults.WORKER_REDIS_BACKOFF_MAX_SECONDS)
    finally:
        stop_relay.set()
        stop_poll_trigger.set()
