"""Keeping a worker process alive and its crashes cheap: companion threads, heartbeats, abandoned jobs.

- `Companion`: a thread the worker process needs (the relay, the poll trigger, the
  heartbeat) whose work is restarted, with a growing pause, whenever it raises, and
  started again should the thread itself be gone. Redis trouble never ends one.
- `Heart`: writes this process's heartbeat record (`storage/beats.py`) every
  WORKER_BEAT_SECONDS and, while its own beats are steady, sweeps for jobs whose worker
  died.
- `free_dead_schedulers_locks`: the scheduler lock of a dead process is freed at once, so
  another worker's maintenance starts a scheduler (the retry ladder) seconds later.
- `release`: hands started jobs whose worker is gone to RQ's own abandoned-job handling
  at once (retry through the failure policy, or the failed store when the budget is
  spent), and writes the lead's story. The heart's sweep uses it for dead processes,
  the worker loop for the job it held when Redis went away.

Why not RQ's own handling alone: a SimpleWorker's job keeps its started-registry entry for
its timeout plus 60 s (85 s here) after a SIGKILL, and the maintenance sweep that retries
it runs only every few maintenance intervals: 150-170 s during which the lead waits. A
heartbeat record of 20 s finds the dead process in a fraction of that.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Callable, Iterable

import redis
from rq.executions import Execution
from rq.job import JobStatus
from rq.queue import Queue
from rq.scheduler import RQScheduler

from bridge import defaults
from bridge.ops.status import redis_trouble
from bridge.queue import event_id_of_job
from bridge.storage import beats, events, history, kinds, locks
from bridge.storage.redis import delete_if_equal, text
from workers import failure

log = logging.getLogger("bridge.worker")

GENERATION = "+"
"""Between a process's name and the number of the RQ worker it runs after an outage (host names have no '+')."""


def rq_worker_name(process: str, generation: int) -> str:
    """The name of the `generation`th RQ worker of `process` (the first carries the process's name)."""
    return f"{process}{GENERATION}{generation}" if generation else process


def process_of(rq_worker: str) -> str:
    """The process that runs (or ran) the RQ worker called `rq_worker`."""
    return rq_worker.partition(GENERATION)[0]


def scheduler_name(process: str) -> str:
    """A name for a scheduler `process` starts: it names the process, so its lock can be freed when the process dies."""
    return f"{process}{locks.SEPARATOR}{uuid.uuid4().hex}"


def free_dead_schedulers_locks(conn: redis.Redis, queues: Iterable[Queue]) -> list[str]:
    """Delete the scheduler locks held by the scheduler of a worker process that stopped beating; return their keys.

    RQ keeps a scheduler's lock for 61 s after its last heartbeat, and only then does another
    worker's maintenance start a scheduler: every retry on the ladder would wait that long after
    a crash. Freed, the lock is taken at the next maintenance (WORKER_MAINTENANCE_SECONDS).
    """
    freed = []
    for queue in queues:
        key = RQScheduler.get_locking_key(queue.name)
        holder = text(conn.get(key))
        process = locks.holder_of(holder)
        if process and beats.known(conn, process) and not beats.alive(conn, process) \
                and delete_if_equal(conn, key, holder):
            log.warning("freed %s, held by the scheduler of dead worker %s", key, process)
            freed.append(key)
    return freed


class Companion:
    """A thread of the worker process that keeps doing `work(stop)` until `stop` is set."""

    def __init__(self, name: str, work: Callable[[threading.Event], None], stop: threading.Event):
        self.name = name
        self.work = work
        self.stop = stop
        self.thread: threading.Thread | None = None
        self.restarts = 0

    def start(self) -> "Companion":
        """Start the thread."""
        self.thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self.thread.start()
        return self

    def ensure_running(self) -> bool:
        """Start the thread again if it is gone (and not stopped); return whether it had to be."""
        if self.stop.is_set() or (self.thread is not None and self.thread.is_alive()):
            return False
        log.error("%s thread was gone; starting it again", self.name)
        self.start()
        return True

    def _run(self) -> None:
        """Do the work until stopped; when it raises or returns early, pause (growing) and do it again."""
        delay = defaults.WORKER_REDIS_BACKOFF_FIRST_SECONDS
        while not self.stop.is_set():
            began = time.monotonic()
            try:
                self.work(self.stop)
            except Exception as exc:  # noqa: BLE001 - a companion must outlive whatever its work meets
                trouble = redis_trouble(exc)
                if trouble:
                    log.error("%s paused: Redis %s (%s)", self.name, trouble, exc.__class__.__name__)
                else:
                    log.exception("%s failed; starting it again in %.0f s", self.name, delay)
            if self.stop.is_set():
                return
            self.restarts += 1
            if time.monotonic() - began > defaults.WORKER_REDIS_BACKOFF_MAX_SECONDS:
                delay = defaults.WORKER_REDIS_BACKOFF_FIRST_SECONDS  # it ran well for a while: start over
            self.stop.wait(delay)
            delay = min(delay * 2, defaults.WORKER_REDIS_BACKOFF_MAX_SECONDS)


class Heart:
    """This process's heartbeat, and the sweep for jobs of dead workers that steady beats allow."""

    def __init__(self, conn: redis.Redis, process: str, host: str, pid: int,
                 queues: Callable[[], Iterable[Queue]], companions: Iterable[Companion] = ()):
        self.conn = conn
        self.process = process
        self.host, self.pid, self.started = host, pid, time.time()
        self.queues = queues
        self.companions = list(companions)
        self.rq_worker = process
        self._beating = threading.Lock()  # one beat at a time, each naming the RQ worker current when written
        self.steady_since: float | None = None
        """Monotonic time of the first beat of the current unbroken run of written beats."""

    def serve(self, rq_worker: str) -> None:
        """Name the RQ worker this process is about to run, in a beat written now (raises on Redis trouble).

        Written before the RQ worker takes a job, so a sweep that sees one of its executions
        also sees it named in the beat, and never takes a live worker's job for abandoned.
        """
        with self._beating:
            self.rq_worker = rq_worker
        self.beat_once()

    def beat_once(self) -> bool:
        """Write one beat; return False when Redis is full (the record lives on, the beat is not steady)."""
        with self._beating:
            try:
                written = beats.record(self.conn, beats.new_beat(self.process, self.host, self.pid, self.started,
                                                                 self.rq_worker))
            except redis.RedisError:
                self.steady_since = None
                raise
            if not written:
                self.steady_since = None
            elif self.steady_since is None:
                self.steady_since = time.monotonic()
            return written

    def steady(self) -> bool:
        """Whether this process's own beats were written without a gap for a whole record lifetime.

        Only then does its view of other processes' records mean anything: right after Redis
        comes back every record has expired, and a live worker needs a beat or two to show up.
        """
        return (self.steady_since is not None
                and time.monotonic() - self.steady_since >= defaults.WORKER_BEAT_TTL_SECONDS)

    def run(self, stop: threading.Event) -> None:
        """Beat, sweep and look after the other companions until stopped (Redis trouble pauses a beat, no more)."""
        while not stop.is_set():
            try:
                self.beat_once()
            except redis.RedisError as exc:
                log.warning("heartbeat of %s not written: Redis %s (%s)", self.process,
                            redis_trouble(exc) or "error", exc.__class__.__name__)
            else:
                if self.steady():
                    try:
                        sweep(self.conn, list(self.queues()))
                        free_dead_schedulers_locks(self.conn, self.queues())
                    except Exception:  # noqa: BLE001 - the beat must go on whatever the sweep meets
                        log.exception("sweep for jobs of dead workers failed; the next beat tries again")
            for companion in self.companions:
                companion.ensure_running()
            stop.wait(defaults.WORKER_BEAT_SECONDS)

    def forget(self) -> None:
        """Remove this process's record as it stops cleanly, so the count drops at once (best effort)."""
        try:
            beats.forget(self.conn, self.process)
        except redis.RedisError:
            pass  # it expires by itself


def sweep(conn: redis.Redis, queues: list[Queue]) -> list[str]:
    """Retry (or fail) the started jobs of worker processes that stopped beating; return their ids."""

    def dead(names: set[str]) -> set[str]:
        """The RQ workers among `names` that run no more: ours (they beat once) and not the live RQ worker of a beat."""
        serving = {beat.rq_worker for beat in beats.live(conn)}
        return {name for name in names if name not in serving and beats.known(conn, process_of(name))}

    return release(conn, queues, dead, kind=kinds.ATTEMPT_ABANDONED,
                   reason="the worker running the attempt stopped (killed or crashed); it is retried at once")


def release(conn: redis.Redis, queues: list[Queue], gone: Callable[[set[str]], set[str]], *, kind: str,
            reason: str) -> list[str]:
    """Hand the started jobs whose RQ worker `gone` names to RQ's abandoned-job handling, now.

    The started registries are read before `gone` is asked, so that a worker named live
    in a beat read afterwards cannot have started an execution the snapshot holds under
    another name. Each queue's registry is handled under RQ's own cleaning lock (with a
    short lifetime of ours), so RQ's maintenance never handles the same job at once.
    The failure policy retries an abandoned attempt at once (it still spends a retry, so
    a job that kills its worker every time ends in the failed store). Returns the job ids.
    """
    executions = {}
    for queue in queues:
        for job_id, execution_id in queue.started_job_registry.get_job_and_execution_ids(cleanup=False):
            executions[(queue.name, job_id, execution_id)] = None
    if not executions:
        return []
    with conn.pipeline(transaction=False) as pipe:
        for _, job_id, execution_id in executions:
            pipe.hget(Execution(id=execution_id, job_id=job_id, connection=conn).key, "worker_name")
        for entry, worker_name in zip(list(executions), pipe.execute()):
            executions[entry] = text(worker_name)
    dead = gone({name for name in executions.values() if name})
    released = []
    for queue in queues:
        mine = {(job_id, execution_id): worker_name for (name, job_id, execution_id), worker_name in executions.items()
                if name == queue.name and worker_name in dead}
        if mine:
            released += _release_in(conn, queue, mine, kind, reason)
    return released


def _release_in(conn: redis.Redis, queue: Queue, executions: dict[tuple[str, str], str], kind: str,
                reason: str) -> list[str]:
    """Release `executions` ({(job id, execution id): RQ worker}) of one queue; return the ids of the jobs retried
    or failed (none when another cleaner is at the registry: the next beat comes back)."""
    if not conn.set(queue.registry_cleaning_key, 1, nx=True, ex=defaults.ABANDONED_SWEEP_LOCK_SECONDS):
        return []
    try:
        registry = queue.started_job_registry
        started = [(job_id, worker) for (job_id, _), worker in executions.items()
                   if (job := queue.fetch_job(job_id)) is not None and job.get_status(refresh=False) == JobStatus.STARTED]
        composite = [Execution(id=execution_id, job_id=job_id, connection=conn).composite_key
                     for job_id, execution_id in executions]
        conn.zadd(registry.key, dict.fromkeys(composite, 0), xx=True)
        registry.cleanup(exception_handlers=[failure.exception_handler])
    finally:
        conn.delete(queue.registry_cleaning_key)
    for job_id, worker in started:
        log.warning("job %s of %s %s: %s", job_id, worker, kind.replace("_", " "), reason)
        tell_the_story(conn, job_id, kind, reason=reason, worker=process_of(worker))
    return [job_id for job_id, _ in started]


def tell_the_story(conn: redis.Redis, job_id: str, kind: str, **facts) -> None:
    """Write into the lead's story what became of an attempt of `job_id` (event jobs; polls have no lead)."""
    event_id = event_id_of_job(job_id)
    event = event_id and events.load(conn, event_id)
    if event and event.lead_id:
        history.append(conn, event.lead_id, kind, event_id=event_id, action=event.action, **facts)
