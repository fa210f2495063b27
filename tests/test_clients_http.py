"""The shared HTTP layer: failures classified into named exceptions, Retry-After, URLs, the observer."""

import json
import time
from email.utils import formatdate
from urllib.parse import parse_qs, urlparse

import pytest
import requests
import responses

from bridge.clients.http import Service, parse_retry_after, single_slash_url
from bridge.exceptions import (
    PermanentError,
    RetryableError,
    UpstreamAuthError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from tests.support import free_port

BASE = "http://upstream.test/api"


@pytest.fixture
def http():
    """A `responses` mock every test registers its answers on."""
    with responses.RequestsMock() as rsps:
        yield rsps


@pytest.fixture
def observed():
    """A list the observer appends each call's arguments to."""
    return []


@pytest.fixture
def service(observed):
    """A Service named 'liondesk' whose observer records into `observed`."""
    return Service("liondesk", BASE, observer=lambda *args: observed.append(args))


@pytest.mark.parametrize("status", [400, 403, 404, 409, 422])
def test_client_errors_are_rejected_with_the_feathers_message_and_field_names(http, service, status):
    http.add(responses.POST, f"{BASE}/contacts", status=status, json={
        "name": "BadRequest", "message": "Validation failed", "code": status,
        "errors": {"email": "invalid", "mobile_phone": "too long"}})
    with pytest.raises(UpstreamRejected) as caught:
        service.request("POST", "/contacts", json_body={"email": "x"})
    error = caught.value
    assert isinstance(error, PermanentError)
    assert (error.service, error.status, error.method, error.path) == ("liondesk", status, "POST", "/contacts")
    assert "Validation failed" in str(error) and "email" in str(error) and "mobile_phone" in str(error)


def test_feathers_errors_given_as_a_list_name_their_paths(http, service):
    http.add(responses.PATCH, f"{BASE}/contacts/7", status=400,
             json={"message": "Bad", "errors": [{"path": "birthday", "message": "not a date"}]})
    with pytest.raises(UpstreamRejected, match="birthday"):
        service.request("PATCH", "/contacts/7", json_body={})


def test_real_geeks_and_v1_error_shapes_give_their_messages(http, service):
    http.add(responses.POST, f"{BASE}/a", status=422, json={"error": "Property field 'full_baths' is not a valid integer."})
    http.add(responses.POST, f"{BASE}/b", status=400, json={"error": 10, "errorText": "User Validation Error"})
    with pytest.raises(UpstreamRejected, match="full_baths"):
        service.request("POST", "/a")
    with pytest.raises(UpstreamRejected, match="User Validation Error"):
        service.request("POST", "/b")


def test_an_error_without_a_json_body_falls_back_to_the_reason(http, service):
    http.add(responses.GET, f"{BASE}/x", status=404, body="<html>nope</html>")
    with pytest.raises(UpstreamRejected, match="404 Not Found"):
        service.request("GET", "/x")


def test_401_is_an_auth_error_and_retryable(http, service):
    http.add(responses.GET, f"{BASE}/me", status=401, json={"name": "NotAuthenticated", "message": "jwt expired"})
    with pytest.raises(UpstreamAuthError, match="jwt expired") as caught:
        service.request("GET", "/me")
    assert isinstance(caught.value, RetryableError) and caught.value.status == 401


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_are_unavailable_and_retryable(http, service, status):
    http.add(responses.GET, f"{BASE}/me", status=status)
    with pytest.raises(UpstreamUnavailable) as caught:
        service.request("GET", "/me")
    assert isinstance(caught.value, RetryableError) and caught.value.status == status
    assert caught.value.retry_after is None


def test_503_keeps_its_retry_after(http, service):
    http.add(responses.GET, f"{BASE}/me", status=503, headers={"Retry-After": "42"})
    with pytest.raises(UpstreamUnavailable) as caught:
        service.request("GET", "/me")
    assert caught.value.retry_after == 42


def test_429_carries_retry_after_in_seconds(http, service):
    http.add(responses.GET, f"{BASE}/contacts", status=429, headers={"Retry-After": "17"})
    with pytest.raises(UpstreamRateLimited) as caught:
        service.request("GET", "/contacts")
    assert caught.value.retry_after == 17 and caught.value.status == 429


def test_429_carries_retry_after_given_as_an_http_date(http, service):
    http.add(responses.GET, f"{BASE}/contacts", status=429,
             headers={"Retry-After": formatdate(time.time() + 120, usegmt=True)})
    with pytest.raises(UpstreamRateLimited) as caught:
        service.request("GET", "/contacts")
    assert 100 <= caught.value.retry_after <= 121


def test_429_without_retry_after_has_none(http, service):
    http.add(responses.GET, f"{BASE}/contacts", status=429)
    with pytest.raises(UpstreamRateLimited) as caught:
        service.request("GET", "/contacts")
    assert caught.value.retry_after is None


def test_parse_retry_after_forms():
    assert parse_retry_after("0") == 0
    assert parse_retry_after(" 5 ") == 5
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480 - 30) == 30
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480 + 30) == 0  # past dates: now
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


@pytest.mark.parametrize("timeout", [requests.ReadTimeout, requests.ConnectTimeout])
def test_timeouts_raise_upstream_timeout(http, service, observed, timeout):
    http.add(responses.GET, f"{BASE}/me", body=timeout("slow"))
    with pytest.raises(UpstreamTimeout) as caught:
        service.request("GET", "/me")
    assert isinstance(caught.value, RetryableError) and caught.value.status is None
    assert caught.value.method == "GET" and caught.value.path == "/me"
    assert observed[-1][3] == "UpstreamTimeout"


def test_connection_errors_raise_upstream_unavailable(http, service, observed):
    http.add(responses.GET, f"{BASE}/me", body=requests.ConnectionError("refused"))
    with pytest.raises(UpstreamUnavailable):
        service.request("GET", "/me")
    assert observed[-1][3] == "UpstreamUnavailable"


def test_a_real_refused_connection_is_unavailable():
    service = Service("realgeeks", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(UpstreamUnavailable) as caught:
        service.request("GET", "/sites/x/users")
    assert caught.value.service == "realgeeks" and caught.value.path == "/sites/x/users"


def test_timeouts_come_from_defaults_as_a_connect_read_pair(http, service):
    from bridge import defaults

    http.add(responses.GET, f"{BASE}/me", json={})
    service.request("GET", "/me")
    assert http.calls[0].request.req_kwargs["timeout"] == (
        defaults.HTTP_CONNECT_TIMEOUT_SECONDS, defaults.HTTP_READ_TIMEOUT_SECONDS)


def test_a_200_that_is_not_json_is_retryable(http, service):
    http.add(responses.GET, f"{BASE}/me", body="<html>maintenance</html>", status=200)
    with pytest.raises(UpstreamUnavailable):
        service.call("GET", "/me")


def test_call_returns_parsed_json_and_none_for_empty_bodies(http, service):
    http.add(responses.GET, f"{BASE}/me", json={"id": 1})
    http.add(responses.POST, f"{BASE}/leads/1/offers", body="", status=201)
    assert service.call("GET", "/me") == {"id": 1}
    assert service.call("POST", "/leads/1/offers") is None


def test_observer_gets_service_method_path_status_and_duration_only(http, service, observed):
    http.add(responses.GET, f"{BASE}/contacts", json={"data": []})
    http.add(responses.POST, f"{BASE}/contacts", status=422, json={"message": "no"})
    service.request("GET", "/contacts", params={"email": "jack@mail.com"},
                    headers={"Authorization": "Bearer very-secret"})
    with pytest.raises(UpstreamRejected):
        service.request("POST", "//contacts", json_body={"email": "jack@mail.com"})
    assert [o[:4] for o in observed] == [("liondesk", "GET", "/contacts", 200), ("liondesk", "POST", "/contacts", 422)]
    assert all(isinstance(o[4], float) and o[4] >= 0 for o in observed)
    assert "secret" not in repr(observed) and "jack" not in repr(observed)


def test_a_failing_observer_does_not_fail_the_call(http):
    def broken(*args):
        raise RuntimeError("history store down")

    http.add(responses.GET, f"{BASE}/me", json={"id": 3})
    assert Service("liondesk", BASE, observer=broken).call("GET", "/me") == {"id": 3}


def test_urls_have_single_slashes():
    assert single_slash_url("https://api-v2.liondesk.com", "//contacts") == "https://api-v2.liondesk.com/contacts"
    assert single_slash_url("https://api-v2.liondesk.com/", "/contacts//7/addresses") == \
        "https://api-v2.liondesk.com/contacts/7/addresses"
    assert single_slash_url("http://h/rest/", "sites/1/leads") == "http://h/rest/sites/1/leads"
    assert single_slash_url("http://h/", "") == "http://h"


def test_repeated_query_keys_are_all_sent(http, service):
    http.add(responses.GET, f"{BASE}/contacts", json={})
    service.request("GET", "/contacts", params=[("last_name[$in]", "gates"), ("last_name[$in]", "jobs")])
    service.request("GET", "/contacts", params={"last_name[$in]": ["gates", "jobs"]})
    assert len(http.calls) == 2  # the loop below judges both requests, never none
    for call in http.calls:
        assert parse_qs(urlparse(call.request.url).query) == {"last_name[$in]": ["gates", "jobs"]}


def test_json_bodies_go_out_as_json(http, service):
    http.add(responses.POST, f"{BASE}/leads", json={"id": 9})
    service.call("POST", "/leads", json_body={"contact_id": 1})
    assert json.loads(http.calls[0].request.body) == {"contact_id": 1}
