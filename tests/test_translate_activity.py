"""Real Geeks activities: fingerprints, meaning, v1 activities and comments, completed tasks."""

import json
from pathlib import Path

import pytest

from bridge.translate import liondesk
from bridge.translate.activity import (
    assigned_agent_email, classify_activity, fingerprint, task_body, v1_activity, v1_comment,
)
from bridge.translate.realgeeks import load_event
from bridge.translate.rules import load_rules, merge

RULES = load_rules()
LEAD_ID = "a27c20af4497415d9e4e7334dd1d40d2"
DASHED_ID = "A27C20AF-4497-415D-9E4E-7334DD1D40D2"
FIXTURE = Path(__file__).parent / "fixtures" / "new_lead.json"

ASSIGNED = {"type": "was_assigned", "source": "LeadManager", "description": "Lead was assigned to Jack Johnson",
            "created": "2016-07-06T23:51:00.052125851Z",
            "user": {"id": "14187", "role": "Agent", "name": "Jack Johnson", "email": "jack@music.com"}}
VIEWED = {"type": "property_viewed", "source": "Website", "description": "Viewed 123 Keolu Rd Unit 12",
          "created": "2015-10-01T06:14:01.632792Z",
          "property": {"street_address": "123 Keolu Rd Unit 12", "city": "Kailua", "state": "HI", "zip": "96734",
                       "beds": 2, "full_baths": 1, "listing_price": "100500.90", "mls": "201912345",
                       "url": "https://www.mysite.com/listing/201912345", "latitude": 21.39,
                       "images": ["https://img/1.jpg"], "rent_price": "2500", "tags": ["ocean view"]}}


def loaded(*activities, action="activity_added", lead_id=LEAD_ID, **fields):
    """A delivery carrying `activities`, loaded the way the sync gets it."""
    return load_event(action, {"id": lead_id, "activities": list(activities), **fields})


def test_one_assignment_delivered_in_created_and_in_activity_added_has_one_fingerprint():
    created = loaded(ASSIGNED, action="created", first_name="Jack", source="Website")
    added = loaded({"type": "was_assigned", "source": "LeadManager", "created": ASSIGNED["created"],
                    "description": "Lead was assigned to Jack Johnson (again)",  # wording may differ
                    "user": {"id": 14187}}, lead_id=DASHED_ID)
    assert fingerprint(created["id"], created["activities"][0]) == fingerprint(added["received_id"],
                                                                              added["activities"][0])


def test_loaded_and_raw_activities_share_a_fingerprint():
    assert fingerprint(LEAD_ID, loaded(VIEWED)["activities"][0]) == fingerprint(DASHED_ID, VIEWED)


@pytest.mark.parametrize("change", [
    {"created": "2016-07-06T23:51:00.052125852Z"},   # one nanosecond later
    {"type": "was_unassigned"},
    {"user": {"id": "14188"}},
])
def test_a_different_time_type_or_user_gives_a_different_fingerprint(change):
    assert fingerprint(LEAD_ID, {**ASSIGNED, **change}) != fingerprint(LEAD_ID, ASSIGNED)


def test_another_lead_gives_a_different_fingerprint():
    assert fingerprint("b" * 32, ASSIGNED) != fingerprint(LEAD_ID, ASSIGNED)


def test_activities_without_time_are_told_apart_by_content():
    note = {"type": "note", "source": "LeadManager", "description": "Called, no answer"}
    assert fingerprint(LEAD_ID, note) == fingerprint(LEAD_ID, dict(note))
    assert fingerprint(LEAD_ID, note) != fingerprint(LEAD_ID, {**note, "description": "Called, left message"})
    untimed = {key: value for key, value in VIEWED.items() if key != "created"}
    moved = {**untimed, "property": {**VIEWED["property"], "street_address": "125 Keolu Rd"}}
    assert fingerprint(LEAD_ID, untimed) != fingerprint(LEAD_ID, moved)


def test_the_example_leads_activities_at_one_instant_have_distinct_fingerprints():
    lead = load_event("created", json.loads(FIXTURE.read_text()))
    prints = {fingerprint(lead["id"], activity) for activity in lead["activities"]}
    assert len(prints) == len(lead["activities"]) == 3


@pytest.mark.parametrize("activity, meaning", [
    (ASSIGNED, "assign"),
    ({**ASSIGNED, "user": {**ASSIGNED["user"], "role": "Lender"}}, "timeline"),  # LionDesk has no lenders
    ({**ASSIGNED, "user": None}, "timeline"),                                   # nobody to assign to
    ({"type": "was_unassigned", "source": "LeadManager", "description": "Lead was unassigned"}, "unassign"),
    ({"type": "note", "source": "LeadManager", "description": "Likes lanai"}, "note"),
    (VIEWED, "timeline"),
    ({"type": "visited", "source": "Website"}, "timeline"),
    ({"type": "waiting_for_manual_assignment", "source": "LeadManager"}, "timeline"),
    ({"type": "created_a_followup_for", "source": "LeadManager"}, "timeline"),
    ({"type": "", "source": "x"}, "ignore"),
    ({**ASSIGNED, "source": "LionDesk"}, "ignore"),          # our own write coming back
])
def test_classify_activity(activity, meaning):
    assert classify_activity(activity, RULES) == meaning


def test_classify_ignores_configured_types():
    rules = merge(RULES, {"activities": {"ignore": ["Visited"]}})
    assert classify_activity({"type": "visited", "source": "Website"}, rules) == "ignore"
    assert classify_activity({"type": "visited", "source": "Website"}) == "timeline"


@pytest.mark.parametrize("activities, expected", [
    ([ASSIGNED], "jack@music.com"),
    ([{**ASSIGNED, "created": "2016-07-07T00:00:00Z", "user": {"id": "2", "email": "ann@x.com"}}, ASSIGNED],
     "ann@x.com"),                                                     # latest by time, not by position
    ([ASSIGNED, {"type": "was_unassigned", "source": "LeadManager", "created": "2016-07-07T00:00:00Z"}], ""),
    ([{"type": "visited", "source": "Website"}], None),
    ([], None),
])
def test_the_latest_assignment_decides_the_agent(activities, expected):
    assert assigned_agent_email(loaded(*activities), RULES) == expected


@pytest.mark.parametrize("overrides, expected", [
    ({"14187": "jack@brokerage.com"}, "jack@brokerage.com"),
    ({"JACK@music.com": "jj@brokerage.com"}, "jj@brokerage.com"),
    ({"99": "other@brokerage.com"}, "jack@music.com"),
])
def test_agent_overrides_by_real_geeks_id_or_email(overrides, expected):
    rules = merge(RULES, {"agents": {"liondesk_email": overrides}})
    assert assigned_agent_email(loaded(ASSIGNED), rules) == expected


def test_the_deprecated_agent_email_is_not_an_assignment():
    assert assigned_agent_email(loaded(agent_email="ben@mail.com"), RULES) is None
    assert assigned_agent_email(loaded(agent_email=""), RULES) is None
    assert assigned_agent_email(loaded(ASSIGNED, agent_email="ben@mail.com"), RULES) == "jack@music.com"


def test_an_assignment_by_id_only_says_nothing_without_the_users_list():
    by_id = {"type": "was_assigned", "source": "Other CRM", "user": {"id": "14187"},
             "created": "2026-11-01T10:00:00Z"}
    assert assigned_agent_email(loaded(by_id), RULES) is None


@pytest.mark.parametrize("kind, v1", [
    ("visited", "visit"), ("search_performed", "search_performed"), ("saved_search_added", "saved_search_added"),
    ("saved_search_removed", "saved_search_removed"), ("property_viewed", "property_viewed"),
    ("favorite_property_added", "favorite_property_added"),
    ("favorite_property_removed", "favorite_property_removed"),
    ("was_assigned", None), ("note", None), ("created_a_followup_for", None), ("called", None),
])
def test_v1_activity_types_map_and_others_fall_back(kind, v1):
    translation = v1_activity({"type": kind, "source": "Website"}, {"id": LEAD_ID}, RULES, contact_id=9)
    assert (translation.body["type"] if translation else None) == v1


def test_v1_activity_carries_site_time_description_and_the_v1_property():
    lead = loaded(VIEWED, site_uuid="5ead6dd1-2cb9-4f80-80fc-5716b05c90ba", site_domain="www.mysite.com")
    body = v1_activity(lead["activities"][0], lead, RULES, contact_id=9).body
    assert body == {
        "action": "NewActivity", "liondeskcontactid": 9, "type": "property_viewed",
        "siteid": "5ead6dd1-2cb9-4f80-80fc-5716b05c90ba", "sitedomain": "www.mysite.com",
        "description": "Viewed 123 Keolu Rd Unit 12", "created": "2015-10-01T06:14:01+00:00",
        "property": {"mls": "201912345", "url": "https://www.mysite.com/listing/201912345",
                     "street_address": "123 Keolu Rd Unit 12", "city": "Kailua", "state": "HI", "zip": "96734",
                     "beds": 2, "full_baths": 1, "listing_price": "100500.90", "latitude": 21.39,
                     "images": ["https://img/1.jpg"]},
    }
    assert liondesk.V1_ACTIVITY.validate(body) == {}


def test_v1_activity_names_the_contact_by_our_id_without_a_liondesk_id():
    body = v1_activity({"type": "visited", "source": "Website"}, {"id": LEAD_ID}, RULES).body
    assert body["contactid"] == LEAD_ID and "liondeskcontactid" not in body


def test_v1_activity_cuts_a_long_description_and_reports_it():
    translation = v1_activity({"type": "visited", "source": "Website", "description": "d" * 2500},
                              {"id": LEAD_ID}, RULES, contact_id=9)
    assert len(translation.body["description"]) == 2000
    assert translation.trims == [{"field": "v1_activity.description", "original_length": 2500, "limit": 2000}]


def test_a_note_becomes_a_standard_v1_comment():
    note = {"type": "note", "source": "LeadManager", "description": "Prefers texts",
            "created": "2020-05-01T10:00:00Z", "user": {"id": "1", "name": "Ann Agent", "email": "ann@x.com"}}
    translation = v1_comment(note, contact_id=9)
    assert translation.body["type"] == 1 and translation.body["liondeskcontactid"] == 9
    assert translation.body["description"].splitlines() == [
        "Real Geeks: Note", "Prefers texts", "By: Ann Agent <ann@x.com>", "When: 2020-05-01 10:00:00 UTC"]
    assert liondesk.V1_COMMENT.validate(translation.body) == {}


def test_a_task_records_the_activity_as_completed():
    lead = loaded(VIEWED, site_login_url="https://www.mysite.com/member/quick_login/x/")
    translation = task_body(lead["activities"][0], lead, RULES, contact_id=9)
    assert translation.body == {
        "contact_id": 9, "action_type": "Agent Task - No Reminder", "status": "complete",
        "due_at": "2015-10-01T06:14:01.632Z",
        "description": "Real Geeks: Property viewed\nViewed 123 Keolu Rd Unit 12\n"
                       "Property: 123 Keolu Rd Unit 12, Kailua, HI 96734 · $100,500.90 · 2 bd, 1 ba · MLS 201912345 · "
                       "https://www.mysite.com/listing/201912345\nWhen: 2015-10-01 06:14:01 UTC",
        "notes": "Log in as this lead: https://www.mysite.com/member/quick_login/x/",
    }
    assert liondesk.TASK_BODY.validate(translation.body) == {}


def test_task_action_type_follows_the_rules_and_the_assignee_is_optional():
    rules = merge(RULES, {"activities": {"task_action_type": "Agent Task - Call Reminder"}})
    body = task_body(ASSIGNED, {"id": LEAD_ID}, rules, contact_id=9, assigned_user_id=4).body
    assert body["action_type"] == "Agent Task - Call Reminder" and body["assigned_user_id"] == 4
    assert "Real Geeks: Was assigned" in body["description"]
    assert "By: Jack Johnson <jack@music.com>" in body["description"]


def test_a_task_for_a_huge_note_is_cut_and_reported():
    translation = task_body({"type": "note", "source": "x", "description": "n" * 3000}, {"id": LEAD_ID}, RULES,
                            contact_id=9)
    assert len(translation.body["description"]) == 2000
    assert translation.trims[0]["field"] == "task.description" and translation.trims[0]["limit"] == 2000


def test_a_follow_up_becomes_a_task_with_title_description_purpose_and_due_time():
    from bridge.translate.activity import FOLLOWUP, FOLLOWUP_DONE, followup_task

    event = {"id": "8C2B7A1E-4F7D-4C39-9A51-0D6C1F3E2B10", "title": " Call ", "description": "About financing",
             "happens_at": "2026-12-10T18:30:00.123456789Z", "purpose": "call", "all_day": True}
    created = {"type": "created_a_followup_for", "user": {"id": "1"}, "metadata": {"event": event}}
    assert classify_activity(created, RULES) == FOLLOWUP
    assert classify_activity({**created, "type": "completed_a_followup_for"}, RULES) == FOLLOWUP_DONE
    assert classify_activity({**created, "metadata": {}}, RULES) == "timeline"  # no event: just history
    assert followup_task(created) == {
        "event_id": "8c2b7a1e4f7d4c399a510d6c1f3e2b10", "title": "Call",
        "description": "About financing\nPurpose: call\nAll day", "due_at": "2026-12-10T18:30:00.123Z"}
    odd = followup_task({**created, "metadata": {"event": {"id": "e", "happens_at": "next week"}}})
    assert (odd["title"], odd["due_at"], odd["description"]) == ("Real Geeks follow-up", None, "When: next week")
