"""LionDesk as it really behaves (issue 13), end to end: the Procfile's gunicorn `web`, worker
processes, a real Redis and the sandbox in its own process, with the sandbox's realistic settings.

The stack of tests/test_e2e_sync.py is reused (one set of processes per module); every test
starts from a fresh sandbox whose `/users` lists only the token holder, so every other agent
is known only through `/team-members`.
"""

from __future__ import annotations

import secrets

import pytest

from bridge.clients.liondesk import REFERENCE_PATHS
from bridge.sandbox.sample import sample_lead
from bridge.storage import history, keys, mappings
from tests.test_e2e_sync import counted, stack  # noqa: F401 - the module's processes

pytestmark = pytest.mark.e2e

DANA = {"id": "14189", "name": "Dana Kim", "email": "dana@example.com", "role": "Agent"}
"""A Real Geeks agent whose LionDesk user (3) holds no token for our app: known only as a team member."""


@pytest.fixture
def e2e(stack):  # noqa: F811 - the imported module fixture
    """The stack, reset: fresh sandbox, and a bridge that forgot tokens, reference data and channels."""
    stack.reset()
    stack.conn.delete(keys.liondesk_channels(), keys.liondesk_app_conflict(), keys.liondesk_reference("me"),
                      *[keys.liondesk_reference(kind) for kind in REFERENCE_PATHS])
    yield stack


def story(e2e, lead_id) -> list[dict]:
    """The lead's history entries."""
    return history.read(e2e.conn, lead_id)


def kinds(e2e, lead_id) -> list[str]:
    """The kinds of the lead's history entries."""
    return [entry["kind"] for entry in story(e2e, lead_id)]


def assigned_to_dana(created: str | None = None) -> dict:
    """A Real Geeks assignment activity naming Dana."""
    return {"type": "was_assigned", "source": "LeadManager", "description": "Lead was assigned to Dana",
            "user": DANA, "created": created or "2026-12-02T10:00:00.000000Z"}


def test_assignment_to_an_agent_known_only_through_team_members(e2e):
    users = e2e.sandbox.calls()
    payload = sample_lead(activities=[assigned_to_dana()])
    e2e.deliver(payload)
    e2e.wait_processed({payload["id"]: 1})
    (contact,) = e2e.contacts()
    assert contact["assigned_user_id"] == 3
    listed = [c for c in e2e.calls(users[-1]["seq"] if users else 0) if c["template"] == "/liondesk/users"]
    assert listed, "the bridge asked /users too"
    assert "agent_not_found" not in kinds(e2e, payload["id"])


def test_a_route_with_only_a_lead_source_starts_its_campaign_and_offers(e2e):
    e2e.sandbox.control("POST", "liondesk/lead-routes", lead_source="Website Property Search", campaign="Buyer Drip",
                        distribution_target="Team Rollout", team_selection_method="Specific Team",
                        team="Sandbox Team")
    payload = sample_lead()
    e2e.deliver(payload)
    e2e.wait_processed({payload["id"]: 1})
    (contact,) = e2e.contacts()
    enrolments = e2e.sandbox.control("GET", "liondesk/campaign-enrolments")["data"]
    assert [(e["campaign_id"], e["contact_id"]) for e in enrolments] == [(1, contact["id"])]
    assert e2e.sandbox.control("GET", "liondesk/offers")["total"] >= 1
    assert {"campaign", "offers"} <= set(kinds(e2e, payload["id"]))


def test_no_route_and_no_campaign_is_a_story_entry(e2e):
    payload = sample_lead()
    e2e.deliver(payload)
    e2e.wait_processed({payload["id"]: 1})
    (entry,) = [e for e in story(e2e, payload["id"]) if e["kind"] == "no_campaign"]
    assert "no LionDesk lead route" in entry["detail"]


def test_the_foreign_client_401_is_named_once_and_the_lead_still_syncs(e2e):
    e2e.sandbox.control("POST", "settings", app_owner="another_account")
    payloads = [sample_lead(activities=[assigned_to_dana()]) for _ in range(3)]
    for payload in payloads:
        e2e.deliver(payload)
    e2e.wait_processed({p["id"]: 1 for p in payloads})
    contacts = e2e.contacts()
    assert len(contacts) == 3 and {c["assigned_user_id"] for c in contacts} == {3}  # team members still map
    refreshes = e2e.sandbox.control("GET", "state")["tokens"]["refreshes"]
    assert refreshes <= 2, "no refresh storm"
    health = e2e.session.get(f"{e2e.base_url}/healthz", timeout=10).json()
    assert health["liondesk"]["app_conflict"]["problem"] == "LionDesk app registered under another account"
    assert health["liondesk"]["app_conflict"]["scopes"] == ["users"]
    status = e2e.cli("liondesk", "status").stdout
    assert status.count("LionDesk app registered under another account") == 1


def test_v1_gone_and_v20_tasks_gone_still_deliver_every_activity(e2e):
    e2e.sandbox.control("POST", "settings", v1_service="gone", tasks_v20="gone")
    payload = sample_lead()
    e2e.deliver(payload)
    e2e.wait_processed({payload["id"]: 1})
    tasks = e2e.sandbox.control("GET", "liondesk/tasks")["data"]
    assert [(t["channel"], t["status"]) for t in tasks] == [("v2.1", "complete")]
    delivered = [e for e in story(e2e, payload["id"]) if e["kind"] == "activity_delivered"]
    assert [e["channel"] for e in delivered] == ["v2.1 task"]
    # Now v2.1 goes too: the activity is recorded as not delivered and the lead is not failed.
    e2e.sandbox.control("POST", "settings", tasks_v21="gone")
    later = {"type": "property_viewed", "source": "Website", "description": "Viewed 12 Main St",
             "created": "2026-12-02T11:00:00.000000Z"}
    e2e.deliver({"action": "activity_added", "id": payload["id"], "activities": [later]})
    e2e.wait_processed({payload["id"]: 2})
    assert "activity_not_delivered" in kinds(e2e, payload["id"])
    assert not e2e.failed_job_ids()


def test_a_crash_between_enrolment_and_its_record_enrols_exactly_once(e2e):
    e2e.sandbox.control("POST", "liondesk/lead-routes", lead_source="Website Property Search", campaign="Buyer Drip",
                        distribution_target="Myself")
    e2e.sandbox.control("POST", "faults", service="liondesk",
                        lose_next_answer="/liondesk/campaigns/{campaign_id}/contacts")
    payload = sample_lead()
    e2e.deliver(payload)
    e2e.wait_processed({payload["id"]: 1}, timeout=90)
    (contact,) = e2e.contacts()
    enrolments = e2e.sandbox.control("GET", "liondesk/campaign-enrolments")["data"]
    assert [(e["campaign_id"], e["contact_id"]) for e in enrolments] == [(1, contact["id"])]
    assert "effect_already_done" in kinds(e2e, payload["id"])
    assert mappings.effect_state(e2e.conn, payload["id"], "campaign:1") == "done"


def test_an_existing_contacts_source_hotness_and_tags_are_kept(e2e):
    zillow = e2e.sandbox.control("POST", "liondesk/contact-sources", name="Zillow")["id"]
    payload = sample_lead(urgency="Hot", tags=["Beach"])
    existing = e2e.sandbox.control("POST", "liondesk/contacts", first_name="Existing", email=payload["email"],
                                   source_id=zillow, hotness_id=3, tags="Referral,VIP")
    e2e.deliver(payload)
    e2e.wait_processed({payload["id"]: 1})
    (contact,) = e2e.contacts()
    assert contact["id"] == existing["id"]
    assert contact["source_id"] == zillow and contact["hotness_id"] == 3
    tags = contact["tags"].split(",")
    assert {"Referral", "VIP", "Beach", "Real Geeks"} <= set(tags)
    (linked,) = [e for e in story(e2e, payload["id"]) if e["kind"] == "contact_linked"]
    assert linked["kept"] == ["hotness_id", "source_id"]
    # A later tag change in Real Geeks replaces Real Geeks' tags only: the agent's stay.
    e2e.deliver({"action": "updated", "id": payload["id"], "tags": ["Beach", "Pool"]})
    e2e.wait_processed({payload["id"]: 2})
    (contact,) = e2e.contacts()
    assert {"Referral", "VIP", "Beach", "Pool", "Real Geeks"} == set(contact["tags"].split(","))
    assert contact["source_id"] == zillow


def test_a_match_on_office_phone(e2e):
    digits = f"808{secrets.randbelow(8_000_000) + 2_000_000}"
    payload = sample_lead(email="", phone=f"{digits[:3]}-{digits[3:6]}-{digits[6:]}")
    existing = e2e.sandbox.control("POST", "liondesk/contacts", first_name="Office",
                                   office_phone=f"({digits[:3]}) {digits[3:6]}-{digits[6:]}")
    e2e.deliver(payload)
    e2e.wait_processed({payload["id"]: 1})
    (contact,) = e2e.contacts()
    assert contact["id"] == existing["id"]
    (linked,) = [e for e in story(e2e, payload["id"]) if e["kind"] == "contact_linked"]
    assert linked["matched_by"] == "office_phone"


def test_single_value_in_refused_still_finds_the_contact(e2e):
    e2e.sandbox.control("POST", "settings", single_value_in="refused")
    payload = sample_lead(phone="")
    existing = e2e.sandbox.control("POST", "liondesk/contacts", first_name="Solo", email=payload["email"].lower())
    e2e.deliver(payload)
    e2e.wait_processed({payload["id"]: 1})
    (contact,) = e2e.contacts()
    assert contact["id"] == existing["id"]
    searches = [c for c in e2e.calls() if c["template"] == "/liondesk/contacts" and c["method"] == "GET"]
    assert searches and all(c["status"] == 200 for c in searches)


def test_an_alphanumeric_mls_number_refused_drops_only_that_field(e2e):
    e2e.sandbox.control("POST", "settings", mls_id_values="numeric")
    viewed = {"type": "property_viewed", "source": "Website", "description": "Viewed",
              "created": "2026-12-02T10:00:00.000000Z",
              "property": {"mls": "A1234567", "street_address": "1 Main St", "city": "Honolulu", "zip": "96815"}}
    payload = sample_lead(activities=[viewed])
    e2e.deliver(payload)
    e2e.wait_processed({payload["id"]: 1})
    (lead,) = e2e.leads()
    assert lead["mls_id"] is None and lead["zipcode"] == 96815 and lead["street_address"] == "1 Main St"
    (dropped,) = [e for e in story(e2e, payload["id"]) if e["kind"] == "lead_fields_dropped"]
    assert dropped["fields"] == ["mls_id"]


# The reverse direction of "assignment to an agent known only through /team-members" is
# tests/test_reverse_e2e.py::test_liondesk_edits_reach_real_geeks_once_and_nothing_bounces: it
# reassigns the contact to LionDesk user 2 (Casey), whom the sandbox's /users no longer lists.
