"""The intake end to end: the Procfile's gunicorn `web`, a real Redis, the sandbox in a process of its
own and (for the tests that need one) a `worker` process, all over HTTP on 127.0.0.1.

Delivery identity (issue 12, item 1): identical bodies at different X-Lead-Router-Timestamps are
separate changes, applied in timestamp order; an exact redelivery is still one delivery; a stamp
outside the tolerance is ordered by receipt, and the story says so.
"""

from __future__ import annotations

import secrets
import time
from datetime import datetime, timezone

import pytest

from bridge import defaults
from bridge.intake.signature import ACTION_HEADER, TIMESTAMP_HEADER
from bridge.sandbox.sample import body_of, sample_lead
from bridge.storage import events, history, mappings
from bridge.storage.redis import connect
from tests.conftest import delete_run_keys
from tests.support import (Processes, forward_environment, procfile_command, start_sandbox_process, start_web,
                           wait_until)
from tests.test_e2e_sync import Stack

pytestmark = pytest.mark.e2e

METRICS_TOKEN = secrets.token_hex(16)


@pytest.fixture(scope="module")
def stack(tmp_path_factory, redis_url):
    """Sandbox and gunicorn (no worker yet: `worker` starts one), started once for the module."""
    processes = Processes(tmp_path_factory.mktemp("e2e-intake"))
    conn = connect(redis_url)
    try:
        sandbox = start_sandbox_process(processes)
        secret = secrets.token_hex(16)
        env = {**forward_environment(sandbox, redis_url, secret, "1,1,1,1,1,1"),
               "METRICS_TOKEN": METRICS_TOKEN}
        base_url = start_web(processes, env)
        yield Stack(processes, sandbox, conn, base_url, secret, env)
    finally:
        processes.stop_all()
        delete_run_keys(conn)
        conn.close()


@pytest.fixture(scope="module")
def worker(stack):
    """One `worker` process (relay, jobs) joined to the module's stack, registered and running."""
    from rq import Worker

    before = {w.name for w in Worker.all(connection=stack.conn)}
    process = stack.processes.start("worker", procfile_command("worker"), stack.env)
    wait_until(lambda: len({w.name for w in Worker.all(connection=stack.conn)} - before) >= 1
               or process.poll() is not None, timeout=60, message="the worker to register")
    assert process.poll() is None, stack.processes.log_of("worker")
    return process


def healthz(stack: Stack) -> dict:
    """The web process's /healthz answer (it must be 200)."""
    response = stack.session.get(f"{stack.base_url}/healthz", timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def metric(stack: Stack, name: str) -> float:
    """One unlabelled gauge from the web process's /metrics."""
    response = stack.session.get(f"{stack.base_url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"},
                                 timeout=10)
    assert response.status_code == 200, response.text
    (line,) = [line for line in response.text.splitlines() if line.startswith(name + " ")]
    return float(line.split()[1])


# -- issue 15, item 1: nothing accepted is invisible (these run before any worker starts) ---------


def test_with_no_worker_an_accepted_lead_is_findable_and_the_backlog_shows(stack):
    from bridge.ops import leads

    lead = sample_lead(first_name="Noelani", last_name="Kahale", phone="(808) 555-0150")
    before = healthz(stack)["intake"]["entries"]
    answer = stack.deliver(lead, expect=200)
    assert answer["status"] == "queued"

    story = history.read(stack.conn, lead["id"])
    assert [entry["kind"] for entry in story] == ["received"] and story[0]["event_id"] == answer["event_id"]
    for query in (lead["email"].upper(), "808.555.0150", "noelani kahale", lead["id"]):
        assert leads.search(stack.conn, query) == [lead["id"]], query
    intake = healthz(stack)["intake"]
    assert intake["entries"] == before + 1
    assert intake["oldest_age_seconds"] is not None and intake["oldest_age_seconds"] >= 0
    assert metric(stack, "bridge_intake_backlog") == before + 1


def test_a_worker_started_later_relays_the_backlog(stack, worker):
    wait_until(lambda: healthz(stack)["intake"]["entries"] == 0, timeout=60, message="the backlog to drain")
    assert healthz(stack)["intake"]["oldest_age_seconds"] is None
    assert metric(stack, "bridge_intake_backlog") == 0


# -- issue 12, item 1: delivery identity --------------------------------------------------------------


def stamp(seconds: float) -> str:
    """An X-Lead-Router-Timestamp for unix time `seconds`, nine fractional digits as Real Geeks sends."""
    whole = int(seconds)
    text = datetime.fromtimestamp(whole, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{round((seconds - whole) * 1e9):09d}Z"


def contact_of(stack: Stack, lead_id: str) -> dict:
    """The LionDesk contact the lead is linked to, as the sandbox holds it."""
    contact_id = str(mappings.load_link(stack.conn, lead_id).contact_id)
    (contact,) = [contact for contact in stack.contacts() if str(contact["id"]) == contact_id]
    return contact


def phone_patches(stack: Stack, since: int, contact_id: str) -> list[str]:
    """The phone each PATCH of the contact after call `since` set, in call order."""
    patched = []
    for call in stack.calls(since):
        if call["method"] == "PATCH" and call["path"].endswith(f"/contacts/{contact_id}"):
            body = call.get("body") or {}
            phones = [value for key, value in body.items() if "phone" in key and value]
            patched += phones
    return patched


def test_a_phone_changed_a_b_a_b_reaches_liondesk_each_time_and_a_redelivery_is_still_one(stack, worker):
    stack.reset()
    lead = sample_lead(phone="808-555-0100")
    start = time.time() - 60
    stack.deliver(lead, headers={TIMESTAMP_HEADER: stamp(start), ACTION_HEADER: "created"}, expect=200)
    stack.wait_processed({lead["id"]: 1})
    contact_id = mappings.load_link(stack.conn, lead["id"]).contact_id
    since = stack.sandbox.last_seq()

    a, b = "808-555-0111", "808-555-0122"
    bodies = {phone: body_of({"action": "updated", "id": lead["id"], "phone": phone}) for phone in (a, b)}
    sequence = [a, b, a, b]
    for n, phone in enumerate(sequence, start=1):
        headers = {TIMESTAMP_HEADER: stamp(start + n), ACTION_HEADER: "updated"}
        answer = stack.post(bodies[phone], headers)
        assert answer.status_code == 200 and answer.json()["status"] == "queued", answer.text
        stack.wait_processed({lead["id"]: 1 + n})
        if n == 2:  # Real Geeks delivering the second change again, byte for byte, header and all
            again = stack.post(bodies[phone], headers)
            assert again.status_code == 200 and again.json()["status"] == "duplicate", again.text

    patched = phone_patches(stack, since, contact_id)
    assert [p[-4:] for p in patched] == [p[-4:] for p in sequence], patched  # every change, in order
    contact = contact_of(stack, lead["id"])
    assert b[-4:] in str(contact.get("mobile_phone") or contact.get("home_phone")), contact
    story = history.read(stack.conn, lead["id"])
    assert sum(entry["kind"] == "received" for entry in story) == 5  # the redelivery added no delivery
    assert "stale_update_skipped" not in [entry["kind"] for entry in story]


def test_a_timestamp_outside_the_tolerance_is_ordered_by_receipt_and_the_story_says_so(stack, worker):
    stack.reset()
    lead = sample_lead(phone="808-555-0200")
    stack.deliver(lead, headers={ACTION_HEADER: "created"}, expect=200)
    stack.wait_processed({lead["id"]: 1})
    # A stamp days ahead (a wrong clock, or a forged header): trusted, it would make every
    # later real change look stale. Receipt time orders it instead...
    ahead = time.time() + 3 * 86400
    wrong = stack.deliver({"action": "updated", "id": lead["id"], "phone": "808-555-0211"},
                          headers={TIMESTAMP_HEADER: stamp(ahead), ACTION_HEADER: "updated"}, expect=200)
    stack.wait_processed({lead["id"]: 2})
    # ...so the next real change, stamped now, still applies.
    stack.deliver({"action": "updated", "id": lead["id"], "phone": "808-555-0222"},
                  headers={TIMESTAMP_HEADER: stamp(time.time()), ACTION_HEADER: "updated"}, expect=200)
    stack.wait_processed({lead["id"]: 3})

    contact = contact_of(stack, lead["id"])
    assert "0222" in str(contact.get("mobile_phone") or contact.get("home_phone")), contact
    event = events.load(stack.conn, wrong["event_id"])
    assert event.ordered_by == "receipt"
    (received,) = [entry for entry in history.read(stack.conn, lead["id"])
                   if entry["kind"] == "received" and entry["event_id"] == wrong["event_id"]]
    assert received["ordered_by"] == "receipt"
    assert "ahead of receipt" in received["order_note"]
    assert f"{defaults.REALGEEKS_TIMESTAMP_MAX_AHEAD_SECONDS / 60:.1f} minutes" in received["order_note"]
