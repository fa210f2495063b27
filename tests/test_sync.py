"""Real Geeks → LionDesk sync, through the real intake, relay and worker, against the sandbox over HTTP."""

import json
import time

import pytest
from rq.registry import FailedJobRegistry

from bridge.config import load_settings
from bridge.sandbox.sample import sample_lead
from bridge.storage import history, keys, mappings, parked
from tests.support import signed_post
from bridge.context import Context
from bridge.queue import event_queue
from workers.worker import run

URL = "/webhooks/realgeeks"
WRITES = ("POST", "PATCH", "PUT", "DELETE")


@pytest.fixture
def bridge(sandbox, redis_url, redis_conn, webhook_secret):
    """The web app and a worker context wired to the sandbox and the test Redis."""
    from bridge.web import create_app

    env = {**sandbox.environment(), "REDIS_URL": redis_url, "REALGEEKS_WEBHOOK_SECRET": webhook_secret,
           "LIONDESK_MAX_REQUESTS_PER_SECOND": "1000"}
    settings = load_settings(env)
    return Bridge(create_app(settings).test_client(), Context(settings=settings, redis=redis_conn), sandbox,
                  webhook_secret)


class Bridge:
    """Deliver webhooks and drain the worker, as Real Geeks and a worker process would."""

    def __init__(self, client, context, sandbox, secret):
        self.client, self.context, self.sandbox, self.secret = client, context, sandbox, secret

    def deliver(self, payload, action=None, headers=None):
        """Deliver one signed webhook; return the response."""
        response = signed_post(self.client, URL, payload, self.secret, action=action, headers=headers)
        assert response.status_code == 200, response.json
        return response

    def work(self):
        """Relay and run every queued job, like `bridge worker --burst`."""
        run(self.context, burst=True)

    def deliver_and_work(self, payload, **kwargs):
        """Deliver, then process; return the sandbox calls that caused."""
        since = self.sandbox.last_seq()
        self.deliver(payload, **kwargs)
        self.work()
        return self.sandbox.calls(since, service="liondesk")

    def contacts(self):
        """Every contact in the sandbox's LionDesk."""
        return self.sandbox.control("GET", "liondesk/contacts")["data"]

    def leads(self):
        """Every lead in the sandbox's LionDesk."""
        return self.sandbox.control("GET", "liondesk/leads")["data"]


def writes(calls):
    """The calls that changed something."""
    return [(c["method"], c["template"]) for c in calls if c["method"] in WRITES and "oauth2" not in c["path"]]


def test_a_new_lead_becomes_one_contact_with_one_lead(bridge, redis_conn):
    payload = sample_lead(urgency="Hot", tags=["Beach"])
    bridge.deliver_and_work(payload)
    (contact,) = bridge.contacts()
    assert contact["email"] == payload["email"]
    assert contact["first_name"] == payload["first_name"]
    assert contact["mobile_phone"].endswith(payload["phone"][-4:])
    assert "Beach" in contact["tags"] and "Real Geeks" in contact["tags"]
    assert contact["source"]["name"] == "Real Geeks"
    assert contact["hotness"]["name"] == "Hot"
    (lead,) = bridge.leads()
    assert lead["contact_id"] == contact["id"]
    assert "Website Property Search" in lead["text_body"]
    link = mappings.load_link(redis_conn, payload["id"])
    assert link.contact_id == str(contact["id"]) and link.liondesk_lead_id == str(lead["id"])
    kinds = [entry["kind"] for entry in history.read(redis_conn, payload["id"])]
    assert kinds[0] == "received" and "contact_created" in kinds and kinds[-1] == "processed"
    assert any(entry["kind"] == "call" and entry["method"] == "POST" for entry in history.read(redis_conn, payload["id"]))


def test_the_same_lead_delivered_again_with_another_body_makes_no_write(bridge):
    payload = sample_lead()
    bridge.deliver_and_work(payload)
    again = bridge.deliver_and_work({**payload, "site_domain": "www.mysite.com", "activities": []},
                                    headers={"X-Lead-Router-Timestamp": "2030-01-01T00:00:00Z"})
    assert writes(again) == []
    assert len(bridge.contacts()) == 1 and len(bridge.leads()) == 1


def test_a_lead_linked_by_the_previous_release_keeps_its_liondesk_lead(bridge, redis_conn):
    payload = sample_lead()
    bridge.deliver_and_work(payload)
    (lead,) = bridge.leads()
    # As the previous release stored it: the LionDesk lead under `lead_id`, no liondesk_lead_id.
    redis_conn.hdel(keys.lead_mapping(payload["id"]), "liondesk_lead_id")
    redis_conn.hset(keys.lead_mapping(payload["id"]), "lead_id", lead["id"])
    bridge.deliver_and_work({**payload, "action": "unknown", "notes": "sent again after the upgrade"})
    assert [found["id"] for found in bridge.leads()] == [lead["id"]]  # no second LionDesk lead
    assert mappings.load_link(redis_conn, payload["id"]).liondesk_lead_id == str(lead["id"])


def test_update_before_create_creates_the_contact_once(bridge):
    payload = sample_lead()
    bridge.deliver_and_work({**payload, "action": "updated"})
    bridge.deliver_and_work(payload)
    assert len(bridge.contacts()) == 1 and len(bridge.leads()) == 1


def test_existing_contact_is_matched_by_differently_cased_email(bridge):
    payload = sample_lead(phone="")
    bridge.sandbox.control("POST", "liondesk/contacts", first_name="Existing", email=payload["email"].upper())
    bridge.deliver_and_work(payload)
    (contact,) = bridge.contacts()
    assert contact["first_name"] == "Existing"  # someone's contact: populated fields are never overwritten
    assert contact["last_name"] == payload["last_name"]  # empty ones are filled
    assert contact["email"] == payload["email"].upper()
    assert len(bridge.leads()) == 1


def test_existing_contact_is_matched_by_differently_formatted_phone(bridge):
    payload = sample_lead(email="", phone="808-817-2382")
    bridge.sandbox.control("POST", "liondesk/contacts", first_name="Existing", mobile_phone="+1 808.817.2382")
    calls = bridge.deliver_and_work(payload)
    assert len(bridge.contacts()) == 1
    searches = [c for c in calls if c["method"] == "GET" and c["template"] == "/liondesk/contacts"]
    assert len(searches) == 1  # matched on mobile_phone with every form in one query


def test_route_campaign_starts_once_and_team_rollout_makes_offers_once(bridge):
    bridge.sandbox.control("POST", "liondesk/preset/demo")
    payload = sample_lead()  # source "Website Property Search": the demo preset's Team Rollout route
    bridge.deliver_and_work(payload)
    bridge.deliver_and_work({**payload, "action": "unknown", "notes": "again"})
    enrolments = bridge.sandbox.control("GET", "liondesk/campaign-enrolments")["data"]
    assert len(enrolments) == 1
    offers = bridge.sandbox.control("GET", "liondesk/offers")["data"]
    assert len({offer["lead"]["id"] for offer in offers}) == 1


def test_assignment_activity_sets_the_agent_and_is_applied_once(bridge):
    payload = sample_lead(activities=[])
    bridge.deliver_and_work(payload)
    assigned = {"type": "was_assigned", "source": "LeadManager", "description": "Lead was assigned to Casey",
                "created": "2026-11-01T10:00:00.123456789Z",
                "user": {"id": "14188", "role": "Agent", "name": "Casey", "email": "casey@example.com"}}
    envelope = {"action": "activity_added", "id": payload["id"], "activities": [assigned]}
    calls = bridge.deliver_and_work(envelope)
    assert writes(calls) == [("PATCH", "/liondesk/contacts/{contact_id}")]
    (contact,) = bridge.contacts()
    casey = next(u for u in bridge.sandbox.control("GET", "liondesk/users")["data"] if u["email"] == "casey@example.com")
    assert contact["assigned_user_id"] == casey["id"]
    again = bridge.deliver_and_work({**envelope, "partner_id": "same activity, another body"})
    assert writes(again) == []


def test_timeline_activities_become_completed_tasks_once(bridge):
    payload = sample_lead()
    bridge.deliver_and_work(payload)
    tasks = bridge.sandbox.control("GET", "liondesk/tasks")["data"]
    assert len(tasks) == 1 and tasks[0]["status"] == "complete"
    bridge.deliver_and_work({"action": "activity_added", "id": payload["id"], "activities": payload["activities"]})
    assert len(bridge.sandbox.control("GET", "liondesk/tasks")["data"]) == 1


def test_updated_patches_only_the_changed_field(bridge, redis_conn):
    payload = sample_lead(activities=[])
    bridge.deliver_and_work(payload)
    calls = bridge.deliver_and_work({**payload, "action": "updated", "last_name": "Newname"})
    assert writes(calls) == [("PATCH", "/liondesk/contacts/{contact_id}")]
    patch = next(c for c in calls if c["method"] == "PATCH")
    assert json.loads(patch["body"]) == {"last_name": "Newname"} if isinstance(patch["body"], str) \
        else patch["body"] == {"last_name": "Newname"}
    assert bridge.contacts()[0]["last_name"] == "Newname"


def test_empty_string_clears_and_absent_keys_are_left_alone(bridge):
    payload = sample_lead(activities=[], phone2="808-555-0199")
    bridge.deliver_and_work(payload)
    bridge.deliver_and_work({"action": "updated", "id": payload["id"], "phone2": ""})
    (contact,) = bridge.contacts()
    assert not contact.get("home_phone")
    assert contact["email"] == payload["email"] and contact["first_name"] == payload["first_name"]


VIEWED = {"type": "property_viewed", "source": "Website", "description": "Viewed 1 Main St",
          "created": "2026-11-01T10:00:00Z"}


def test_activities_before_the_lead_are_parked_then_applied_once_after_it(bridge, redis_conn):
    payload = sample_lead(activities=[])
    lead_id = payload["id"]
    bridge.deliver({"action": "activity_added", "id": lead_id, "activities": [VIEWED]})
    bridge.work()
    assert bridge.contacts() == []
    assert event_queue(redis_conn).scheduled_job_registry.get_job_ids() == []  # not on the retry ladder
    assert parked.counts(redis_conn)["deliveries"] == 1
    assert bridge.client.get("/healthz").json["parked"]["deliveries"] == 1
    (entry,) = [e for e in history.read(redis_conn, lead_id) if e["kind"] == "parked"]
    assert entry["detail"] == "waiting for Real Geeks to send this lead's details"

    bridge.deliver(payload)
    bridge.work()
    (contact,) = bridge.contacts()
    tasks = [t for t in bridge.sandbox.control("GET", "liondesk/tasks")["data"] if "Viewed 1 Main St" in t["description"]]
    assert len(tasks) == 1 and tasks[0]["contact_id"] == contact["id"]
    kinds = [e["kind"] for e in history.read(redis_conn, lead_id)]
    assert kinds.index("contact_created") < kinds.index("unparked")
    assert parked.counts(redis_conn) == {"leads": 0, "deliveries": 0, "oldest_age_seconds": None}

    bridge.deliver({"action": "activity_added", "id": lead_id, "activities": [VIEWED], "site_domain": "again"})
    bridge.work()  # the same activity again: already delivered
    assert len([t for t in bridge.sandbox.control("GET", "liondesk/tasks")["data"]
                if "Viewed 1 Main St" in t["description"]]) == 1


@pytest.mark.parametrize("action", ["updated", "created"])
def test_a_lead_without_name_email_or_phone_creates_no_contact_and_waits(bridge, redis_conn, action):
    lead_id = sample_lead()["id"]
    bridge.deliver({"action": action, "id": lead_id, "source": "Website", "status": "Active",
                    "first_name": "", "email": ""})
    bridge.work()
    assert bridge.contacts() == []
    assert [e["kind"] for e in history.read(redis_conn, lead_id)].count("parked") == 1
    assert parked.waiting(redis_conn, lead_id)

    bridge.deliver({"action": "updated", "id": lead_id, "email": "late@example.com", "source": "Website"})
    bridge.work()
    (contact,) = bridge.contacts()
    assert contact["email"] == "late@example.com"
    assert parked.waiting(redis_conn, lead_id) == []
    assert "unparked" in [e["kind"] for e in history.read(redis_conn, lead_id)]


def test_parked_deliveries_expire_after_the_window_with_a_story_entry(bridge, redis_conn):
    lead_id = sample_lead()["id"]
    bridge.deliver({"action": "activity_added", "id": lead_id, "activities": [VIEWED]})
    bridge.work()
    (event_id,) = parked.waiting(redis_conn, lead_id)
    parked.done(redis_conn, lead_id, event_id)
    parked.park(redis_conn, lead_id, event_id, time.time() - 31 * 86400)  # as if parked 31 days ago

    bridge.deliver(sample_lead())  # any later job sweeps expired parked work
    bridge.work()
    assert parked.waiting(redis_conn, lead_id) == []
    (expired,) = [e for e in history.read(redis_conn, lead_id) if e["kind"] == "parked_expired"]
    assert expired["event_ids"] == [event_id] and "30 days" in expired["detail"]


def test_liondesk_refusal_sends_the_job_to_the_failed_store_at_once(bridge, redis_conn):
    bridge.deliver_and_work(sample_lead())  # tokens and caches warm: the next call is the lead's own
    bridge.sandbox.control("POST", "faults", service="liondesk", fail_next=1, fail_next_status=422)
    payload = sample_lead()
    bridge.deliver(payload)
    bridge.work()
    assert len(FailedJobRegistry(queue=event_queue(redis_conn))) == 1
    (failed,) = [e for e in history.read(redis_conn, payload["id"]) if e["kind"] == "attempt_failed"]
    assert failed["outcome"] == "failed" and failed["error_class"] == "UpstreamRejected"


def dying_attempt(bridge, monkeypatch, payload, recorded_field):
    """Process `payload` in an attempt that dies right after LionDesk answered, before `recorded_field` is stored."""
    from bridge.sync import forward

    real_save_link = mappings.save_link

    def die_before_recording(conn, link, /, **fields):
        if recorded_field in fields:
            raise SystemExit(f"worker killed between LionDesk's answer and recording {recorded_field}")
        real_save_link(conn, link, **fields)

    monkeypatch.setattr(forward.mappings, "save_link", die_before_recording)
    bridge.deliver(payload)
    bridge.work()  # the attempt dies; RQ schedules a retry
    monkeypatch.setattr(forward.mappings, "save_link", real_save_link)


def test_a_lead_created_by_an_attempt_that_died_before_recording_it_is_not_created_twice(bridge, redis_conn,
                                                                                          monkeypatch):
    payload = sample_lead(activities=[])
    dying_attempt(bridge, monkeypatch, payload, "liondesk_lead_id")
    assert len(bridge.leads()) == 1
    bridge.deliver_and_work({**payload, "notes": "redelivered after the crash"})
    assert len(bridge.leads()) == 1
    assert mappings.load_link(redis_conn, payload["id"]).liondesk_lead_id == str(bridge.leads()[0]["id"])
    assert any(e["kind"] == "lead_recovered" for e in history.read(redis_conn, payload["id"]))


def test_a_name_only_contact_created_by_an_attempt_that_died_is_not_created_twice(bridge, redis_conn, monkeypatch):
    payload = sample_lead(activities=[], email="", phone="")
    dying_attempt(bridge, monkeypatch, payload, "contact_id")
    bridge.deliver_and_work({**payload, "notes": "redelivered after the crash"})
    assert len(bridge.contacts()) == 1 and len(bridge.leads()) == 1


def test_a_create_that_failed_is_not_mistaken_for_a_namesake_made_by_a_dead_attempt(bridge, redis_conn, monkeypatch):
    from bridge.exceptions import UpstreamUnavailable

    namesake = sample_lead(activities=[], first_name="Jack", last_name="Johnson")
    bridge.deliver_and_work(namesake)
    payload = sample_lead(activities=[], first_name="Jack", last_name="Johnson")
    client = bridge.context.clients.liondesk
    real_create = client.create_contact

    def answered_503(body):
        raise UpstreamUnavailable("liondesk: 503 Service Unavailable", service="liondesk", status=503)

    monkeypatch.setattr(client, "create_contact", answered_503)
    bridge.deliver(payload)
    bridge.work()  # the create is refused before LionDesk did anything; the "pending" mark stays
    monkeypatch.setattr(client, "create_contact", real_create)
    bridge.deliver_and_work({**payload, "notes": "delivered again"})
    namesake_contact = mappings.load_link(redis_conn, namesake["id"]).contact_id
    assert mappings.load_link(redis_conn, payload["id"]).contact_id != namesake_contact
    assert sorted(c["email"] for c in bridge.contacts()) == sorted([namesake["email"], payload["email"]])


def test_with_v1_keys_activities_go_to_the_timeline_and_notes_become_comments(sandbox, redis_url, redis_conn,
                                                                                webhook_secret):
    from bridge.web import create_app

    env = {**sandbox.environment(), "REDIS_URL": redis_url, "REALGEEKS_WEBHOOK_SECRET": webhook_secret,
           "LIONDESK_MAX_REQUESTS_PER_SECOND": "1000",
           "LIONDESK_V1_API_KEY": "sandbox-v1-key", "LIONDESK_V1_USER_KEY": "sandbox-v1-user"}
    settings = load_settings(env)
    v1 = Bridge(create_app(settings).test_client(), Context(settings=settings, redis=redis_conn), sandbox,
                webhook_secret)
    note = {"type": "note", "source": "LeadManager", "description": "Called, wants a yard",
            "created": "2026-11-01T10:00:00Z"}
    viewed = {"type": "property_viewed", "source": "Website", "description": "Viewed 1 Main St",
              "created": "2026-11-01T10:05:00Z", "property": {"mls": "123", "listing_price": "500000", "beds": 3}}
    payload = sample_lead(activities=[note, viewed])
    v1.deliver_and_work(payload)
    received = sandbox.control("GET", "liondesk-v1/activities")["data"]
    assert sorted((a["kind"], str(a["type"])) for a in received) == [("activity", "property_viewed"), ("comment", "1")]
    (activity,) = [a for a in received if a["kind"] == "activity"]
    assert activity["property"]["mls"] == "123" and activity["property"]["beds"] == 3
    assert sandbox.control("GET", "liondesk/tasks")["data"] == []
    v1.deliver_and_work({"action": "activity_added", "id": payload["id"], "activities": [note, viewed]})
    assert len(sandbox.control("GET", "liondesk-v1/activities")["data"]) == 2


def _timeline_texts(bridge) -> list[str]:
    """Descriptions of every task in the sandbox's LionDesk (the timeline without v1)."""
    return [task["description"] for task in bridge.sandbox.control("GET", "liondesk/tasks")["data"]]


@pytest.mark.parametrize("how", ["email in another case", "shared phone"])
def test_a_second_lead_matching_a_linked_contact_never_takes_it_over(bridge, redis_conn, how):
    victim = sample_lead(activities=[], first_name="Vera", last_name="Victim", phone="808-555-0101")
    bridge.deliver_and_work(victim)
    (before,) = bridge.contacts()
    if how == "shared phone":
        other = sample_lead(activities=[], first_name="Ivan", last_name="Other", phone="(808) 555-0101")
    else:
        other = sample_lead(activities=[], first_name="Ivan", last_name="Other", email=victim["email"].upper(),
                            phone="808-555-0999")
    bridge.deliver_and_work(other)
    bridge.deliver_and_work({"action": "updated", "id": other["id"], "first_name": "Mallory", "phone": "808-555-0777"})

    (after,) = bridge.contacts()
    for key in ("first_name", "last_name", "email", "mobile_phone", "home_phone"):
        assert after.get(key) == before.get(key), key
    assert mappings.lead_of_contact(redis_conn, after["id"]) == victim["id"]  # the link did not move
    link = mappings.load_link(redis_conn, other["id"])
    assert link.contact_id == str(after["id"]) and link.shared_with == victim["id"]
    assert len(bridge.leads()) == 1  # the other lead makes no enquiry, campaign or offers on it
    (second,) = [e for e in history.read(redis_conn, victim["id"]) if e["kind"] == "second_lead_matched"]
    assert second["other_lead"] == other["id"]
    (linked,) = [e for e in history.read(redis_conn, other["id"]) if e["kind"] == "contact_linked"]
    assert linked["shared_with"] == victim["id"]
    notes = [text for text in _timeline_texts(bridge) if "holds other details" in text]
    assert len(notes) == 2 and "Ivan" in notes[0] and "Mallory" in notes[1]


def test_an_agents_own_contact_is_filled_not_overwritten_and_later_changes_are_told(bridge, redis_conn):
    payload = sample_lead(activities=[], first_name="Lead", last_name="Name", phone="808-555-0123")
    contact_id = bridge.sandbox.control("POST", "liondesk/contacts", first_name="Agent", email=payload["email"])["id"]
    bridge.deliver_and_work(payload)
    bridge.deliver_and_work({**payload, "action": "updated", "last_name": "Changed"})
    (contact,) = bridge.contacts()
    assert contact["id"] == contact_id and contact["first_name"] == "Agent"
    assert contact["last_name"] == "Name"  # filled when it was empty, then someone's: the change is told
    assert mappings.lead_of_contact(redis_conn, contact_id) == payload["id"]
    notes = [text for text in _timeline_texts(bridge) if "holds other details" in text]
    assert len(notes) == 2 and "first name: Lead (here: Agent)" in notes[0] and "last name: Changed" in notes[1]
    bridge.deliver_and_work({**payload, "action": "updated", "last_name": "Changed", "notes": "again"})
    assert len([text for text in _timeline_texts(bridge) if "holds other details" in text]) == 2  # told once


def test_an_assignment_by_id_whose_users_list_real_geeks_refuses_leaves_the_assignment(bridge, redis_conn):
    payload = sample_lead(activities=[])
    bridge.deliver_and_work(payload)
    (before,) = bridge.contacts()
    bridge.sandbox.control("POST", "faults", service="realgeeks", fail_next=1, fail_next_status=403)
    bridge.deliver_and_work({"action": "activity_added", "id": payload["id"], "site_uuid": payload["site_uuid"],
                             "activities": [{"type": "was_assigned", "user": {"id": "14188"},
                                             "created": "2026-11-01T10:00:00Z"}]})
    (after,) = bridge.contacts()
    assert after.get("assigned_user_id") == before.get("assigned_user_id")
    kinds = [entry["kind"] for entry in history.read(redis_conn, payload["id"])]
    assert "realgeeks_users_refused" in kinds and "assignment_unresolved" in kinds and "attempt_failed" not in kinds


def test_a_follow_up_is_one_task_however_often_it_arrives_and_a_lone_completion_files_a_done_one(bridge):
    payload = sample_lead(activities=[])
    bridge.deliver_and_work(payload)
    event = {"id": "3f0c1d0e-7c1f-4c8e-9b9a-2f3f9a7e1c11", "title": "Showing", "happens_at": "2026-12-12T20:00:00Z"}
    created = {"type": "created_a_followup_for", "user": {"id": "14187"}, "metadata": {"event": event}}
    for n in range(2):  # the same follow-up in two deliveries (other bytes, same activity)
        bridge.deliver_and_work({"action": "activity_added", "id": payload["id"], "site_uuid": payload["site_uuid"],
                                 "activities": [created], "partner_id": f"p{n}"})
    lone = {"type": "completed_a_followup_for", "user": {"id": "14187"},
            "metadata": {"event": {**event, "id": "4f0c1d0e-7c1f-4c8e-9b9a-2f3f9a7e1c12", "title": "Old call"}}}
    bridge.deliver_and_work({"action": "activity_added", "id": payload["id"], "site_uuid": payload["site_uuid"],
                             "activities": [lone]})
    tasks = {t["description"].split("\n")[0]: t for t in bridge.sandbox.control("GET", "liondesk/tasks")["data"]}
    assert tasks["Showing"]["status"] == "incomplete" and tasks["Old call"]["status"] == "complete"
    assert sum(1 for t in bridge.sandbox.control("GET", "liondesk/tasks")["data"]
               if t["description"].startswith("Showing")) == 1


def test_a_stale_reverse_map_does_not_make_a_matched_contact_look_taken(bridge, redis_conn):
    from bridge.storage import keys

    payload = sample_lead(activities=[])
    contact_id = bridge.sandbox.control("POST", "liondesk/contacts", first_name="Agent", email=payload["email"])["id"]
    redis_conn.set(keys.contact_mapping(contact_id), "0" * 32)  # a lead whose link names no contact (long gone)
    bridge.deliver_and_work(payload)
    assert mappings.lead_of_contact(redis_conn, contact_id) == payload["id"]
    link = mappings.load_link(redis_conn, payload["id"])
    assert link.contact_id == str(contact_id) and link.shared_with is None and link.matched_by == "email"
