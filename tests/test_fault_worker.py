"""A worker SIGKILLed in the middle of a job (an out-of-memory dyno, a lost machine).

Its heartbeat record expires, another worker's sweep retries the job at once, takes over
the lead lock the dead worker held, and the lead reaches LionDesk once, within the 60 s
the operators were promised, with the abandoned attempt in its story.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
from rq import Worker
from rq.executions import Execution

from bridge.queue import event_job_id, event_queue
from bridge.sandbox.sample import sample_lead
from bridge.storage import history
from bridge.web import create_app
from tests.support import start_sandbox_process, signed_post, wait_until
from tests.test_worker import process_env, processes, sandbox_env, start_worker  # noqa: F401 - the fixture

KILL_TO_SYNCED_SECONDS = 60
"""The acceptance bound: a lead whose worker died is synced within a minute of the kill."""


def kinds(conn, lead_id):
    """The kinds of a lead's story entries, in order."""
    return [entry["kind"] for entry in history.read(conn, lead_id)]


def worker_running(conn, job_id):
    """The RQ worker (name and pid) whose execution of `job_id` is in the started registry, or None."""
    registry = event_queue(conn).started_job_registry
    for found_id, execution_id in registry.get_job_and_execution_ids(cleanup=False):
        if found_id == job_id:
            name = conn.hget(Execution(id=execution_id, job_id=job_id, connection=conn).key, "worker_name")
            return Worker.find_by_key(Worker.redis_worker_namespace_prefix + name.decode(), connection=conn)
    return None


@pytest.mark.e2e
def test_a_sigkilled_workers_lead_is_retried_by_another_and_synced_within_a_minute(processes, settings,
                                                                                     redis_conn, tmp_path):
    sandbox = start_sandbox_process(processes)
    env = sandbox_env(sandbox)
    workers = {start_worker(processes, settings, name=f"worker{n}", **env).pid: f"worker{n}" for n in range(2)}
    client = create_app(settings).test_client()
    # A first lead, so that the LionDesk token is fetched and stored before the kill: a worker killed in
    # the middle of a token refresh loses the rotated refresh token (re-authorisation), another story.
    first = sample_lead()
    assert signed_post(client, "/webhooks/realgeeks", first, settings.realgeeks_webhook_secret).json["status"] == "queued"
    wait_until(lambda: "processed" in kinds(redis_conn, first["id"]), timeout=60, message="the first lead synced")
    # Every LionDesk call takes 2 s: the job is in the middle of its calls, under the lead lock, when killed.
    sandbox.control("POST", "faults", service="liondesk", latency_ms=2000)
    lead = sample_lead()
    answer = signed_post(client, "/webhooks/realgeeks", lead, settings.realgeeks_webhook_secret)
    assert answer.status_code == 200 and answer.json["status"] == "queued", answer.get_data(as_text=True)
    wait_until(lambda: "call" in kinds(redis_conn, lead["id"]), timeout=60, message="the job's first LionDesk call")
    victim = worker_running(redis_conn, event_job_id(answer.json["event_id"]))
    assert victim is not None and victim.pid in workers, "the job runs on one of the two workers"
    os.kill(victim.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    sandbox.control("POST", "faults", service="liondesk", latency_ms=50)

    wait_until(lambda: "processed" in kinds(redis_conn, lead["id"]), timeout=KILL_TO_SYNCED_SECONDS, interval=0.5,
               message=f"the lead synced within {KILL_TO_SYNCED_SECONDS} s of the kill")
    synced_after = time.monotonic() - killed_at
    story = history.read(redis_conn, lead["id"])
    (abandoned,) = [entry for entry in story if entry["kind"] == "attempt_abandoned"]
    assert abandoned["worker"] in victim.name and abandoned["action"] == "created"
    (processed,) = [entry for entry in story if entry["kind"] == "processed"]
    assert processed["attempt"] == 2, "the retry is the job's second attempt"
    contacts = [c for c in sandbox.control("GET", "liondesk/contacts")["data"]
                if (c.get("email") or "").casefold() == lead["email"].casefold()]
    assert len(contacts) == 1, f"one contact for the lead, not {len(contacts)}"

    survivor = workers[next(pid for pid in workers if pid != victim.pid)]
    assert "took over" in processes.log_of(survivor), "the dead worker's lead lock was taken over, not waited out"
    alive = [process for process in (p for _, p in processes.children) if process.pid != victim.pid]
    assert all(process.poll() is None for process in alive)
    print(f"lead synced {synced_after:.1f} s after its worker was killed")  # shown with -s; the bound is above

