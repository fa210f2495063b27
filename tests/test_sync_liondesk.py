"""The LionDesk side of the forward sync (issue 13), through the real intake, relay and an in-process
worker against the sandbox over HTTP: custom fields, route rules, pending effects, search forms."""

from __future__ import annotations

import pytest

from bridge.config import load_settings
from bridge.context import Context
from bridge.sandbox.sample import sample_lead
from bridge.storage import history, mappings
from bridge.sync import references
from bridge.sync.forward import search_params
from bridge.translate.liondesk import custom_field_values, task_text, with_numbers
from tests.test_sync import Bridge


@pytest.fixture
def custom_rules(tmp_path):
    """A BRIDGE_CONFIG mapping two Real Geeks fields to LionDesk custom fields."""
    path = tmp_path / "rules.toml"
    path.write_text('[custom_fields]\ntimeframe = "Timeframe"\nregion = "Area of interest"\n')
    return str(path)


@pytest.fixture
def bridge_with(sandbox, redis_url, redis_conn, webhook_secret):
    """Build a Bridge (tests/test_sync.py) whose settings carry `extra` environment variables."""
    from bridge.web import create_app

    def build(**extra):
        env = {**sandbox.environment(), "REDIS_URL": redis_url, "REALGEEKS_WEBHOOK_SECRET": webhook_secret,
               "LIONDESK_MAX_REQUESTS_PER_SECOND": "1000", **extra}
        settings = load_settings(env)
        return Bridge(create_app(settings).test_client(), Context(settings=settings, redis=redis_conn), sandbox,
                      webhook_secret)

    return build


def story_kinds(conn, lead_id) -> list[str]:
    return [entry["kind"] for entry in history.read(conn, lead_id)]


def test_mapped_fields_reach_liondesk_custom_fields(bridge_with, custom_rules, redis_conn):
    bridge = bridge_with(BRIDGE_CONFIG=custom_rules)
    bridge.sandbox.control("POST", "liondesk/custom-fields", name="Timeframe")  # defined by the broker
    # ("Area of interest" is not defined in LionDesk: noted, never guessed)
    payload = sample_lead(timeframe="3-6 Months", region="Kailua")
    bridge.deliver_and_work(payload)
    (contact,) = bridge.contacts()
    assert [(f["name"], f["value"]) for f in contact["custom_fields"]] == [("Timeframe", "3-6 Months")]
    created = [e for e in history.read(redis_conn, payload["id"]) if e["kind"] == "contact_created"][0]
    assert any("Area of interest" in note for note in created.get("notes") or [])


def test_no_custom_field_mapping_costs_no_call(bridge_with):
    bridge = bridge_with()
    calls = bridge.deliver_and_work(sample_lead())
    assert not [c for c in calls if c["template"] == "/liondesk/custom-fields"]


def test_a_pending_enrolment_found_in_liondesk_is_not_sent_again(bridge_with, redis_conn):
    bridge = bridge_with()
    bridge.sandbox.control("POST", "liondesk/contact-sources", name="Real Geeks")
    bridge.sandbox.control("POST", "liondesk/lead-routes", contact_source="Real Geeks", campaign="Buyer Drip",
                           distribution_target="Myself")
    bridge.sandbox.control("POST", "faults", service="liondesk",
                           lose_next_answer="/liondesk/campaigns/{campaign_id}/contacts")
    payload = sample_lead(source="Somewhere LionDesk has no lead source for")
    bridge.deliver_and_work(payload)  # the answer is lost: the job retries later, the mark stays pending
    assert mappings.effect_state(redis_conn, payload["id"], "campaign:1") == "pending"
    bridge.deliver_and_work({**payload, "action": "unknown"})  # the retry, as a redelivery would run it
    enrolments = bridge.sandbox.control("GET", "liondesk/campaign-enrolments")["data"]
    assert len(enrolments) == 1  # a route naming only the contact source applied, and only once
    assert mappings.effect_state(redis_conn, payload["id"], "campaign:1") == "done"
    assert "effect_already_done" in story_kinds(redis_conn, payload["id"])


def test_an_unverifiable_pending_offer_is_not_repeated(bridge_with, redis_conn, monkeypatch):
    bridge = bridge_with()
    bridge.sandbox.control("POST", "liondesk/preset/demo")
    payload = sample_lead()
    bridge.sandbox.control("POST", "faults", service="liondesk", lose_next_answer="/liondesk/leads/{lead_id}/offers")
    bridge.deliver_and_work(payload)
    assert mappings.effect_state(redis_conn, payload["id"], "offers") == "pending"
    from bridge.clients.liondesk import LionDeskClient
    from bridge.exceptions import UpstreamRejected

    def refused(self, lead_id):
        raise UpstreamRejected("liondesk: 404 Page not found", service="liondesk", status=404)

    monkeypatch.setattr(LionDeskClient, "list_lead_offers", refused)
    before = len(bridge.sandbox.control("GET", "liondesk/offers")["data"])
    bridge.deliver_and_work({**payload, "action": "unknown"})
    assert len(bridge.sandbox.control("GET", "liondesk/offers")["data"]) == before
    assert "effect_unverified" in story_kinds(redis_conn, payload["id"])


def test_route_specificity_every_named_source_must_match_and_more_names_win():
    both = {"id": 3, "lead_source_id": 1, "contact_source_id": 9}
    lead_only = {"id": 2, "lead_source": {"id": 1}, "contact_source": None}
    contact_only = {"id": 1, "lead_source_id": None, "contact_source_id": 9}
    other = {"id": 4, "lead_source_id": 2, "contact_source_id": 9}
    assert [references.route_specificity(r, 1, 9) for r in (both, lead_only, contact_only, other)] == [3, 2, 1, 0]
    assert references.route_specificity(both, 1, None) == 0 and references.route_specificity(lead_only, 1, None) == 2
    assert references.route_specificity({"id": 5}, 1, 9) == 0


def test_search_params_use_equality_for_one_value_and_repeated_in_for_several():
    assert search_params("email", ["a@x.com"]) == [("email", "a@x.com")]
    assert search_params("email", ["a@x.com", "A@x.com"]) == [("email[$in]", "a@x.com"), ("email[$in]", "A@x.com")]


def test_numeric_looking_lead_fields_go_as_numbers_others_as_text():
    body = with_numbers({"contact_id": 1, "mls_id": "2000", "zipcode": "98112"})
    assert body == {"contact_id": 1, "mls_id": 2000, "zipcode": 98112}
    kept = with_numbers({"mls_id": "A1234", "zipcode": "02134"})
    assert kept == {"mls_id": "A1234", "zipcode": "02134"}  # letters, and a zip whose zero a number would lose
    assert with_numbers({"mls_id": "١٢٣"}) == {"mls_id": "١٢٣"}  # digits of other scripts stay text


def test_task_text_leads_with_the_title_and_fits_2000_characters():
    assert task_text("Call Jane", "About 12 Main St") == "Call Jane\nAbout 12 Main St"
    assert task_text("Real Geeks: Visited", "Real Geeks: Visited\nBy: x") == "Real Geeks: Visited\nBy: x"
    assert len(task_text("t", "x" * 5000)) == 2000


def test_custom_field_values_skip_empty_and_unknown_fields():
    rules = {"custom_fields": {"timeframe": "Timeframe", "region": "", "estimated_value": "Estimate"}}
    lead = {"timeframe": "Now", "region": "Kailua",
            "activities": [{"property": {"estimated_value": "100500.90"}}, {"property": {}}]}
    values, notes = custom_field_values(lead, rules, {"timeframe": "7"})
    assert values == [{"id": "7", "value": "Now"}]
    assert notes == ["LionDesk has no custom field named 'Estimate'; estimated_value not written there"]
    values, _ = custom_field_values(lead, rules, {"timeframe": "7", "estimate": "8"})
    assert values[1] == {"id": "8", "value": "100500.90"}


V1 = {"LIONDESK_V1_API_KEY": "sandbox-v1-key", "LIONDESK_V1_USER_KEY": "sandbox-v1-user"}


def test_a_dead_v1_falls_back_to_a_task_and_is_skipped_until_the_recheck(bridge_with, redis_conn):
    bridge = bridge_with(**V1)
    bridge.sandbox.control("POST", "settings", v1_service="gone")
    viewed = {"type": "property_viewed", "source": "Website", "description": "Viewed 1 Main St",
              "created": "2026-12-02T10:00:00.000000Z"}
    payload = sample_lead(activities=[viewed])
    bridge.deliver_and_work(payload)
    tasks = bridge.sandbox.control("GET", "liondesk/tasks")["data"]
    assert [t["channel"] for t in tasks] == ["v2.1"]
    entries = history.read(redis_conn, payload["id"])
    assert [e["channel"] for e in entries if e["kind"] == "activity_delivered"] == ["v2.1 task"]
    assert [e["kind"] for e in entries].count("v1_failed") == 1
    since = bridge.sandbox.last_seq()
    later = {**viewed, "created": "2026-12-02T11:00:00.000000Z"}
    bridge.deliver_and_work({"action": "activity_added", "id": payload["id"], "activities": [later]})
    assert bridge.sandbox.calls(since, service="liondesk_v1") == []  # v1 skipped: it failed within the hour
    assert len(bridge.sandbox.control("GET", "liondesk/tasks")["data"]) == 2


def test_healthz_checks_v1_with_echo_at_most_every_few_minutes(bridge_with):
    bridge = bridge_with(**V1)
    first = bridge.client.get("/healthz").json["liondesk"]
    assert first["v1"] == "ok" and first["tasks_channel"] == "v2.1"
    bridge.client.get("/healthz")
    echoes = [c for c in bridge.sandbox.calls(service="liondesk_v1") if c["path"] == "/liondesk-v1"]
    assert len(echoes) == 1  # the second probe reads the recorded answer


def test_an_app_conflict_is_one_contacts_problem_for_the_reverse_poll():
    from bridge.exceptions import LionDeskAppConflict, UpstreamAuthError
    from bridge.sync.reverse import concerns_one_contact

    conflict = LionDeskAppConflict("LionDesk app registered under another account", service="liondesk", status=401)
    assert concerns_one_contact(conflict)  # recorded on the contact's own job; the poll moves on
    assert not concerns_one_contact(UpstreamAuthError("401", service="liondesk", status=401))
