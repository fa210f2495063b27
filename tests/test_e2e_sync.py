"""Real Geeks → LionDesk sync end to end: the Procfile's gunicorn `web`, four `worker`
processes, a real Redis and the sandbox in a process of its own, all talking HTTP on 127.0.0.1.

One set of processes serves the whole module (starting them is most of the cost). Every
test starts from a fresh sandbox and a bridge that has forgotten its LionDesk tokens and
cached reference data (as after switching LionDesk accounts), and uses new lead ids.
Retries wait 1 s instead of the production ladder's minutes, with as many steps.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest
import requests
from rq import Worker
from rq.job import Job
from rq.registry import FailedJobRegistry

from bridge import defaults
from bridge.clients.liondesk import REFERENCE_PATHS
from bridge.clients.oauth import OK, auth_state
from bridge.intake.signature import ACTION_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from bridge.sandbox.sample import body_of, sample_lead
from bridge.storage import history, keys, mappings
from bridge.storage.redis import connect
from tests.conftest import delete_run_keys
from tests.support import (ROOT, Processes, forward_environment, procfile_command, start_web,
                           start_sandbox_process, wait_until)
from bridge.queue import event_job_id, event_queue

pytestmark = pytest.mark.e2e

WORKERS = 4
RETRY_INTERVALS = ",".join(["1"] * len(defaults.RETRY_INTERVALS_SECONDS))
"""The production ladder's number of steps, one second each."""

CREATES = {("POST", "/liondesk/contacts"), ("POST", "/liondesk/leads")}


class Stack:
    """The running bridge (web + workers), its Redis and the sandbox, driven like Real Geeks and support would."""

    def __init__(self, processes: Processes, sandbox, conn, base_url: str, secret: str, env: dict):
        self.processes, self.sandbox, self.conn = processes, sandbox, conn
        self.base_url, self.secret, self.env = base_url, secret, env
        self.session = requests.Session()

    # -- Real Geeks ---------------------------------------------------------------------------

    def post(self, body: bytes, headers: dict | None = None, session=None) -> requests.Response:
        """POST one signed delivery body to the web process."""
        all_headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, self.secret), **(headers or {})}
        return (session or self.session).post(f"{self.base_url}/webhooks/realgeeks", data=body,
                                              headers=all_headers, timeout=10)

    def deliver(self, payload: dict, headers: dict | None = None, expect: int = 200) -> dict:
        """Deliver one payload and return the intake's answer."""
        response = self.post(body_of(payload), headers)
        assert response.status_code == expect, response.text
        return response.json()

    def deliver_at_once(self, bodies: list[bytes]) -> list[dict]:
        """POST every body from its own thread, all released together; return the answers in order."""
        barrier = threading.Barrier(len(bodies))

        def send(body):
            with requests.Session() as session:
                barrier.wait(timeout=10)
                return self.post(body, session=session)

        with ThreadPoolExecutor(len(bodies)) as pool:
            responses = list(pool.map(send, bodies))
        assert [r.status_code for r in responses] == [200] * len(bodies), [r.text for r in responses]
        return [r.json() for r in responses]

    # -- the bridge's own records -------------------------------------------------------------

    def kinds(self, lead_id: str) -> list[str]:
        """The kinds of a lead's history entries, oldest first."""
        return [entry["kind"] for entry in history.read(self.conn, lead_id)]

    def wait_processed(self, expected: dict[str, int], timeout: float = 60.0, failures_since: float = 0.0) -> None:
        """Wait until each lead's history shows the expected number of processed events;
        fail at once when one of their jobs ends in the failed store (after `failures_since`)."""
        missing = {}

        def all_processed():
            missing.clear()
            stories = {lead: history.read(self.conn, lead) for lead in expected}
            failed = {lead: entry.get("error") for lead, story in stories.items() for entry in story
                      if entry["kind"] == "attempt_failed" and entry.get("outcome") == "failed"
                      and entry["at"] >= failures_since}
            assert not failed, f"jobs ended in the failed store: {failed}"
            for lead, count in expected.items():
                done = sum(entry["kind"] == "processed" for entry in stories[lead])
                if done < count:
                    missing[lead] = f"{done}/{count}"
            return not missing

        try:
            wait_until(all_processed, timeout=timeout, interval=0.1, message="events to be processed")
        except AssertionError as exc:
            if not missing:
                raise
            raise AssertionError(f"{exc}; leads still short of processed events: {missing}") from None

    def failed_job_ids(self) -> list[str]:
        """Ids of the event jobs in RQ's failed store."""
        return FailedJobRegistry(queue=event_queue(self.conn)).get_job_ids()

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        """Run the real `bridge` command line with the workers' environment."""
        result = subprocess.run([sys.executable, "-m", "bridge.cli", *args], cwd=ROOT, env={**os.environ, **self.env},
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return result

    # -- LionDesk, as the sandbox saw it ------------------------------------------------------

    def contacts(self) -> list[dict]:
        """Every contact in the sandbox's LionDesk."""
        return self.sandbox.control("GET", "liondesk/contacts")["data"]

    def leads(self) -> list[dict]:
        """Every lead in the sandbox's LionDesk."""
        return self.sandbox.control("GET", "liondesk/leads")["data"]

    def calls(self, since: int = 0) -> list[dict]:
        """LionDesk v2 calls after sequence number `since`."""
        return self.sandbox.calls(since, service="liondesk")

    def reset(self) -> None:
        """A fresh sandbox, and a bridge that forgot the old account's tokens, reference data and contact links."""
        self.sandbox.control("POST", "reset")
        # The fresh sandbox numbers contacts from 1 again: links to the old ones would name new people.
        stale = list(self.conn.scan_iter(keys.contact_mapping("*")))
        if stale:
            self.conn.delete(*stale)
        self.conn.delete(keys.liondesk_tokens(), keys.liondesk_auth_state(), keys.liondesk_rate_limiter(),
                         keys.liondesk_contact_search(),
                         *[keys.liondesk_reference(kind) for kind in REFERENCE_PATHS],
                         *[keys.liondesk_reference_fresh(kind) for kind in REFERENCE_PATHS])


def counted(calls: list[dict]) -> Counter:
    """How many calls each (method, path template) received."""
    return Counter((call["method"], call["template"]) for call in calls)


def one_contact_and_lead_per_lead(stack: Stack, payloads: list[dict]) -> None:
    """Assert LionDesk holds exactly one contact per lead (by e-mail) and one LionDesk lead per contact."""
    contacts = stack.contacts()
    by_email = Counter(contact["email"].casefold() for contact in contacts)
    assert by_email == Counter(p["email"].casefold() for p in payloads), "one contact per lead, nothing else"
    leads_per_contact = Counter(lead["contact_id"] for lead in stack.leads())
    assert leads_per_contact == Counter({contact["id"]: 1 for contact in contacts})
    for payload in payloads:
        link = mappings.load_link(stack.conn, payload["id"])
        contact = next(c for c in contacts if c["email"].casefold() == payload["email"].casefold())
        assert link.contact_id == str(contact["id"])


@pytest.fixture(scope="module")
def stack(tmp_path_factory, redis_url):
    """Sandbox, gunicorn and WORKERS worker processes, started once for the module."""
    processes = Processes(tmp_path_factory.mktemp("e2e-sync"))
    conn = connect(redis_url)
    try:
        sandbox = start_sandbox_process(processes)
        secret = secrets.token_hex(16)
        env = forward_environment(sandbox, redis_url, secret, RETRY_INTERVALS)
        base_url = start_web(processes, env, concurrency=2)
        before = {worker.name for worker in Worker.all(connection=conn)}
        workers = [processes.start(f"worker{n}", procfile_command("worker"), env) for n in range(WORKERS)]
        wait_until(lambda: len({w.name for w in Worker.all(connection=conn)} - before) >= WORKERS
                   or any(w.poll() is not None for w in workers), timeout=60, message=f"{WORKERS} workers to register")
        assert all(w.poll() is None for w in workers), processes.log_of("worker0")
        wait_until(lambda: _answers(f"{base_url}/healthz"), timeout=60, message="web healthy")
        yield Stack(processes, sandbox, conn, base_url, secret, env)
    finally:
        processes.stop_all()
        delete_run_keys(conn)
        conn.close()


def _answers(url: str) -> bool:
    """Whether `url` answers 200."""
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture
def e2e(stack):
    """The module's stack, reset for this test."""
    stack.reset()
    yield stack


# -- the checks of the issue --------------------------------------------------------------------


def test_twenty_simultaneous_deliveries_of_one_new_lead_make_one_contact_and_one_lead(e2e):
    payload = sample_lead()
    # Twenty different bodies of the same lead: identical ones would stop at the intake's dedupe.
    bodies = [json.dumps(payload, indent=n).encode() for n in range(20)]
    assert len(set(bodies)) == 20
    since = e2e.sandbox.last_seq()
    answers = e2e.deliver_at_once(bodies)
    e2e.wait_processed({payload["id"]: 20})

    assert len(e2e.contacts()) == 1 and len(e2e.leads()) == 1
    creates = {key: n for key, n in counted(e2e.calls(since)).items() if key in CREATES}
    assert creates == {("POST", "/liondesk/contacts"): 1, ("POST", "/liondesk/leads"): 1}
    assert len(e2e.sandbox.control("GET", "liondesk/tasks")["data"]) == 1  # the sign-up activity, once
    jobs = Job.fetch_many([event_job_id(answer["event_id"]) for answer in answers], connection=e2e.conn)
    assert len({job.worker_name for job in jobs}) > 1, "the jobs should have been shared by several workers"
    assert e2e.failed_job_ids() == []


def test_a_redelivery_makes_no_liondesk_call(e2e):
    payload = sample_lead()
    e2e.deliver(payload)
    e2e.wait_processed({payload["id"]: 1})
    since = e2e.sandbox.last_seq()

    assert e2e.deliver(payload, expect=200)["status"] == "duplicate"  # the same bytes: stopped at the intake
    e2e.post(json.dumps(payload, indent=2).encode())  # the same lead in other bytes: reaches a worker
    e2e.wait_processed({payload["id"]: 2})
    assert e2e.calls(since) == []
    assert len(e2e.contacts()) == 1 and len(e2e.leads()) == 1


def test_updated_before_created_makes_one_contact_with_the_newer_values(e2e):
    created = sample_lead(last_name="Older")
    updated = {**created, "action": "updated", "last_name": "Newer"}
    now = datetime.now(timezone.utc)
    stamp = lambda moment: moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # noqa: E731
    e2e.deliver(updated, headers={TIMESTAMP_HEADER: stamp(now), ACTION_HEADER: "updated"})
    e2e.wait_processed({created["id"]: 1})
    e2e.deliver(created, headers={TIMESTAMP_HEADER: stamp(now - timedelta(seconds=5)), ACTION_HEADER: "created"})
    e2e.wait_processed({created["id"]: 2})

    (contact,) = e2e.contacts()
    assert contact["last_name"] == "Newer"  # the late `created` is older than the update applied
    (lead,) = e2e.leads()
    assert lead["contact_id"] == contact["id"]
    kinds = e2e.kinds(created["id"])
    assert "update_before_create" in kinds and "stale_update_skipped" in kinds


@pytest.mark.parametrize("matched_by", ["email", "mobile_phone"])
def test_an_existing_contact_is_matched_not_duplicated(e2e, matched_by):
    digits = f"808{secrets.randbelow(8_000_000) + 2_000_000}"
    if matched_by == "email":
        payload = sample_lead(phone="")
        existing = {"email": payload["email"].upper()}  # LionDesk kept the agent's casing
    else:
        payload = sample_lead(email="", phone=f"{digits[:3]}-{digits[3:6]}-{digits[6:]}")
        existing = {"mobile_phone": f"+1 {digits[:3]}.{digits[3:6]}.{digits[6:]}"}  # the agent's own format
    contact_id = e2e.sandbox.control("POST", "liondesk/contacts", first_name="Existing", **existing)["id"]
    since = e2e.sandbox.last_seq()
    e2e.deliver(payload)
    e2e.wait_processed({payload["id"]: 1})

    (contact,) = e2e.contacts()
    assert contact["id"] == contact_id and contact["first_name"] == "Existing"  # someone's: never overwritten
    assert contact["last_name"] == payload["last_name"]  # empty: filled
    assert ("POST", "/liondesk/contacts") not in counted(e2e.calls(since))
    assert mappings.load_link(e2e.conn, payload["id"]).contact_id == str(contact_id)
    (lead,) = e2e.leads()
    assert lead["contact_id"] == contact_id
    matched = [e for e in history.read(e2e.conn, payload["id"]) if e["kind"] == "contact_linked"]
    assert [e["matched_by"] for e in matched] == [matched_by]


def test_access_tokens_expiring_mid_run_are_refreshed_and_rotated_without_losing_the_grant(e2e):
    first, payloads = sample_lead(), [sample_lead() for _ in range(24)]
    e2e.deliver(first)  # the first token pair, from the configured refresh token
    e2e.wait_processed({first["id"]: 1})
    since = e2e.sandbox.last_seq()
    refreshes_before = e2e.sandbox.control("GET", "state")["tokens"]["refreshes"]

    # Every EXPIRE_EVERY LionDesk calls, every access token expires at the sandbox while
    # four workers share the grant: each expiry means 401s, one refresh under the lock,
    # and a rotated refresh token that every process must pick up from Redis.
    expire_every, done, expiries = 15, threading.Event(), []

    def expire_repeatedly():
        last = since
        while not done.wait(0.02):
            seq = e2e.sandbox.last_seq()
            if seq - last >= expire_every:
                e2e.sandbox.control("POST", "faults", expire_access_tokens=True)
                expiries.append(seq)
                last = seq

    expirer = threading.Thread(target=expire_repeatedly, daemon=True)
    expirer.start()
    try:
        e2e.deliver_at_once([body_of(p) for p in payloads])
        e2e.wait_processed({p["id"]: 1 for p in payloads}, timeout=90)
    finally:
        done.set()
        expirer.join()

    one_contact_and_lead_per_lead(e2e, [first, *payloads])
    calls = e2e.calls(since)
    token_calls = [c for c in calls if c["template"] == "/liondesk/oauth2/token"]
    assert [c["status"] for c in token_calls] == [200] * len(token_calls), "a refresh was refused (invalid_grant)"
    assert len(expiries) >= 3 and sum(c["status"] == 401 for c in calls) >= 3, "tokens did not expire mid-run"
    refreshes = e2e.sandbox.control("GET", "state")["tokens"]["refreshes"] - refreshes_before
    assert 3 <= refreshes <= len(expiries) + 1  # one refresh per expiry, not one per worker or per 401
    assert auth_state(e2e.conn)["state"] == OK
    assert e2e.failed_job_ids() == []


def test_a_fifth_of_calls_failing_with_429_or_5xx_still_completes_every_lead(e2e):
    e2e.sandbox.control("POST", "liondesk/preset/demo")  # a route: campaign start and offers are effects too
    payloads = [sample_lead(source=("Website Property Search", "Website Property Valuation")[n % 2])
                for n in range(30)]
    warm_up = sample_lead(source="Website Property Search")  # tokens and reference caches, before the faults
    e2e.deliver(warm_up)
    e2e.wait_processed({warm_up["id"]: 1})
    e2e.sandbox.control("POST", "faults", service="liondesk", error_rate=0.1, rate_limit_rate=0.1, seed=20)
    since = e2e.sandbox.last_seq()
    e2e.deliver_at_once([body_of(p) for p in payloads])
    e2e.wait_processed({p["id"]: 1 for p in payloads}, timeout=120)
    e2e.sandbox.control("POST", "faults", clear=True)

    calls = e2e.calls(since)
    faults = Counter(call["fault"] for call in calls if call["fault"])
    assert faults["error"] and faults["rate_limit"], f"faults injected: {faults}"
    one_contact_and_lead_per_lead(e2e, [warm_up, *payloads])
    enrolments = Counter(e["contact_id"] for e in e2e.sandbox.control("GET", "liondesk/campaign-enrolments")["data"])
    assert enrolments == Counter({contact["id"]: 1 for contact in e2e.contacts()})  # both routes start a campaign
    offers = [c for c in calls if (c["method"], c["template"]) == ("POST", "/liondesk/leads/{lead_id}/offers")
              and c["status"] < 300]
    assert len(offers) == len(payloads) // 2  # the team-rollout half, once each
    assert e2e.failed_job_ids() == []


def test_an_outage_fills_the_failed_store_and_a_replay_after_recovery_completes_each_lead_once(e2e):
    payloads = [sample_lead() for _ in range(5)]
    e2e.sandbox.control("POST", "faults", service="liondesk", outage=True)
    for payload in payloads:
        e2e.deliver(payload)
    failed_jobs = lambda: [j for j in json.loads(e2e.cli("jobs", "failed", "--json").stdout)  # noqa: E731
                           if j["lead_id"] in {p["id"] for p in payloads}]
    wait_until(lambda: len(failed_jobs()) == len(payloads), timeout=90, interval=1,
               message="every job to exhaust its retries into the failed store")
    failed = failed_jobs()
    assert [job["attempts"] for job in failed] == [len(defaults.RETRY_INTERVALS_SECONDS) + 1] * len(payloads)
    assert e2e.contacts() == []

    e2e.sandbox.control("POST", "faults", service="liondesk", outage=None)
    replayed_at = time.time()
    replayed = json.loads(e2e.cli("jobs", "replay", "--all", "--yes", "--json").stdout)
    assert sorted(r["job_id"] for r in replayed if r["replayed"]) == sorted(job["id"] for job in failed)
    e2e.wait_processed({p["id"]: 1 for p in payloads}, failures_since=replayed_at)
    one_contact_and_lead_per_lead(e2e, payloads)
    assert e2e.failed_job_ids() == []
