"""Real Geeks Incoming client: Basic auth, JSON with charset, PATCH updates, activity arrays,
the users cache, and Real Geeks' own retry policy (400/401/422 never retried)."""

import base64
import json
import secrets

import pytest
import requests
import responses

from bridge import defaults
from bridge.clients.realgeeks import RealGeeksClient
from bridge.exceptions import (
    PermanentError,
    RetryableError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from bridge.storage import keys

BASE = "http://receivers.realgeeks.test/rest"
SITE = "5ead6dd1-2cb9-4f80-80fc-5716b05c90ba"
LEAD = "a27c20af-4497-415d-9e4e-7334dd1d40d2"


@pytest.fixture
def login():
    return {"realgeeks_api_username": "bridge-" + secrets.token_hex(4), "realgeeks_api_password": secrets.token_hex(16)}


@pytest.fixture
def observed():
    return []


@pytest.fixture
def client(make_settings, login, redis_conn, observed):
    settings = make_settings(realgeeks_api_url=BASE, **login)
    return RealGeeksClient(settings, redis_conn, observer=lambda *a: observed.append(a))


@pytest.fixture
def http():
    with responses.RequestsMock() as rsps:
        yield rsps


def test_create_lead_posts_json_with_charset_and_basic_auth(http, client, login):
    http.add(responses.POST, f"{BASE}/sites/{SITE}/leads", status=201, json={})
    assert client.create_lead(SITE, {"id": LEAD, "source": "LionDesk", "first_name": "Jack"}) == {}
    request = http.calls[0].request
    assert request.headers["Content-Type"] == "application/json; charset=utf-8"
    expected = base64.b64encode(f"{login['realgeeks_api_username']}:{login['realgeeks_api_password']}".encode())
    assert request.headers["Authorization"] == f"Basic {expected.decode()}"
    assert json.loads(request.body) == {"id": LEAD, "source": "LionDesk", "first_name": "Jack"}


def test_update_lead_is_a_patch_of_the_given_fields(http, client):
    http.add(responses.PATCH, f"{BASE}/sites/{SITE}/leads/{LEAD}", json={})
    client.update_lead(SITE, LEAD, {"phone2": ""})
    assert json.loads(http.calls[0].request.body) == {"phone2": ""}


def test_activities_body_is_a_json_array(http, client):
    http.add(responses.POST, f"{BASE}/sites/{SITE}/leads/{LEAD}/activities", status=201, body="")
    activities = [{"type": "note", "source": "LionDesk", "description": "Called, left voicemail"},
                  {"type": "was_assigned", "source": "LionDesk", "user": {"id": "14187"}}]
    assert client.add_activities(SITE, LEAD, activities) == {}
    assert json.loads(http.calls[0].request.body) == activities


def test_non_ascii_text_is_sent_as_utf8(http, client):
    http.add(responses.PATCH, f"{BASE}/sites/{SITE}/leads/{LEAD}", json={})
    client.update_lead(SITE, LEAD, {"last_name": "Kealoha-Pāʻū"})
    assert http.calls[0].request.body.decode("utf-8") == '{"last_name":"Kealoha-Pāʻū"}'


@pytest.mark.parametrize("status", [400, 401, 422])
def test_400_401_422_are_permanent_with_real_geeks_message(http, client, status):
    http.add(responses.POST, f"{BASE}/sites/{SITE}/leads", status=status,
             json={"error": "Property field 'full_baths' is not a valid integer."})
    with pytest.raises(UpstreamRejected, match="full_baths") as caught:
        client.create_lead(SITE, {"source": "LionDesk"})
    assert isinstance(caught.value, PermanentError) and not isinstance(caught.value, RetryableError)
    assert (caught.value.service, caught.value.status, caught.value.method, caught.value.path) == (
        "realgeeks", status, "POST", f"/sites/{SITE}/leads")


@pytest.mark.parametrize("status", [403, 404, 409, 500, 502, 503])
def test_everything_else_is_retryable(http, client, status):
    http.add(responses.POST, f"{BASE}/sites/{SITE}/leads/{LEAD}/activities", status=status, json={"error": "nope"})
    with pytest.raises(UpstreamUnavailable) as caught:
        client.add_activities(SITE, LEAD, [])
    assert isinstance(caught.value, RetryableError) and caught.value.status == status


def test_429_is_rate_limited_with_retry_after(http, client):
    http.add(responses.PATCH, f"{BASE}/sites/{SITE}/leads/{LEAD}", status=429, headers={"Retry-After": "30"})
    with pytest.raises(UpstreamRateLimited) as caught:
        client.update_lead(SITE, LEAD, {})
    assert caught.value.retry_after == 30


def test_timeouts_and_connection_errors_are_retryable(http, client):
    http.add(responses.POST, f"{BASE}/sites/{SITE}/leads", body=requests.ReadTimeout("slow"))
    http.add(responses.POST, f"{BASE}/sites/{SITE}/leads", body=requests.ConnectionError("reset"))
    with pytest.raises(UpstreamTimeout):
        client.create_lead(SITE, {})
    with pytest.raises(UpstreamUnavailable):
        client.create_lead(SITE, {})


def test_users_are_cached_per_site(http, client, redis_conn):
    users = [{"id": "14187", "role": "Agent", "name": "Jack Johnson", "email": "jack@music.com"}]
    http.add(responses.GET, f"{BASE}/sites/{SITE}/users", json=users)
    assert client.list_users(SITE) == users
    assert client.list_users(SITE) == users
    assert len(http.calls) == 1
    assert 0 < redis_conn.ttl(keys.realgeeks_users(SITE)) <= defaults.REALGEEKS_USERS_TTL_SECONDS
    client.invalidate_users(SITE)
    client.list_users(SITE)
    assert len(http.calls) == 2


def test_the_observer_gets_no_credentials_or_bodies(http, client, observed, login):
    http.add(responses.POST, f"{BASE}/sites/{SITE}/leads", status=422, json={"error": "bad"})
    with pytest.raises(UpstreamRejected):
        client.create_lead(SITE, {"email": "jack@mail.com"})
    assert observed[0][:4] == ("realgeeks", "POST", f"/sites/{SITE}/leads", 422)
    assert login["realgeeks_api_password"] not in repr(observed) and "jack@mail.com" not in repr(observed)


def test_a_user_missing_from_the_cached_list_is_looked_up_afresh_once(http, client):
    jack = {"id": "14187", "role": "Agent", "name": "Jack Johnson", "email": "jack@music.com"}
    jill = {"id": "14191", "role": "Agent", "name": "Jill New", "email": "jill@music.com"}
    http.add(responses.GET, f"{BASE}/sites/{SITE}/users", json=[jack])
    http.add(responses.GET, f"{BASE}/sites/{SITE}/users", json=[jack, jill])
    assert client.find_user(SITE, "14187") == jack  # cached list: one listing
    assert client.find_user(SITE, " 14191") == jill  # a miss lists again, once
    assert len(http.calls) == 2
    assert client.find_user(SITE, "99999") is None  # not a user after one more listing
    assert len(http.calls) == 3


def test_unsetting_uses_the_v2_patch_form_that_answers_and_remembers_it(http, client, redis_conn):
    prefix = f"http://receivers.realgeeks.test/v2/rest/sites/{SITE}/leads/{LEAD}"
    infix = f"{BASE}/sites/{SITE}/v2/leads/{LEAD}"
    http.add(responses.PATCH, prefix, status=404, body="Not Found")
    http.add(responses.PATCH, infix, json={})
    assert client.unset_fields(SITE, LEAD, {"phone2": ""}) == {}
    assert [call.request.url for call in http.calls] == [prefix, infix]
    assert json.loads(http.calls[1].request.body) == {"phone2": ""}
    client.unset_fields(SITE, LEAD, {"notes": ""})
    assert [call.request.url for call in http.calls][2:] == [infix]  # remembered: straight to the form that answers
    assert redis_conn.get(keys.realgeeks_unset_form()) == b"rest/v2"


def test_unsetting_a_lead_neither_form_knows_raises_the_first_answer(http, client):
    http.add(responses.PATCH, f"http://receivers.realgeeks.test/v2/rest/sites/{SITE}/leads/{LEAD}", status=404,
             json={"error": "Lead not found"})
    http.add(responses.PATCH, f"{BASE}/sites/{SITE}/v2/leads/{LEAD}", status=404, json={"error": "Lead not found"})
    with pytest.raises(UpstreamUnavailable) as caught:
        client.unset_fields(SITE, LEAD, {"phone2": ""})
    assert caught.value.status == 404 and len(http.calls) == 2  # both forms tried, nothing remembered


def test_a_refusal_that_is_not_about_the_path_is_not_retried_on_the_other_form(http, client):
    http.add(responses.PATCH, f"http://receivers.realgeeks.test/v2/rest/sites/{SITE}/leads/{LEAD}", status=422,
             json={"error": "bad"})
    with pytest.raises(UpstreamRejected):
        client.unset_fields(SITE, LEAD, {"phone2": ""})
    assert len(http.calls) == 1
