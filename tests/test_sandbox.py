"""The sandbox: LionDesk v2 / v1 and Real Geeks Incoming as the bridge's clients will see them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from bridge.sandbox.query import Condition, Query, QueryError, parse_query, predicate, select
from bridge.sandbox.server import create_sandbox_app
from bridge.sandbox.state import SandboxState
from tests.support import ROOT, free_port, wait_until

SITE = "5ead6dd1-2cb9-4f80-80fc-5716b05c90ba"
TOKEN_REQUEST = {"grant_type": "refresh_token", "client_id": "sandbox-client", "client_secret": "sandbox-secret"}
RG_AUTH = {"Authorization": "Basic " + base64.b64encode(b"sandbox:sandbox").decode()}
V1_AUTH = {"Authorization": "Basic " + base64.b64encode(b"sandbox-v1-key:").decode(), "X-LionDesk-Id": "sandbox-v1-user"}


class FakeClock:
    """A settable clock for the sandbox: token expiry and modified_at without sleeping."""

    def __init__(self, start: float = 1_700_000_000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class LionDesk:
    """A test client of the sandbox's LionDesk v2 API holding a live access token."""

    def __init__(self, client, token: str):
        self.client, self.token = client, token

    def call(self, method: str, path: str, **kwargs):
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        return self.client.open(f"/liondesk{path}", method=method, headers=headers, **kwargs)

    def get(self, path, **kwargs):
        return self.call("GET", path, **kwargs)

    def post(self, path, body=None, **kwargs):
        return self.call("POST", path, json=body, **kwargs)

    def patch(self, path, body, **kwargs):
        return self.call("PATCH", path, json=body, **kwargs)


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def state(clock):
    return SandboxState(clock=clock)


@pytest.fixture
def sandbox(state):
    """A Flask test client of a fresh sandbox."""
    return create_sandbox_app(state).test_client()


def refresh(sandbox, refresh_token="sandbox-refresh-token"):
    return sandbox.post("/liondesk/oauth2/token", json={**TOKEN_REQUEST, "refresh_token": refresh_token})


@pytest.fixture
def ld(sandbox):
    response = refresh(sandbox)
    assert response.status_code == 200, response.json
    return LionDesk(sandbox, response.json["access_token"])


def make_contacts(ld, *contacts):
    ids = []
    for contact in contacts:
        response = ld.post("/contacts", contact)
        assert response.status_code == 201, response.json
        ids.append(response.json["id"])
    return ids


def assert_feathers_error(response, status: int, name: str):
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.json
    assert set(body) == {"name", "message", "code", "className", "errors"}
    assert (body["name"], body["code"]) == (name, status)
    return body


# ---- the filter engine (pure) ---------------------------------------------------------------------

def test_parse_query_keeps_repeated_in_values_and_paging():
    query = parse_query([("last_name[$in]", "gates"), ("last_name[$in]", "jobs"), ("$limit", "2"),
                         ("$skip", "4"), ("$sort[created_at]", "-1"), ("$load", "template")])
    assert query == Query((Condition("last_name", "$in", ("gates", "jobs")),), (("created_at", -1),), 2, 4)


@pytest.mark.parametrize("pairs", [[("$limit", "-1")], [("$sort[x]", "2")], [("x[$regex]", "a")], [("$or", "a")]])
def test_parse_query_refuses_what_feathers_refuses(pairs):
    with pytest.raises(QueryError):
        parse_query(pairs)


def test_null_columns_match_no_comparison():
    record = {"email": None}
    for op in ("=", "$ne", "$in", "$nin", "$like"):
        assert not predicate(Condition("email", op, ("x",)))(record)


def test_select_sorts_nulls_first_and_keeps_id_order_for_ties():
    records = [{"id": 1, "n": "b"}, {"id": 2, "n": None}, {"id": 3, "n": "B"}, {"id": 4, "n": "a"}]
    _, page = select(records, Query(sort=(("n", 1),), limit=10))
    assert [r["id"] for r in page] == [2, 4, 1, 3]


# ---- LionDesk v2: lists and filters ------------------------------------------------------------------

def test_contacts_filters_in_like_ne_and_envelope(ld):
    make_contacts(ld, {"first_name": "Bill", "last_name": "Gates"}, {"first_name": "Steve", "last_name": "Jobs"},
                  {"first_name": "Paul", "last_name": "Allen"}, {"first_name": "Melinda", "last_name": "Gates"})
    both = ld.get("/contacts?last_name[$in]=gates&last_name[$in]=jobs").json
    assert (both["total"], both["limit"], both["skip"]) == (3, 10, 0)
    assert sorted(c["first_name"] for c in both["data"]) == ["Bill", "Melinda", "Steve"]
    assert [c["first_name"] for c in ld.get("/contacts?last_name[$nin]=gates&last_name[$nin]=jobs").json["data"]] \
        == ["Paul"]
    assert ld.get("/contacts?last_name[$ne]=Gates").json["total"] == 2
    assert [c["first_name"] for c in ld.get("/contacts?first_name[$like]=%25ELIN%25").json["data"]] == ["Melinda"]
    assert ld.get("/contacts?first_name[$like]=B_ll").json["total"] == 1


def test_contacts_limit_skip_and_sort(ld):
    make_contacts(ld, *({"first_name": f"N{i:02d}"} for i in range(15)))
    first = ld.get("/contacts").json
    assert (first["total"], first["limit"], len(first["data"])) == (15, 10, 10)
    page = ld.get("/contacts?$limit=4&$skip=12&$sort[first_name]=-1").json
    assert (page["limit"], page["skip"]) == (4, 12)
    assert [c["first_name"] for c in page["data"]] == ["N02", "N01", "N00"]
    assert ld.get("/contacts?$limit=1000").json["limit"] == 100


def test_contacts_date_ranges_compare_as_instants(ld, clock):
    make_contacts(ld, {"first_name": "Old", "created_at": "2017-01-15T10:00:00-07:00"},
                  {"first_name": "Newer", "created_at": "2017-02-01"})
    january = ld.get("/contacts?created_at[$gte]=2017-01-01&created_at[$lte]=2017-01-31T00:00:00Z").json
    assert [c["first_name"] for c in january["data"]] == ["Old"]
    assert january["data"][0]["created_at"] == "2017-01-15T17:00:00.000Z"
    assert ld.get("/contacts?created_at[$gt]=2017-01-15T17:00:00Z").json["data"][0]["first_name"] == "Newer"
    assert_feathers_error(ld.get("/contacts?created_at[$gt]=yesterday"), 400, "BadRequest")


def test_emails_compare_case_insensitively_but_phones_exactly(ld):
    make_contacts(ld, {"email": "Jane.Doe@Example.com", "mobile_phone": "(808) 555-1234"})
    assert ld.get("/contacts?email=jane.doe@example.com").json["total"] == 1
    assert ld.get("/contacts?mobile_phone=(808) 555-1234").json["total"] == 1
    assert ld.get("/contacts?mobile_phone=808-555-1234").json["total"] == 0


def test_unknown_filter_column_and_unknown_route(ld):
    assert "favourite_colour" in assert_feathers_error(ld.get("/contacts?favourite_colour=red"), 400,
                                                       "BadRequest")["message"]
    assert_feathers_error(ld.get("/nothing-here"), 404, "NotFound")
    assert_feathers_error(ld.get("/contacts/999"), 404, "NotFound")
    assert_feathers_error(ld.post("/lead-sources", {"name": "Real Geeks"}), 405, "MethodNotAllowed")


def test_double_slashes_are_collapsed(sandbox, ld):
    assert ld.post("//contacts", {"first_name": "Slash"}).status_code == 201
    assert ld.get("//contacts").json["total"] == 1
    assert sandbox.post("/liondesk//oauth2//token", json={**TOKEN_REQUEST, "refresh_token": "nope"}).json == {
        "error": "invalid_grant", "error_description": "Invalid refresh token"}


# ---- OAuth ---------------------------------------------------------------------------------------------

def test_refresh_rotates_and_the_used_refresh_token_dies(sandbox):
    first = refresh(sandbox).json
    assert set(first) == {"access_token", "refresh_token", "expires", "expires_in", "scope", "token_type"}
    assert len(first["access_token"]) == 40 and first["token_type"] == "Bearer"
    again = refresh(sandbox)
    assert again.status_code == 400 and again.json["error"] == "invalid_grant"
    second = refresh(sandbox, first["refresh_token"]).json
    assert second["refresh_token"] != first["refresh_token"]
    assert refresh(sandbox, first["refresh_token"]).json["error"] == "invalid_grant"
    assert LionDesk(sandbox, second["access_token"]).get("/me").json["email"] == "agent@example.com"


def test_token_endpoint_refuses_wrong_client_and_unknown_grant(sandbox):
    wrong = sandbox.post("/liondesk/oauth2/token", json={**TOKEN_REQUEST, "client_secret": "guess",
                                                         "refresh_token": "sandbox-refresh-token"})
    assert (wrong.status_code, wrong.json["error"]) == (401, "invalid_client")
    assert sandbox.post("/liondesk/oauth2/token", json={**TOKEN_REQUEST, "grant_type": "password"}).json[
        "error"] == "unsupported_grant_type"
    # A refused attempt must not spend the refresh token.
    assert refresh(sandbox).status_code == 200


def test_authorization_code_grant_is_single_use_and_form_bodies_work(sandbox):
    form = {**TOKEN_REQUEST, "grant_type": "authorization_code", "code": "sandbox-code"}
    assert sandbox.post("/liondesk/oauth2/token", data=form).status_code == 200
    assert sandbox.post("/liondesk/oauth2/token", data=form).json["error"] == "invalid_grant"
    consent = sandbox.get("/liondesk/oauth2/authorize?response_type=code&client_id=sandbox-client"
                          "&redirect_uri=http://127.0.0.1:5000/cb&state=xyz")
    assert consent.status_code == 302 and "state=xyz" in consent.location
    code = consent.location.split("code=")[1].split("&")[0]
    assert sandbox.post("/liondesk/oauth2/token", json={**form, "code": code}).status_code == 200


def test_expired_and_unknown_access_tokens_get_not_authenticated(sandbox, ld, clock):
    assert ld.get("/me").status_code == 200
    assert_feathers_error(LionDesk(sandbox, "0" * 40).get("/me"), 401, "NotAuthenticated")
    assert_feathers_error(sandbox.get("/liondesk/me"), 401, "NotAuthenticated")
    sandbox.post("/_sandbox/faults", json={"access_token_lifetime_seconds": 60})
    short = LionDesk(sandbox, refresh(sandbox, refresh_token_of(sandbox, ld)).json["access_token"])
    clock.advance(59)
    assert short.get("/me").status_code == 200
    clock.advance(1)
    assert_feathers_error(short.get("/me"), 401, "NotAuthenticated")


def refresh_token_of(sandbox, ld):
    """A live refresh token: the state's only one after the fixture's refresh."""
    state = sandbox.application.extensions["sandbox"]
    (token,) = state.tokens.refresh
    return token


def test_expire_now_and_revoke_knobs(sandbox, ld):
    live_refresh = refresh_token_of(sandbox, ld)
    sandbox.post("/_sandbox/faults", json={"expire_access_tokens": True})
    assert_feathers_error(ld.get("/me"), 401, "NotAuthenticated")
    sandbox.post("/_sandbox/faults", json={"revoke_refresh_tokens": True})
    assert refresh(sandbox, live_refresh).json["error"] == "invalid_grant"
    assert sandbox.get("/_sandbox/state").json["tokens"]["live_refresh_tokens"] == 0


# ---- contacts: limits, changes, addresses ------------------------------------------------------------

@pytest.mark.parametrize("field, limit", [("first_name", 255), ("email", 255), ("home_phone", 45),
                                          ("spouse_email", 45), ("tags", 508)])
def test_contact_field_limits(ld, field, limit):
    assert ld.post("/contacts", {field: "x" * limit}).status_code == 201
    error = assert_feathers_error(ld.post("/contacts", {field: "x" * (limit + 1)}), 400, "BadRequest")
    assert set(error["errors"]) == {field} and field in error["message"]
    contact_id = make_contacts(ld, {})[0]
    assert_feathers_error(ld.patch(f"/contacts/{contact_id}", {field: "x" * (limit + 1)}), 400, "BadRequest")


def test_contact_references_must_exist_and_zero_detaches(ld):
    assert set(assert_feathers_error(ld.post("/contacts", {"source_id": 77}), 400, "BadRequest")["errors"]) \
        == {"source_id"}
    contact_id = make_contacts(ld, {"hotness_id": "1"})[0]
    assert ld.get(f"/contacts/{contact_id}").json["hotness"] == {"name": "Hot", "rank": 1, "color": "#d9534f"}
    assert ld.patch(f"/contacts/{contact_id}", {"hotness_id": 0}).json["hotness"] is None


def test_modified_at_moves_only_when_something_changes(sandbox, ld, clock):
    contact_id = make_contacts(ld, {"first_name": "Ann"})[0]
    created = ld.get(f"/contacts/{contact_id}").json["modified_at"]
    clock.advance(5)
    assert ld.patch(f"/contacts/{contact_id}", {"first_name": "Ann"}).json["modified_at"] == created
    changed = ld.patch(f"/contacts/{contact_id}", {"first_name": "Anne"}).json["modified_at"]
    assert changed > created
    clock.advance(5)
    seq = sandbox.get("/_sandbox/calls").json["last_seq"]
    agent_edit = sandbox.patch(f"/_sandbox/liondesk/contacts/{contact_id}", json={"tags": "VIP"})
    assert agent_edit.json["modified_at"] > changed
    assert sandbox.get(f"/_sandbox/calls?since={seq}").json["total"] == 0
    polled = ld.get(f"/contacts?modified_at[$gt]={changed}&$sort[modified_at]=1").json["data"]
    assert [c["id"] for c in polled] == [contact_id]


def test_addresses_have_string_ids_and_limits(ld):
    contact_id = make_contacts(ld, {"first_name": "Ann"})[0]
    created = ld.post(f"/contacts/{contact_id}/addresses",
                      {"type": "Home", "street_address_1": "123 Keolu Rd", "city": "Kailua", "state": "Hawaii",
                       "zip": "96734"})
    assert created.status_code == 201 and isinstance(created.json["id"], str)
    address_id = created.json["id"]
    assert ld.patch(f"/contacts/{contact_id}/addresses/{address_id}", {"zip": "96815"}).json["zip"] == "96815"
    assert ld.get(f"/contacts/{contact_id}").json["addresses"][0]["zip"] == "96815"
    assert ld.get(f"/contacts/{contact_id}/addresses").json["total"] == 1
    for field, limit in (("street_address_1", 45), ("zip", 45), ("city", 200), ("state", 200)):
        error = assert_feathers_error(ld.post(f"/contacts/{contact_id}/addresses", {field: "x" * (limit + 1)}),
                                      400, "BadRequest")
        assert set(error["errors"]) == {field}
    assert_feathers_error(ld.post(f"/contacts/{contact_id}/addresses", {"type": "Castle"}), 400, "BadRequest")


# ---- sources, routes, leads, offers, campaigns, users, tasks -------------------------------------------

def lead_source_id(ld, name):
    (source,) = ld.get(f"/lead-sources?name={name}").json["data"]
    return source["id"]


def test_contact_sources_start_empty_and_can_be_found_by_name(ld):
    assert ld.get("/contact-sources?name=Real Geeks").json["total"] == 0
    created = ld.post("/contact-sources", {"name": "Real Geeks"}).json
    assert ld.get("/contact-sources?name=real geeks").json["data"] == [created]
    assert ld.patch(f"/contact-sources/{created['id']}", {"name": "RG"}).json["name"] == "RG"
    assert set(assert_feathers_error(ld.post("/contact-sources", {"name": "x" * 201}), 400,
                                     "BadRequest")["errors"]) == {"name"}


def test_team_rollout_route_makes_offers_for_alerting_members(ld):
    source = ld.post("/contact-sources", {"name": "Real Geeks"}).json
    search = lead_source_id(ld, "Website Property Search")
    (campaign,) = ld.get("/campaigns?name[$like]=%25Buyer%25").json["data"]
    route = ld.post("/lead-routes", {"team_id": "1", "campaign_id": campaign["id"], "lead_source_id": search,
                                     "contact_source_id": source["id"], "distribution_target": "Team Rollout",
                                     "team_selection_method": "Specific Team", "filter": "Buyer"})
    assert route.status_code == 201, route.json
    found = ld.get(f"/lead-routes?lead_source_id={search}&contact_source_id={source['id']}").json["data"]
    assert found[0]["campaign"] == {"id": campaign["id"], "name": "Buyer Drip"}
    assert found[0]["team"]["name"] == "Sandbox Team" and found[0]["contact_source"]["name"] == "Real Geeks"

    contact_id = make_contacts(ld, {"first_name": "Mary", "last_name": "Jackson", "source_id": source["id"]})[0]
    lead = ld.post("/leads", {"contact_id": contact_id, "source_id": search, "zipcode": 96815}).json
    offers = ld.post(f"/leads/{lead['id']}/offers")
    assert offers.status_code == 201
    # Seeded team: agents 1 and 2 alert, agent 3 has every alert off.
    assert [o["user"]["email"] for o in offers.json] == ["agent@example.com", "casey@example.com"]
    assert offers.json[0]["lead"]["contact"] == {"id": contact_id, "first_name": "Mary", "last_name": "Jackson"}
    assert offers.json[0]["status"] == "Pending" and offers.json[0]["assign_automatically"] == "true"


def test_offers_without_team_rollout_route_are_refused(ld):
    contact_id = make_contacts(ld, {"first_name": "Solo"})[0]
    lead = ld.post("/leads", {"contact_id": contact_id, "source_id": lead_source_id(ld, "Zillow")}).json
    assert_feathers_error(ld.post(f"/leads/{lead['id']}/offers"), 400, "BadRequest")
    assert_feathers_error(ld.post("/leads/999/offers"), 404, "NotFound")


def test_route_rules_and_demo_preset(sandbox, ld):
    source = ld.post("/contact-sources", {"name": "Email"}).json
    base = {"campaign_id": 1, "lead_source_id": 1, "contact_source_id": source["id"]}
    myself = ld.post("/lead-routes", {**base, "distribution_target": "Myself", "team_id": 1,
                                      "team_selection_method": "Specific Team"}).json
    assert (myself["team"], myself["team_selection_method"]) == (None, None)
    missing_team = ld.post("/lead-routes", {**base, "distribution_target": "Team Rollout",
                                            "team_selection_method": "Specific Team"})
    assert set(assert_feathers_error(missing_team, 400, "BadRequest")["errors"]) == {"team_id"}
    assert set(assert_feathers_error(ld.post("/lead-routes", {"distribution_target": "Myself"}), 400,
                                     "BadRequest")["errors"]) == {"campaign_id"}
    # A route names a lead source, a contact source or both (endpoints/lead-offers), not neither.
    no_source = ld.post("/lead-routes", {"distribution_target": "Myself", "campaign_id": base["campaign_id"]})
    assert set(assert_feathers_error(no_source, 400, "BadRequest")["errors"]) == {"lead_source_id"}
    preset = sandbox.post("/_sandbox/liondesk/preset/demo").json
    assert preset["contact_source"]["name"] == "Real Geeks" and len(preset["lead_routes"]) == 2
    assert len(sandbox.post("/_sandbox/liondesk/preset/demo").json["lead_routes"]) == 2


def test_leads_need_an_existing_contact(ld):
    assert set(assert_feathers_error(ld.post("/leads", {"source_id": 1}), 400, "BadRequest")["errors"]) \
        == {"contact_id"}
    assert_feathers_error(ld.post("/leads", {"contact_id": 4242}), 400, "BadRequest")
    contact_id = make_contacts(ld, {"first_name": "Lee"})[0]
    lead = ld.post("/leads", {"contact_id": contact_id, "street_address": "1 Main St", "type": "Buyer"}).json
    assert lead["address_1"] == "1 Main St" and lead["claimed_by_user_id"] is None
    assert ld.patch(f"/leads/{lead['id']}", {"type": "Seller"}).json["type"] == "Seller"
    assert ld.get(f"/leads/{lead['id']}").json["type"] == "Seller"


def test_a_second_enrolment_is_accepted_and_listed_as_a_second_drip(sandbox, ld):
    # Pessimistic reading: LionDesk documents no refusal of a duplicate enrolment.
    contact_id = make_contacts(ld, {"first_name": "Drip"})[0]
    assert ld.post("/campaigns/1/contacts", {"contact_id": contact_id}).status_code == 201
    assert ld.post("/campaigns/1/contacts", {"contact_id": contact_id}).status_code == 201
    assert ld.post("/campaigns/2/contacts", {"contact_id": contact_id}).status_code == 201
    assert_feathers_error(ld.post("/campaigns/99/contacts", {"contact_id": contact_id}), 404, "NotFound")
    assert sandbox.get("/_sandbox/liondesk/campaign-enrolments").json["total"] == 3
    communications = ld.get(f"/contacts/{contact_id}/campaign-communications").json["data"]
    assert sorted(c["campaign_id"] for c in communications) == [1, 1, 2]
    buyer = ld.get(f"/contacts/{contact_id}/campaign-communications?campaign_name[$like]=%25Buyer%25").json
    assert buyer["total"] == 2 and {c["campaign_name"] for c in buyer["data"]} == {"Buyer Drip"}
    assert_feathers_error(ld.post("/campaigns", {"name": "buyer drip"}), 400, "BadRequest")


def test_users_need_our_oauth_client_id_and_list_only_token_holders(sandbox, ld):
    assert_feathers_error(ld.get("/users"), 400, "BadRequest")
    assert_feathers_error(ld.get("/users?oauth_client_id=someone-else"), 403, "Forbidden")
    users = ld.get("/users?oauth_client_id=sandbox-client").json
    assert [u["email"] for u in users["data"]] == ["agent@example.com"]  # only who holds a token for our app
    assert ld.get("/users/1?oauth_client_id=sandbox-client").json["email"] == "agent@example.com"
    assert ld.get("/teams").json["data"][0]["name"] == "Sandbox Team"
    assert [h["name"] for h in ld.get("/hotnesses").json["data"]] == ["Hot", "Warm", "Cold"]
    sandbox.post("/_sandbox/settings", json={"app_owner": "another_account"})
    refused = assert_feathers_error(ld.get("/users?oauth_client_id=sandbox-client"), 401, "NotAuthenticated")
    assert "does not belong to the querying user" in refused["message"]


def test_agents_show_through_team_members_and_a_brokers_sub_accounts(sandbox, ld):
    members = ld.get("/team-members?request_status=Accepted").json["data"]
    assert {m["user"]["email"] for m in members} == {"agent@example.com", "casey@example.com", "dana@example.com"}
    assert members[0]["team"]["name"] == "Sandbox Team" and members[0]["request_status"] == "Accepted"
    pending = sandbox.post("/_sandbox/liondesk/users", json={"email": "pat@example.com", "request_status": "Pending"})
    assert pending.status_code == 201
    assert ld.get("/team-members?request_status=Accepted").json["total"] == 3
    assert_feathers_error(ld.get("/sub-accounts"), 403, "Forbidden")
    sandbox.post("/_sandbox/settings", json={"account_type": "broker"})
    subs = ld.get("/sub-accounts").json["data"]
    assert {s["user"]["email"] for s in subs} == {"casey@example.com", "dana@example.com", "pat@example.com"}


def test_an_assigned_user_must_belong_to_one_of_our_teams(sandbox, ld):
    outsider = sandbox.post("/_sandbox/liondesk/users", json={"email": "out@example.com", "team": False}).json
    assert ld.post("/contacts", {"first_name": "A", "assigned_user_id": 2}).status_code == 201
    refused = ld.post("/contacts", {"first_name": "B", "assigned_user_id": outsider["id"]})
    assert set(assert_feathers_error(refused, 400, "BadRequest")["errors"]) == {"assigned_user_id"}
    contact_id = make_contacts(ld, {"first_name": "C"})[0]
    assert_feathers_error(ld.patch(f"/contacts/{contact_id}", {"assigned_user_id": outsider["id"]}), 400, "BadRequest")


def test_routes_match_on_lead_source_contact_source_or_both_most_specific_first(sandbox, ld):
    source = ld.post("/contact-sources", {"name": "Real Geeks"}).json["id"]
    contact_id = make_contacts(ld, {"first_name": "R", "source_id": source})[0]
    lead = ld.post("/leads", {"contact_id": contact_id, "source_id": 1}).json
    base = {"campaign_id": 1, "distribution_target": "Team Rollout", "team_selection_method": "Specific Team",
            "team_id": 1}
    by_contact = ld.post("/lead-routes", {**base, "contact_source_id": source}).json
    assert by_contact["lead_source"] is None
    offers = ld.post(f"/leads/{lead['id']}/offers", {})
    assert offers.status_code == 201 and offers.json
    by_lead = ld.post("/lead-routes", {**base, "lead_source_id": 1, "team_id": None,
                                       "team_selection_method": "Zipcode"}).json
    assert by_lead["contact_source"] is None
    # The lead-source route is more specific than the contact-source one: it now decides (Zipcode: no team).
    assert_feathers_error(ld.post(f"/leads/{lead['id']}/offers", {}), 400, "BadRequest")
    ld.post("/lead-routes", {**base, "lead_source_id": 1, "contact_source_id": source})
    again = ld.post(f"/leads/{lead['id']}/offers", {})
    assert again.status_code == 201
    # Offers are made anew on each POST, and listed per lead.
    assert ld.get(f"/leads/{lead['id']}/offers").json["total"] == len(offers.json) + len(again.json)


def test_knobs_for_single_value_in_and_non_numeric_mls(sandbox, ld):
    make_contacts(ld, {"email": "in@example.com"})
    assert ld.get("/contacts?email[$in]=in@example.com").json["total"] == 1
    sandbox.post("/_sandbox/settings", json={"single_value_in": "refused", "mls_id_values": "numeric"})
    assert_feathers_error(ld.get("/contacts?email[$in]=in@example.com"), 400, "BadRequest")
    assert ld.get("/contacts?email[$in]=in@example.com&email[$in]=x@example.com").json["total"] == 1
    contact_id = make_contacts(ld, {"first_name": "M"})[0]
    refused = ld.post("/leads", {"contact_id": contact_id, "mls_id": "A1234"})
    assert set(assert_feathers_error(refused, 400, "BadRequest")["errors"]) == {"mls_id"}
    assert ld.post("/leads", {"contact_id": contact_id, "mls_id": 1234}).status_code == 201


def test_tasks_v21_live_on_their_own_base_url(sandbox, ld):
    contact_id = make_contacts(ld, {"first_name": "T"})[0]
    v21 = "/liondesk-communications/api/v1/tasks"
    headers = {"Authorization": f"Bearer {ld.token}"}
    task = {"contact_id": contact_id, "assigned_user_id": 2, "due_at": "2026-12-01T10:00:00.000Z",
            "is_all_day": False, "reminder_type": 0, "description": "Follow up", "status": "incomplete"}
    assert sandbox.post(v21, json=task).status_code == 401
    missing = sandbox.post(v21, json={"description": "x", "status": "incomplete"}, headers=headers)
    assert set(assert_feathers_error(missing, 400, "BadRequest")["errors"]) == {"assigned_user_id", "due_at"}
    created = sandbox.post(v21, json=task, headers=headers)
    assert created.status_code == 201, created.json
    done = sandbox.patch(f"{v21}/{created.json['id']}", json={"status": "complete", "update_type": 3,
                                                                 "description": "ignored"}, headers=headers).json
    assert done["completed_at"] and done["description"] == "Follow up"
    assert sandbox.get("/_sandbox/liondesk/tasks").json["data"][0]["channel"] == "v2.1"
    sandbox.post("/_sandbox/settings", json={"tasks_v21": "gone", "tasks_v20": "gone"})
    assert_feathers_error(sandbox.post(v21, json=task, headers=headers), 404, "NotFound")
    assert_feathers_error(ld.post("/tasks", {"description": "d", "status": "complete", "action_type": "None"}),
                          404, "NotFound")


def test_v1_gone_answers_a_404_page(sandbox):
    assert sandbox.post("/liondesk-v1", json={"action": "Echo"}, headers=V1_AUTH).json["error"] == 0
    sandbox.post("/_sandbox/settings", json={"v1_service": "gone"})
    gone = sandbox.post("/liondesk-v1", json={"action": "Echo"}, headers=V1_AUTH)
    assert gone.status_code == 404 and gone.mimetype == "text/html"


def test_tasks_validate_description_status_and_action_type(ld):
    task = {"description": "Call back", "status": "incomplete", "action_type": "Agent Task - Call Reminder"}
    created = ld.post("/tasks", task)
    assert created.status_code == 201 and created.json["reminder_type"] == "Agent Task - Call Reminder"
    assert set(assert_feathers_error(ld.post("/tasks", {"action_type": "None"}), 400, "BadRequest")["errors"]) \
        == {"description", "status"}
    assert_feathers_error(ld.post("/tasks", {**task, "description": "x" * 2001}), 400, "BadRequest")
    assert_feathers_error(ld.post("/tasks", {**task, "status": "done"}), 400, "BadRequest")
    assert_feathers_error(ld.post("/tasks", {"description": "d", "status": "complete"}), 400, "BadRequest")
    done = ld.patch(f"/tasks/{created.json['id']}", {"status": "complete"}).json
    assert done["completed_at"] is not None


# ---- LionDesk v1 -----------------------------------------------------------------------------------

def v1(sandbox, body, headers=V1_AUTH, path="/liondesk-v1"):
    response = sandbox.post(path, json=body, headers=headers)
    assert response.status_code == 200
    return response.json


def test_v1_echo_auth_and_users(sandbox):
    assert v1(sandbox, {"action": "Echo", "msg": "hi"}) == {"error": 0, "msg": "hi"}
    assert v1(sandbox, {"action": "Echo"}, path="/liondesk-v1/")["error"] == 0
    bad_user = {**V1_AUTH, "X-LionDesk-Id": "stranger"}
    assert v1(sandbox, {"action": "Echo"}, headers=bad_user) == {"error": 10, "errorText": "User Validation Error"}
    assert v1(sandbox, {"action": "GetUsers"})["users"] == [{"userkey": "sandbox-v1-user",
                                                             "email": "agent@example.com"}]
    personal = {**V1_AUTH, "Authorization": "Basic " + base64.b64encode(b"user:").decode()}
    assert v1(sandbox, {"action": "GetUsers"}, headers=personal)["error"] != 0
    assert v1(sandbox, {"action": "Nope"})["error"] != 0


def test_v1_submission_comment_and_activity(sandbox, ld):
    created = v1(sandbox, {"action": "NewSubmission", "firstname": "Jack", "email": "jack@mail.com",
                           "contactid": "a27c20af", "comments": "From the website"})
    assert created["error"] == 0
    assert ld.get(f"/contacts/{created['id']}").json["email"] == "jack@mail.com"
    # A second submission matching by e-mail only adds the comment.
    again = v1(sandbox, {"action": "NewSubmission", "firstname": "Other", "email": "JACK@mail.com", "comments": "2"})
    assert again == {"error": 0, "id": created["id"]}
    assert ld.get("/contacts").json["total"] == 1
    assert v1(sandbox, {"action": "NewSubmission", "firstname": "Nobody"})["error"] != 0

    comment = v1(sandbox, {"action": "NewComment", "contactid": "a27c20af", "type": 1, "description": "Called"})
    assert comment["error"] == 0
    activity = v1(sandbox, {"action": "NewActivity", "liondeskcontactid": created["id"], "type": "property_viewed",
                            "description": "Viewed 123 Keolu Rd", "created": "2015-10-01T06:14:01+00:00",
                            "property": {"beds": 2, "listing_price": "100500"}})
    assert activity["error"] == 0
    kinds = [(a["kind"], a["type"]) for a in sandbox.get("/_sandbox/liondesk-v1/activities").json["data"]]
    assert kinds == [("comment", 1), ("comment", 1), ("comment", 1), ("activity", "property_viewed")]


@pytest.mark.parametrize("body", [
    {"action": "NewActivity", "type": "called"},
    {"action": "NewActivity", "type": "visit", "description": "x" * 2001},
    {"action": "NewActivity", "type": "visit", "property": {"full_baths": 2.5}},
    {"action": "NewComment", "type": 3},
    {"action": "NewComment", "type": 1, "contactid": "unknown-id", "use_contactid_only": True},
])
def test_v1_refuses_invalid_activities(sandbox, body):
    contact = v1(sandbox, {"action": "NewSubmission", "email": "a@b.co"})
    if not body.pop("use_contactid_only", False):
        body["liondeskcontactid"] = contact["id"]
    answer = v1(sandbox, body)
    assert answer["error"] != 0 and answer["errorText"]


# ---- Real Geeks Incoming -------------------------------------------------------------------------

def rg(sandbox, method, path, body=None, headers=RG_AUTH, raw=None):
    return sandbox.open(f"/realgeeks/rest/sites/{SITE}{path}", method=method, headers=headers,
                        data=raw if raw is not None else json.dumps(body), content_type="application/json")


def test_realgeeks_auth_json_and_validation(sandbox):
    bad_auth = {"Authorization": "Basic " + base64.b64encode(b"sandbox:wrong").decode()}
    assert rg(sandbox, "POST", "/leads", {"source": "Bridge"}, headers=bad_auth).status_code == 401
    bad_json = rg(sandbox, "POST", "/leads", raw=b"{not json")
    assert bad_json.status_code == 400 and "error" in bad_json.json
    for body in ({"first_name": "NoSource"}, {"source": "Bridge"},
                 {"source": "Bridge", "email": "x@y.co", "id": "not-a-uuid"},
                 {"source": "Bridge", "email": "x@y.co", "role": "Landlord"},
                 {"source": "Bridge", "email": "x@y.co", "activities": [{"type": "note", "source": "Bridge"}]}):
        response = rg(sandbox, "POST", "/leads", body)
        assert response.status_code == 422 and response.json["error"], body
    assert rg(sandbox, "GET", "/users").json[0]["email"] == "agent@example.com"
    assert rg(sandbox, "PUT", "/users/14187", {"name": "x"}).status_code == 403
    assert rg(sandbox, "PATCH", "/leads/a27c20af4497415d9e4e7334dd1d40d2", {"notes": "x"}).status_code == 404


def test_realgeeks_create_patch_and_activities(sandbox):
    lead_id = "a27c20af-4497-415d-9e4e-7334dd1d40d2"
    created = rg(sandbox, "POST", "/leads", {"id": lead_id, "source": "LionDesk", "first_name": "Jack",
                                              "phone": "808-817-2382", "phone2": "808-000-0000"})
    assert (created.status_code, created.json) == (201, {})
    patched = rg(sandbox, "PATCH", f"/leads/{lead_id.replace('-', '')}", {"last_name": "Johnson", "phone2": ""})
    assert patched.status_code == 200
    lead = sandbox.get(f"/_sandbox/realgeeks/leads/{lead_id}").json
    assert (lead["first_name"], lead["last_name"], lead["phone"]) == ("Jack", "Johnson", "808-817-2382")
    assert "phone2" not in lead
    assert rg(sandbox, "POST", f"/leads/{lead_id}/activities", {"type": "note"}).status_code == 422
    assert rg(sandbox, "POST", f"/leads/{lead_id}/activities",
              [{"type": "note", "source": "LionDesk"}]).status_code == 422
    assign = [{"type": "was_assigned", "source": "LionDesk", "user": {"id": "99999"}}]
    assert rg(sandbox, "POST", f"/leads/{lead_id}/activities", assign).status_code == 422
    ok = [{"type": "note", "source": "LionDesk", "description": "Called back"},
          {"type": "was_assigned", "source": "LionDesk", "user": {"id": "14188"}}]
    assert rg(sandbox, "POST", f"/leads/{lead_id}/activities", ok).status_code == 201
    assert [a["type"] for a in sandbox.get(f"/_sandbox/realgeeks/leads/{lead_id}").json["activities"]] \
        == ["note", "was_assigned"]
    kept = sandbox.get("/_sandbox/realgeeks/requests").json["data"]
    assert [(r["method"], r["status"]) for r in kept] == [("POST", 201), ("PATCH", 200), ("POST", 422),
                                                          ("POST", 422), ("POST", 422), ("POST", 201)]
    assert kept[1]["body"] == {"last_name": "Johnson", "phone2": ""}


def test_realgeeks_create_merges_on_email_like_lead_manager(sandbox):
    rg(sandbox, "POST", "/leads", {"source": "Bridge", "email": "Pat@x.co", "first_name": "Pat"})
    rg(sandbox, "POST", "/leads", {"source": "Bridge", "email": "pat@X.co", "last_name": "Lee"})
    (lead,) = sandbox.get("/_sandbox/realgeeks/leads").json["data"]
    assert (lead["first_name"], lead["last_name"], lead["source_system"]) == ("Pat", "Lee", "sandbox")


# ---- webhooks to the bridge ------------------------------------------------------------------------

class Receiver:
    """A tiny HTTP server that records what it is sent (stands in for the bridge's webhook)."""

    def __init__(self):
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((dict(self.headers), body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhooks/realgeeks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.close()


def test_incoming_writes_echo_as_signed_webhooks(sandbox, receiver):
    secret = "s3cret-for-this-test"
    sandbox.post("/_sandbox/realgeeks/destination", json={"url": receiver.url, "secret": secret,
                                                          "partner_id": "bridge-1"})
    lead_id = "b1e2c3d4e5f60718293a4b5c6d7e8f90"
    rg(sandbox, "POST", "/leads", {"id": lead_id, "source": "LionDesk", "email": "kai@x.co", "phone2": "1"})
    rg(sandbox, "PATCH", f"/leads/{lead_id}", {"phone2": ""})
    rg(sandbox, "POST", f"/leads/{lead_id}/activities", [{"type": "note", "source": "LionDesk",
                                                          "description": "Hi"}])
    deliveries = sandbox.get("/_sandbox/realgeeks/deliveries?wait=1").json
    assert deliveries["idle"] and [d["status"] for d in deliveries["data"]] == ["delivered"] * 3
    assert len(receiver.received) == 3
    actions = []
    for headers, body in receiver.received:
        expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        assert headers["X-Lead-Router-Signature"] == expected
        payload = json.loads(body)
        assert payload["action"] == headers["X-Lead-Router-Action"]
        assert (payload["source_system"], payload["partner_id"], payload["site_uuid"]) == ("sandbox", "bridge-1", SITE)
        assert headers["X-Lead-Router-Timestamp"].endswith("Z")
        actions.append(payload)
    created, updated, activity = actions
    assert (created["action"], created["id"], created["email"]) == ("created", lead_id, "kai@x.co")
    assert (updated["action"], updated["phone2"]) == ("updated", "")
    assert activity["action"] == "activity_added" and [a["description"] for a in activity["activities"]] == ["Hi"]
    assert "email" not in activity


def test_website_leads_and_redelivery(sandbox, state):
    sent = []
    state.deliverer.send = lambda url, body, headers, timeout: sent.append((headers, body)) or 503
    sandbox.post("/_sandbox/realgeeks/destination", json={"url": "http://127.0.0.1:9/x", "secret": "k"})
    created = sandbox.post("/_sandbox/realgeeks/leads", json={"source": "Website Property Search",
                                                              "first_name": "Web"}).json
    assert created["lead"]["source_system"] == "Website"
    state.deliverer.wait_idle()
    assert sandbox.get("/_sandbox/realgeeks/deliveries").json["data"][0]["status"] == "failed"
    sandbox.post("/_sandbox/realgeeks/deliveries/1/redeliver")
    state.deliverer.wait_idle()
    assert len(sent) == 2 and sent[0] == sent[1]
    assert json.loads(sent[0][1])["source_system"] == "Website"


# ---- faults and the call log ---------------------------------------------------------------------------

def statuses(sandbox, ld, count):
    return [ld.get("/me").status_code for _ in range(count)]


def test_rate_limit_answers_429_with_retry_after(sandbox, ld):
    sandbox.post("/_sandbox/faults", json={"service": "liondesk", "rate_limit_rate": 1.0, "retry_after_seconds": 7})
    limited = ld.get("/contacts")
    assert_feathers_error(limited, 429, "TooManyRequests")
    assert limited.headers["Retry-After"] == "7"
    assert rg(sandbox, "GET", "/users").status_code == 200  # other services unaffected
    assert sandbox.get("/_sandbox/state").status_code == 200  # control routes never faulted


def test_seeded_error_rate_is_reproducible(sandbox, ld):
    knobs = {"service": "liondesk", "error_rate": 0.5, "seed": 1234}
    sandbox.post("/_sandbox/faults", json=knobs)
    first = statuses(sandbox, ld, 40)
    sandbox.post("/_sandbox/faults", json=knobs)
    assert statuses(sandbox, ld, 40) == first
    assert {200, 500, 502, 503} >= set(first) and 200 in first and len(set(first)) > 1
    bad_gateway = next(i for i, s in enumerate(first) if s == 502)
    sandbox.post("/_sandbox/faults", json=knobs)
    answers = [ld.get("/me") for _ in range(bad_gateway + 1)]
    assert answers[-1].mimetype == "text/html"  # gateways answer HTML, not JSON


def test_outage_fail_next_and_clear(sandbox, ld):
    sandbox.post("/_sandbox/faults", json={"outage": True})
    assert ld.get("/me").status_code == 503
    assert rg(sandbox, "GET", "/users").status_code == 503
    assert v1_status(sandbox) == 503
    sandbox.post("/_sandbox/faults", json={"clear": True, "service": "realgeeks", "fail_next": 2,
                                           "fail_next_status": 500})
    assert ld.get("/me").status_code == 200
    assert [rg(sandbox, "GET", "/users").status_code for _ in range(3)] == [500, 500, 200]
    assert sandbox.post("/_sandbox/faults", json={"error_rate": 2}).status_code == 400


def v1_status(sandbox):
    return sandbox.post("/liondesk-v1", json={"action": "Echo"}, headers=V1_AUTH).status_code


def test_call_log_since_and_counts(sandbox, ld):
    contact_id = make_contacts(ld, {"first_name": "A"})[0]
    seq = sandbox.get("/_sandbox/calls").json["last_seq"]
    ld.get(f"/contacts/{contact_id}")
    ld.get(f"/contacts/{contact_id}")
    ld.patch(f"/contacts/{contact_id}", {"first_name": "B"})
    sandbox.get("/_sandbox/state")
    log = sandbox.get(f"/_sandbox/calls?since={seq}").json
    assert log["total"] == 3
    assert {(c["method"], c["path"]): c["count"] for c in log["counts"]} == {
        ("GET", "/liondesk/contacts/{contact_id}"): 2, ("PATCH", "/liondesk/contacts/{contact_id}"): 1}
    assert log["calls"][-1]["body"] == {"first_name": "B"}
    token_call = sandbox.get("/_sandbox/calls?service=liondesk").json["calls"][0]
    assert token_call["path"] == "/liondesk/oauth2/token" and token_call["body"]["refresh_token"] == "***"


def test_bulk_contacts_and_reset(sandbox, ld):
    bulk = sandbox.post("/_sandbox/liondesk/bulk-contacts", json={"count": 250, "linked": True}).json
    assert bulk["created"] == 250 and len(bulk["links"]) == 250
    assert ld.get("/contacts?$limit=100&$skip=200").json["total"] == 250
    link = bulk["links"][7]
    assert sandbox.get(f"/_sandbox/realgeeks/leads/{link['lead_id']}").json["email"] \
        == ld.get(f"/contacts/{link['contact_id']}").json["email"]
    assert sandbox.post("/_sandbox/reset").json["counts"]["contacts"] == 0


# ---- over real HTTP --------------------------------------------------------------------------------------

@pytest.fixture
def sandbox_process(tmp_path):
    """`bridge sandbox` in its own process on a free port, with 300 ms added to each answer."""
    port = free_port()
    log = open(tmp_path / "sandbox.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "bridge.cli", "sandbox", "--port", str(port),
                                "--latency-ms", "300"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def answers():
        try:
            return requests.get(f"{url}/_sandbox/state", timeout=1).ok
        except requests.RequestException:
            return False

    try:
        wait_until(answers, message=f"the sandbox on {url} (log: {tmp_path / 'sandbox.log'})")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def test_serves_16_concurrent_requests_over_http(sandbox_process):
    url = sandbox_process
    token = requests.post(f"{url}/liondesk//oauth2/token", json={**TOKEN_REQUEST,
                                                                 "refresh_token": "sandbox-refresh-token"}).json()
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    seq = requests.get(f"{url}/_sandbox/calls").json()["last_seq"]
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda i: requests.post(f"{url}/liondesk/contacts", json={"first_name": f"C{i}"},
                                                        headers=headers, timeout=30), range(16)))
    assert [a.status_code for a in answers] == [201] * 16
    assert len({a.json()["id"] for a in answers}) == 16
    # Each call ran for at least the 300 ms of latency; if they were served one at a time
    # no two intervals would overlap, so all 16 overlapping proves concurrency.
    calls = requests.get(f"{url}/_sandbox/calls?since={seq}").json()["calls"]
    intervals = [(end - timedelta(milliseconds=c["duration_ms"]), end)
                 for c in calls for end in [datetime.fromisoformat(c["time"])]]
    latest_start = max(start for start, _ in intervals)
    assert len(intervals) == 16 and all(end > latest_start for _, end in intervals)

    requests.post(f"{url}/_sandbox/faults", json={"service": "liondesk", "outage": "drop", "latency_ms": 0})
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/liondesk/me", headers=headers, timeout=10)


def test_custom_fields_are_defined_then_valued_on_contacts(ld):
    field = ld.post("/custom-fields", {"name": "Timeframe"}).json
    assert isinstance(field["id"], str) and field["rank"] == 99999
    assert [f["name"] for f in ld.get("/custom-fields").json["data"]] == ["Timeframe"]
    contact = ld.post("/contacts", {"first_name": "C", "custom_fields": [{"id": field["id"], "value": "0-3 months"}]})
    assert contact.status_code == 201
    assert [(f["name"], f["value"]) for f in contact.json["custom_fields"]] == [("Timeframe", "0-3 months")]
    patched = ld.patch(f"/contacts/{contact.json['id']}", {"custom_fields": [{"id": field["id"], "value": "now"}]})
    assert patched.json["custom_fields"][0]["value"] == "now"
    assert_feathers_error(ld.post("/contacts", {"custom_fields": [{"id": "999", "value": "x"}]}), 400, "BadRequest")
