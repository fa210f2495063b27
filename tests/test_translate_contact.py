"""Real Geeks lead → LionDesk contact body and address: absent stays absent, "" clears, limits hold."""

import json
from pathlib import Path

import pytest

from bridge.translate import liondesk
from bridge.translate.contact import contact_body, email_search_forms
from bridge.translate.realgeeks import load_event
from bridge.translate.rules import load_rules, merge

RULES = load_rules()
LEAD_ID = "a27c20af4497415d9e4e7334dd1d40d2"
FIXTURE = Path(__file__).parent / "fixtures" / "new_lead.json"


def lead(action="updated", **fields):
    """A Real Geeks delivery for one lead, loaded the way the sync gets it."""
    return load_event(action, {"id": LEAD_ID, **fields})


# Real Geeks field, value sent, LionDesk record, LionDesk field, value written.
FIELDS = [
    ("first_name", "  Jack ", "body", "first_name", "Jack"),
    ("last_name", "Johnson", "body", "last_name", "Johnson"),
    ("email", "Jack@Mail.com", "body", "email", "Jack@Mail.com"),
    ("phone", "808.817.2382", "body", "mobile_phone", "(808) 817-2382"),
    ("phone2", "+44 20 7946 0958", "body", "home_phone", "+44 20 7946 0958"),
    ("street_address", "123 Keolu Rd", "address", "street_address_1", "123 Keolu Rd"),
    ("city", "Kailua", "address", "city", "Kailua"),
    ("state", "HI", "address", "state", "Hawaii"),
    ("zip", 96734, "address", "zip", "96734"),
]


def record(translation, where):
    """The contact body or the address record of a translation ({} when there is no address)."""
    return translation.body if where == "body" else (translation.address or {})


@pytest.mark.parametrize("field, sent, where, key, written", FIELDS)
def test_a_present_field_is_written_in_liondesk_form(field, sent, where, key, written):
    translation = contact_body(lead(**{field: sent}), RULES)
    assert record(translation, where) == ({key: written} if where == "body" else {"type": "Home", key: written})


@pytest.mark.parametrize("field, sent, where, key, written", FIELDS)
def test_a_cleared_field_is_written_empty_so_the_patch_clears_it(field, sent, where, key, written):
    for cleared in ("", None):
        translation = contact_body(lead(**{field: cleared}), RULES)
        assert record(translation, where)[key] == ""


@pytest.mark.parametrize("field, sent, where, key, written", FIELDS)
def test_an_absent_field_produces_no_key(field, sent, where, key, written):
    others = {name: value for name, value, *_ in FIELDS if name != field}
    translation = contact_body(lead(**others), RULES)
    assert key not in record(translation, where)


def test_a_lead_without_address_fields_has_no_address_record():
    translation = contact_body(lead(first_name="Jack"), RULES)
    assert translation.address is None and translation.body == {"first_name": "Jack"}


def test_the_one_line_address_fills_the_street_when_no_street_is_given():
    translation = contact_body(lead(address="45-123 Kam Hwy, Kaneohe, HI 96744", city="Kaneohe"), RULES)
    assert translation.address == {"type": "Home", "street_address_1": "45-123 Kam Hwy, Kaneohe, HI 96744",
                                   "city": "Kaneohe"}
    both = contact_body(lead(address="45-123 Kam Hwy, Kaneohe", street_address="45-123 Kam Hwy"), RULES)
    assert both.address["street_address_1"] == "45-123 Kam Hwy"


def test_the_address_type_follows_the_rules():
    rules = merge(RULES, {"contact": {"address_type": "Mailing"}})
    assert contact_body(lead(city="Hilo"), rules).address["type"] == "Mailing"


@pytest.mark.parametrize("tags, written", [
    (["VIP", "Kailua"], "Real Geeks,VIP,Kailua"),
    ([], "Real Geeks"),            # cleared: only what the bridge always adds
    (None, "Real Geeks"),
    (["real geeks", "VIP"], "Real Geeks,VIP"),
])
def test_tags_join_extra_and_lead_tags_into_one_string(tags, written):
    assert contact_body(lead(tags=tags), RULES).body["tags"] == written


def test_absent_tags_write_no_tags_on_update_but_the_extra_tags_on_first_sync():
    assert "tags" not in contact_body(lead(first_name="Jack"), RULES).body
    assert contact_body(lead(first_name="Jack"), RULES, first_sync=True).body["tags"] == "Real Geeks"


def test_first_sync_keeps_the_linked_contacts_own_tags_first():
    translation = contact_body(lead(tags=["VIP", "past client"]), RULES, first_sync=True,
                               existing_tags="Past Client, Sphere")
    assert translation.body["tags"] == "Real Geeks,Past Client,Sphere,VIP"


def test_tags_over_508_characters_are_dropped_whole_and_reported():
    many = [f"neighbourhood-{i:02d}-" + "k" * 30 for i in range(15)]
    translation = contact_body(lead(tags=many), RULES)
    assert len(translation.body["tags"]) <= 508
    assert translation.body["tags"].startswith("Real Geeks,")
    assert translation.dropped_tags == many[-len(translation.dropped_tags):] and translation.dropped_tags
    assert translation.facts()["dropped_tags"] == translation.dropped_tags
    assert any("dropped" in note for note in translation.notes)


@pytest.mark.parametrize("field, where, key, limit", [
    ("first_name", "body", "first_name", 255),
    ("last_name", "body", "last_name", 255),
    ("email", "body", "email", 255),
    ("phone2", "body", "home_phone", 45),
    ("street_address", "address", "street_address_1", 45),
    ("city", "address", "city", 200),
    ("zip", "address", "zip", 45),
    ("state", "address", "state", 200),
])
def test_values_over_a_limit_are_cut_and_reported(field, where, key, limit):
    value = "a" * (limit + 7) if field != "email" else "a" * limit + "@b.com"
    if field == "phone2":
        value = "ask for the night number, " * 3  # not a number: kept as text, so it can be long
    translation = contact_body(lead(**{field: value}), RULES)
    written = record(translation, where)[key]
    assert len(written) == limit and value.strip().startswith(written)
    prefix = "contact" if where == "body" else "address"
    assert translation.trims == [{"field": f"{prefix}.{key}", "original_length": len(value.strip()), "limit": limit}]
    assert translation.facts()["trims"] == translation.trims


def test_nothing_to_report_when_nothing_had_to_give():
    assert contact_body(lead(first_name="Jack"), RULES).facts() == {}


@pytest.mark.parametrize("urgency, hotness, hotness_id", [
    ("Hot", "Hot", 7), ("warm", "Warm", 8), ("Cold", "Cold", 9), ("", "", None),
])
def test_urgency_sets_the_hotness_by_name(urgency, hotness, hotness_id):
    ids = {"hot": 7, "Warm": 8, "COLD": 9}
    translation = contact_body(lead(urgency=urgency), RULES, hotness_ids=ids)
    assert translation.hotness == hotness
    assert translation.body["hotness_id"] == hotness_id


@pytest.mark.parametrize("fields", [{"urgency": "Contacted"}, {"urgency": "Not Contacted"}, {"first_name": "Jack"}])
def test_an_unmapped_or_absent_urgency_leaves_the_hotness_alone(fields):
    translation = contact_body(lead(**fields), RULES, hotness_ids={"Hot": 7})
    assert translation.hotness is None and "hotness_id" not in translation.body


def test_a_hotness_liondesk_lacks_is_noted_not_guessed():
    translation = contact_body(lead(urgency="Hot"), RULES, hotness_ids={"Warm": 8})
    assert "hotness_id" not in translation.body and translation.hotness == "Hot"
    assert any("'Hot'" in note for note in translation.notes)


def test_without_reference_maps_names_stay_in_the_translation_only():
    activity = {"type": "was_assigned", "source": "LeadManager", "created": "2016-07-06T23:51:00.052125851Z",
                "user": {"id": "14187", "role": "Agent", "name": "Jack Johnson", "email": "jack@music.com"}}
    translation = contact_body(lead(urgency="Hot", activities=[activity]), RULES)
    assert translation.hotness == "Hot" and translation.agent_email == "jack@music.com"
    assert "hotness_id" not in translation.body and "assigned_user_id" not in translation.body


@pytest.mark.parametrize("activities, agent_fields, assigned", [
    ([{"type": "was_assigned", "source": "LeadManager", "created": "2016-07-06T23:51:00Z",
       "user": {"id": "14187", "role": "Agent", "email": "Jack@Music.com"}}], {}, 21),
    ([{"type": "was_unassigned", "source": "LeadManager", "created": "2016-07-06T23:51:00Z"}], {}, None),
])
def test_the_assigned_agent_becomes_the_assigned_user(activities, agent_fields, assigned):
    translation = contact_body(lead(activities=activities, **agent_fields), RULES,
                               user_ids={"jack@music.com": 21, "BEN@mail.com": 22})
    assert translation.body["assigned_user_id"] == assigned


@pytest.mark.parametrize("agent_fields", [{"agent_email": "ben@mail.com"}, {"agent_email": ""}])
def test_the_deprecated_agent_email_assigns_nobody(agent_fields):
    translation = contact_body(lead(**agent_fields), RULES, user_ids={"BEN@mail.com": 22})
    assert "assigned_user_id" not in translation.body


def test_an_agent_override_maps_a_real_geeks_user_to_another_liondesk_email():
    rules = merge(RULES, {"agents": {"liondesk_email": {"14187": "jack@brokerage.com"}}})
    activity = {"type": "was_assigned", "source": "LeadManager", "created": "2016-07-06T23:51:00Z",
                "user": {"id": "14187", "email": "jack@music.com"}}
    translation = contact_body(lead(activities=[activity]), rules, user_ids={"jack@brokerage.com": 5})
    assert translation.agent_email == "jack@brokerage.com" and translation.body["assigned_user_id"] == 5


def test_source_id_is_written_only_when_given():
    assert contact_body(lead(first_name="J"), RULES, source_id=12).body["source_id"] == 12
    assert "source_id" not in contact_body(lead(first_name="J"), RULES).body


def test_the_second_email_is_not_put_on_the_contact_but_noted():
    translation = contact_body(lead(email="jack@mail.com", second_email="jill@mail.com"), RULES)
    assert "jill@mail.com" not in json.dumps(translation.body)
    assert any("second_email" in note for note in translation.notes)


def test_the_published_example_lead_becomes_this_contact():
    translation = contact_body(load_event("created", json.loads(FIXTURE.read_text())), RULES, first_sync=True,
                               source_id=3, user_ids={"ben@mail.com": 44})
    assert translation.body == {"first_name": "Jack", "last_name": "Johnson", "email": "jack@mail.com",
                                "mobile_phone": "(808) 817-2382", "tags": "Real Geeks", "source_id": 3}
    # Its `agent_email: ben@mail.com` is the deprecated field: not an assignment (no was_assigned activity).
    assert translation.address is None and translation.trims == []
    assert liondesk.CONTACT_BODY.validate(translation.body) == {}


def test_every_body_passes_the_liondesk_schema():
    big = {name: "z" * 600 for name in ("first_name", "last_name", "street_address", "city", "zip", "state")}
    translation = contact_body(lead(**big, phone="x" * 300, phone2="y" * 300, tags=["t" * 100, "u" * 300, "v" * 300]),
                               RULES, first_sync=True)
    assert liondesk.CONTACT_BODY.validate(translation.body) == {}
    assert liondesk.ADDRESS.validate(translation.address) == {}


@pytest.mark.parametrize("emails, forms", [
    (["Jack@Mail.com"], ["Jack@Mail.com", "jack@mail.com"]),
    ([" jack@mail.com ", "JACK@mail.com", None, ""], ["jack@mail.com", "JACK@mail.com"]),
    ([], []),
])
def test_email_search_forms_cover_the_given_and_lowercase_spellings(emails, forms):
    assert email_search_forms(emails) == forms
