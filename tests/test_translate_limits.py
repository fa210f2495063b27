"""LionDesk limits: values are cut (never refused) and every cut is reported; tags fit 508 whole."""

import pytest

from bridge.translate import limits
from bridge.translate.states import state_code, state_name


@pytest.mark.parametrize("record, limit_table, name, length", [
    ("contact", limits.CONTACT, "first_name", 255),
    ("contact", limits.CONTACT, "home_phone", 45),
    ("address", limits.ADDRESS, "street_address_1", 45),
    ("address", limits.ADDRESS, "zip", 45),
    ("address", limits.ADDRESS, "city", 200),
    ("address", limits.ADDRESS, "state", 200),
    ("task", limits.TASK, "description", 2000),
    ("v1_activity", limits.V1_ACTIVITY, "description", 2000),
])
def test_fit_cuts_a_value_one_over_its_limit_and_reports_it(record, limit_table, name, length):
    assert limit_table[name] == length
    fitted, trims = limits.fit(record, {name: "é" * (length + 1), "other": "x" * 5000}, limit_table)
    assert fitted[name] == "é" * length
    assert fitted["other"] == "x" * 5000  # no documented limit: untouched
    assert trims == [{"field": f"{record}.{name}", "original_length": length + 1, "limit": length}]


@pytest.mark.parametrize("value", ["x" * 45, "", None, 12345])
def test_fit_leaves_values_within_limits_and_non_strings_alone(value):
    fitted, trims = limits.fit("address", {"zip": value}, limits.ADDRESS)
    assert fitted == {"zip": value} and trims == []


def test_fit_does_not_add_absent_keys():
    fitted, _ = limits.fit("contact", {"email": "a@b.c"}, limits.CONTACT)
    assert fitted == {"email": "a@b.c"}


def test_tags_join_into_one_string_in_order():
    tags = ["Real Geeks", "VIP", "Kailua"]
    assert limits.fit_tags(tags) == ("Real Geeks,VIP,Kailua", tags, [])


@pytest.mark.parametrize("tags, kept", [
    (["VIP", "vip", " VIP "], ["VIP"]),                      # repeats ignore case and spaces
    (["Buyer, Hot", "x"], ["Buyer Hot", "x"]),               # a comma would split one tag into two
    (["", "  ", "a"], ["a"]),
])
def test_tags_are_cleaned_before_joining(tags, kept):
    assert limits.fit_tags(tags)[1] == kept


def test_tags_over_508_characters_drop_whole_tags_and_keep_later_ones_that_fit():
    tags = ["Real Geeks"] + [f"tag{i:03d}-" + "x" * 40 for i in range(12)] + ["short"]
    text, kept, dropped = limits.fit_tags(tags)
    assert len(text) <= 508
    assert kept[0] == "Real Geeks" and "short" in kept
    assert dropped and set(dropped).isdisjoint(kept)
    assert set(kept) | set(dropped) == set(tags)
    assert text.split(",") == kept


def test_a_single_tag_longer_than_the_limit_is_dropped():
    text, kept, dropped = limits.fit_tags(["a", "b" * 600])
    assert (text, kept, dropped) == ("a", ["a"], ["b" * 600])


def test_tags_that_exactly_fill_508_characters_all_fit():
    tags = ["a" * 253, "b" * 254]  # 253 + 1 separator + 254 = 508
    text, kept, dropped = limits.fit_tags(tags)
    assert len(text) == 508 and dropped == []


@pytest.mark.parametrize("text, tags", [
    ("Real Geeks,VIP", ["Real Geeks", "VIP"]),
    ("Real Geeks, VIP , ,vip", ["Real Geeks", "VIP"]),
    ("", []),
    (None, []),
])
def test_split_tags_reads_a_contacts_tag_string(text, tags):
    assert limits.split_tags(text) == tags


@pytest.mark.parametrize("given, name", [
    ("HI", "Hawaii"), ("hi", "Hawaii"), (" Hawaii ", "Hawaii"), ("hawaii", "Hawaii"), ("Hawai'i", "Hawaii"),
    ("NY", "New York"), ("new  york", "New York"), ("KS", "Kansas"), ("DC", "District of Columbia"),
    ("Washington, D.C.", "District of Columbia"), ("PR", "Puerto Rico"), ("GU", "Guam"),
    ("VI", "U.S. Virgin Islands"), ("Ontario", "Ontario"), (" Bavaria ", "Bavaria"),
])
def test_state_name_spells_out_us_states_and_territories(given, name):
    assert state_name(given) == name


@pytest.mark.parametrize("given, code", [
    ("Hawaii", "HI"), ("hi", "HI"), ("New York", "NY"), ("District of Columbia", "DC"),
    ("Puerto Rico", "PR"), ("Washington", "WA"), ("Ontario", "Ontario"),
])
def test_state_code_abbreviates_us_states_and_territories(given, code):
    assert state_code(given) == code
