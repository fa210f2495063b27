"""LionDesk v2 client: OAuth refresh and rotation across processes, re-authorisation, pagination,
query strings, the reference cache, the observer, and the `bridge liondesk` commands."""

import json
import secrets
import threading
from urllib.parse import parse_qs, urlparse

import pytest
import responses

from bridge.clients import build_clients
from bridge import defaults
from bridge.clients.liondesk import LionDeskClient, channels, contact_search_state
from bridge.clients.oauth import APP_CONFLICT, NEEDS_REAUTHORIZATION, Tokens, auth_state, read_tokens, store_tokens
from bridge.exceptions import (
    LionDeskAppConflict,
    LionDeskNeedsReauthorization,
    PermanentError,
    LionDeskNotConfigured,
    UpstreamAuthError,
    UpstreamRejected,
    UpstreamUnavailable,
    WaitingError,
)
from bridge.storage import keys
from bridge.translate.liondesk import contact_criteria

BASE = "http://liondesk.test"
TOKEN_URL = f"{BASE}/oauth2/token"


class Clock:
    """A clock tests move by hand."""

    def __init__(self, now: float = 1_700_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


class TokenEndpoint:
    """Answers LionDesk's token endpoint with a fresh, unique pair each time, and keeps every request body."""

    def __init__(self, expires_in: int = 3600):
        self.bodies: list[dict] = []
        self.issued: list[dict] = []
        self.expires_in = expires_in
        self.before_answer = None

    def __call__(self, request):
        self.bodies.append(json.loads(request.body))
        if self.before_answer:
            self.before_answer()
        pair = {"access_token": secrets.token_hex(20), "refresh_token": secrets.token_hex(20),
                "expires_in": self.expires_in, "scope": "write", "token_type": "Bearer"}
        self.issued.append(pair)
        return 200, {}, json.dumps(pair)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def credentials():
    """OAuth app credentials and an initial refresh token, generated for this test."""
    return dict(liondesk_client_id=secrets.token_hex(8), liondesk_client_secret=secrets.token_hex(16),
                liondesk_refresh_token=secrets.token_hex(20))


@pytest.fixture
def ld_settings(make_settings, credentials):
    """Settings pointing LionDesk at the mocked base URL, with a ceiling high enough not to slow tests."""
    return make_settings(liondesk_api_url=BASE, liondesk_max_requests_per_second=1000, **credentials)


@pytest.fixture
def http():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


@pytest.fixture
def token_endpoint(http):
    endpoint = TokenEndpoint()
    http.add_callback(responses.POST, TOKEN_URL, callback=endpoint)
    return endpoint


@pytest.fixture
def observed():
    return []


@pytest.fixture
def client(ld_settings, redis_conn, clock, observed):
    return LionDeskClient(ld_settings, redis_conn, clock=clock, observer=lambda *a: observed.append(a))


def stored_valid_token(conn, clock, lifetime=3600) -> Tokens:
    """Store a token pair (as a previous refresh would have) valid for `lifetime` seconds."""
    tokens = Tokens(secrets.token_hex(20), secrets.token_hex(20), clock.now + lifetime)
    store_tokens(conn, tokens, clock.now)
    return tokens


def bearer(call) -> str:
    """The access token a recorded call presented."""
    return call.request.headers["Authorization"].removeprefix("Bearer ")


def api_calls(http):
    """Recorded calls other than the token endpoint's."""
    return [c for c in http.calls if not c.request.url.startswith(TOKEN_URL)]


def query_of(call) -> dict:
    """The query string of a recorded call, repeated keys kept."""
    return parse_qs(urlparse(call.request.url).query)


# -- OAuth ----------------------------------------------------------------------------------


def test_first_call_refreshes_with_the_env_token_and_stores_the_pair(http, client, token_endpoint, credentials):
    http.add(responses.GET, f"{BASE}/me", json={"id": 1001})
    assert client.get_me() == {"id": 1001}
    assert token_endpoint.bodies == [{
        "grant_type": "refresh_token", "refresh_token": credentials["liondesk_refresh_token"],
        "client_id": credentials["liondesk_client_id"], "client_secret": credentials["liondesk_client_secret"]}]
    issued = token_endpoint.issued[0]
    assert bearer(api_calls(http)[0]) == issued["access_token"]
    assert read_tokens(client.conn) == Tokens(issued["access_token"], issued["refresh_token"], client.auth.clock() + 3600)


def test_a_valid_stored_token_is_used_without_refreshing(http, client, token_endpoint, redis_conn, clock):
    tokens = stored_valid_token(redis_conn, clock, lifetime=3600)
    http.add(responses.GET, f"{BASE}/me", json={"id": 1})
    client.get_me()
    assert token_endpoint.bodies == []
    assert bearer(api_calls(http)[0]) == tokens.access_token


def test_stored_tokens_win_over_the_env_refresh_token(http, client, token_endpoint, redis_conn, clock, credentials):
    tokens = stored_valid_token(redis_conn, clock, lifetime=10)  # inside the refresh margin
    http.add(responses.GET, f"{BASE}/me", json={"id": 1})
    client.get_me()
    assert [b["refresh_token"] for b in token_endpoint.bodies] == [tokens.refresh_token]


def test_refreshes_ahead_of_expiry(http, client, token_endpoint, redis_conn, clock):
    from bridge import defaults

    stored_valid_token(redis_conn, clock, lifetime=defaults.TOKEN_REFRESH_MARGIN_SECONDS + 60)
    http.add(responses.GET, f"{BASE}/me", json={"id": 1})
    client.get_me()
    assert token_endpoint.bodies == []
    clock.now += 61  # now within the margin: still valid, but refreshed before use
    client.get_me()
    assert len(token_endpoint.bodies) == 1
    assert bearer(api_calls(http)[-1]) == token_endpoint.issued[0]["access_token"]


def test_a_401_refreshes_once_and_retries_once(http, client, token_endpoint, redis_conn, clock):
    old = stored_valid_token(redis_conn, clock)
    http.add(responses.GET, f"{BASE}/contacts/5", status=401, json={"name": "NotAuthenticated", "message": "revoked"})
    http.add(responses.GET, f"{BASE}/contacts/5", json={"id": 5})
    assert client.get_contact(5) == {"id": 5}
    first, second = api_calls(http)
    assert bearer(first) == old.access_token
    assert bearer(second) == token_endpoint.issued[0]["access_token"]
    assert [b["refresh_token"] for b in token_endpoint.bodies] == [old.refresh_token]


def test_a_401_right_after_a_fresh_refresh_is_the_named_app_conflict_and_stops_refreshing(
        http, client, token_endpoint, redis_conn, clock):
    stored_valid_token(redis_conn, clock)
    http.add(responses.GET, f"{BASE}/lead-routes", status=401, json={"message": "no"})
    http.add(responses.GET, f"{BASE}/me", json={"id": 1})  # the fresh token itself is good
    with pytest.raises(LionDeskAppConflict) as raised:
        client.request("GET", "/lead-routes")
    assert isinstance(raised.value, PermanentError) and APP_CONFLICT in str(raised.value)
    assert len(api_calls(http)) == 3 and len(token_endpoint.bodies) == 1  # route, route again, /me
    # No refresh storm: the same scope fails at once, without a call or a refresh, until the recheck.
    for _ in range(3):
        with pytest.raises(LionDeskAppConflict):
            client.request("GET", "/lead-routes")
    assert len(api_calls(http)) == 3 and len(token_endpoint.bodies) == 1
    conflict = auth_state(redis_conn)["app_conflict"]
    assert conflict["problem"] == APP_CONFLICT and conflict["scopes"] == ["lead-routes"]
    assert client.get_me() == {"id": 1}  # other parts of LionDesk still work
    clock.now += defaults.LIONDESK_APP_CONFLICT_RECHECK_SECONDS + 1
    http.replace(responses.GET, f"{BASE}/lead-routes", json=[])
    assert client.request("GET", "/lead-routes") == []
    assert "app_conflict" not in auth_state(redis_conn)


def test_a_second_401_with_a_token_refused_everywhere_stays_retryable(http, client, token_endpoint, redis_conn,
                                                                       clock):
    stored_valid_token(redis_conn, clock)
    http.add(responses.GET, f"{BASE}/contacts/7", status=401, json={"message": "Invalid access token"})
    http.add(responses.GET, f"{BASE}/me", status=401, json={"message": "Invalid access token"})
    with pytest.raises(UpstreamAuthError) as raised:
        client.get_contact(7)
    assert not isinstance(raised.value, LionDeskAppConflict)  # expired or revoked again: not another account
    assert len(token_endpoint.bodies) == 1 and "app_conflict" not in auth_state(redis_conn)
    with pytest.raises(UpstreamAuthError):
        client.get_me()  # /me itself refused twice: never an app conflict
    assert "app_conflict" not in auth_state(redis_conn)


def test_a_401_saying_the_client_id_belongs_to_another_user_is_permanent_without_a_refresh(
        http, client, token_endpoint, redis_conn, clock):
    stored_valid_token(redis_conn, clock)
    http.add(responses.GET, f"{BASE}/users", status=401,
             json={"message": "The oauth_client_id does not belong to the querying user", "code": 401})
    http.add(responses.GET, f"{BASE}/team-members", json={"total": 1, "limit": 100, "skip": 0, "data": [
        {"id": 4, "request_status": "Accepted", "user": {"id": 2, "email": "casey@example.com"}}]})
    http.add(responses.GET, f"{BASE}/sub-accounts", status=403, json={"message": "brokers only"})
    from bridge.sync import references
    assert references.user_ids_by_email(client) == {"casey@example.com": 2}  # the lead still gets its agent
    assert token_endpoint.bodies == []
    assert auth_state(redis_conn)["app_conflict"]["scopes"] == ["users"]
    members = [c for c in api_calls(http) if "/team-members" in c.request.url]
    assert query_of(members[0])["request_status"] == ["Accepted"]


def test_every_request_says_content_type_json_and_offers_send_an_empty_object(http, client, authorised):
    http.add(responses.GET, f"{BASE}/contacts/7", json={"id": 7})
    http.add(responses.POST, f"{BASE}/leads/3/offers", json=[])
    client.get_contact(7)
    client.create_lead_offers(3)
    assert [c.request.headers["Content-Type"] for c in http.calls] == ["application/json"] * 2
    assert http.calls[-1].request.body == b"{}"


def test_refresh_sends_the_redirect_uri_when_configured(http, make_settings, credentials, redis_conn, clock):
    settings = make_settings(liondesk_api_url=BASE, liondesk_max_requests_per_second=1000,
                             liondesk_redirect_uri="https://bridge.example.com/admin/liondesk/callback", **credentials)
    endpoint = TokenEndpoint()
    http.add_callback(responses.POST, TOKEN_URL, callback=endpoint)
    http.add(responses.GET, f"{BASE}/me", json={"id": 1})
    LionDeskClient(settings, redis_conn, clock=clock).get_me()
    assert endpoint.bodies[0]["redirect_uri"] == "https://bridge.example.com/admin/liondesk/callback"


def test_keep_alive_refreshes_an_idle_grant_only(http, client, token_endpoint, redis_conn, clock):
    stored_valid_token(redis_conn, clock)
    assert client.auth.keep_alive() is False and token_endpoint.bodies == []
    clock.now += defaults.LIONDESK_KEEPALIVE_SECONDS + 1
    assert client.auth.keep_alive() is True and len(token_endpoint.bodies) == 1
    assert client.auth.keep_alive() is False and len(token_endpoint.bodies) == 1


COMMUNICATIONS = "http://communications.test/api/v1"


@pytest.fixture
def tasks_client(make_settings, credentials, redis_conn, clock):
    settings = make_settings(liondesk_api_url=BASE, liondesk_communications_url=COMMUNICATIONS,
                             liondesk_max_requests_per_second=1000, **credentials)
    return LionDeskClient(settings, redis_conn, clock=clock)


def test_tasks_go_to_v21_with_an_assignee_and_due_time(http, tasks_client, authorised):
    http.add(responses.GET, f"{BASE}/me", json={"id": 1001})
    http.add(responses.POST, f"{COMMUNICATIONS}/tasks", json={"id": 17})
    http.add(responses.PATCH, f"{COMMUNICATIONS}/tasks/17", json={"id": 17})
    task_id = tasks_client.create_task(7, title="Call Jane", description="She asked about 12 Main St")
    assert task_id == "v2.1:17"
    body = json.loads(http.calls[-1].request.body)
    assert body["assigned_user_id"] == 1001 and body["due_at"].endswith("Z") and body["contact_id"] == 7
    assert body["description"] == "Call Jane\nShe asked about 12 Main St" and body["status"] == "incomplete"
    tasks_client.create_task(7, title="x", due_at="2026-12-01T10:00:00.000Z", assigned_user_id=5, completed=True)
    body = json.loads(http.calls[-1].request.body)
    assert (body["assigned_user_id"], body["due_at"], body["status"]) == (5, "2026-12-01T10:00:00.000Z", "complete")
    assert len([c for c in http.calls if c.request.url.endswith("/me")]) == 1  # the owner's id is cached
    tasks_client.complete_task(task_id)
    assert json.loads(http.calls[-1].request.body) == {"status": "complete", "update_type": 3}


def test_a_gone_v21_falls_back_to_v20_and_is_remembered_until_the_recheck(http, tasks_client, authorised, token_endpoint, redis_conn,
                                                                           clock):
    http.add(responses.GET, f"{BASE}/me", json={"id": 1001})
    http.add(responses.POST, f"{COMMUNICATIONS}/tasks", status=404, json={"message": "Page not found"})
    http.add(responses.POST, f"{BASE}/tasks", json={"id": 3})
    http.add(responses.PATCH, f"{BASE}/tasks/3", json={"id": 3})
    assert tasks_client.create_task(7, title="Viewed 12 Main St", completed=True) == "v2.0:3"
    sent = json.loads(http.calls[-1].request.body)
    assert sent["action_type"] == "Agent Task - No Reminder" and sent["status"] == "complete"
    assert channels(redis_conn)["tasks"]["channel"] == "v2.0"
    before = len([c for c in http.calls if COMMUNICATIONS in c.request.url])
    assert tasks_client.create_task(7, title="again") == "v2.0:3"
    assert len([c for c in http.calls if COMMUNICATIONS in c.request.url]) == before  # v2.1 not tried again
    tasks_client.complete_task("v2.0:3")
    assert http.calls[-1].request.url == f"{BASE}/tasks/3"
    clock.now += defaults.LIONDESK_CHANNEL_RECHECK_SECONDS + 1
    http.replace(responses.POST, f"{COMMUNICATIONS}/tasks", json={"id": 18})
    assert tasks_client.create_task(7, title="later") == "v2.1:18"
    assert channels(redis_conn)["tasks"]["channel"] == "v2.1"


def test_a_v21_refusal_of_one_task_uses_v20_for_that_task_only(http, tasks_client, authorised, redis_conn):
    http.add(responses.POST, f"{COMMUNICATIONS}/tasks", status=400,
             json={"message": "Validation failed", "errors": {"assigned_user_id": "not in your teams"}})
    http.add(responses.POST, f"{BASE}/tasks", json={"id": 4})
    assert tasks_client.create_task(7, title="x", assigned_user_id=9) == "v2.0:4"
    assert channels(redis_conn)["tasks"]["channel"] == "v2.1"
    http.add(responses.POST, f"{BASE}/tasks", status=404, json={"message": "Page not found"})
    http.replace(responses.POST, f"{BASE}/tasks", status=404, json={"message": "Page not found"})
    with pytest.raises(UpstreamRejected):
        tasks_client.create_task(7, title="both refuse", assigned_user_id=9)


def test_rotation_stores_the_new_pair_before_using_it_and_never_reuses_the_old_one(
        http, client, token_endpoint, redis_conn, clock):
    old = stored_valid_token(redis_conn, clock, lifetime=10)
    seen_in_redis_during_call = []

    def me(request):
        seen_in_redis_during_call.append(read_tokens(redis_conn))
        return 200, {}, json.dumps({"id": 1})

    http.add_callback(responses.GET, f"{BASE}/me", callback=me)
    client.get_me()
    first = token_endpoint.issued[0]
    assert seen_in_redis_during_call[0].access_token == first["access_token"]
    assert seen_in_redis_during_call[0].refresh_token == first["refresh_token"]

    clock.now += 3600  # expired: the next refresh must present the rotated token
    client.get_me()
    presented = [b["refresh_token"] for b in token_endpoint.bodies]
    assert presented == [old.refresh_token, first["refresh_token"]]
    assert read_tokens(redis_conn).refresh_token == token_endpoint.issued[1]["refresh_token"]


def failing_store(monkeypatch, failures: int):
    """Make the next `failures` token stores meet Redis away (as in an outage), then store for real."""
    import redis

    from bridge.clients import oauth

    real, left = oauth.store_tokens, [failures]

    def store(*args, **kwargs):
        if left[0] > 0:
            left[0] -= 1
            raise redis.ConnectionError("Redis went away")
        return real(*args, **kwargs)

    monkeypatch.setattr(oauth, "store_tokens", store)
    monkeypatch.setattr(oauth.time, "sleep", lambda seconds: None)
    return left


def test_a_refresh_answer_redis_refuses_for_a_moment_is_stored_when_it_is_back(http, client, redis_conn, clock,
                                                                              token_endpoint, monkeypatch):
    """The refresh token LionDesk replaced may be spent: losing its answer to a Redis blip would lose the grant."""
    stored_valid_token(redis_conn, clock, lifetime=0)
    http.add(responses.GET, f"{BASE}/me", json={"id": 1})
    failing_store(monkeypatch, 3)
    client.get_me()
    assert read_tokens(redis_conn).refresh_token == token_endpoint.issued[0]["refresh_token"]
    assert len(token_endpoint.bodies) == 1


def test_a_refresh_answer_redis_refuses_too_long_is_stored_before_the_next_token_use(http, client, redis_conn, clock,
                                                                                    token_endpoint, monkeypatch):
    import redis

    from bridge import defaults

    stored_valid_token(redis_conn, clock, lifetime=0)
    http.add(responses.GET, f"{BASE}/me", json={"id": 1})
    monkeypatch.setattr(defaults, "TOKEN_STORE_WAIT_SECONDS", 0)
    failing_store(monkeypatch, 1)
    with pytest.raises(redis.ConnectionError):
        client.get_me()  # the job fails (and retries); the answer stays in the process
    client.get_me()
    assert len(token_endpoint.bodies) == 1, "no second refresh with the spent refresh token"
    assert read_tokens(redis_conn).refresh_token == token_endpoint.issued[0]["refresh_token"]


def test_an_answer_without_a_refresh_token_keeps_the_old_one(http, client, redis_conn, clock):
    old = stored_valid_token(redis_conn, clock, lifetime=0)
    http.add(responses.POST, TOKEN_URL, json={"access_token": "a" * 40, "expires": "2099-01-01T00:00:00.000Z"})
    http.add(responses.GET, f"{BASE}/me", json={"id": 1})
    client.get_me()
    stored = read_tokens(redis_conn)
    assert stored.refresh_token == old.refresh_token and stored.access_token == "a" * 40
    assert stored.expires_at == pytest.approx(4070908800.0)


@pytest.mark.parametrize("status, body", [
    (400, {"error": "invalid_grant", "error_description": "Invalid grant: refresh token is invalid"}),
    (401, {"name": "NotAuthenticated", "message": "Invalid client"}),
    (200, {"error": "invalid_grant"}),
])
def test_a_refused_refresh_needs_reauthorization_and_stops_calling_liondesk(
        http, client, redis_conn, clock, status, body):
    http.add(responses.POST, TOKEN_URL, status=status, json=body)
    with pytest.raises(LionDeskNeedsReauthorization) as caught:
        client.get_me()
    assert isinstance(caught.value, WaitingError)
    state = auth_state(redis_conn)
    assert state["state"] == NEEDS_REAUTHORIZATION and str(status) in state["reason"] and state["since"]

    calls_so_far = len(http.calls)
    for _ in range(3):
        with pytest.raises(LionDeskNeedsReauthorization):
            client.create_contact({"email": "a@b.c"})
    other_process = LionDeskClient(client.settings, redis_conn, clock=clock)
    with pytest.raises(LionDeskNeedsReauthorization):
        other_process.get_me()
    assert len(http.calls) == calls_so_far == 1


def test_needs_reauthorization_hides_the_tokens(http, client, redis_conn):
    http.add(responses.POST, TOKEN_URL, status=400, json={"error": "invalid_grant"})
    with pytest.raises(LionDeskNeedsReauthorization):
        client.get_me()
    shown = repr(auth_state(redis_conn)) + repr(redis_conn.hgetall(keys.liondesk_auth_state()))
    assert client.settings.liondesk_refresh_token not in shown


def test_a_new_env_refresh_token_after_a_refusal_is_tried(http, make_settings, credentials, redis_conn, clock):
    refused = make_settings(liondesk_api_url=BASE, liondesk_max_requests_per_second=1000, **credentials)
    http.add(responses.POST, TOKEN_URL, status=400, json={"error": "invalid_grant"})
    with pytest.raises(LionDeskNeedsReauthorization):
        LionDeskClient(refused, redis_conn, clock=clock).get_me()

    http.remove(responses.POST, TOKEN_URL)  # LionDesk accepts the token the operator deploys next
    token_endpoint = TokenEndpoint()
    http.add_callback(responses.POST, TOKEN_URL, callback=token_endpoint)
    http.add(responses.GET, f"{BASE}/me", json={"id": 1})
    with pytest.raises(LionDeskNeedsReauthorization):  # same env token: still refused, nothing sent
        LionDeskClient(refused, redis_conn, clock=clock).get_me()
    assert token_endpoint.bodies == []
    redeployed = make_settings(**{**credentials, "liondesk_refresh_token": secrets.token_hex(20)},
                               liondesk_api_url=BASE, liondesk_max_requests_per_second=1000)
    LionDeskClient(redeployed, redis_conn, clock=clock).get_me()
    assert [b["refresh_token"] for b in token_endpoint.bodies] == [redeployed.liondesk_refresh_token]
    assert auth_state(redis_conn)["state"] == "ok"


def test_a_failing_token_endpoint_is_retryable_not_reauthorization(http, client, redis_conn):
    http.add(responses.POST, TOKEN_URL, status=503)
    with pytest.raises(UpstreamUnavailable):
        client.get_me()
    assert auth_state(redis_conn)["state"] == "not_yet_authorized"


def test_two_processes_needing_a_refresh_at_once_make_exactly_one_token_request(
        http, ld_settings, redis_conn, clock, token_endpoint, monkeypatch):
    stale = stored_valid_token(redis_conn, clock, lifetime=0)
    entered = threading.Semaphore(0)
    real_lock = redis_conn.lock

    def counting_lock(*args, **kwargs):
        entered.release()
        return real_lock(*args, **kwargs)

    def hold_until_both_want_the_lock():
        # The token request is in flight until the other process is at the lock, so the
        # two refreshes overlap for sure; without the lock both would reach this endpoint.
        assert entered.acquire(timeout=10) and entered.acquire(timeout=10)

    monkeypatch.setattr(redis_conn, "lock", counting_lock)
    token_endpoint.before_answer = hold_until_both_want_the_lock
    http.add(responses.GET, f"{BASE}/me", json={"id": 1})
    workers = [LionDeskClient(ld_settings, redis_conn, clock=clock) for _ in range(2)]
    start = threading.Barrier(2)
    errors = []

    def run(worker):
        start.wait()
        try:
            worker.get_me()
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert [b["refresh_token"] for b in token_endpoint.bodies] == [stale.refresh_token]
    new_access = token_endpoint.issued[0]["access_token"]
    assert [bearer(c) for c in api_calls(http)] == [new_access, new_access]


def test_authorization_code_exchange_stores_tokens_and_clears_reauthorization(
        http, client, redis_conn, token_endpoint, credentials):
    from bridge.clients.oauth import mark_needs_reauthorization

    mark_needs_reauthorization(redis_conn, "400 invalid_grant", "old", 1.0)
    state = client.auth.exchange_authorization_code("the-code", "https://bridge.example/callback")
    assert token_endpoint.bodies == [{
        "grant_type": "authorization_code", "code": "the-code", "redirect_uri": "https://bridge.example/callback",
        "client_id": credentials["liondesk_client_id"], "client_secret": credentials["liondesk_client_secret"]}]
    assert state["state"] == "ok" and state["authorized_at"]
    assert read_tokens(redis_conn).refresh_token == token_endpoint.issued[0]["refresh_token"]
    http.add(responses.GET, f"{BASE}/me", json={"id": 1})
    client.get_me()
    assert bearer(api_calls(http)[0]) == token_endpoint.issued[0]["access_token"]


def test_a_refused_authorization_code_is_rejected_without_marking_the_grant(http, client, redis_conn):
    http.add(responses.POST, TOKEN_URL, status=400, json={"error": "invalid_grant", "error_description": "bad code"})
    with pytest.raises(UpstreamRejected, match="bad code"):
        client.auth.exchange_authorization_code("typo")
    assert auth_state(redis_conn)["state"] == "not_yet_authorized"


def test_without_client_credentials_calls_wait_and_nothing_is_sent(http, make_settings, redis_conn):
    client = LionDeskClient(make_settings(liondesk_api_url=BASE), redis_conn)
    with pytest.raises(LionDeskNotConfigured):
        client.get_me()
    with pytest.raises(LionDeskNotConfigured):
        client.auth.exchange_authorization_code("code")
    assert len(http.calls) == 0
    assert auth_state(redis_conn, client.settings) == {"state": "not_configured"}


def test_no_refresh_token_anywhere_needs_authorization_but_is_not_recorded(http, make_settings, credentials, redis_conn):
    settings = make_settings(liondesk_api_url=BASE, liondesk_client_id=credentials["liondesk_client_id"],
                             liondesk_client_secret=credentials["liondesk_client_secret"])
    with pytest.raises(LionDeskNeedsReauthorization):
        LionDeskClient(settings, redis_conn).get_me()
    assert len(http.calls) == 0 and auth_state(redis_conn)["state"] == "not_yet_authorized"


# -- requests, pages, queries -------------------------------------------------------------------


@pytest.fixture
def authorised(redis_conn, clock):
    """A valid stored token, so tests of endpoints see no token traffic."""
    return stored_valid_token(redis_conn, clock)


def page(total, skip, count):
    """A LionDesk list envelope with `count` records starting at `skip`."""
    return {"total": total, "limit": 100, "skip": skip, "data": [{"id": i} for i in range(skip, skip + count)]}


def test_pages_are_walked_with_limit_and_skip(http, client, authorised):
    for skip, count in ((0, 100), (100, 100), (200, 50)):
        http.add(responses.GET, f"{BASE}/contacts", json=page(250, skip, count),
                 match=[responses.matchers.query_param_matcher(
                     {"last_name": "gates", "$limit": "100", "$skip": str(skip)})])
    ids = [c["id"] for c in client.iter_pages("/contacts", {"last_name": "gates"})]
    assert ids == list(range(250))
    assert len(http.calls) == 3


def test_pagination_follows_what_the_server_returned_when_it_caps_the_page(http, client, authorised):
    for skip in (0, 10, 20):
        http.add(responses.GET, f"{BASE}/hotnesses", json=page(25, skip, min(10, 25 - skip)),
                 match=[responses.matchers.query_param_matcher({"$limit": "100", "$skip": str(skip)})])
    assert len(list(client.iter_pages("/hotnesses"))) == 25


def test_pagination_stops_on_an_empty_page_and_accepts_plain_lists(http, client, authorised):
    http.add(responses.GET, f"{BASE}/contacts/1/addresses", json=[{"id": "147", "city": "Seattle"}])
    http.add(responses.GET, f"{BASE}/contacts", json={"total": 500, "limit": 100, "skip": 0, "data": []})
    assert list(client.iter_pages("/contacts/1/addresses")) == [{"id": "147", "city": "Seattle"}]
    assert list(client.iter_pages("/contacts")) == []
    assert len(http.calls) == 2


def test_without_a_total_pages_continue_until_a_short_one(http, client, authorised):
    for skip, count in ((0, 100), (100, 3)):
        body = page(0, skip, count)
        del body["total"]
        http.add(responses.GET, f"{BASE}/teams", json=body,
                 match=[responses.matchers.query_param_matcher({"$limit": "100", "$skip": str(skip)})])
    assert len(list(client.iter_pages("/teams"))) == 103
    assert len(http.calls) == 2


def test_find_contacts_sends_repeated_in_keys_and_returns_the_first_page(http, client, authorised):
    http.add(responses.GET, f"{BASE}/contacts", json=page(300, 0, 100))
    found = client.find_contacts([("mobile_phone[$in]", "+18088172382"), ("mobile_phone[$in]", "808-817-2382")])
    assert len(found) == 100 and len(http.calls) == 1
    assert query_of(http.calls[0]) == {"mobile_phone[$in]": ["+18088172382", "808-817-2382"], "$limit": ["100"]}


def test_double_slashes_in_base_or_path_become_single(http, make_settings, credentials, redis_conn, clock, authorised):
    settings = make_settings(liondesk_api_url=BASE + "/", liondesk_max_requests_per_second=1000, **credentials)
    http.add(responses.GET, f"{BASE}/contacts/9", json={"id": 9})
    assert LionDeskClient(settings, redis_conn, clock=clock).request("GET", "//contacts/9") == {"id": 9}
    assert http.calls[0].request.url == f"{BASE}/contacts/9"


def test_write_endpoints_use_the_documented_methods_and_bodies(http, client, authorised):
    expected = [
        (responses.POST, "/contacts", lambda: client.create_contact({"first_name": "Jack"}), {"first_name": "Jack"}),
        (responses.PATCH, "/contacts/7", lambda: client.update_contact(7, {"tags": "Hot"}), {"tags": "Hot"}),
        (responses.POST, "/contacts/7/addresses", lambda: client.create_address(7, {"zip": "96734"}), {"zip": "96734"}),
        (responses.PATCH, "/contacts/7/addresses/147", lambda: client.update_address(7, "147", {"city": "Kailua"}),
         {"city": "Kailua"}),
        (responses.POST, "/leads", lambda: client.create_lead({"contact_id": 7}), {"contact_id": 7}),
        (responses.POST, "/campaigns/6/contacts", lambda: client.start_campaign(6, 7), {"contact_id": 7}),
        (responses.POST, "/leads/3/offers", lambda: client.create_lead_offers(3), {}),
    ]
    for method, path, _, _ in expected:
        http.add(method, f"{BASE}{path}", json={"ok": path})
    for method, path, do, body in expected:
        assert do() == {"ok": path}
        sent = http.calls[-1].request
        assert (sent.method, urlparse(sent.url).path) == (method, path)
        assert (json.loads(sent.body) if sent.body else None) == body


def test_reads_return_what_liondesk_sent(http, client, authorised):
    http.add(responses.GET, f"{BASE}/contacts/7", json={"id": 7, "addresses": [{"id": "147"}]})
    assert client.get_contact(7)["addresses"] == [{"id": "147"}]


def test_find_campaigns_like_wraps_the_name_in_percent_signs(http, client, authorised):
    http.add(responses.GET, f"{BASE}/campaigns", json={"total": 1, "limit": 100, "skip": 0,
                                                        "data": [{"id": 6, "name": "Buyer Drip"}]})
    assert client.find_campaigns_like("Buyer Drip") == [{"id": 6, "name": "Buyer Drip"}]
    assert "name%5B%24like%5D=%25Buyer+Drip%25" in http.calls[0].request.url
    assert query_of(http.calls[0])["name[$like]"] == ["%Buyer Drip%"]


# -- reference data ------------------------------------------------------------------------------


def test_reference_lists_are_cached_in_redis(http, client, authorised):
    http.add(responses.GET, f"{BASE}/lead-sources", json=page(2, 0, 2))
    assert client.reference("lead-sources") == [{"id": 0}, {"id": 1}]
    assert client.reference("lead-sources") == [{"id": 0}, {"id": 1}]
    other_process = LionDeskClient(client.settings, client.conn, clock=client.auth.clock)
    assert other_process.find_reference("lead-sources", lambda r: r["id"] == 1) == {"id": 1}
    assert len(http.calls) == 1
    ttl = client.conn.ttl(keys.liondesk_reference("lead-sources"))
    from bridge import defaults

    assert 0 < ttl <= defaults.REFERENCE_CACHE_TTL_SECONDS


def test_a_miss_in_an_older_cached_list_refreshes_it_once(http, client, authorised, redis_conn):
    http.add(responses.GET, f"{BASE}/contact-sources", json={"total": 1, "limit": 100, "skip": 0,
                                                             "data": [{"id": 1, "name": "Zillow"}]})
    client.reference("contact-sources")
    http.replace(responses.GET, f"{BASE}/contact-sources", json={
        "total": 2, "limit": 100, "skip": 0, "data": [{"id": 1, "name": "Zillow"}, {"id": 2, "name": "Real Geeks"}]})
    redis_conn.delete(keys.liondesk_reference_fresh("contact-sources"))  # the list is a while old now
    assert client.find_reference("contact-sources", lambda r: r["name"] == "Real Geeks") == {"id": 2, "name": "Real Geeks"}
    assert len(http.calls) == 2
    redis_conn.delete(keys.liondesk_reference_fresh("contact-sources"))
    assert client.find_reference("contact-sources", lambda r: r["name"] == "Nowhere") is None
    assert len(http.calls) == 3  # one refresh for the miss, not a loop
    assert client.find_reference("contact-sources", lambda r: r["name"] == "Real Geeks")["id"] == 2
    assert len(http.calls) == 3


def test_a_miss_in_a_list_fetched_moments_ago_costs_no_call(http, client, authorised):
    http.add(responses.GET, f"{BASE}/lead-sources", json={"total": 1, "limit": 100, "skip": 0,
                                                          "data": [{"id": 1, "name": "Zillow"}]})
    client.reference("lead-sources")
    for _ in range(3):  # a lead source that does not exist must not cost a call per lead
        assert client.find_reference("lead-sources", lambda r: r["name"] == "Real Geeks") is None
    assert len(http.calls) == 1


def test_an_uncached_miss_fetches_only_once(http, client, authorised):
    http.add(responses.GET, f"{BASE}/campaigns", json=page(1, 0, 1))
    assert client.find_reference("campaigns", lambda r: r["id"] == 99) is None
    assert len(http.calls) == 1


def test_creating_a_contact_source_invalidates_the_cached_list(http, client, authorised):
    http.add(responses.GET, f"{BASE}/contact-sources", json=page(1, 0, 1))
    http.add(responses.POST, f"{BASE}/contact-sources", json={"id": 5, "name": "Real Geeks"})
    client.reference("contact-sources")
    assert client.create_contact_source("Real Geeks") == {"id": 5, "name": "Real Geeks"}
    assert json.loads(http.calls[1].request.body) == {"name": "Real Geeks"}
    assert client.conn.get(keys.liondesk_reference("contact-sources")) is None
    client.reference("contact-sources")
    assert len(http.calls) == 3


def test_users_are_asked_for_with_our_oauth_client_id(http, client, authorised, credentials):
    http.add(responses.GET, f"{BASE}/users", json=page(1, 0, 1))
    client.reference("users")
    assert query_of(http.calls[0])["oauth_client_id"] == [credentials["liondesk_client_id"]]


def test_unknown_reference_kinds_are_a_programming_error(client):
    with pytest.raises(ValueError):
        client.reference("sources")


# -- observer, factory, CLI ------------------------------------------------------------------


def test_the_observer_sees_every_call_and_no_secret(http, client, token_endpoint, observed, credentials):
    http.add(responses.GET, f"{BASE}/me", status=401, json={"message": "expired"})
    http.add(responses.GET, f"{BASE}/me", json={"id": 1})
    client.get_me()
    assert [o[:4] for o in observed] == [("liondesk", "POST", "/oauth2/token", 200),
                                         ("liondesk", "GET", "/me", 401),
                                         ("liondesk", "POST", "/oauth2/token", 200),
                                         ("liondesk", "GET", "/me", 200)]
    text = repr(observed)
    secrets_used = [credentials["liondesk_client_secret"], credentials["liondesk_refresh_token"],
                    *[v for pair in token_endpoint.issued for v in (pair["access_token"], pair["refresh_token"])]]
    assert not [s for s in secrets_used if s in text]


def test_build_clients_enables_optional_channels_from_settings(make_settings, redis_conn):
    bare = build_clients(make_settings(), redis_conn)
    assert isinstance(bare.liondesk, LionDeskClient) and bare.liondesk_v1 is None and bare.realgeeks is None
    full = build_clients(make_settings(liondesk_v1_api_key="k", liondesk_v1_user_key="u",
                                       realgeeks_api_username="u", realgeeks_api_password="p"), redis_conn)
    assert full.liondesk_v1 is not None and full.realgeeks is not None


@pytest.fixture
def cli_env(redis_url, credentials):
    return {"REDIS_URL": redis_url, "LIONDESK_API_URL": BASE, "LIONDESK_CLIENT_ID": credentials["liondesk_client_id"],
            "LIONDESK_CLIENT_SECRET": credentials["liondesk_client_secret"], "LIONDESK_REDIRECT_URI": "",
            "LIONDESK_REFRESH_TOKEN": "", "BRIDGE_CONFIG": ""}


def test_cli_authorize_then_status(http, redis_conn, token_endpoint, cli_env):
    from click.testing import CliRunner

    from bridge.cli import main

    http.add(responses.GET, f"{BASE}/me", json={"id": 1001, "email": "steve@apple.com"})
    runner = CliRunner()
    result = runner.invoke(main, ["liondesk", "authorize", "--code", "abc", "--redirect-uri", "https://x.test/cb"],
                           env=cli_env)
    assert result.exit_code == 0, result.output
    assert "1001" in result.output
    assert token_endpoint.bodies[0]["code"] == "abc" and token_endpoint.bodies[0]["redirect_uri"] == "https://x.test/cb"

    result = runner.invoke(main, ["liondesk", "status"], env=cli_env)
    assert result.exit_code == 0 and "state: ok" in result.output
    assert token_endpoint.issued  # the loop below judges the tokens really issued, never none
    for pair in token_endpoint.issued:
        assert pair["access_token"] not in result.output and pair["refresh_token"] not in result.output


def test_cli_status_fails_when_reauthorization_is_needed(redis_conn, cli_env):
    from click.testing import CliRunner

    from bridge.cli import main
    from bridge.clients.oauth import mark_needs_reauthorization

    mark_needs_reauthorization(redis_conn, "400 invalid_grant", "t", 1_700_000_000)
    result = CliRunner().invoke(main, ["liondesk", "status"], env=cli_env)
    assert result.exit_code == 1
    assert "needs_reauthorization" in result.output and "invalid_grant" in result.output


def test_cli_authorize_reports_a_refused_code(http, redis_conn, cli_env):
    from click.testing import CliRunner

    from bridge.cli import main

    http.add(responses.POST, TOKEN_URL, status=400, json={"error": "invalid_grant"})
    result = CliRunner().invoke(main, ["liondesk", "authorize", "--code", "bad"], env=cli_env)
    assert result.exit_code == 1 and "invalid_grant" in result.output


# -- repeating a failed call within the job ------------------------------------------------------


@pytest.fixture
def pauses():
    """Pauses the client took before repeating a call, in seconds."""
    return []


@pytest.fixture
def patient_client(ld_settings, redis_conn, clock, pauses):
    """A client with a stored token whose pauses are recorded instead of slept."""
    stored_valid_token(redis_conn, clock)
    return LionDeskClient(ld_settings, redis_conn, clock=clock, sleep=pauses.append)


def test_a_read_answered_5xx_is_repeated_after_a_short_pause(http, patient_client, pauses):
    http.add(responses.GET, f"{BASE}/contacts/9", status=502, body="<html>Bad Gateway</html>")
    http.add(responses.GET, f"{BASE}/contacts/9", json={"id": 9})
    assert patient_client.get_contact(9) == {"id": 9}
    assert len(pauses) == 1 and 0.25 <= pauses[0] <= 0.375


def test_a_read_failing_every_time_is_repeated_twice_with_growing_pauses_then_raised(http, patient_client, pauses):
    http.add(responses.GET, f"{BASE}/contacts/9", status=503)
    with pytest.raises(UpstreamUnavailable):
        patient_client.get_contact(9)
    assert len(http.calls) == 3
    assert 0.25 <= pauses[0] <= 0.375 and 0.5 <= pauses[1] <= 0.75


def test_a_write_answered_5xx_is_left_to_the_job_retry(http, patient_client, pauses):
    http.add(responses.POST, f"{BASE}/contacts", status=503)
    with pytest.raises(UpstreamUnavailable):
        patient_client.create_contact({"first_name": "Ann"})
    assert len(http.calls) == 1 and pauses == []  # it may have happened: the retry searches first


def test_a_write_refused_with_429_is_repeated_after_its_retry_after(http, patient_client, pauses):
    http.add(responses.POST, f"{BASE}/contacts", status=429, headers={"Retry-After": "1"})
    http.add(responses.POST, f"{BASE}/contacts", status=201, json={"id": 5})
    assert patient_client.create_contact({"first_name": "Ann"}) == {"id": 5}
    assert pauses == [1.0]


def test_a_retry_after_longer_than_a_job_should_wait_goes_to_the_retry_ladder(http, patient_client, pauses):
    from bridge.exceptions import UpstreamRateLimited

    http.add(responses.GET, f"{BASE}/contacts/9", status=429, headers={"Retry-After": "30"})
    with pytest.raises(UpstreamRateLimited) as caught:
        patient_client.get_contact(9)
    assert caught.value.retry_after == 30 and len(http.calls) == 1 and pauses == []


def test_the_worker_companion_keeps_an_idle_grant_alive_and_survives_failures(http, client, token_endpoint,
                                                                              redis_conn, clock):
    class TwoRounds:
        """A stop event that lets two rounds run, then stops."""

        def __init__(self):
            self.rounds = 0

        def wait(self, timeout):
            self.rounds += 1
            return self.rounds > 2

    stored_valid_token(redis_conn, clock)
    clock.now += defaults.LIONDESK_KEEPALIVE_SECONDS + 1
    http.replace(responses.POST, TOKEN_URL, status=503, body="<html>down</html>")
    stop = TwoRounds()
    client.auth.run_keep_alive(stop, interval=0)  # the first round's refresh fails: logged, tried again
    assert stop.rounds == 3
    assert len([c for c in http.calls if c.request.url.startswith(TOKEN_URL)]) == 2


def test_a_v21_401_with_a_good_token_falls_back_to_v20_which_is_not_blocked(http, tasks_client, authorised,
                                                                              token_endpoint, redis_conn):
    http.add(responses.GET, f"{BASE}/me", json={"id": 1001})
    http.add(responses.POST, f"{COMMUNICATIONS}/tasks", status=401, json={"message": "not for this app"})
    http.add(responses.POST, f"{BASE}/tasks", json={"id": 5})
    assert tasks_client.create_task(7, title="x") == "v2.0:5"
    assert auth_state(redis_conn)["app_conflict"]["scopes"] == ["communications/tasks"]
    assert channels(redis_conn)["tasks"]["channel"] == "v2.0"
    assert tasks_client.create_task(7, title="y") == "v2.0:5"  # v2.0 /tasks is not the refused scope


# -- contact search: one `$or` query, trusted only when it proves itself --------------------------


def search_criteria():
    """A lead's criteria: one e-mail and one phone (e-mail, mobile, home and office phone)."""
    return contact_criteria(["kai@example.com"], ["808-634-1968"], "US")


def listed(*contacts, total=None):
    """A LionDesk list envelope holding `contacts`."""
    return {"total": len(contacts) if total is None else total, "limit": 100, "skip": 0, "data": list(contacts)}


def contacts_api(http, on_or, on_field=lambda query: (200, listed())):
    """Answer GET /contacts with `on_or(query)` for an `$or` search and `on_field(query)` otherwise
    (each returns (status, body)); return the queries received, in order."""
    queries = []

    def answer(request):
        query = parse_qs(urlparse(request.url).query)
        queries.append(query)
        status, body = (on_or if any(key.startswith("$or") for key in query) else on_field)(query)
        return status, {}, json.dumps(body)

    http.add_callback(responses.GET, f"{BASE}/contacts", callback=answer)
    return queries


def is_or(query) -> bool:
    return any(key.startswith("$or") for key in query)


ANCHOR = {"id": 41, "first_name": "Anchor", "email": "anchor@example.com"}


@pytest.fixture
def anchored(http, client, authorised):
    """A client that has created contact 41, the anchor of its `$or` searches."""
    http.add(responses.POST, f"{BASE}/contacts", json=ANCHOR)
    client.create_contact({"first_name": "Anchor"})
    assert contact_search_state(client.conn)["anchor_id"] == "41"
    return client


def test_without_an_anchor_each_criterion_is_searched_alone(http, client, authorised):
    queries = contacts_api(http, on_or=lambda query: pytest.fail("no $or without an anchor"))
    assert client.find_matching_contact(search_criteria()) == (None, None)
    assert [sorted(query) for query in queries] == [["$limit", "email"], ["$limit", "mobile_phone[$in]"],
                                                    ["$limit", "home_phone[$in]"], ["$limit", "office_phone[$in]"]]


def test_one_or_search_finds_the_contact_by_office_phone(http, anchored):
    office = {"id": 7, "office_phone": "(808) 634-1968", "created_at": "2024-01-01T00:00:00.000Z"}
    queries = contacts_api(http, on_or=lambda query: (200, listed(ANCHOR, office)))
    assert anchored.find_matching_contact(search_criteria()) == (office, "office_phone")
    (query,) = queries
    assert query["$or[0][email]"] == ["kai@example.com"] and len(query["$or[3][office_phone][$in]"]) == 28
    assert query["$or[4][id][$in]"] == ["0", "41", "0"] and query["$limit"] == ["100"]
    state = contact_search_state(anchored.conn)
    assert state["or"] == "trusted" and state["anchor_id"] == "7"  # the contact just linked anchors the next


def test_an_or_answer_with_only_the_anchor_means_no_contact_is_the_leads(http, anchored):
    queries = contacts_api(http, on_or=lambda query: (200, listed(ANCHOR)))
    assert anchored.find_matching_contact(search_criteria()) == (None, None)
    assert len(queries) == 1


def test_the_anchor_itself_is_matched_when_it_is_the_leads_contact(http, anchored):
    queries = contacts_api(http, on_or=lambda query: (200, listed(ANCHOR)))
    criteria = contact_criteria(["ANCHOR@example.com"], ["808-634-1968"], "US")
    assert anchored.find_matching_contact(criteria) == (ANCHOR, "email")
    assert len(queries) == 1


def test_an_or_answer_without_the_anchor_is_not_trusted_even_empty(http, anchored, clock):
    email = {"id": 8, "email": "Kai@Example.com"}
    queries = contacts_api(http, on_or=lambda query: (200, listed()),
                           on_field=lambda query: (200, listed(email) if "email" in query else listed()))
    assert anchored.find_matching_contact(search_criteria()) == (email, "email")
    assert [is_or(query) for query in queries] == [True, False]
    state = contact_search_state(anchored.conn)
    assert state["or"] == "untrusted" and "did not return contact 41" in state["reason"]
    assert state["anchor_id"] == "8"  # the old anchor is forgotten; the contact found replaces it


def test_a_refused_or_falls_back_and_is_not_sent_again_until_the_recheck(http, anchored, clock):
    stored_valid_token(anchored.conn, clock, lifetime=3 * defaults.LIONDESK_OR_SEARCH_RECHECK_SECONDS)
    queries = contacts_api(http, on_or=lambda query: (400, {"name": "BadRequest", "code": 400,
                                                             "message": "Invalid query parameter $or"}))
    assert anchored.find_matching_contact(search_criteria()) == (None, None)
    assert [is_or(query) for query in queries] == [True, False, False, False, False]
    state = contact_search_state(anchored.conn)
    assert state["or"] == "untrusted" and "refused" in state["reason"]
    del queries[:]
    clock.now += defaults.LIONDESK_OR_SEARCH_RECHECK_SECONDS - 1
    assert anchored.find_matching_contact(search_criteria()) == (None, None)
    assert [is_or(query) for query in queries] == [False] * 4
    del queries[:]
    clock.now += 1
    anchored.find_matching_contact(search_criteria())
    assert [is_or(query) for query in queries] == [True, False, False, False, False]  # tried again, refused again


def test_an_or_answer_holding_a_contact_no_clause_asked_for_is_dropped(http, anchored):
    stranger = {"id": 3, "first_name": "Zed", "email": "zed@example.com", "mobile_phone": "415-555-0101"}
    office = {"id": 7, "office_phone": "8086341968"}
    queries = contacts_api(http, on_or=lambda query: (200, listed(stranger, ANCHOR)),  # $or ignored: everyone
                           on_field=lambda query: (200, listed(office) if "office_phone[$in]" in query else listed()))
    assert anchored.find_matching_contact(search_criteria()) == (office, "office_phone")
    assert [is_or(query) for query in queries] == [True, False, False, False, False]
    state = contact_search_state(anchored.conn)
    assert state["or"] == "untrusted" and "returned contact 3" in state["reason"]


def test_a_contact_an_honest_or_returns_without_being_the_leads_is_not_taken_for_an_ignored_or(http, anchored):
    extension = contact_criteria([], ["808-634-1968 ext 12"], "US")  # searched without the extension
    same_line = {"id": 9, "home_phone": "808-634-1968"}
    queries = contacts_api(http, on_or=lambda query: (200, listed(ANCHOR, same_line)))
    assert anchored.find_matching_contact(extension) == (None, None)
    assert len(queries) == 1 and contact_search_state(anchored.conn)["or"] == "trusted"


def test_an_or_answer_longer_than_a_page_is_searched_field_by_field(http, anchored):
    many = [{"id": 100 + n, "office_phone": "808-634-1968"} for n in range(99)]
    queries = contacts_api(http, on_or=lambda query: (200, listed(ANCHOR, *many, total=250)),
                           on_field=lambda query: (200, listed(*many[:3]) if "office_phone[$in]" in query
                                                   else listed()))
    assert anchored.find_matching_contact(search_criteria()) == (many[0], "office_phone")
    assert [is_or(query) for query in queries] == [True, False, False, False, False]
    assert contact_search_state(anchored.conn)["or"] is None  # nothing wrong with $or: just too many


def test_a_refusal_that_is_not_about_the_query_fails_the_search(http, anchored):
    contacts_api(http, on_or=lambda query: (403, {"message": "Forbidden", "code": 403}))
    with pytest.raises(UpstreamRejected):
        anchored.find_matching_contact(search_criteria())
    assert contact_search_state(anchored.conn)["or"] is None


def test_an_or_failing_with_5xx_where_field_searches_answer_is_not_sent_again(http, ld_settings, redis_conn, clock,
                                                                             pauses):
    patient = LionDeskClient(ld_settings, redis_conn, clock=clock, sleep=pauses.append)
    stored_valid_token(redis_conn, clock)
    http.add(responses.POST, f"{BASE}/contacts", json=ANCHOR)
    patient.create_contact({"first_name": "Anchor"})
    queries = contacts_api(http, on_or=lambda query: (502, {"message": "Bad Gateway", "code": 502}))
    assert patient.find_matching_contact(search_criteria()) == (None, None)
    assert [is_or(query) for query in queries] == [True] * (1 + defaults.LIONDESK_INLINE_RETRIES) + [False] * 4
    assert contact_search_state(redis_conn)["or"] == "untrusted"


def test_an_outage_fails_the_search_as_before(http, anchored):
    contacts_api(http, on_or=lambda query: (503, {"message": "down", "code": 503}),
                 on_field=lambda query: (503, {"message": "down", "code": 503}))
    anchored.sleep = lambda seconds: None
    with pytest.raises(UpstreamUnavailable):
        anchored.find_matching_contact(search_criteria())
    assert contact_search_state(anchored.conn)["or"] is None  # the outage says nothing about $or


def test_criteria_too_long_for_one_query_are_grouped_in_order_and_the_search_stops_at_the_match(http, anchored):
    criteria = contact_criteria(["a@example.com", "b@example.com"], ["808-634-1968", "(415) 555-0101"], "US")
    home = {"id": 5, "home_phone": "415.555.0101"}
    queries = contacts_api(http, on_or=lambda query: (200, listed(ANCHOR)),
                           on_field=lambda query: (200, listed(home) if "home_phone[$in]" in query else listed()))
    assert anchored.find_matching_contact(criteria) == (home, "home_phone")
    first, second = queries  # office_phone is not searched: the home phone matched first
    assert {key for key in first if key != "$limit"} == {"$or[0][email][$in]", "$or[1][mobile_phone][$in]",
                                                         "$or[2][id][$in]"}
    assert set(second) == {"home_phone[$in]", "$limit"} and len(second["home_phone[$in]"]) == 56
    assert len(urlparse(http.calls[-2].request.url).query) <= defaults.LIONDESK_SEARCH_QUERY_MAX_CHARS
