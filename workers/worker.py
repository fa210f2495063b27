"""The worker process: runs event and poll jobs, and the scheduler that fires retries."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid

import redis
from rq import SimpleWorker
from rq.exceptions import StopRequested
from rq.scheduler import RQScheduler

from bridge import defaults
from bridge.context import Context, set_context
from bridge.ops import alerts, logs
from bridge.ops.status import redis_trouble
from bridge.queue import event_queue, poll_queue
from bridge.storage import kinds, locks
from workers import failure, liveness, poll_trigger
from workers.relay import Relay

log = logging.getLogger("bridge.worker")


class BridgeScheduler(RQScheduler):
    """RQ's scheduler (a process forked by the worker that moves due retries onto their queues),
    made to wait out Redis trouble instead of exiting on it.

    RQ's own loop ends the scheduler process on any error; the worker starts a new one only
    at its next maintenance, and only once the dead one's lock (61 s) has expired, so every
    retry would wait a minute or two after each Redis blip.
    """

    parent_pid: int | None = None
    """The worker process that forked this scheduler; the scheduler stops when that process is gone."""

    def start(self):
        """Fork the scheduler process, remembering which process it serves."""
        self.parent_pid = os.getpid()
        return super().start()

    def work(self):
        """Register, then heartbeat and enqueue due jobs every interval until asked to stop.

        Also stops when its worker process is gone (SIGKILL leaves no one to send the stop):
        an orphan would keep the scheduler lock of a dead worker.
        """
        self._install_signal_handlers()
        registered, delay = False, defaults.WORKER_REDIS_BACKOFF_FIRST_SECONDS
        while not self._stop_requested:
            if self.parent_pid is not None and os.getppid() != self.parent_pid:
                self.log.warning("Scheduler stopping: its worker process %s is gone", self.parent_pid)
                break
            try:
                if not registered:
                    self.register_birth()
                    registered = True
                if self.should_reacquire_locks:
                    self.acquire_locks()
                self.heartbeat()
                self.enqueue_scheduled_jobs()
                delay = defaults.WORKER_REDIS_BACKOFF_FIRST_SECONDS
            except Exception as exc:  # noqa: BLE001 - only Redis trouble is waited out; the rest re-raises
                trouble = redis_trouble(exc)
                if trouble is None:
                    raise
                self.log.warning("Scheduler paused: Redis %s (%s); next try in %.0f s", trouble,
                                 exc.__class__.__name__, delay)
                time.sleep(delay)
                delay = min(delay * 2, defaults.WORKER_REDIS_BACKOFF_MAX_SECONDS)
                continue
            time.sleep(self.interval)
        self.stop()


class BridgeWorker(failure.OneLineExpectedFailures, SimpleWorker):
    """An RQ worker that runs jobs in its own process instead of forking one per job.

    Keeping the process keeps its HTTP connection pools and cached tokens warm across
    jobs: to LionDesk that is one TLS handshake per worker, not one per lead. A crash
    or SIGKILL leaves the job in RQ's started registry; the heartbeat sweep of any other
    worker (`workers/liveness.py`) retries it once the dead process's heartbeat record
    expires, and RQ's own maintenance is the slower backstop.
    On SIGTERM RQ finishes the job in hand and stops (a warm shutdown); jobs are
    bounded by JOB_TIMEOUT_SECONDS, inside Heroku's 30 s shutdown window.
    """

    companions: tuple[liveness.Companion, ...] = ()
    """The process's threads, looked after from RQ's loop too (the heartbeat looks after the rest)."""

    max_connection_wait_time = defaults.WORKER_DEQUEUE_RECONNECT_MAX_SECONDS

    @property
    def dequeue_timeout(self) -> int:
        """Seconds to block on empty queues before the loop comes round again.

        RQ blocks for its worker TTL less 15 s (405 s by default), and its maintenance
        (abandoned jobs, taking over the scheduler of a worker that died) only runs
        between blocks: an idle worker would leave both undone for minutes.
        """
        return defaults.WORKER_DEQUEUE_BLOCK_SECONDS

    def heartbeat(self, *args, **kwargs):
        """RQ's heartbeat, after making sure the process's companion threads still run."""
        for companion in self.companions:
            companion.ensure_running()
        return super().heartbeat(*args, **kwargs)

    def _start_scheduler(self, burst=False, logging_level="INFO", date_format=None, log_format=None):
        """Start the scheduler as RQ does, with the scheduler that outlives Redis trouble."""
        options = {name: value for name, value in (("date_format", date_format), ("log_format", log_format)) if value}
        self.scheduler = BridgeScheduler(self.queues, connection=self.connection, serializer=self.serializer,
                                         logging_level=logging_level if logging_level is not None else self.log.level,
                                         **options)
        self.scheduler.acquire_locks()
        if not self.scheduler.acquired_locks:
            return
        if not burst:
            self.scheduler.start()
            return
        try:
            self.scheduler.register_birth()
            self.scheduler.enqueue_scheduled_jobs()
        finally:
            self.scheduler.release_locks()
            self.scheduler.register_death()


def process_name() -> str:
    """A name unique to this process: host, pid and a random part (pids repeat across dynos)."""
    return f"{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:6]}"


def queues_of(conn: redis.Redis) -> list:
    """The queues every worker serves: events first, then polls."""
    return [event_queue(conn), poll_queue(conn)]


def build_worker(context: Context, *, name: str | None = None,
                 companions: tuple[liveness.Companion, ...] = ()) -> BridgeWorker:
    """Build a worker over the event and poll queues; its jobs run with `context`."""
    set_context(context)
    conn = context.redis
    worker = BridgeWorker(
        queues_of(conn),
        connection=conn,
        name=name or process_name(),
        maintenance_interval=defaults.WORKER_MAINTENANCE_SECONDS,
        exception_handlers=[failure.exception_handler],
    )
    worker.companions = companions
    return worker


def wait_for_redis(heart: liveness.Heart, delay: float, stopping=lambda: False) -> bool:
    """Sleep `delay` seconds, then block (backing off) until a heartbeat is written in full again.

    A written beat, not a PING: a full Redis answers PING but refuses every write a job needs.
    Returns False instead when `stopping()` says a shutdown was asked for meanwhile.
    """
    while True:
        time.sleep(delay)
        if stopping():
            return False
        try:
            if heart.beat_once():
                return True
            problem = "full"
        except redis.RedisError as exc:
            problem = redis_trouble(exc) or exc.__class__.__name__
        log.warning("Redis still %s; next try in %.0f s", problem, delay)
        delay = min(delay * 2, defaults.WORKER_REDIS_BACKOFF_MAX_SECONDS)


def release_interrupted(worker: BridgeWorker, problem: str = "unavailable") -> int:
    """Hand the jobs `worker` held when Redis went away to RQ's abandoned-job handling, now.

    The worker's loop has ended in this very process, so nothing still runs those jobs:
    instead of waiting for their heartbeats to lapse, they are retried at once through the
    failure policy, and the lead's story says the attempt was cut short.
    Returns how many were released.
    """
    locks.release_left(worker.connection)  # the job's lead lock, so that any worker can retry it at once
    released = liveness.release(worker.connection, worker.queues, lambda names: names & {worker.name},
                                kind=kinds.ATTEMPT_INTERRUPTED,
                                reason=f"Redis was {problem} during the attempt; it is retried at once")
    return len(released)


def companions_of(context: Context, process: str, stop: threading.Event) -> list[liveness.Companion]:
    """The threads a worker process runs beside RQ's loop: the intake relay, with the reverse sync the
    poll trigger, and with alerts configured their evaluator."""
    conn, settings = context.redis, context.settings
    found = [liveness.Companion("intake-relay", lambda s: Relay(conn, process, settings.retry_intervals).run(s), stop)]
    if settings.reverse_sync_enabled:  # one LionDesk poll per slot across every worker
        found.append(liveness.Companion("poll-trigger", lambda s: poll_trigger.run_trigger(conn, settings, s), stop))
    if settings.alerts_enabled:  # one evaluation per period across every web and worker process
        found.append(liveness.Companion("alerts", lambda s: alerts.run_alerts(conn, settings, s), stop))
    if settings.liondesk_configured:  # an idle account's grant is refreshed before it could lapse
        found.append(liveness.Companion("liondesk-keepalive", context.clients.liondesk.auth.run_keep_alive, stop))
    return found


def run(context: Context, *, burst: bool = False, name: str | None = None) -> bool:
    """Run a worker with its scheduler until stopped (or, with `burst`, until the queues are empty).

    RQ's loop quits on any error it does not expect, and a Redis outage or a full Redis
    is such an error. A worker process that exits is no use to anyone (Heroku restarts
    crashed dynos with cool-offs of up to 20 minutes), so when RQ's loop ends without a
    stop having been asked for, this waits until a heartbeat can be written again (with a
    growing back-off), retries the job that was in hand at once, and starts a fresh RQ
    worker in the same process. The relay, the poll trigger and the heartbeat run as
    companion threads that Redis trouble pauses but never ends.
    """
    logs.configure()
    if burst:
        worker = build_worker(context, name=name)
        Relay(context.redis, worker.name, context.settings.retry_intervals).drain()
        return worker.work(burst=True, with_scheduler=True, logging_level="WARNING")
    name = name or process_name()
    conn, stop = context.redis, threading.Event()
    locks.set_holder(name)  # this process's lead locks can be taken over once its heartbeat is gone
    others = companions_of(context, name, stop)
    heart = liveness.Heart(conn, name, socket.gethostname(), os.getpid(), lambda: queues_of(conn), others)
    companions = (liveness.Companion("heartbeat", heart.run, stop), *others)
    for companion in companions:
        companion.start()
    worked, delay, generation = False, defaults.WORKER_REDIS_BACKOFF_FIRST_SECONDS, 0
    try:
        while True:
            # A restarted RQ worker gets a name of its own: its predecessor may still be registered.
            worker = build_worker(context, name=liveness.rq_worker_name(name, generation), companions=companions)
            generation += 1
            started = time.monotonic()
            trouble, did_work = _work_until_trouble(worker, heart)
            worked = worked or did_work
            if trouble is None:
                return worked
            if time.monotonic() - started > defaults.WORKER_REDIS_BACKOFF_MAX_SECONDS:
                delay = defaults.WORKER_REDIS_BACKOFF_FIRST_SECONDS  # it ran well for a while: start over
            if not _recover(worker, heart, delay, trouble):
                return worked
            delay = min(delay * 2, defaults.WORKER_REDIS_BACKOFF_MAX_SECONDS)
    finally:
        stop.set()
        heart.forget()


def _stopping(worker: BridgeWorker) -> bool:
    """Whether a warm shutdown (SIGTERM, Ctrl-C) was asked of `worker`."""
    return worker._shutdown_requested_date is not None


def _work_until_trouble(worker: BridgeWorker, heart: liveness.Heart) -> tuple[str | None, bool]:
    """Run `worker`'s loop; return the Redis trouble that ended it (None when a stop did) and whether it ran a job.

    Anything but Redis trouble re-raises.
    """
    worked = False
    try:
        heart.serve(worker.name)  # named in a beat before it takes a job (see Heart.serve)
        log.info("worker %s listening on %s", worker.name, ", ".join(q.name for q in worker.queues))
        worked = worker.work(with_scheduler=True, logging_level="WARNING")
        trouble, problem = "unavailable", "RQ's loop ended on an error"
    except StopRequested:
        return None, worked
    except Exception as exc:  # noqa: BLE001 - only Redis trouble is waited out; the rest re-raises
        trouble = redis_trouble(exc)
        if trouble is None:
            raise
        problem = f"Redis {trouble} ({exc.__class__.__name__}: {exc})"
    if _stopping(worker):  # a warm shutdown ended the loop
        return None, worked
    log.error("worker %s stopped working: %s; waiting for Redis, then starting again", worker.name, problem)
    return trouble, worked


def _recover(worker: BridgeWorker, heart: liveness.Heart, delay: float, trouble: str) -> bool:
    """Wait until Redis takes writes again and retry the jobs `worker` held; False when a stop came meanwhile."""
    try:
        if not wait_for_redis(heart, delay, stopping=lambda: _stopping(worker)):
            return False
        if released := release_interrupted(worker, trouble):
            log.warning("worker %s: %d job(s) interrupted by the outage queued for retry", worker.name, released)
    except StopRequested:
        return False
    except redis.RedisError as exc:  # Redis went away again while releasing: the next round retries
        log.error("worker %s: could not release interrupted jobs yet (%s)", worker.name, exc.__class__.__name__)
    return not _stopping(worker)  # SIGTERM while waiting: its handler may have met Redis away and not raised
