"""Retry-now end to end: the Procfile's worker against the sandbox, the real `bridge` command line.

LionDesk is down; two leads wait on a ladder of ten minutes. The outage lifts; support previews
and runs them now from the CLI; both reach LionDesk within seconds, once each, and the early
attempt is one of their retries.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import pytest
import requests
from rq.job import Job
from rq.registry import ScheduledJobRegistry

from bridge.sandbox.sample import sample_lead
from bridge.storage import history
from bridge.queue import event_job_id, event_queue
from tests.support import ROOT, signed_post, wait_until
from tests.test_browser import start_web
from tests.test_worker import process_env, processes, sandbox_env, start_worker  # noqa: F401 (fixture)

pytestmark = pytest.mark.e2e

LADDER = {"BRIDGE_RETRY_INTERVALS": "600,600,600"}
"""Long enough that nothing retries by itself while the test runs."""


def test_waiting_leads_run_now_after_an_outage_lifts(processes, settings, redis_conn, sandbox):
    url, _, _ = start_web(processes, settings, sandbox, **LADDER)
    start_worker(processes, settings, **LADDER, **sandbox_env(sandbox))
    sandbox.control("POST", "faults", service="liondesk", outage=True)
    leads = [sample_lead(rng=random.Random(seed)) for seed in (11, 12)]
    for payload in leads:
        assert signed_post(requests, f"{url}/webhooks/realgeeks", payload, settings.realgeeks_webhook_secret).ok
    scheduled = ScheduledJobRegistry(event_queue(redis_conn).name, connection=redis_conn)
    wait_until(lambda: scheduled.count == 2, timeout=30, message="both leads to wait on the ladder")

    env = {**os.environ, **process_env(settings, **LADDER)}

    def cli(*args, stdin=None):
        return subprocess.run([sys.executable, "-m", "bridge.cli", *args], cwd=ROOT, env=env, input=stdin,
                              capture_output=True, text=True, timeout=60)

    waiting = json.loads(cli("jobs", "retrying", "--json").stdout)
    assert {job["lead_id"] for job in waiting} == {lead["id"] for lead in leads}
    assert {job["error_class"] for job in waiting} == {"UpstreamUnavailable"} and {job["attempts"] for job in waiting} == {1}

    sandbox.control("POST", "faults", service="liondesk", outage=None)
    plan = json.loads(cli("jobs", "retry-now", "--all", "--dry-run", "--json").stdout)
    assert plan["total"] == 2 and plan["by_error"] == {"UpstreamUnavailable": 2}
    assert scheduled.count == 2  # the dry run ran nothing
    declined = cli("jobs", "retry-now", "--all", stdin="n\n")
    assert declined.returncode == 1 and scheduled.count == 2
    ran = cli("jobs", "retry-now", "--all", "--yes")
    assert ran.returncode == 0 and "2 due now, 0 skipped" in ran.stdout, ran.stderr

    def synced():
        return all("processed" in [e["kind"] for e in history.read(redis_conn, lead["id"])] for lead in leads)

    wait_until(synced, timeout=30, interval=0.2, message="the leads run now to reach LionDesk")
    contacts = sandbox.control("GET", "liondesk/contacts")["data"]
    assert sorted(c["email"] for c in contacts) == sorted(lead["email"] for lead in leads)  # once each
    for lead in leads:
        job = Job.fetch(event_job_id(next(e["event_id"] for e in history.read(redis_conn, lead["id"])
                                          if e["kind"] == "processed")), connection=redis_conn)
        assert job.retries_left == 2  # the first failure and the early attempt: one retry spent
        kinds = [e["kind"] for e in history.read(redis_conn, lead["id"])]
        assert kinds.index("attempt_failed") < kinds.index("retried_now") < kinds.index("processed")
    assert json.loads(cli("jobs", "retrying", "--json").stdout) == []
