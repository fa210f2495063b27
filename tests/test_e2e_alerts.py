"""Alerts end to end: the Procfile's gunicorn `web` and `worker` processes, a real Redis and the
sandbox in a process of its own; an alert receiver on 127.0.0.1 gets exactly one alert per
condition, and one recovery, as a week of real failures brings them on.

The conditions wait 0 minutes (a backlog 2 s) instead of the production defaults, and are
evaluated three times a second; retries wait 1 s. (The redis_memory alert changes the test
Redis's maxmemory for a moment, and puts it back.)
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from urllib.parse import parse_qs, urlparse

import pytest
import requests
from rq import Worker
from rq.job import Job

from bridge.intake.signature import SIGNATURE_HEADER, sign
from bridge.queue import event_job_id
from bridge.sandbox.sample import body_of, sample_lead
from bridge.storage import history, keys
from bridge.storage.redis import connect
from tests.alert_support import WebhookReceiver
from tests.conftest import delete_run_keys
from tests.support import (ROOT, Processes, forward_environment, procfile_command, start_sandbox_process, start_web,
                           wait_until)

pytestmark = pytest.mark.e2e

PUBLIC = "https://bridge.example.com"
# Sixty 1 s steps: the LionDesk outage below lasts while a worker starts and three alerts come and go,
# and the first lead must still be on its ladder when LionDesk answers again, on a loaded machine too
# (with the default ladder's six steps it could run out first, and then no call would ever succeed).
RETRY_INTERVALS = ",".join(["1"] * 60)
TITLES = {"lead_failed": "Leads failed", "liondesk_auth": "LionDesk refuses the bridge",
          "liondesk_failing": "LionDesk failing", "backlog": "Leads waiting", "no_worker": "No worker",
          "redis_memory": "Redis memory"}


class Alerts:
    """What the receiver got, read as (title, problem or recovery) per post."""

    def __init__(self, receiver: WebhookReceiver):
        self.receiver = receiver

    def seen(self) -> list[tuple[str, str]]:
        """(title, kind) of every alert so far, in arrival order."""
        found = []
        for text in self.receiver.texts:
            headline = text.splitlines()[0]
            match = re.fullmatch(r"(🔴|✅) Real Geeks → LionDesk bridge \(bridge\.example\.com\): "
                                 r"(Resolved: |Still: )?(.+)", headline)
            assert match, f"not an alert headline: {headline!r}"
            kind = {"": "problem", "Resolved: ": "recovery", "Still: ": "reminder"}[match[2] or ""]
            found.append((match[3], kind))
        return found

    def wait_for(self, condition: str, kind: str, timeout: float = 60) -> str:
        """Wait for the alert of `kind` about `condition`; return its text."""
        wanted = (TITLES[condition], kind)
        wait_until(lambda: wanted in self.seen(), timeout=timeout, message=f"the {kind} alert of {condition}")
        return self.receiver.texts[self.seen().index(wanted)]


@pytest.fixture
def bridge(tmp_path, redis_url):
    """The sandbox and the web process (no worker yet), alerting to a receiver on 127.0.0.1."""
    processes = Processes(tmp_path)
    conn = connect(redis_url)
    receiver = WebhookReceiver()
    try:
        sandbox = start_sandbox_process(processes)
        env = {**forward_environment(sandbox, redis_url, secrets.token_hex(16), RETRY_INTERVALS),
               "ALERT_WEBHOOK_URL": receiver.url, "BRIDGE_PUBLIC_URL": PUBLIC, "ALERT_CHECK_SECONDS": "0.3",
               "ALERT_NO_WORKER_MINUTES": "0", "ALERT_LIONDESK_FAILING_MINUTES": "0",
               "ALERT_BACKLOG_MINUTES": f"{2 / 60:.4f}", "ALERT_WINDOW_MINUTES": "60",
               # Alert at half the limit, and fill three quarters: Redis's own use moves by a few per cent.
               "ALERT_REDIS_MEMORY_PERCENT": "50",
               "LIONDESK_REDIRECT_URI": "https://bridge.example.com/liondesk/callback"}
        base_url = start_web(processes, env, concurrency=2)
        yield {"processes": processes, "conn": conn, "sandbox": sandbox, "env": env, "url": base_url,
               "alerts": Alerts(receiver)}
    finally:
        processes.stop_all()
        receiver.stop()
        delete_run_keys(conn)
        conn.close()


def deliver(bridge, **overrides) -> dict:
    """POST one signed new lead to the web process; return its payload with its event id."""
    payload = sample_lead(**overrides)
    body = body_of(payload)
    response = requests.post(f"{bridge['url']}/webhooks/realgeeks", data=body, timeout=10, headers={
        "Content-Type": "application/json", SIGNATURE_HEADER: sign(body, bridge["env"]["REALGEEKS_WEBHOOK_SECRET"])})
    assert response.status_code in (200, 202), response.text
    return {**payload, "event_id": response.json()["event_id"]}


def cli(bridge, *args: str) -> subprocess.CompletedProcess:
    """Run the real `bridge` command line with the processes' environment."""
    result = subprocess.run([sys.executable, "-m", "bridge.cli", *args], cwd=ROOT, env={**os.environ, **bridge["env"]},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result


def ticks_pass(conn, count: int) -> None:
    """Wait until the alert evaluation ran `count` more times (each period's tick carries its time)."""
    seen = set()

    def counted():
        value = conn.get(keys.alert_tick())
        if value is not None:
            seen.add(value)
        return len(seen) > count

    wait_until(counted, timeout=30, interval=0.02, message=f"{count} more alert evaluations")


def test_each_condition_alerts_once_and_recovers_once(bridge):
    conn, sandbox, alerts, processes = bridge["conn"], bridge["sandbox"], bridge["alerts"], bridge["processes"]

    # No worker runs: the web processes are the ones to say so.
    text = alerts.wait_for("no_worker", "problem")
    assert "deliveries are accepted and stored, but no lead reaches LionDesk" in text and f"{PUBLIC}/admin/" in text

    # A lead is accepted, and waits with nothing to relay it: the backlog alert.
    first = deliver(bridge, first_name="Ana")
    assert "(1 waiting)" in alerts.wait_for("backlog", "problem")

    # Redis nearly full, then given room.
    previous = conn.config_get("maxmemory")["maxmemory"]
    try:
        conn.config_set("maxmemory", int(int(conn.info("memory")["used_memory"]) / 0.75))
        assert "(alert at 50 %)" in alerts.wait_for("redis_memory", "problem")
    finally:
        conn.config_set("maxmemory", previous)
    alerts.wait_for("redis_memory", "recovery")

    # LionDesk down as a worker starts: the worker is back, the backlog moves onto the retry ladder,
    # and every LionDesk call fails.
    sandbox.control("POST", "faults", service="liondesk", outage=True)
    worker = processes.start("worker", procfile_command("worker"), bridge["env"])
    alerts.wait_for("no_worker", "recovery")
    # The bridge's beat can come before RQ's own registration: wait for that, not just the alert.
    wait_until(lambda: Worker.count(connection=conn) == 1, message="the worker's registration with RQ")
    assert worker.poll() is None
    assert "Every LionDesk call has failed" in alerts.wait_for("liondesk_failing", "problem")
    alerts.wait_for("backlog", "recovery")

    # LionDesk back: the lead goes through on its next attempt.
    assert Job.fetch(event_job_id(first["event_id"]), connection=conn).get_status() != "failed", \
        "the first lead ran out of retries during the outage: no LionDesk call is left to succeed"
    sandbox.control("POST", "faults", service="liondesk", outage=None)
    alerts.wait_for("liondesk_failing", "recovery")
    wait_until(lambda: any(e["kind"] == "processed" for e in history.read(conn, first["id"])), timeout=60,
               message="the first lead to be processed")

    # LionDesk refuses one lead for good.
    sandbox.control("POST", "faults", service="liondesk", fail_next=1, fail_next_status=422)
    refused = deliver(bridge, first_name="Noah", last_name="Refused")
    text = alerts.wait_for("lead_failed", "problem")
    assert f"lead {refused['id']} (Noah Refused)" in text and f"{PUBLIC}/admin/failed" in text
    cli(bridge, "jobs", "dismiss", event_job_id(refused["event_id"]), "--reason", "test lead")
    alerts.wait_for("lead_failed", "recovery")

    # LionDesk revokes the bridge's grant; support connects it again.
    sandbox.control("POST", "faults", revoke_refresh_tokens=True, expire_access_tokens=True)
    deliver(bridge, first_name="Kai")
    text = alerts.wait_for("liondesk_auth", "problem")
    assert "LionDesk needs re-authorisation" in text and "invalid_grant" in text
    redirect_uri = bridge["env"]["LIONDESK_REDIRECT_URI"]
    consent = requests.get(f"{sandbox.url}/liondesk/oauth2/authorize", allow_redirects=False, timeout=10,
                           params={"response_type": "code", "client_id": bridge["env"]["LIONDESK_CLIENT_ID"],
                                   "redirect_uri": redirect_uri})
    code = parse_qs(urlparse(consent.headers["Location"]).query)["code"][0]
    cli(bridge, "liondesk", "authorize", "--code", code)
    alerts.wait_for("liondesk_auth", "recovery")

    # Nothing more to say, however many more times the conditions are evaluated.
    ticks_pass(conn, 5)
    seen = alerts.seen()
    assert sorted(seen) == sorted((title, kind) for title in TITLES.values() for kind in ("problem", "recovery")), seen
    for title in TITLES.values():
        assert seen.index((title, "problem")) < seen.index((title, "recovery")), title
