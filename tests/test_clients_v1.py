"""LionDesk v1 partner client: Basic auth with the API key, the user key header, `action` bodies,
and failures reported inside 200 answers."""

import base64
import json
import secrets

import pytest
import requests
import responses

from bridge.clients.liondesk_v1 import LionDeskV1Client
from bridge.exceptions import PermanentError, RetryableError, UpstreamRejected, UpstreamTimeout, UpstreamUnavailable

URL = "http://v1.liondesk.test"


@pytest.fixture
def keys_():
    return {"liondesk_v1_api_key": secrets.token_hex(12), "liondesk_v1_user_key": secrets.token_hex(12)}


@pytest.fixture
def observed():
    return []


@pytest.fixture
def client(make_settings, keys_, observed):
    return LionDeskV1Client(make_settings(liondesk_v1_url=URL, **keys_), observer=lambda *a: observed.append(a))


@pytest.fixture
def http():
    with responses.RequestsMock() as rsps:
        yield rsps


def sent(call) -> dict:
    return json.loads(call.request.body)


def test_echo_posts_the_action_with_basic_auth_and_the_user_key(http, client, keys_):
    http.add(responses.POST, URL, json={"error": 0, "errorText": "", "msg": "ping"})
    assert client.call("Echo", msg="ping")["msg"] == "ping"
    request = http.calls[0].request
    assert request.url.rstrip("/") == URL
    assert sent(http.calls[0]) == {"action": "Echo", "msg": "ping"}
    expected = base64.b64encode(f"{keys_['liondesk_v1_api_key']}:".encode()).decode()
    assert request.headers["Authorization"] == f"Basic {expected}"  # the key as user name, empty password
    assert request.headers["X-LionDesk-Id"] == keys_["liondesk_v1_user_key"]
    assert request.headers["Content-Type"] == "application/json"


def test_submission_comment_and_activity_send_their_fields(http, client):
    http.add(responses.POST, URL, json={"error": 0, "id": 4321})
    assert client.call("NewSubmission", firstname="Jack", email="jack@mail.com", contactid="a27c",
                       **{"assigned user email": "ben@mail.com"})["id"] == 4321
    client.call("NewComment", liondeskcontactid=4321, type=1, description="Called back")
    client.call("NewActivity", contactid="a27c", type="property_viewed", created="2015-10-01T06:14:01+00:00",
                property={"street_address": "123 Keolu Rd", "beds": 2, "listing_price": "100500"})
    bodies = [sent(c) for c in http.calls]
    assert bodies[0] == {"action": "NewSubmission", "firstname": "Jack", "email": "jack@mail.com", "contactid": "a27c",
                         "assigned user email": "ben@mail.com"}
    assert bodies[1] == {"action": "NewComment", "liondeskcontactid": 4321, "type": 1, "description": "Called back"}
    assert bodies[2]["action"] == "NewActivity" and bodies[2]["property"]["beds"] == 2


@pytest.mark.parametrize("answer", [
    {"error": 10, "errorText": "User Validation Error"},
    {"error": "10", "errorText": "User Validation Error"},
])
def test_a_nonzero_error_is_permanent_with_its_error_text(http, client, observed, answer):
    http.add(responses.POST, URL, json=answer)
    with pytest.raises(UpstreamRejected, match="User Validation Error") as caught:
        client.call("NewComment", contactid="x", type=1)
    assert isinstance(caught.value, PermanentError)
    assert (caught.value.service, caught.value.method, caught.value.path) == ("liondesk_v1", "POST", "/NewComment")
    assert "error 10" in str(caught.value)
    assert observed[-1][:4] == ("liondesk_v1", "POST", "/NewComment", "UpstreamRejected")


def test_codes_listed_as_retryable_are_retryable(http, client, monkeypatch):
    from bridge.clients import liondesk_v1

    monkeypatch.setattr(liondesk_v1, "RETRYABLE_ERROR_CODES", frozenset({99}))
    http.add(responses.POST, URL, json={"error": 99, "errorText": "Try later"})
    with pytest.raises(UpstreamUnavailable, match="Try later"):
        client.call("Echo")


@pytest.mark.parametrize("body", ['{"ok": true}', "<html>gateway</html>", "[]"])
def test_an_answer_that_is_not_a_v1_result_is_retryable(http, client, body):
    http.add(responses.POST, URL, body=body, status=200)
    with pytest.raises(UpstreamUnavailable) as caught:
        client.call("Echo")
    assert isinstance(caught.value, RetryableError)


def test_transport_failures_are_retryable(http, client):
    http.add(responses.POST, URL, status=502)
    http.add(responses.POST, URL, body=requests.ReadTimeout("slow"))
    with pytest.raises(UpstreamUnavailable):
        client.call("Echo")
    with pytest.raises(UpstreamTimeout):
        client.call("Echo")


def test_the_observer_names_the_action_and_never_the_keys(http, client, observed, keys_):
    http.add(responses.POST, URL, json={"error": 0})
    client.call("Echo")
    assert observed[0][:4] == ("liondesk_v1", "POST", "/Echo", 200)
    assert keys_["liondesk_v1_api_key"] not in repr(observed) and keys_["liondesk_v1_user_key"] not in repr(observed)
