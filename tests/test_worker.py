"""The worker: failure policy, real processing, retries fired by the scheduler, SIGTERM and SIGKILL."""

import os
import signal
import time
import types

import pytest
from rq import Retry
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, StartedJobRegistry

from bridge.exceptions import (LionDeskNeedsReauthorization, PermanentError, RetryableError,
                               UpstreamRateLimited, UpstreamRejected)
from bridge.storage import history
from tests.support import ROOT, Processes, procfile_command, wait_until
from workers import failure
from bridge.context import Context
from bridge.queue import event_queue
from workers.worker import build_worker, run

LADDER = [30, 120, 600, 1800, 7200, 21600]


def marker(name):
    """A Redis key for a test job's marker: unique to the test, under this run's prefix (so it is cleaned up)."""
    import uuid

    from bridge.storage import keys

    return f"{keys.PREFIX}test:{name}:{uuid.uuid4().hex}"


def fake_job(retries_left):
    """A stand-in with the two attributes the failure policy reads and writes."""
    return types.SimpleNamespace(retries_left=retries_left, retry_intervals=list(LADDER))


@pytest.mark.parametrize("exc, decision", [
    (PermanentError("x"), failure.GIVE_UP),
    (UpstreamRejected("422", service="liondesk", status=422), failure.GIVE_UP),
    (RetryableError("x"), failure.RETRY),
    (UpstreamRateLimited("429", service="liondesk", status=429, retry_after=5), failure.RETRY),
    (KeyError("bug"), failure.RETRY),
    (LionDeskNeedsReauthorization("invalid_grant"), failure.WAIT),
])
def test_failure_classes_map_to_decisions(exc, decision):
    assert failure.decide(exc) == decision


def test_permanent_failure_spends_the_whole_budget():
    job = fake_job(4)
    failure.apply(job, PermanentError("x"))
    assert job.retries_left == 0


def test_retry_after_longer_than_the_ladder_step_wins():
    job = fake_job(6)  # first failure: the ladder would wait 30 s
    failure.apply(job, UpstreamRateLimited("429", service="liondesk", retry_after=90.2))
    assert job.retry_intervals[0] == 91 and job.retries_left == 6


def test_retry_after_shorter_than_the_ladder_step_keeps_the_ladder():
    job = fake_job(5)
    failure.apply(job, UpstreamRateLimited("429", service="liondesk", retry_after=3))
    assert job.retry_intervals == LADDER


def test_waiting_gives_the_retry_back_and_waits_five_minutes():
    job = fake_job(0)  # even on the last attempt, waiting never fails the job
    failure.apply(job, LionDeskNeedsReauthorization("invalid_grant"))
    assert job.retries_left == 1
    assert job.retry_intervals[-1] == max(LADDER[-1], 300)


def _context(settings, redis_conn):
    return Context(settings=settings, redis=redis_conn)


def test_burst_worker_processes_a_received_webhook(redis_conn, sandbox_settings):
    from bridge.web import create_app
    from bridge.sandbox.sample import sample_lead
    from tests.support import signed_post

    payload = sample_lead()
    client = create_app(sandbox_settings).test_client()
    signed_post(client, "/webhooks/realgeeks", payload, sandbox_settings.realgeeks_webhook_secret)
    run(_context(sandbox_settings, redis_conn), burst=True)  # what `bridge worker --burst` does: relay, then work
    kinds = [entry["kind"] for entry in history.read(redis_conn, payload["id"])]
    assert kinds[0] == "received" and kinds[-1] == "processed" and "attempt_failed" not in kinds
    assert event_queue(redis_conn).count == 0


def test_permanent_failure_goes_to_the_failed_store_at_once(redis_conn, settings):
    queue = event_queue(redis_conn)
    job = queue.enqueue("tests.jobs.always_permanent", retry=Retry(max=6, interval=LADDER))
    build_worker(_context(settings, redis_conn)).work(burst=True)
    assert job.id in FailedJobRegistry(queue=queue).get_job_ids()
    assert "first_name too long" in Job.fetch(job.id, connection=redis_conn).latest_result().exc_string


def test_retryable_failure_is_scheduled_on_the_ladder(redis_conn, settings):
    queue = event_queue(redis_conn)
    job = queue.enqueue("tests.jobs.flaky", marker("flaky"), 5, retry=Retry(max=6, interval=LADDER))
    os.environ["REDIS_URL"] = settings.redis_url
    try:
        before = time.time()
        build_worker(_context(settings, redis_conn)).work(burst=True)
    finally:
        os.environ.pop("REDIS_URL")
    job.refresh()
    assert job.get_status() == JobStatus.SCHEDULED
    assert job.retries_left == 5
    scheduled_at = redis_conn.zscore(queue.scheduled_job_registry.key, job.id)
    assert before + 29 <= scheduled_at <= time.time() + 31


# --- real processes ------------------------------------------------------------------------


@pytest.fixture
def processes(tmp_path):
    """Start real processes for a test and stop them (ours only, by PID) afterwards."""
    group = Processes(tmp_path)
    yield group
    group.stop_all()


def process_env(settings, **extra):
    """Environment for a bridge process under test: our Redis, our secret, tests importable."""
    return {"REDIS_URL": settings.redis_url, "REALGEEKS_WEBHOOK_SECRET": settings.realgeeks_webhook_secret,
            "PYTHONPATH": str(ROOT), **extra}


def sandbox_env(sandbox):
    """Environment pointing a bridge process at the sandbox's LionDesk, with a generous request ceiling.

    Without Real Geeks API credentials the reverse sync (the LionDesk poll) stays off:
    these tests are about the forward path, and a poll failing in an injected LionDesk
    outage would add a failed poll job of its own.
    """
    forward_only = {k: v for k, v in sandbox.environment().items() if not k.startswith("REALGEEKS_API_")}
    return {**forward_only, "LIONDESK_MAX_REQUESTS_PER_SECOND": "1000"}


def start_worker(processes, settings, name="worker", **extra):
    """Start the Procfile's worker command and wait until it registered with RQ."""
    from rq import Worker

    from bridge.storage.redis import connect

    conn = connect(settings.redis_url)
    before = {w.name for w in Worker.all(connection=conn)}
    process = processes.start(name, procfile_command("worker"), process_env(settings, **extra))
    wait_until(lambda: {w.name for w in Worker.all(connection=conn)} - before or process.poll() is not None,
               timeout=30, message=f"{name} to register")
    assert process.poll() is None, processes.log_of(name)
    return process


@pytest.mark.e2e
def test_procfile_web_and_worker_process_a_webhook_over_http(processes, settings, redis_conn, sandbox):
    import requests

    from bridge.sandbox.sample import sample_lead
    from tests.support import free_port, signed_post

    port = free_port()
    web = processes.start("web", procfile_command("web"), process_env(settings, PORT=str(port),
                                                                      WEB_CONCURRENCY="2", **sandbox_env(sandbox)))
    start_worker(processes, settings, **sandbox_env(sandbox))
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: _answers(f"{base}/healthz") or web.poll() is not None, timeout=30, message="web up")
    assert web.poll() is None, processes.log_of("web")

    payload = sample_lead()
    response = signed_post(requests, f"{base}/webhooks/realgeeks", payload, settings.realgeeks_webhook_secret)
    assert response.status_code == 200, response.text
    wait_until(lambda: [e["kind"] for e in history.read(redis_conn, payload["id"])][-1:] == ["processed"],
               message="the worker to process the event")
    (contact,) = sandbox.control("GET", "liondesk/contacts")["data"]
    assert contact["email"] == payload["email"]
    assert requests.get(f"{base}/healthz", timeout=5).json()["queue"]["depth"] == 0


def _answers(url):
    import requests

    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


@pytest.mark.e2e
def test_scheduler_fires_interval_retries(processes, settings, redis_conn):
    queue = event_queue(redis_conn)
    job = queue.enqueue("tests.jobs.flaky", marker("flaky"), 2, retry=Retry(max=3, interval=[1, 1, 1]))
    start_worker(processes, settings)
    wait_until(lambda: job.get_status(refresh=True) == JobStatus.FINISHED, timeout=40,
               message="the job to succeed on its third attempt")
    assert job.return_value() == "succeeded on attempt 3"


@pytest.mark.e2e
def test_sigterm_finishes_the_job_in_hand_then_exits(processes, settings, redis_conn):
    queue = event_queue(redis_conn)
    started, done = marker("started"), marker("done")
    job = queue.enqueue("tests.jobs.slow", started, done, 3, retry=Retry(max=1, interval=[1]))
    worker = start_worker(processes, settings)
    wait_until(lambda: redis_conn.get(started), message="the job to start")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=25) == 0
    assert redis_conn.get(done) == b"1"
    assert job.get_status(refresh=True) == JobStatus.FINISHED


@pytest.mark.e2e
@pytest.mark.parametrize("retries, expected", [(2, "retried"), (None, "failed")])
def test_sigkilled_worker_leaves_its_job_retried_or_failed(processes, settings, redis_conn, retries, expected):
    """After SIGKILL the job sits in the started registry until its heartbeat lapses; the
    maintenance sweep then retries it (budget left) or moves it to the failed store. We run
    that sweep with a clock past the heartbeat instead of waiting the real ~85 s."""
    queue = event_queue(redis_conn)
    options = {"retry": Retry(max=retries, interval=[1] * retries)} if retries else {}
    started, done = marker("started"), marker("done")
    job = queue.enqueue("tests.jobs.slow", started, done, 30, job_timeout=20, **options)
    worker = start_worker(processes, settings)
    wait_until(lambda: redis_conn.get(started), message="the job to start")
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(timeout=10)
    running = StartedJobRegistry(queue=queue)
    assert job.id in running.get_job_ids(cleanup=False)

    running.cleanup(timestamp=time.time() + 20 + 60 + 5)
    if expected == "failed":
        assert job.id in FailedJobRegistry(queue=queue).get_job_ids()
        return
    assert job.get_status(refresh=True) in (JobStatus.SCHEDULED, JobStatus.QUEUED)
    # a fresh worker picks the retried job up; make it quick by shortening the sleep
    job.args = (started, done, 0.1)
    job.save()
    start_worker(processes, settings, name="worker2")
    wait_until(lambda: job.get_status(refresh=True) == JobStatus.FINISHED, timeout=30,
               message="the retried job to finish on another worker")
    assert redis_conn.get(done) == b"1"
