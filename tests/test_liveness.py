"""Worker liveness: heartbeat records, the count and the no-worker alarm, the sweep that retries the
jobs of dead workers, taking over a dead worker's lead lock, companion threads that restart, and
all of it with Redis full."""

from __future__ import annotations

import threading
import time

import pytest
from rq.exceptions import AbandonedJobError
from rq.job import JobStatus
from rq.queue import Queue

from bridge import defaults
from bridge.exceptions import LockTimeout
from bridge.ops import status
from bridge.queue import event_job_id, event_queue
from bridge.sandbox.sample import sample_lead
from bridge.storage import beats, history, keys, locks
from bridge.storage.redis import connect
from tests.support import free_port, signed_post, start_test_redis, wait_until
from workers import failure, liveness
from workers.relay import Relay
from workers.worker import BridgeWorker


def beat(conn, process, rq_worker=None, when=None):
    """Write a heartbeat of `process` as a worker would."""
    record = beats.new_beat(process, "host-a", 4242, 1.0, rq_worker or process)
    if when is not None:
        record = beats.Beat(**{**record.__dict__, "beat": when})
    return beats.record(conn, record)


def test_a_beat_is_counted_until_its_record_expires_or_is_forgotten(redis_conn):
    assert status.worker_status(redis_conn).live == 0
    beat(redis_conn, "proc-a")
    beat(redis_conn, "proc-b")
    found = status.worker_status(redis_conn)
    assert found.live == 2 and not found.no_worker and found.silent_seconds == 0
    assert {w["process"] for w in found.workers} == {"proc-a", "proc-b"}
    assert 0 < redis_conn.ttl(keys.worker_beat("proc-a")) <= defaults.WORKER_BEAT_TTL_SECONDS
    beats.forget(redis_conn, "proc-a")
    assert [b.process for b in beats.live(redis_conn)] == ["proc-b"]
    assert beats.known(redis_conn, "proc-a") and not beats.alive(redis_conn, "proc-a")


def test_no_worker_alarm_when_none_ever_beat_or_none_beat_for_minutes(redis_conn):
    never = status.worker_status(redis_conn)
    assert never.no_worker and never.last_seen is None and "ever" in never.message
    now = time.time()
    beat(redis_conn, "gone", when=now - defaults.WORKER_SILENT_ALARM_SECONDS - 5)
    beats.forget(redis_conn, "gone")
    silent = status.worker_status(redis_conn, now=now)
    assert silent.no_worker and silent.live == 0
    assert silent.silent_seconds >= defaults.WORKER_SILENT_ALARM_SECONDS and "No worker seen for" in silent.message
    beat(redis_conn, "recent", when=now - 30)
    beats.forget(redis_conn, "recent")
    assert not status.worker_status(redis_conn, now=now).no_worker  # seen half a minute ago: no alarm yet


def test_the_index_forgets_processes_beyond_its_retention(redis_conn):
    now = time.time()
    beat(redis_conn, "ancient", when=now - defaults.WORKER_BEATS_RETENTION_SECONDS - 60)
    beat(redis_conn, "fresh", when=now)
    assert not beats.known(redis_conn, "ancient") and beats.known(redis_conn, "fresh")


def test_healthz_and_metrics_show_the_worker_count(client, redis_conn):
    from tests.test_ops_metrics import samples

    body = client.get("/healthz").json
    assert body["workers"]["live"] == 0 and body["workers"]["no_worker"] is True
    beat(redis_conn, "proc-a")
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json["workers"] == {"live": 1, "last_seen": pytest.approx(time.time(), abs=5),
                                        "silent_seconds": 0.0, "no_worker": False, "message": None}
    assert "host-a" not in response.get_data(as_text=True)  # host names are for the console
    from bridge.web.prometheus import render

    found = samples(render(redis_conn).decode())
    assert found[("bridge_workers_alive", ())] == 1 and found[("bridge_no_worker", ())] == 0
    assert found[("bridge_redis_full", ())] == 0


# --- the sweep -----------------------------------------------------------------------------


def started_job(client, conn, secret, rq_worker):
    """Deliver a lead, relay it, and leave its job started by an RQ worker called `rq_worker`."""
    lead = sample_lead()
    event_id = signed_post(client, "/webhooks/realgeeks", lead, secret).json["event_id"]
    Relay(conn, "relay").drain()
    queue = event_queue(conn)
    job, _ = Queue.dequeue_any([queue], None, connection=conn)
    assert job.id == event_job_id(event_id)
    worker = BridgeWorker([queue], connection=conn, name=rq_worker)
    worker.prepare_execution(job)
    worker.prepare_job_execution(job)
    assert job.get_status(refresh=True) == JobStatus.STARTED
    return lead, job


def test_sweep_retries_at_once_the_job_of_a_worker_whose_heartbeat_expired(client, redis_conn, webhook_secret):
    lead, job = started_job(client, redis_conn, webhook_secret, "dead-proc")
    beat(redis_conn, "dead-proc")
    beats.forget(redis_conn, "dead-proc")  # as if its record had expired
    retries_before = job.retries_left
    assert liveness.sweep(redis_conn, [event_queue(redis_conn)]) == [job.id]
    job.refresh()
    assert job.get_status() == JobStatus.QUEUED and job.id in event_queue(redis_conn).job_ids  # at once, no ladder
    assert job.retries_left == retries_before - 1
    (entry,) = [e for e in history.read(redis_conn, lead["id"]) if e["kind"] == "attempt_abandoned"]
    assert entry["worker"] == "dead-proc" and entry["action"] == "created" and "retried at once" in entry["reason"]
    assert liveness.sweep(redis_conn, [event_queue(redis_conn)]) == []  # nothing left to release


def test_sweep_leaves_live_workers_and_workers_that_never_beat_alone(client, redis_conn, webhook_secret):
    _, live_job = started_job(client, redis_conn, webhook_secret, "live-proc")
    beat(redis_conn, "live-proc")
    _, foreign_job = started_job(client, redis_conn, webhook_secret, "burst-worker")  # `bridge worker --burst`, rq
    assert liveness.sweep(redis_conn, [event_queue(redis_conn)]) == []
    assert live_job.get_status(refresh=True) == foreign_job.get_status(refresh=True) == JobStatus.STARTED


def test_sweep_releases_the_job_of_an_earlier_rq_worker_of_a_live_process(client, redis_conn, webhook_secret):
    """After an outage a process runs a new RQ worker; a job its old one held runs no more."""
    _, job = started_job(client, redis_conn, webhook_secret, liveness.rq_worker_name("proc", 0))
    beat(redis_conn, "proc", rq_worker=liveness.rq_worker_name("proc", 1))
    assert liveness.sweep(redis_conn, [event_queue(redis_conn)]) == [job.id]


def test_sweep_waits_while_another_cleaner_holds_the_registry(client, redis_conn, webhook_secret):
    _, job = started_job(client, redis_conn, webhook_secret, "dead-proc")
    beat(redis_conn, "dead-proc")
    beats.forget(redis_conn, "dead-proc")
    queue = event_queue(redis_conn)
    assert queue.acquire_maintenance_lock()  # RQ's own maintenance is cleaning this queue
    assert liveness.sweep(redis_conn, [queue]) == []
    queue.release_maintenance_lock()
    assert liveness.sweep(redis_conn, [queue]) == [job.id]


def test_an_abandoned_attempt_is_retried_at_once_but_spends_its_retry():
    import types

    job = types.SimpleNamespace(retries_left=3, retry_intervals=[30, 120, 600, 1800])
    assert failure.apply(job, AbandonedJobError()) == failure.RETRY
    assert job.retry_intervals == [30, 0, 600, 1800] and job.retries_left == 3  # RQ spends the retry
    last = types.SimpleNamespace(retries_left=0, retry_intervals=[30])
    failure.apply(last, AbandonedJobError())
    assert failure.outcome(last, AbandonedJobError()) == failure.FAILED


def test_heart_sweeps_only_once_its_own_beats_are_steady(redis_conn, monkeypatch):
    heart = liveness.Heart(redis_conn, "proc-h", "host", 1, lambda: [])
    assert heart.beat_once() and not heart.steady()
    monkeypatch.setattr(defaults, "WORKER_BEAT_TTL_SECONDS", 0)
    assert heart.steady()
    heart.steady_since = None  # a beat failed (Redis away): its view of others is stale again
    assert not heart.steady()


# --- lead locks ----------------------------------------------------------------------------


@pytest.fixture
def holder():
    """Make this test process a worker named 'me' for its lead locks, then anonymous again."""
    locks.set_holder("me")
    yield "me"
    locks.set_holder(None)


def test_lock_of_a_dead_worker_is_taken_over_at_once(redis_conn, holder):
    beat(redis_conn, "dead-proc")
    redis_conn.set(keys.lead_lock("lead1"), "dead-proc|abc", ex=60)
    beats.forget(redis_conn, "dead-proc")
    began = time.monotonic()
    with locks.lead_lock(redis_conn, "lead1", wait=30):
        assert locks.holder_of(redis_conn.get(keys.lead_lock("lead1")).decode()) == "me"
    assert time.monotonic() - began < 30  # taken over, not waited out (the wait would be the full 30 s)
    assert redis_conn.get(keys.lead_lock("lead1")) is None


def test_lock_of_a_live_worker_or_an_anonymous_holder_is_waited_for(redis_conn, holder):
    beat(redis_conn, "live-proc")
    for token in ("live-proc|abc", "anonymous-token"):
        redis_conn.set(keys.lead_lock("lead2"), token, ex=60)
        with pytest.raises(LockTimeout):
            with locks.lead_lock(redis_conn, "lead2", wait=0.3):
                pass
        assert redis_conn.get(keys.lead_lock("lead2")).decode() == token


def test_a_lock_this_process_left_behind_is_taken_over_but_one_it_holds_is_not(redis_conn, holder):
    redis_conn.set(keys.lead_lock("lead3"), "me|left-by-a-job-redis-cut-short", ex=60)
    with locks.lead_lock(redis_conn, "lead3", wait=5):
        token = redis_conn.get(keys.lead_lock("lead3")).decode()
        assert not locks.take_over_if_dead(redis_conn, keys.lead_lock("lead3"))  # held by a job of ours now
        assert redis_conn.get(keys.lead_lock("lead3")).decode() == token


def test_a_lock_redis_kept_from_being_released_is_released_once_redis_is_back(redis_conn, holder, monkeypatch):
    import redis

    monkeypatch.setattr(redis.lock.Lock, "release", lambda self: (_ for _ in ()).throw(redis.ConnectionError("gone")))
    with pytest.raises(redis.ConnectionError):
        with locks.lead_lock(redis_conn, "lead4"):
            pass
    assert redis_conn.get(keys.lead_lock("lead4")) is not None  # left behind by the outage
    monkeypatch.undo()
    locks.set_holder("me")
    assert locks.release_left(redis_conn) == 1
    assert redis_conn.get(keys.lead_lock("lead4")) is None
    assert locks.release_left(redis_conn) == 0


# --- companions ----------------------------------------------------------------------------


def test_companion_work_that_raises_is_started_again(monkeypatch):
    monkeypatch.setattr(defaults, "WORKER_REDIS_BACKOFF_FIRST_SECONDS", 0.01)
    calls, stop = [], threading.Event()

    def work(stop_event):
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("a bug")
        stop_event.wait()

    companion = liveness.Companion("test-companion", work, stop).start()
    wait_until(lambda: len(calls) == 3, message="the third start")
    assert companion.restarts == 2 and companion.thread.is_alive()
    stop.set()
    companion.thread.join(timeout=5)
    assert not companion.ensure_running()  # stopped: never started again


def test_companion_whose_thread_is_gone_is_started_again():
    stop = threading.Event()
    companion = liveness.Companion("test-companion", lambda s: s.wait(), stop)
    assert companion.ensure_running() and companion.thread.is_alive()
    assert not companion.ensure_running()
    stop.set()


# --- Redis full ----------------------------------------------------------------------------


@pytest.fixture
def full_redis(tmp_path):
    """A private redis-server of this test (maxmemory is server-wide), and a way to fill it."""
    server = start_test_redis(tmp_path, free_port())
    conn = connect(server.url)

    def fill():
        used = int(conn.info("memory")["used_memory"])
        conn.config_set("maxmemory-policy", "noeviction")
        conn.config_set("maxmemory", used + 64 * 1024)
        for n in range(100_000):  # small values: the last one accepted leaves Redis past the limit
            try:
                conn.set(f"ballast:{n}", "x" * 100)
            except Exception:  # noqa: BLE001 - the OOM refusal we are after
                return
        raise AssertionError("Redis never refused a write")

    try:
        yield conn, fill, server.url
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_a_beat_keeps_its_record_alive_when_redis_is_full(full_redis):
    import redis

    conn, fill, _ = full_redis
    assert beat(conn, "proc-f") is True
    fill()
    assert status.redis_state(conn) == status.REDIS_FULL
    assert beat(conn, "proc-f") is False  # refused, but the record's lifetime renewed
    assert beats.alive(conn, "proc-f") and status.worker_status(conn).live == 1
    with pytest.raises(redis.OutOfMemoryError):
        beat(conn, "proc-new")  # no record to renew
    assert status.redis_trouble(redis.OutOfMemoryError("OOM command not allowed")) == status.REDIS_FULL
    assert status.redis_trouble(redis.ConnectionError("gone")) == status.REDIS_UNREACHABLE
    assert status.redis_trouble(ValueError("bug")) is None


def test_healthz_says_redis_full_with_503(full_redis, make_settings):
    from bridge.web import create_app

    conn, fill, url = full_redis
    client = create_app(make_settings(redis_url=url)).test_client()
    assert client.get("/healthz").status_code == 200
    fill()
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json["status"] == "redis_full" and response.json["redis"] == status.REDIS_FULL
    assert response.json["redis_message"] == "Redis full"
    assert status.redis_health(conn) == {"state": "full", "message": "Redis full"}
    conn.config_set("maxmemory", 0)
    assert client.get("/healthz").status_code == 200
    assert status.redis_health(conn) == {"state": "ok", "message": None}


def test_healthz_says_redis_unreachable(make_settings):
    from bridge.web import create_app

    response = create_app(make_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0")).test_client().get("/healthz")
    assert response.status_code == 503 and response.json["redis"] == status.REDIS_UNREACHABLE
    assert response.json["redis_message"].startswith("Redis unreachable")
    banner = status.redis_health(connect(f"redis://127.0.0.1:{free_port()}/0"))
    assert banner["state"] == "unreachable" and banner["message"].startswith("Redis unreachable (")


# --- the scheduler -------------------------------------------------------------------------


def test_scheduler_waits_out_redis_trouble_and_reraises_anything_else(redis_conn, monkeypatch):
    import redis

    from workers.worker import BridgeScheduler

    monkeypatch.setattr(defaults, "WORKER_REDIS_BACKOFF_FIRST_SECONDS", 0.01)
    scheduler = BridgeScheduler([event_queue(redis_conn)], connection=redis_conn, interval=1)
    monkeypatch.setattr(scheduler, "_install_signal_handlers", lambda: None)  # not the main thread's business
    troubles = [redis.ConnectionError("gone"), redis.OutOfMemoryError("command not allowed when used memory")]
    rounds = []

    def enqueue_scheduled_jobs():
        rounds.append(1)
        if troubles:
            raise troubles.pop(0)
        scheduler._stop_requested = True

    monkeypatch.setattr(scheduler, "enqueue_scheduled_jobs", enqueue_scheduled_jobs)
    scheduler.work()  # returns: it stopped on request, after two rounds of Redis trouble
    assert len(rounds) == 3
    scheduler._stop_requested = False
    monkeypatch.setattr(scheduler, "enqueue_scheduled_jobs", lambda: (_ for _ in ()).throw(ValueError("a bug")))
    with pytest.raises(ValueError):
        scheduler.work()


def test_scheduler_stops_when_its_worker_process_is_gone(redis_conn, monkeypatch):
    """A SIGKILLed worker cannot stop its scheduler: the scheduler sees its parent change and stops itself."""
    import os

    from workers.worker import BridgeScheduler

    scheduler = BridgeScheduler([event_queue(redis_conn)], connection=redis_conn, interval=1)
    monkeypatch.setattr(scheduler, "_install_signal_handlers", lambda: None)
    monkeypatch.setattr(scheduler, "enqueue_scheduled_jobs", lambda: pytest.fail("an orphan must not schedule"))
    scheduler.parent_pid = os.getppid() + 1_000_000  # not our parent: the worker that forked it is gone
    scheduler.work()
