"""Real Geeks as it really behaves, end to end: the Procfile's gunicorn `web` and `worker` processes,
a real Redis and the sandbox (Real Geeks' Outgoing webhooks and Incoming API, LionDesk) over 127.0.0.1.

Each test drives the situation of issue 12 that it names; the stack is the reverse-sync one
(`tests/test_reverse_e2e.py`: web, one worker polling LionDesk every second).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import requests

from bridge.sandbox.sample import sample_lead
from bridge.storage import history, mappings
from tests.support import ROOT, signed_post, wait_until
from tests.test_reverse_e2e import stack  # noqa: F401 - the fixture

pytestmark = pytest.mark.e2e

PERSON = ("first_name", "last_name", "email", "mobile_phone", "home_phone")


def deliver(stack, payload: dict, secret: str) -> None:  # noqa: F811 - `stack` is the fixture's value
    """POST one signed delivery to the web process, as Real Geeks does."""
    with requests.Session() as session:
        response = signed_post(session, f"http://127.0.0.1:{stack.port}/webhooks/realgeeks", payload, secret)
    assert response.status_code in (200, 202), response.text


def linked(stack, lead_id: str) -> dict:  # noqa: F811
    """Wait until the lead's first delivery is processed and it has a contact; return its link."""
    wait_until(lambda: stack.processed(lead_id) >= 1 and mappings.load_link(stack.conn, lead_id).linked,
               message=f"lead {lead_id} to reach LionDesk")
    return mappings.load_link(stack.conn, lead_id)


@pytest.mark.parametrize("how", ["email in another case", "shared phone"])
def test_a_takeover_attempt_leaves_the_victims_contact_alone_and_agent_edits_reach_only_the_victim(
        stack, webhook_secret, how):  # noqa: F811
    sandbox, conn = stack.sandbox, stack.conn
    victim = sample_lead(first_name="Vera", last_name="Victim", phone="808-555-0101")
    sandbox.control("POST", "realgeeks/leads", **victim)  # a website sign-up, sent to the bridge
    contact_id = linked(stack, victim["id"]).contact_id
    before = sandbox.control("GET", f"liondesk/contacts/{contact_id}")

    if how == "shared phone":  # a family member, or anyone who knows the number
        impostor = sample_lead(first_name="Mallory", last_name="Impostor", phone="(808) 555-0101")
    else:
        impostor = sample_lead(first_name="Mallory", last_name="Impostor", email=victim["email"].swapcase(),
                               phone="808-555-0666")
    deliver(stack, impostor, webhook_secret)
    assert linked(stack, impostor["id"]).contact_id == contact_id  # shares it, does not get a copy
    after = sandbox.control("GET", f"liondesk/contacts/{contact_id}")
    assert {key: after.get(key) for key in PERSON} == {key: before.get(key) for key in PERSON}
    assert mappings.lead_of_contact(conn, contact_id) == victim["id"]
    assert len(sandbox.control("GET", "liondesk/contacts")["data"]) == 1
    assert any(e["kind"] == "second_lead_matched" and e["other_lead"] == impostor["id"]
               for e in history.read(conn, victim["id"]))

    # The agent corrects the victim's details in LionDesk: they reach the victim's lead only.
    since_rg, edited_at = stack.last_realgeeks_write(), time.time()
    sandbox.control("PATCH", f"liondesk/contacts/{contact_id}", first_name="Veronica")
    stack.wait_for_poll_started_after(edited_at)
    writes = stack.realgeeks_writes(since_rg)
    assert writes and all(write["lead_id"] == victim["id"] for write in writes), writes
    assert [write["body"] for write in writes] == [{"first_name": "Veronica"}]


BAD_VALUES = {
    "beds": ({"activities": [{"type": "property_viewed", "source": "Website", "description": "Viewed",
                              "property": {"street_address": "1 Main St", "beds": "", "full_baths": 2.5}}]},
             "activities[0].property.beds"),
    "tags": ({"tags": "", "activities": [{"type": "property_viewed", "source": "Website", "description": "Viewed",
                                          "property": {"street_address": "1 Main St", "tags": 7}}]},
             "activities[0].property.tags"),
    "listing_price": ({"activities": [{"type": "property_viewed", "source": "Website", "description": "Viewed",
                                       "property": {"street_address": "1 Main St",
                                                    "listing_price": "Call for price"}}]},
                      "activities[0].property.listing_price"),
    "user e-mail": ({"activities": [{"type": "was_assigned", "source": "LeadManager", "description": "Assigned",
                                     "user": {"id": "14187", "email": "jack@music.com, jill@music.com"}}]},
                    "activities[0].user.email"),
}


@pytest.mark.parametrize("bad", sorted(BAD_VALUES))
def test_a_lead_with_a_bad_nested_value_syncs_the_rest_with_a_note(stack, webhook_secret, bad):  # noqa: F811
    extra, path = BAD_VALUES[bad]
    payload = sample_lead(**extra)
    deliver(stack, payload, webhook_secret)
    contact_id = linked(stack, payload["id"]).contact_id
    contact = stack.sandbox.control("GET", f"liondesk/contacts/{contact_id}")
    assert contact["email"] == payload["email"] and contact["first_name"] == payload["first_name"]
    (dropped,) = [e for e in history.read(stack.conn, payload["id"]) if e["kind"] == "fields_dropped"]
    assert [note.split(":")[0] for note in dropped["fields"]] == [path]
    assert stack.sandbox.control("GET", "liondesk/leads")["data"], "the LionDesk lead was made too"
    if bad == "beds":  # a count that is not whole keeps its value on the timeline
        assert any("2.5 ba" in task["description"] for task in stack.sandbox.control("GET", "liondesk/tasks")["data"])


def test_an_assignment_naming_only_the_user_id_is_resolved_and_an_unknown_id_unassigns_nobody(
        stack, webhook_secret):  # noqa: F811
    sandbox, conn = stack.sandbox, stack.conn
    by_id = {"type": "was_assigned", "source": "Other CRM", "user": {"id": "14188"},  # Casey, by id only
             "created": "2026-11-01T10:00:00.5Z"}
    payload = sample_lead(agent_email="dana@example.com", activities=[by_id])  # agent_email: deprecated, ignored
    deliver(stack, payload, webhook_secret)
    contact_id = linked(stack, payload["id"]).contact_id
    casey = next(u for u in sandbox.control("GET", "liondesk/users")["data"] if u["email"] == "casey@example.com")
    assert sandbox.control("GET", f"liondesk/contacts/{contact_id}")["assigned_user_id"] == casey["id"]

    unknown = {**by_id, "user": {"id": "99999"}, "created": "2026-11-02T10:00:00Z"}
    deliver(stack, {"action": "activity_added", "id": payload["id"], "site_uuid": payload["site_uuid"],
                    "activities": [unknown]}, webhook_secret)
    wait_until(lambda: stack.processed(payload["id"]) >= 2, message="the activity_added to be processed")
    assert sandbox.control("GET", f"liondesk/contacts/{contact_id}")["assigned_user_id"] == casey["id"]
    (unresolved,) = [e for e in history.read(conn, payload["id"]) if e["kind"] == "assignment_unresolved"]
    assert unresolved["user_id"] == "99999"


@pytest.mark.parametrize("paths", ["v2/rest", "rest/v2"])
def test_an_agent_clearing_a_phone_in_liondesk_clears_it_in_real_geeks(stack, paths):  # noqa: F811
    sandbox, conn = stack.sandbox, stack.conn
    sandbox.control("POST", "settings", realgeeks_v2_paths=paths)  # only one published form answers
    payload = sample_lead(phone2="808-555-0142")
    sandbox.control("POST", "realgeeks/leads", **payload)
    contact_id = linked(stack, payload["id"]).contact_id
    wait_until(lambda: sandbox.control("GET", f"liondesk/contacts/{contact_id}").get("home_phone"),
               message="the second phone to reach LionDesk")

    since_rg, edited_at = stack.last_realgeeks_write(), time.time()
    sandbox.control("PATCH", f"liondesk/contacts/{contact_id}", home_phone="", first_name="Kept")
    stack.wait_for_poll_started_after(edited_at)
    writes = [(w["method"], w["path"].split("/sites/")[0], w["body"], w["status"])
              for w in stack.realgeeks_writes(since_rg)]
    unset_base = "/realgeeks/v2/rest" if paths == "v2/rest" else "/realgeeks/rest"
    assert ("PATCH", "/realgeeks/rest", {"first_name": "Kept"}, 200) in writes  # a set: the documented PATCH
    assert ("PATCH", unset_base, {"phone2": ""}, 200) in writes  # a clear: the v2 PATCH that answers
    lead = sandbox.control("GET", f"realgeeks/leads/{payload['id']}")
    assert "phone2" not in lead and lead["first_name"] == "Kept"

    # Real Geeks' echo (phone2 "") finds nothing to do, and the cleared phone is not written back.
    stack.echoes_handled(payload["id"], before=1)
    stack.wait_for_poll_started_after(time.time())
    assert not sandbox.control("GET", f"liondesk/contacts/{contact_id}").get("home_phone")
    assert "phone2" not in sandbox.control("GET", f"realgeeks/leads/{payload['id']}")
    assert mappings.get_snapshot(conn, payload["id"])["phone2"] == ""


FOLLOW_UP_EVENT = {"id": "8c2b7a1e-4f7d-4c39-9a51-0d6c1f3e2b10", "title": "Call about the open house",
                   "description": "Ask about financing", "happens_at": "2026-12-10T18:30:00Z", "purpose": "Call",
                   "all_day": False, "reminders": [{"time_before": "15", "unit": "minutes"}]}


def test_a_follow_up_becomes_an_open_task_and_is_completed_when_real_geeks_completes_it(
        stack, webhook_secret):  # noqa: F811
    sandbox = stack.sandbox
    payload = sample_lead()
    deliver(stack, payload, webhook_secret)
    contact_id = linked(stack, payload["id"]).contact_id
    # As on the follow-ups page: no source, no description on the activity itself.
    created = {"type": "created_a_followup_for", "user": {"id": "14188"}, "created": "2026-12-01T10:00:00Z",
               "metadata": {"event": FOLLOW_UP_EVENT}}
    deliver(stack, {"action": "activity_added", "id": payload["id"], "site_uuid": payload["site_uuid"],
                    "activities": [created]}, webhook_secret)
    wait_until(lambda: stack.processed(payload["id"]) >= 2, message="the follow-up to be processed")

    def follow_up_tasks():
        return [t for t in sandbox.control("GET", "liondesk/tasks")["data"]
                if t["contact_id"] == int(contact_id) and t["description"].startswith("Call about the open house")]

    (task,) = follow_up_tasks()
    casey = next(u for u in sandbox.control("GET", "liondesk/users")["data"] if u["email"] == "casey@example.com")
    assert task["status"] == "incomplete" and task["due_at"].startswith("2026-12-10T18:30:00")
    assert "Ask about financing" in task["description"] and task["assigned_user_id"] == casey["id"]
    assert "Purpose: Call" in task["description"]

    completed = {**created, "type": "completed_a_followup_for", "created": "2026-12-10T19:00:00Z"}
    deliver(stack, {"action": "activity_added", "id": payload["id"], "site_uuid": payload["site_uuid"],
                    "activities": [completed]}, webhook_secret)
    wait_until(lambda: stack.processed(payload["id"]) >= 3, message="the completion to be processed")
    (task,) = follow_up_tasks()
    assert task["status"] == "complete"
    kinds = [e["kind"] for e in history.read(stack.conn, payload["id"])]
    assert kinds.count("followup_created") == 1 and kinds.count("followup_completed") == 1


def test_a_potential_seller_lead_reaches_liondesk_with_its_property_and_estimated_value(
        stack, webhook_secret):  # noqa: F811
    valuation = {"type": "property_viewed", "source": "Website Property Valuation",
                 "description": "Requested a home valuation", "created": "2026-12-01T10:00:00Z",
                 "property": {"street_address": "45 Kainui Dr", "city": "Kailua", "state": "HI", "zip": "96734",
                              "estimated_value": "1250000.00", "last_sold_price": "890000"}}
    payload = sample_lead(action="New Potential Seller Lead", source="Website Property Valuation", role="",
                          activities=[valuation])
    payload.pop("role")
    with requests.Session() as session:  # the request type names it: the action string is unpublished
        response = signed_post(session, f"http://127.0.0.1:{stack.port}/webhooks/realgeeks", payload,
                               webhook_secret, action="New Potential Seller Lead")
    assert response.status_code in (200, 202) and response.json()["status"] == "queued", response.text
    contact_id = linked(stack, payload["id"]).contact_id
    (lead,) = [lead for lead in stack.sandbox.control("GET", "liondesk/leads")["data"]
               if lead["contact_id"] == int(contact_id)]
    assert (lead["street_address"], lead["city"], str(lead["zipcode"])) == ("45 Kainui Dr", "Kailua", "96734")
    assert "Estimated value: $1,250,000.00" in lead["text_body"] and "Role: Potential Seller" in lead["text_body"]
    assert lead["type"] == "Seller"


def test_a_status_change_after_creation_reaches_the_liondesk_lead_and_the_timeline(
        stack, webhook_secret):  # noqa: F811
    sandbox = stack.sandbox
    payload = sample_lead(status="Active", timeframe="3-6 Months")
    deliver(stack, payload, webhook_secret)
    contact_id = linked(stack, payload["id"]).contact_id
    deliver(stack, {**payload, "action": "updated", "status": "Dead", "notes": "Bought elsewhere"}, webhook_secret)
    wait_until(lambda: stack.processed(payload["id"]) >= 2, message="the update to be processed")
    (lead,) = [lead for lead in sandbox.control("GET", "liondesk/leads")["data"]
               if lead["contact_id"] == int(contact_id)]
    assert "Status: Dead" in lead["text_body"] and "Notes: Bought elsewhere" in lead["text_body"]
    assert "Timeframe: 3-6 Months" in lead["text_body"]
    notes = [t["description"] for t in sandbox.control("GET", "liondesk/tasks")["data"]
             if "lead details changed" in t["description"]]
    assert len(notes) == 1 and "Status: Dead (was Active)" in notes[0] and "Notes: Bought elsewhere" in notes[0]


def _health(stack) -> dict:  # noqa: F811
    """The web process's /healthz answer."""
    return requests.get(f"http://127.0.0.1:{stack.port}/healthz", timeout=5).json()


def _cli(stack, *args: str) -> str:  # noqa: F811
    """The `bridge` command line as support runs it; its output."""
    result = subprocess.run([sys.executable, "-m", "bridge.cli", *args], cwd=ROOT,
                            env={**os.environ, **stack.env}, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("first", ["activity_added", "identity-less updated"])
def test_a_lead_first_seen_without_its_details_waits_then_is_applied_once_after_created(
        stack, webhook_secret, first):  # noqa: F811
    sandbox, conn = stack.sandbox, stack.conn
    payload = sample_lead(activities=[], timeframe="1 Week")
    if first == "activity_added":
        early = {"action": "activity_added", "id": payload["id"], "site_uuid": payload["site_uuid"],
                 "activities": [{"type": "property_viewed", "source": "Website", "description": "Viewed 9 Early St",
                                 "created": "2026-11-01T10:00:00Z"}]}
    else:  # a site connected after go-live: an update that names nobody
        early = {"action": "updated", "id": payload["id"], "site_uuid": payload["site_uuid"], "source": "Website",
                 "timeframe": "1 Week", "status": "Active"}
    deliver(stack, early, webhook_secret)
    wait_until(lambda: stack.processed(payload["id"]) >= 1, message="the early delivery to be processed")
    assert sandbox.control("GET", "liondesk/contacts")["data"] == []  # no contact without name, e-mail or phone
    (entry,) = [e for e in history.read(conn, payload["id"]) if e["kind"] == "parked"]
    assert entry["detail"] == "waiting for Real Geeks to send this lead's details"
    assert _health(stack)["parked"]["deliveries"] == 1
    assert "waiting for Real Geeks to send this lead's details: 1 delivery(ies) of 1 lead(s)" in _cli(stack, "jobs",
                                                                                                      "stats")
    assert "Waiting for Real Geeks to send this lead's details" in _cli(stack, "lead", payload["id"])
    assert not any(e["kind"] == "attempt_failed" for e in history.read(conn, payload["id"]))  # not on the ladder

    deliver(stack, payload, webhook_secret)  # the lead's `created` arrives
    wait_until(lambda: stack.processed(payload["id"]) >= 2, message="the created delivery to be processed")
    (contact,) = sandbox.control("GET", "liondesk/contacts")["data"]
    assert contact["email"] == payload["email"]
    kinds = [e["kind"] for e in history.read(conn, payload["id"])]
    assert kinds.count("unparked") == 1 and kinds.index("contact_created") < kinds.index("unparked")
    if first == "activity_added":
        viewed = [t for t in sandbox.control("GET", "liondesk/tasks")["data"] if "Viewed 9 Early St" in t["description"]]
        assert len(viewed) == 1 and viewed[0]["contact_id"] == contact["id"]
    assert _health(stack)["parked"] == {"reason": "waiting for Real Geeks to send this lead's details",
                                        "leads": 0, "deliveries": 0, "oldest_age_seconds": None}
