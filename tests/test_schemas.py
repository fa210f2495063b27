"""The marshmallow schemas of what Real Geeks sends: fields, unknown keys, timestamps, ids, cleared vs absent."""

import json
from pathlib import Path

import pytest
from marshmallow import ValidationError

from bridge.translate.realgeeks import DROPPED, CLEARED, Instant, load_event, normalize_id, parse_instant

FIXTURE = Path(__file__).parent / "fixtures" / "new_lead.json"

EVERY_LEAD_FIELD = {
    "action": "created", "id": "a27c20af4497415d9e4e7334dd1d40d2", "source": "Website Property Search",
    "source_details": "Searched Kailua", "source_system": "Website", "email": "jack@mail.com",
    "second_email": "jack@work.com", "first_name": "Jack", "last_name": "Johnson", "phone": "808-817-2382",
    "phone2": "(808) 123-1234", "address": "123 Keolu Rd Unit 12, Kailua, HI 96734",
    "street_address": "123 Keolu Rd Unit 12", "city": "Kailua", "state": "HI", "zip": "96734", "role": "Buyer",
    "region": "Kailua", "created": "2015-10-01T06:14:01.597026Z", "timeframe": "3-6 Months", "urgency": "Hot",
    "status": "Active", "notes": "Wants a yard", "tags": ["Beach", "Pool"], "partner_id": "p1",
    "site_uuid": "5ead6dd1-2cb9-4f80-80fc-5716b05c90ba", "site_domain": "www.mysite.com",
    "site_login_url": "https://www.mysite.com/member/quick_login/x/", "agent_name": "Ben Harper",
    "agent_email": "ben@mail.com",
    "activities": [{
        "type": "property_viewed", "source": "Website", "description": "Viewed 123 Keolu Rd",
        "created": "2016-07-06T23:51:00.052125851Z", "notify_users": True, "metadata": {"event": {"id": "e1"}},
        "user": {"id": "14187", "role": "Agent", "admin": False, "name": "Jack Johnson", "email": "jack@music.com",
                 "signature": "Jack", "phone_company": "1", "phone_office": "2", "phone_cell": "3", "phone_home": "4"},
        "property": {"mls": "201412345", "url": "https://www.mysite.com/p/1", "street_address": "123 Keolu Rd",
                     "city": "Kailua", "state": "HI", "zip": "96734", "type": "Condo", "sqft": "1,200",
                     "listing_status": "For Sale", "last_sold_date": "2010", "list_date": "2014-10-02T00:00:00Z",
                     "beds": 2, "full_baths": 1, "half_baths": 1, "listing_days_on_market": 12, "year_built": 1970,
                     "listing_price": "100500.90", "estimated_value": "99000", "last_sold_price": "80000",
                     "rent_price": "2500", "latitude": 21.39, "longitude": -157.74,
                     "images": ["https://img/1.jpg"], "tags": ["ocean"]},
    }],
}


def test_every_documented_field_loads():
    loaded = load_event("created", json.loads(json.dumps(EVERY_LEAD_FIELD)))
    for key in EVERY_LEAD_FIELD:
        assert key in loaded, key
    activity = loaded["activities"][0]
    assert activity["property"]["beds"] == 2 and activity["property"]["latitude"] == 21.39
    assert activity["property"]["listing_price"] == "100500.90"
    assert activity["user"]["email"] == "jack@music.com"
    assert isinstance(activity["created"], Instant)


def test_published_fixture_loads_with_its_activities():
    loaded = load_event("created", json.loads(FIXTURE.read_bytes()))
    assert loaded["id"] == "a27c20af4497415d9e4e7334dd1d40d2"
    assert [a["type"] for a in loaded["activities"]] == ["visited", "search_performed", "saved_search_added"]


@pytest.mark.parametrize("where", ["lead", "activity", "property", "user"])
def test_unknown_fields_are_kept_not_rejected(where):
    payload = json.loads(json.dumps(EVERY_LEAD_FIELD))
    target = {"lead": payload, "activity": payload["activities"][0],
              "property": payload["activities"][0]["property"], "user": payload["activities"][0]["user"]}[where]
    target["brand_new_field"] = {"nested": [1, 2]}
    loaded = load_event("created", payload)
    kept = {"lead": loaded, "activity": loaded["activities"][0],
            "property": loaded["activities"][0]["property"], "user": loaded["activities"][0]["user"]}[where]
    assert kept["brand_new_field"] == {"nested": [1, 2]}


@pytest.mark.parametrize("text, ns", [
    ("2016-07-27T22:27:04Z", 1469658424_000000000),
    ("2015-10-01T06:14:01.597026Z", 1443680041_597026000),
    ("2016-07-06T23:51:00.052125851Z", 1467849060_052125851),
    ("2015-04-01T08:41:51+00:00", 1427877711_000000000),
    ("2015-04-01T18:41:51+10:00", 1427877711_000000000),
])
def test_timestamps_keep_every_nanosecond(text, ns):
    assert parse_instant(text) == Instant(ns, text)
    assert load_event("updated", {"id": "x", "created": text})["created"].ns == ns


def test_timestamps_order_by_their_last_nanosecond():
    earlier = parse_instant("2016-07-06T23:51:00.052125851Z")
    later = parse_instant("2016-07-06T23:51:00.052125852Z")
    assert earlier < later and earlier.datetime == later.datetime  # datetime alone cannot tell them apart


@pytest.mark.parametrize("received", ["a27c20af4497415d9e4e7334dd1d40d2", "A27C20AF-4497-415D-9E4E-7334DD1D40D2",
                                      "a27c20af-4497-415d-9e4e-7334dd1d40d2"])
def test_ids_with_or_without_dashes_are_normalised_and_the_received_form_kept(received):
    loaded = load_event("created", {"id": received})
    assert loaded["id"] == normalize_id(received) == "a27c20af4497415d9e4e7334dd1d40d2"
    assert loaded["received_id"] == received


@pytest.mark.parametrize("field", ["first_name", "phone2", "email", "created", "tags", "urgency", "state"])
def test_absent_stays_absent(field):
    assert field not in load_event("updated", {"id": "x"})


@pytest.mark.parametrize("field", ["first_name", "phone2", "email", "second_email", "created", "urgency", "zip"])
@pytest.mark.parametrize("cleared", ["", None])
def test_empty_string_or_null_means_cleared(field, cleared):
    assert load_event("updated", {"id": "x", field: cleared})[field] == CLEARED


def test_cleared_property_numbers_and_prices():
    loaded = load_event("activity_added", {"id": "x", "activities": [
        {"type": "property_viewed", "property": {"listing_price": "", "beds": None}}]})
    prop = loaded["activities"][0]["property"]
    assert prop["listing_price"] == CLEARED and prop["beds"] is None


@pytest.mark.parametrize("payload", [{}, {"id": ""}, {"id": None}, {"id": []}])
def test_only_a_delivery_without_a_usable_lead_id_is_rejected(payload):
    with pytest.raises(ValidationError) as caught:
        load_event("created", payload)
    assert "id" in caught.value.messages


@pytest.mark.parametrize("payload, dropped, kept", [
    ({"id": "x", "email": "not-an-email", "first_name": "Ann"}, "email: Not a valid email address", "first_name"),
    ({"id": "x", "created": "yesterday", "first_name": "Ann"}, "created: Not a valid ISO 8601 timestamp", "first_name"),
    ({"id": "x", "activities": [{"description": "no type"}, {"type": "visited"}]},
     "activities[0]: dropped, it has no type", "activities"),
    ({"id": "x", "activities": [{"type": "t", "created": "soon"}]}, "activities[0].created", "activities"),
    ({"id": "x", "activities": [{"type": "t", "property": {"beds": "two", "city": "Kailua"}}]},
     "activities[0].property.beds: Not a valid number (got 'two')", "activities"),
    ({"id": "x", "activities": [{"type": "t", "property": {"beds": ""}}]},
     "activities[0].property.beds: Not a valid number (got '')", "activities"),
    ({"id": "x", "activities": [{"type": "t", "property": {"listing_price": "Call for price"}}]},
     "activities[0].property.listing_price: Not a valid number (got 'Call for price')", "activities"),
    ({"id": "x", "activities": [{"type": "was_assigned", "user": {"id": "7", "email": "a@x.com, b@y.com"}}]},
     "activities[0].user.email: Not a valid email address (got 'a@x.com, b@y.com')", "activities"),
    ({"id": "x", "activities": [{"type": "was_assigned", "user": {"name": "no id"}}]},
     "activities[0].user: dropped, it has no id", "activities"),
])
def test_an_unreadable_value_is_dropped_with_a_note_and_the_rest_loads(payload, dropped, kept):
    loaded = load_event("created", payload)
    (note,) = loaded[DROPPED]
    assert note.startswith(dropped), note
    assert kept in loaded and loaded["id"] == "x"


def test_counts_keep_their_value_and_tags_keep_their_meaning():
    loaded = load_event("created", {"id": "x", "tags": "", "activities": [{"type": "t", "property": {
        "full_baths": 2.5, "beds": "3", "half_baths": 1.0, "tags": "Beach, Condo"}}]})
    prop = loaded["activities"][0]["property"]
    assert (prop["full_baths"], prop["beds"], prop["half_baths"]) == (2.5, 3, 1)
    assert prop["tags"] == ["Beach", "Condo"] and loaded["tags"] == [] and DROPPED not in loaded


def test_user_updated_payload_is_a_user():
    loaded = load_event("user_updated", {"action": "user_updated", "id": 14187, "name": "Jack Johnson",
                                         "email": "jack@music.com", "role": "Agent", "admin": True})
    assert loaded["id"] == "14187" and loaded["admin"] is True
