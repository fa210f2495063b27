"""Mapping rules: the shipped defaults, BRIDGE_CONFIG merged over them, and mistakes named at start."""

import pytest

from bridge.exceptions import ConfigError
from bridge.translate.rules import load_rules, lookup


def write(tmp_path, text):
    """Write an override file and return its path."""
    path = tmp_path / "override.toml"
    path.write_text(text)
    return str(path)


def test_shipped_rules_hold_every_documented_setting():
    rules = load_rules()
    assert rules["contact"] == {"source_name": "Real Geeks", "extra_tags": ["Real Geeks"],
                                "phone_region": "US", "address_type": "Home"}
    assert rules["hotness"]["by_urgency"] == {"Hot": "Hot", "Warm": "Warm", "Cold": "Cold"}
    assert rules["lead"]["type_by_role"]["Potential Seller"] == "Seller"
    assert rules["lead"]["source_names"] == {} and rules["campaigns"]["by_role"] == {}
    assert rules["agents"]["liondesk_email"] == {}
    assert rules["activities"]["v1_types"]["visited"] == "visit"
    assert rules["activities"]["task_action_type"] == "Agent Task - No Reminder"
    assert rules["reverse"] == {"create_leads_from_liondesk": False, "source_name": "LionDesk", "site_uuid": ""}


def test_an_override_merges_key_by_key_and_can_unmap_with_an_empty_value(tmp_path):
    rules = load_rules(write(tmp_path, '[hotness.by_urgency]\nCold = ""\n"Not Contacted" = "Lukewarm"\n'
                                       '[campaigns.by_role]\nBuyer = "Buyer Drip"\n'))
    assert rules["hotness"]["by_urgency"] == {"Hot": "Hot", "Warm": "Warm", "Cold": "", "Not Contacted": "Lukewarm"}
    assert lookup(rules["hotness"]["by_urgency"], "cold") is None
    assert rules["campaigns"]["by_role"] == {"Buyer": "Buyer Drip"}
    assert rules["contact"]["source_name"] == "Real Geeks"


@pytest.mark.parametrize("override, rule", [
    ('[contact]\nphone_region = "XX"\n', "contact.phone_region"),
    ('[contact]\nextra_tags = "Real Geeks"\n', "contact.extra_tags"),
    ('[contact]\nsource_name = ""\n', "contact.source_name"),
    ('[contact]\nsource_name = "' + "x" * 201 + '"\n', "contact.source_name"),
    ('[contact]\naddress_type = "Castle"\n', "contact.address_type"),
    ('[hotness]\nby_urgency = "Hot"\n', "hotness.by_urgency"),
    ('[hotness.by_urgency]\nHot = 3\n', "hotness.by_urgency"),
    ('[hotness.by_urgency]\nHot = "' + "h" * 46 + '"\n', "hotness.by_urgency.Hot"),
    ('[activities.v1_types]\nnote = "comment"\n', "activities.v1_types.note"),
    ('[reverse]\ncreate_leads_from_liondesk = "yes"\n', "reverse.create_leads_from_liondesk"),
    ('[lead]\ndefault_type = 1\n', "lead.default_type"),
])
def test_a_wrong_override_is_named_with_its_rule(tmp_path, override, rule):
    with pytest.raises(ConfigError) as caught:
        load_rules(write(tmp_path, override))
    assert caught.value.variable == "BRIDGE_CONFIG"
    assert f"rule {rule}:" in caught.value.problem


@pytest.mark.parametrize("table, key, value", [
    ({"Hot": "Hot"}, "hot", "Hot"),
    ({"Hot": "Hot"}, " HOT ", "Hot"),
    ({"Hot": ""}, "Hot", None),
    ({"Hot": "Hot"}, "Warm", None),
    ({"Hot": "Hot"}, "", None),
    ({"Hot": "Hot"}, None, None),
    ({}, "Hot", None),
])
def test_lookup_ignores_case_and_treats_empty_as_unmapped(table, key, value):
    assert lookup(table, key) == value


def test_the_default_rules_are_the_file_under_config_one_source_of_truth():
    from bridge.translate import rules as rules_module
    from tests.support import ROOT

    assert rules_module.DEFAULT_RULES_PATH.read_bytes() == (ROOT / "config" / "rules.toml").read_bytes()


@pytest.mark.parametrize("damage, problem", [
    (lambda path: None, "does not exist"),
    (lambda path: path.mkdir(), "cannot be read"),
    (lambda path: path.write_bytes(b"\xff\xfe[contact"), "not UTF-8"),
    (lambda path: path.write_text("[contact\n"), "not valid TOML"),
])
def test_missing_or_unreadable_default_rules_stop_the_start_never_an_empty_rule_set(
        tmp_path, monkeypatch, damage, problem):
    from bridge.config import load_settings
    from bridge.translate import rules as rules_module

    path = tmp_path / "default_rules.toml"
    damage(path)
    monkeypatch.setattr(rules_module, "DEFAULT_RULES_PATH", path)
    with pytest.raises(ConfigError) as caught:
        load_settings({})
    assert caught.value.variable.startswith("config/rules.toml")
    assert problem in caught.value.problem
