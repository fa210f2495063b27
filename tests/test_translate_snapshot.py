"""Snapshots: a Real Geeks lead and the LionDesk contact written from it agree; diff, merge, patches, conflicts."""

import json
from pathlib import Path

import pytest

from bridge.translate.contact import contact_body
from bridge.translate.realgeeks import load_event, parse_instant
from bridge.translate.rules import load_rules, merge
from bridge.translate.snapshot import (
    SNAPSHOT_FIELDS, diff, empty_snapshot, liondesk_patch, merge_snapshot, realgeeks_assignment,
    realgeeks_new_lead, realgeeks_patch, resolve_conflict, snapshot_from_liondesk, snapshot_from_realgeeks,
)

RULES = load_rules()
LEAD_ID = "a27c20af4497415d9e4e7334dd1d40d2"
FIXTURE = Path(__file__).parent / "fixtures" / "new_lead.json"
HOTNESS_IDS = {"Hot": 7, "Warm": 8, "Cold": 9}
HOTNESS_NAMES = {7: "hot", 8: "Warm", 9: "Cold"}          # LionDesk's own spelling may differ in case
USER_IDS = {"jack@music.com": 21, "ben@mail.com": 22}
USER_EMAILS = {21: "Jack@Music.com", 22: "ben@mail.com"}
ASSIGNED = {"type": "was_assigned", "source": "LeadManager", "created": "2016-07-06T23:51:00.052125851Z",
            "user": {"id": "14187", "role": "Agent", "name": "Jack Johnson", "email": "jack@music.com"}}

LEADS = {
    "published example": json.loads(FIXTURE.read_text()),
    "every field": {
        "id": LEAD_ID, "source": "Website", "first_name": " Leilani ", "last_name": "Kealoha",
        "email": "Leilani.Kealoha@Example.COM", "phone": "808.817.2382", "phone2": "+44 20 7946 0958",
        "street_address": "45-123 Kamehameha Hwy", "city": "Kaneohe", "state": "hawaii", "zip": 96744,
        "urgency": "warm", "tags": ["VIP", "Oceanfront", "vip"], "activities": [ASSIGNED],
    },
    "values LionDesk must cut": {
        "id": LEAD_ID, "source": "Website", "first_name": "F" * 300, "street_address": "S" * 80,
        "phone2": "only after 6pm please, the number is on the form",
        "tags": [f"t{i:02d}" + "x" * 60 for i in range(12)],
        "state": "Ontario", "urgency": "Contacted",
    },
    "cleared values": {
        "id": LEAD_ID, "source": "Website", "email": "", "phone2": "", "city": "", "state": "", "urgency": "",
        "tags": None, "agent_email": "",
    },
    "one-line address": {"id": LEAD_ID, "source": "Website", "address": "9 Home Ln, Hilo, HI 96720", "role": "Seller"},
}


def stored(translation, **extra):
    """The LionDesk contact as LionDesk keeps what the bridge wrote (ids as ids, hotness as an object)."""
    contact = {"id": 501, "owner_user_id": 3, **translation.body, **extra}
    if translation.address is not None:
        contact["addresses"] = [{"id": "147", **translation.address, "created_at": "2020-01-01T00:00:00.000Z"}]
    if "hotness_id" in contact:
        hotness = contact["hotness_id"]
        contact["hotness"] = {"name": HOTNESS_NAMES[hotness], "rank": 1, "color": "#ff0000"} if hotness else None
    return contact


def fetched(translation):
    """The contact as a full GET returns it: every field, null where nothing was written."""
    blank = {"first_name": None, "last_name": None, "email": None, "mobile_phone": None, "home_phone": None,
             "office_phone": None, "tags": None, "hotness_id": None, "assigned_user_id": None, "addresses": []}
    contact = {**blank, **stored(translation)}
    contact["hotness"] = contact.get("hotness")
    unwritten = {"street_address_1": None, "street_address_2": None, "city": None, "state": None, "zip": None}
    contact["addresses"] = [{**unwritten, **record} for record in contact["addresses"]]
    return contact


@pytest.mark.parametrize("name", LEADS)
def test_a_lead_and_the_contact_written_from_it_give_identical_snapshots(name):
    lead = load_event("created", LEADS[name])
    translation = contact_body(lead, RULES, hotness_ids=HOTNESS_IDS, user_ids=USER_IDS)
    from_liondesk = snapshot_from_liondesk(stored(translation), RULES, user_emails=USER_EMAILS)
    assert from_liondesk == snapshot_from_realgeeks(lead, RULES)


@pytest.mark.parametrize("name", LEADS)
def test_a_new_contact_read_back_in_full_is_an_echo_of_the_lead(name):
    lead = load_event("created", LEADS[name])
    translation = contact_body(lead, RULES, first_sync=True, hotness_ids=HOTNESS_IDS, user_ids=USER_IDS)
    last = merge_snapshot(empty_snapshot(), snapshot_from_realgeeks(lead, RULES))
    polled = snapshot_from_liondesk(fetched(translation), RULES, user_emails=USER_EMAILS)
    assert set(polled) == set(SNAPSHOT_FIELDS)
    assert diff(last, polled) == {}


def test_the_snapshot_holds_comparable_forms():
    snapshot = snapshot_from_realgeeks(load_event("created", LEADS["every field"]), RULES)
    assert snapshot == {
        "first_name": "Leilani", "last_name": "Kealoha", "email": "leilani.kealoha@example.com",
        "phone": "+18088172382", "phone2": "+442079460958", "street_address": "45-123 Kamehameha Hwy",
        "city": "Kaneohe", "state": "HI", "zip": "96744", "tags": ["Oceanfront", "VIP"], "hotness": "Warm",
        "agent_email": "jack@music.com",
    }


def test_a_partial_update_snapshots_only_what_it_carries():
    update = load_event("updated", {"id": LEAD_ID, "phone2": "", "first_name": "Jack"})
    assert snapshot_from_realgeeks(update, RULES) == {"first_name": "Jack", "phone2": ""}


def test_the_snapshot_compares_what_liondesk_can_hold():
    snapshot = snapshot_from_realgeeks(load_event("created", LEADS["values LionDesk must cut"]), RULES)
    assert snapshot["first_name"] == "F" * 255 and snapshot["street_address"] == "S" * 45
    assert len(",".join(["Real Geeks", *snapshot["tags"]])) <= 508
    assert "hotness" not in snapshot  # "Contacted" maps to no hotness


def test_liondesk_fields_it_does_not_report_are_left_out_not_cleared():
    snapshot = snapshot_from_liondesk({"first_name": "Jack", "assigned_user_id": 99}, RULES, user_emails=USER_EMAILS)
    assert snapshot == {"first_name": "Jack"}  # no addresses, no tags, an agent we cannot name


@pytest.mark.parametrize("contact, hotness", [
    ({"hotness": {"name": "HOT"}}, "Hot"),
    ({"hotness": None, "hotness_id": None}, ""),
    ({"hotness_id": 8}, "Warm"),
    ({"hotness_id": 0}, ""),
    ({"hotness": {"name": "Lukewarm"}}, "Lukewarm"),
])
def test_liondesk_hotness_is_read_by_name(contact, hotness):
    assert snapshot_from_liondesk(contact, RULES, hotness_names=HOTNESS_NAMES)["hotness"] == hotness


def test_the_configured_address_type_is_preferred_over_other_addresses():
    contact = {"addresses": [{"type": "Mailing", "city": "Honolulu"}, {"type": "Home", "city": "Kailua"}]}
    assert snapshot_from_liondesk(contact, RULES)["city"] == "Kailua"
    assert snapshot_from_liondesk({"addresses": [{"type": "Mailing", "city": "Honolulu"}]}, RULES)["city"] == "Honolulu"


@pytest.mark.parametrize("old, new, merged", [
    ({"phone": "+1808", "city": "Hilo"}, {"city": "Kona"}, {"phone": "+1808", "city": "Kona"}),
    ({"phone": "+1808", "city": "Hilo"}, {"phone": ""}, {"phone": "", "city": "Hilo"}),
    ({"phone": "+1808"}, {}, {"phone": "+1808"}),
    ({"tags": ["a"]}, {"tags": []}, {"tags": []}),
    ({}, {"email": "a@b.c"}, {"email": "a@b.c"}),
])
def test_merge_keeps_absent_fields_and_clears_empty_ones(old, new, merged):
    assert merge_snapshot(old, new) == merged


@pytest.mark.parametrize("old, new, changed", [
    ({"phone": "+1808", "city": "Hilo"}, {"phone": "+1808", "city": "Kona"}, {"city": "Kona"}),
    ({"phone": "+1808"}, {"phone": ""}, {"phone": ""}),
    ({"phone": "+1808"}, {}, {}),                              # absent: unchanged
    ({}, {"phone": ""}, {}),                                   # never set and still empty
    ({}, {"tags": []}, {}),
    ({}, {"phone": "+1808"}, {"phone": "+1808"}),
    ({"tags": ["a", "b"]}, {"tags": ["a"]}, {"tags": ["a"]}),
    ({"tags": ["a"]}, {"tags": ["a"]}, {}),
])
def test_diff_returns_changed_fields_only(old, new, changed):
    assert diff(old, new) == changed
    assert diff(old, merge_snapshot(old, new)) == changed


def test_an_agents_edit_in_liondesk_goes_back_and_its_echo_is_recognised():
    lead = load_event("created", LEADS["every field"])
    translation = contact_body(lead, RULES, first_sync=True, hotness_ids=HOTNESS_IDS, user_ids=USER_IDS)
    last = merge_snapshot(empty_snapshot(), snapshot_from_realgeeks(lead, RULES))
    edited = {**fetched(translation), "mobile_phone": "808 555 1212", "hotness_id": 9, "hotness": {"name": "Cold"}}
    changed = diff(last, snapshot_from_liondesk(edited, RULES, user_emails=USER_EMAILS))
    assert changed == {"phone": "+18085551212", "hotness": "Cold"}
    body = realgeeks_patch(changed, RULES)
    assert body == {"phone": "(808) 555-1212", "urgency": "Cold"}
    last = merge_snapshot(last, changed)
    echo = load_event("updated", {"id": LEAD_ID, **body})
    assert diff(last, snapshot_from_realgeeks(echo, RULES)) == {}


@pytest.mark.parametrize("changed, body, address", [
    ({"phone": "+18088172382"}, {"mobile_phone": "(808) 817-2382"}, None),
    ({"phone2": "+442079460958"}, {"home_phone": "+44 20 7946 0958"}, None),
    ({"email": ""}, {"email": ""}, None),
    ({"first_name": "Jack"}, {"first_name": "Jack"}, None),
    ({"state": "HI", "zip": ""}, {}, {"type": "Home", "state": "Hawaii", "zip": ""}),
    ({"tags": ["Oceanfront", "VIP"]}, {"tags": "Real Geeks,Oceanfront,VIP"}, None),
    ({"tags": []}, {"tags": "Real Geeks"}, None),
    ({"hotness": "Hot"}, {"hotness_id": 7}, None),
    ({"hotness": ""}, {"hotness_id": None}, None),
    ({"agent_email": "jack@music.com"}, {"assigned_user_id": 21}, None),
    ({"agent_email": ""}, {"assigned_user_id": None}, None),
])
def test_liondesk_patch_turns_snapshot_fields_into_contact_fields(changed, body, address):
    translation = liondesk_patch(changed, RULES, hotness_ids=HOTNESS_IDS, user_ids=USER_IDS)
    assert translation.body == body and translation.address == address


@pytest.mark.parametrize("changed, body", [
    ({"phone": "+18088172382", "phone2": ""}, {"phone": "(808) 817-2382", "phone2": ""}),
    ({"email": "jack@mail.com", "first_name": ""}, {"email": "jack@mail.com", "first_name": ""}),
    ({"street_address": "1 A St", "state": "HI", "zip": "96734"}, {"street_address": "1 A St", "state": "HI",
                                                                   "zip": "96734"}),
    ({"tags": ["VIP"]}, {"tags": ["VIP"]}),
    ({"hotness": "Hot"}, {"urgency": "Hot"}),
    ({"hotness": ""}, {"urgency": ""}),
    ({"hotness": "Lukewarm"}, {}),                  # no urgency is mapped to it
    ({"agent_email": "jack@music.com"}, {}),        # assignment is an activity in Real Geeks
])
def test_realgeeks_patch_turns_snapshot_fields_into_lead_fields(changed, body):
    assert realgeeks_patch(changed, RULES) == body


@pytest.mark.parametrize("changed, overrides, activity", [
    ({"agent_email": "jack@music.com"}, {},
     {"type": "was_assigned", "user": {"id": "14187"}}),
    ({"agent_email": "jack@brokerage.com"}, {"14187": "jack@brokerage.com"},
     {"type": "was_assigned", "user": {"id": "14187"}}),
    ({"agent_email": "jj@brokerage.com"}, {"Jack@Music.com": "jj@brokerage.com"},
     {"type": "was_assigned", "user": {"id": "14187"}}),
    ({"agent_email": ""}, {}, {"type": "was_unassigned"}),
    ({"agent_email": "stranger@x.com"}, {}, None),
    ({"phone": "+18088172382"}, {}, None),
])
def test_realgeeks_assignment_names_the_real_geeks_user(changed, overrides, activity):
    rules = merge(RULES, {"agents": {"liondesk_email": overrides}})
    built = realgeeks_assignment(changed, rules, realgeeks_user_ids={"JACK@music.com": "14187"})
    if activity is None:
        assert built is None
    else:
        assert {key: built[key] for key in activity} == activity and built["source"] == "LionDesk"


def test_realgeeks_new_lead_from_a_liondesk_contact():
    snapshot = {**empty_snapshot(), "first_name": "Kai", "email": "kai@x.com", "phone": "+18088172382"}
    assert realgeeks_new_lead(snapshot, RULES, lead_id="0f" * 16) == {
        "id": "0f" * 16, "source": "LionDesk", "first_name": "Kai", "email": "kai@x.com", "phone": "(808) 817-2382"}


T1 = parse_instant("2024-03-01T10:00:00.000000001Z").ns
T2 = parse_instant("2024-03-01T10:00:00.000000002Z").ns


@pytest.mark.parametrize("rg_time, ld_time, winner, value, reason_part", [
    (T2, T1, "realgeeks", "rg", "changed in Real Geeks"),
    (T1, T2, "liondesk", "ld", "changed in LionDesk"),            # one nanosecond later wins
    (T1, T1, "realgeeks", "rg", "Real Geeks wins ties"),
    (None, T1, "liondesk", "ld", "Real Geeks' change time is unknown"),
    (T1, None, "realgeeks", "rg", "LionDesk's change time is unknown"),
    (None, None, "realgeeks", "rg", "change times unknown"),
])
def test_resolve_conflict_is_last_writer_wins_per_field(rg_time, ld_time, winner, value, reason_part):
    resolution = resolve_conflict("phone", value if winner == "realgeeks" else "rg", rg_time,
                                  value if winner == "liondesk" else "ld", ld_time)
    assert (resolution.field, resolution.winner, resolution.value) == ("phone", winner, value)
    assert reason_part in resolution.reason and resolution.reason.startswith("phone:")


def test_resolve_conflict_with_equal_values_is_no_conflict():
    resolution = resolve_conflict("email", "a@b.c", T1, "a@b.c", T2)
    assert resolution.value == "a@b.c" and "same value" in resolution.reason


def test_a_contact_without_any_address_record_has_its_address_fields_empty():
    snapshot = snapshot_from_liondesk({"addresses": []}, RULES)
    assert snapshot == {"street_address": "", "city": "", "state": "", "zip": ""}
