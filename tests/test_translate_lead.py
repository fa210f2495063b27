"""Real Geeks lead → LionDesk lead: type by role, text, property of the latest activity, source and campaign names."""

import json
from pathlib import Path

import pytest

from bridge.translate import liondesk
from bridge.translate.lead import campaign_name, lead_body, lead_property, lead_source_name, lead_text, lead_type
from bridge.translate.realgeeks import load_event
from bridge.translate.rules import load_rules, merge

RULES = load_rules()
LEAD_ID = "a27c20af4497415d9e4e7334dd1d40d2"
FIXTURE = Path(__file__).parent / "fixtures" / "new_lead.json"


def lead(**fields):
    """A `created` delivery for one lead, loaded the way the sync gets it."""
    return load_event("created", {"id": LEAD_ID, "source": "Website Property Search", **fields})


def viewed(created, **prop):
    """A property_viewed activity at `created` about a property with `prop` fields."""
    return {"type": "property_viewed", "source": "Website", "description": "Viewed a listing",
            "created": created, "property": prop}


@pytest.mark.parametrize("role, kind", [
    ("Buyer", "Buyer"), ("Seller", "Seller"), ("Buyer and Seller", "Buyer and Seller"),
    ("Renter", "Renter"), ("Potential Seller", "Seller"), ("buyer", "Buyer"),
    ("Landlord", None), ("", None), (None, None),
])
def test_lead_type_follows_the_role_table(role, kind):
    fields = {} if role is None else {"role": role}
    assert lead_type(lead(**fields), RULES) == kind


def test_an_unknown_role_takes_the_configured_default_type():
    rules = merge(RULES, {"lead": {"default_type": "Buyer"}})
    assert lead_type(lead(role="Landlord"), rules) == "Buyer"


@pytest.mark.parametrize("table, source, name", [
    ({}, "Website Property Search", "Website Property Search"),        # identity by default
    ({"website property search": "Real Geeks"}, "Website Property Search", "Real Geeks"),
    ({"Website Property Search": ""}, "Website Property Search", None),  # listed as "": no lead source
    ({}, "", None),
])
def test_lead_source_name_is_the_source_unless_mapped(table, source, name):
    rules = merge(RULES, {"lead": {"source_names": table}})
    assert lead_source_name(load_event("updated", {"id": LEAD_ID, "source": source}), rules) == name


def test_a_lead_without_source_has_no_source_name():
    assert lead_source_name(load_event("updated", {"id": LEAD_ID}), RULES) is None


@pytest.mark.parametrize("by_role, role, campaign", [
    ({}, "Buyer", None),
    ({"Buyer": "Buyer Drip"}, "Buyer", "Buyer Drip"),
    ({"Buyer": "Buyer Drip"}, "Seller", None),
])
def test_campaign_by_role_is_empty_by_default(by_role, role, campaign):
    rules = merge(RULES, {"campaigns": {"by_role": by_role}})
    assert campaign_name(lead(role=role), rules) == campaign


def test_lead_text_summarises_what_the_contact_cannot_hold():
    text = lead_text(lead(source_details="Zillow Premier", role="Buyer", region="Honolulu", timeframe="3-6 Months",
                          second_email="jill@mail.com", notes="Wants a lanai",
                          site_login_url="https://www.mysite.com/member/quick_login/x/"))
    assert text.splitlines() == [
        "Source: Website Property Search", "Source details: Zillow Premier", "Role: Buyer", "Area: Honolulu",
        "Timeframe: 3-6 Months", "Second email: jill@mail.com", "Notes: Wants a lanai",
        "Log in as this lead: https://www.mysite.com/member/quick_login/x/",
        f"Real Geeks lead id: {LEAD_ID}",
    ]


def test_lead_text_leaves_out_empty_and_cleared_values():
    text = lead_text(lead(notes="", second_email="", region=None))
    assert "Notes" not in text and "Second email" not in text and "Area" not in text


def test_the_property_comes_from_the_most_recent_activity_by_time_not_list_order():
    activities = [
        viewed("2020-01-01T00:00:00.000000002Z", street_address="2 Late St", mls="222", listing_price="900000",
               listing_status="For Sale", city="Kailua", state="Hawaii", zip="96734"),
        viewed("2020-01-01T00:00:00.000000001Z", street_address="1 Early St", mls="111"),
        {"type": "visited", "source": "Website", "description": "Came back", "created": "2021-01-01T00:00:00Z"},
    ]
    assert lead_property(lead(activities=activities), RULES) == {
        "mls_id": "222", "listing_price": "900000", "listing_status": "For Sale",
        "street_address": "2 Late St", "city": "Kailua", "state": "HI", "zipcode": "96734"}


def test_an_activity_without_time_counts_as_oldest_for_the_property():
    untimed = viewed(None, street_address="Untimed St")
    del untimed["created"]
    activities = [viewed("2020-01-01T00:00:00Z", street_address="Timed St"), untimed]
    assert lead_property(lead(activities=activities), RULES)["street_address"] == "Timed St"


@pytest.mark.parametrize("role, expected", [
    ("Seller", {"street_address": "9 Home Ln", "city": "Hilo", "state": "HI", "zipcode": "96720"}),
    ("Potential Seller", {"street_address": "9 Home Ln", "city": "Hilo", "state": "HI", "zipcode": "96720"}),
    ("Buyer", {}),
])
def test_owners_without_a_property_activity_get_their_own_address(role, expected):
    person = lead(role=role, street_address="9 Home Ln", city="Hilo", state="Hawaii", zip="96720")
    assert lead_property(person, RULES) == expected


def test_lead_body_for_the_published_example():
    translation = lead_body(load_event("created", json.loads(FIXTURE.read_text())), RULES, contact_id=123,
                            source_id=1)
    assert translation.body == {
        "contact_id": 123, "source_id": 1, "type": "Buyer",
        "text_body": f"Source: Website Property Search\nRole: Buyer\nReal Geeks lead id: {LEAD_ID}",
    }
    assert liondesk.LEAD_BODY.validate(translation.body) == {}


def test_lead_body_leaves_out_a_missing_source_and_type():
    body = lead_body(lead(role="Landlord"), RULES, contact_id=5).body
    assert "source_id" not in body and "type" not in body and body["contact_id"] == 5


def test_lead_body_carries_the_property_fields():
    activities = [viewed("2020-01-01T00:00:00Z", street_address="171 Lake Washington Blvd E", city="Seattle",
                         state="WA", zip="98112", mls=2000, listing_price=10000000, listing_status="For Sale")]
    body = lead_body(lead(role="Buyer", activities=activities), RULES, contact_id=5).body
    assert {key: body[key] for key in ("mls_id", "listing_price", "street_address", "state", "zipcode")} == {
        "mls_id": "2000", "listing_price": "10000000", "street_address": "171 Lake Washington Blvd E",
        "state": "WA", "zipcode": "98112"}


def test_details_only_the_lead_text_holds_are_compared_line_by_line():
    from bridge.translate.lead import details_changes, text_fields

    first = text_fields(load_event("created", {"id": "x", "status": "Active", "timeframe": "1 Week",
                                               "notes": "n", "site_login_url": "https://a"}))
    later = {**first, **text_fields(load_event("updated", {"id": "x", "status": "Dead", "notes": "",
                                                           "site_login_url": "https://b"}))}
    assert details_changes(first, later) == ["Status: Dead (was Active)", "Notes: (cleared) (was n)"]
    assert details_changes(later, later) == []  # the login link is not a detail: no note for it
    assert "Status: Dead" in lead_text(later) and "Notes" not in lead_text(later)


def test_a_potential_sellers_estimated_value_is_in_the_lead_text():
    lead = load_event("New Potential Seller Lead", {"id": "x", "activities": [
        {"type": "property_viewed", "created": "2026-01-01T00:00:00Z",
         "property": {"street_address": "1 Main St", "estimated_value": "650000"}}]})
    assert lead["role"] == "Potential Seller"
    body = lead_body(lead, RULES, contact_id=5).body
    assert "Estimated value: $650,000" in body["text_body"] and body["type"] == "Seller"
    assert body["street_address"] == "1 Main St"
