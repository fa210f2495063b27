"""The console's locks: absent unless configured, login required everywhere, CSRF on every
form, constant-time credentials, lockout after repeated failures, and cookie flags."""

import re

import pytest

from bridge import defaults
from bridge.web import create_app
from bridge.storage import keys
from tests.ops_support import ADMIN_PASSWORD, ADMIN_USER, console_app, csrf_of, log_in, log_out

CONSOLE_URLS = ["/admin/", "/admin/login", "/admin/failed", "/admin/rejected", "/admin/leads",
                "/admin/leads/abc", "/admin/jobs/event-x", "/admin/static/console.css"]


@pytest.fixture
def console(make_settings, redis_conn):
    """The web app with the console switched on."""
    return console_app(make_settings)


@pytest.fixture
def browser(console):
    """A test client of the console app (keeps cookies like a browser)."""
    return console.test_client()


def console_routes(app):
    """Every console route as (rule with sample arguments, methods), except the login and static files."""
    routes = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("admin.") and rule.endpoint not in ("admin.login", "admin.static"):
            url = re.sub(r"<(?:\w+:)?(\w+)>", "sample", rule.rule)
            routes += [(url, method) for method in sorted(rule.methods - {"HEAD", "OPTIONS"})]
    return routes


@pytest.mark.parametrize("url", CONSOLE_URLS)
def test_console_is_absent_when_unconfigured(client, url):
    assert client.get(url).status_code == 404
    assert client.post(url).status_code in (404, 405)


def test_console_is_absent_with_only_half_the_credentials(make_settings, redis_conn):
    client = create_app(make_settings(admin_username=ADMIN_USER)).test_client()
    assert client.get("/admin/login").status_code == 404


def test_every_console_route_refuses_anonymous_access(console, browser):
    routes = console_routes(console)
    assert {method for _, method in routes} == {"GET", "POST"} and len(routes) >= 8
    for url, method in routes:
        response = browser.open(url, method=method, data={"csrf_token": "x"})
        if method == "GET":
            assert response.status_code == 302, url
            assert response.headers["Location"].startswith("/admin/login?next="), url
        else:
            assert response.status_code == 401, (method, url)


def test_login_redirects_back_inside_the_console_only(browser):
    page = browser.get("/admin/login?next=/admin/failed").get_data(as_text=True)
    response = browser.post("/admin/login", data={"username": ADMIN_USER, "password": ADMIN_PASSWORD,
                                                  "csrf_token": csrf_of(page), "next": "/admin/failed"})
    assert response.headers["Location"] == "/admin/failed"
    browser.post("/admin/logout", data={"csrf_token": csrf_of(browser.get("/admin/").get_data(as_text=True))})
    page = browser.get("/admin/login").get_data(as_text=True)
    response = browser.post("/admin/login", data={"username": ADMIN_USER, "password": ADMIN_PASSWORD,
                                                  "csrf_token": csrf_of(page), "next": "//evil.example/admin"})
    assert response.headers["Location"] == "/admin/"


@pytest.mark.parametrize("username, password", [(ADMIN_USER, "wrong"), ("someone", ADMIN_PASSWORD),
                                                (ADMIN_USER, ADMIN_PASSWORD + "x"), ("", "")])
def test_wrong_credentials_start_no_session(browser, username, password):
    response = log_in(browser, username, password)
    assert response.status_code == 403
    assert "Wrong username or password." in response.get_data(as_text=True)
    assert browser.get("/admin/").status_code == 302


def test_login_logout_round_trip(browser):
    response = log_in(browser)
    assert response.status_code == 302 and response.headers["Location"] == "/admin/"
    assert browser.get("/admin/").status_code == 200
    token = csrf_of(browser.get("/admin/").get_data(as_text=True))
    assert browser.post("/admin/logout", data={"csrf_token": token}).status_code == 302
    assert browser.get("/admin/").status_code == 302


@pytest.mark.parametrize("url, data", [
    ("/admin/failed/replay", {"scope": "matching"}),
    ("/admin/jobs/event-x/dismiss", {"reason": "r"}),
    ("/admin/leads", {"q": "someone@example.com"}),
    ("/admin/logout", {}),
])
def test_forms_refuse_a_missing_or_wrong_csrf_token(browser, url, data):
    log_in(browser)
    token = csrf_of(browser.get("/admin/").get_data(as_text=True))
    assert browser.post(url, data=data).status_code == 400
    assert browser.post(url, data={**data, "csrf_token": token[:-1] + ("A" if token[-1] != "A" else "B")}
                        ).status_code == 400
    assert browser.post(url, data={**data, "csrf_token": ""}).status_code == 400
    assert browser.get("/admin/").status_code == 200  # still logged in: the refusal changed nothing


def test_login_form_needs_its_csrf_token(browser):
    browser.get("/admin/login")
    response = browser.post("/admin/login", data={"username": ADMIN_USER, "password": ADMIN_PASSWORD})
    assert response.status_code == 400
    assert browser.get("/admin/").status_code == 302


def test_another_sessions_token_is_refused(console, browser):
    other = console.test_client()
    log_in(other)
    stolen = csrf_of(other.get("/admin/").get_data(as_text=True))
    log_in(browser)
    assert browser.post("/admin/failed/replay", data={"scope": "matching", "csrf_token": stolen}).status_code == 400


def test_lockout_after_repeated_failures_from_one_address(browser, redis_conn):
    for _ in range(defaults.ADMIN_LOGIN_MAX_FAILURES_PER_ADDRESS):
        assert log_in(browser, ADMIN_USER, "guess").status_code == 403
    locked = log_in(browser)  # even the right password is refused now
    assert locked.status_code == 429
    assert "Too many failed logins" in locked.get_data(as_text=True)
    assert browser.get("/admin/").status_code == 302
    # another address is not locked out by this one
    assert log_in(browser, **{"X-Forwarded-For": "203.0.113.9"}).status_code == 302
    ttl = redis_conn.ttl(keys.admin_login_failures("addr:127.0.0.1"))
    assert 0 < ttl <= defaults.ADMIN_LOGIN_WINDOW_SECONDS


def attack(browser, attempts: int, first_address: int = 0) -> list[int]:
    """Wrong passwords for the support account, each from another address; the statuses answered."""
    statuses = []
    for number in range(first_address, first_address + attempts):
        address = f"198.51.{number // 250}.{number % 250}"
        statuses.append(log_in(browser, ADMIN_USER, "guess", **{"X-Forwarded-For": address}).status_code)
    return statuses


def test_the_lockout_attack_slows_the_attacker_and_never_locks_the_owner_out(console, browser, redis_conn):
    owner = console.test_client()
    assert log_in(owner, **{"X-Forwarded-For": "192.0.2.10"}).status_code == 302  # the owner's browser, known now
    log_out(owner)
    free = defaults.ADMIN_LOGIN_FREE_FAILURES_PER_ACCOUNT
    statuses = attack(browser, free + 40)
    assert statuses[:free] == [403] * free  # guesses, each checked
    assert statuses[free:] == [429] * 40  # then the account's delay: refused unchecked, counted nowhere
    refused = log_in(browser, ADMIN_USER, "guess", **{"X-Forwarded-For": "203.0.113.77"})
    assert refused.status_code == 429
    assert 0 < int(refused.headers["Retry-After"]) <= defaults.ADMIN_LOGIN_FIRST_DELAY_SECONDS
    assert "Try again in" in refused.get_data(as_text=True)

    # The owner's browser logs in at once with the right password, from its usual address or any other.
    for address in ("192.0.2.10", "198.51.0.3"):
        assert log_in(owner, **{"X-Forwarded-For": address}).status_code == 302, address
        assert owner.get("/admin/").status_code == 200
        log_out(owner)

    # The owner on a new browser is slowed, not locked: once the delay has passed the right password works.
    new_browser = console.test_client()
    assert log_in(new_browser, **{"X-Forwarded-For": "192.0.2.11"}).status_code == 429
    age_the_throttle(redis_conn, defaults.ADMIN_LOGIN_MAX_DELAY_SECONDS)
    assert log_in(new_browser, **{"X-Forwarded-For": "192.0.2.11"}).status_code == 302


def test_the_account_delay_grows_to_its_ceiling(console, browser, redis_conn):
    free = defaults.ADMIN_LOGIN_FREE_FAILURES_PER_ACCOUNT
    assert attack(browser, free) == [403] * free
    waits = []
    for round_number in range(8):
        age_the_throttle(redis_conn, defaults.ADMIN_LOGIN_MAX_DELAY_SECONDS)  # whatever it was, it has passed
        assert attack(browser, 1, first_address=1000 + 2 * round_number) == [403]  # one more guess is checked
        refused = log_in(browser, ADMIN_USER, "guess", **{"X-Forwarded-For": f"203.0.113.{round_number}"})
        assert refused.status_code == 429
        waits.append(int(refused.headers["Retry-After"]))
    assert waits == [min(defaults.ADMIN_LOGIN_FIRST_DELAY_SECONDS * 2 ** n, defaults.ADMIN_LOGIN_MAX_DELAY_SECONDS)
                     for n in range(1, 9)]
    assert waits[-1] == defaults.ADMIN_LOGIN_MAX_DELAY_SECONDS


def test_a_trusted_browser_gets_only_a_few_guesses_of_its_own(console, redis_conn):
    thief = console.test_client()
    assert log_in(thief).status_code == 302  # a device cookie, say stolen from the owner
    log_out(thief)
    for _ in range(defaults.ADMIN_LOGIN_MAX_FAILURES_PER_DEVICE):
        assert log_in(thief, ADMIN_USER, "guess", **{"X-Forwarded-For": "203.0.113.50"}).status_code == 403
    for address in range(defaults.ADMIN_LOGIN_MAX_FAILURES_PER_ADDRESS):  # now it is any browser: the address limit
        assert log_in(thief, ADMIN_USER, "guess", **{"X-Forwarded-For": "203.0.113.51"}).status_code == 403
    assert log_in(thief, ADMIN_USER, "guess", **{"X-Forwarded-For": "203.0.113.51"}).status_code == 429


def test_a_device_cookie_is_bound_to_its_user(console, redis_conn):
    from bridge.storage import users

    users.save(redis_conn, "alice", "alice's long password")
    shared = console.test_client()
    assert log_in(shared, "alice", "alice's long password").status_code == 302
    log_out(shared)
    attack(console.test_client(), defaults.ADMIN_LOGIN_FREE_FAILURES_PER_ACCOUNT)  # against `support`
    assert log_in(shared, **{"X-Forwarded-For": "192.0.2.99"}).status_code == 429  # alice's browser, not support's
    forged = console.test_client()
    forged.set_cookie("bridge_device", "1.abc.0123456789abcdef0123456789abcdef", path="/admin")
    assert log_in(forged, **{"X-Forwarded-For": "192.0.2.98"}).status_code == 429


def age_the_throttle(conn, seconds: float) -> None:
    """Move every account throttle's last failure `seconds` into the past (time passing, without waiting)."""
    found = conn.keys(keys.admin_login_throttle("*"))
    assert found, "no account throttle to age"
    for key in found:
        conn.hset(key, "last_at", float(conn.hget(key, "last_at")) - seconds)


def test_successful_login_clears_the_failures(browser, redis_conn):
    for _ in range(defaults.ADMIN_LOGIN_MAX_FAILURES_PER_ADDRESS - 1):
        log_in(browser, ADMIN_USER, "guess")
    assert log_in(browser).status_code == 302
    assert redis_conn.get(keys.admin_login_failures("addr:127.0.0.1")) is None


def test_session_cookie_is_httponly_and_samesite_lax(browser):
    cookie = log_in(browser).headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain HTTP, as in a local run


def test_session_cookie_is_secure_over_https(console):
    browser = console.test_client()
    page = browser.get("/admin/login", base_url="https://localhost").get_data(as_text=True)
    response = browser.post("/admin/login", base_url="https://localhost",
                            data={"username": ADMIN_USER, "password": ADMIN_PASSWORD, "csrf_token": csrf_of(page)})
    assert response.status_code == 302
    assert "Secure" in response.headers["Set-Cookie"] and "HttpOnly" in response.headers["Set-Cookie"]


def test_changing_the_password_ends_existing_sessions(browser, make_settings, redis_conn):
    log_in(browser)
    cookie = browser.get_cookie("bridge_console")
    changed = create_app(make_settings(admin_username=ADMIN_USER, admin_password="a new password")).test_client()
    changed.set_cookie(cookie.key, cookie.value)
    assert changed.get("/admin/").status_code == 302


def test_console_pages_forbid_framing_and_caching(browser):
    log_in(browser)
    response = browser.get("/admin/")
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert "script-src" not in response.headers["Content-Security-Policy"]  # default-src 'none' covers it
    assert response.headers["Cache-Control"] == "no-store"


def test_sessions_exist_only_inside_the_console(browser):
    """Outside /admin no session is opened or written: no cookie work on the webhook's hot path."""
    log_in(browser)
    for url in ("/healthz", "/webhooks/realgeeks"):
        response = browser.get(url) if url == "/healthz" else browser.post(url, data=b"{}")
        assert "Set-Cookie" not in response.headers, url
    assert browser.get("/admin/").status_code == 200  # the console session survived those requests


def test_guesses_sent_all_at_once_get_no_more_tries_than_one_at_a_time(make_settings, redis_conn):
    """Every attempt is counted before its password is checked: thirty at once, from thirty
    addresses, get the account's free tries and not one more."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from bridge.web import auth

    settings = make_settings(admin_username=ADMIN_USER, admin_password=ADMIN_PASSWORD)
    barrier = threading.Barrier(30)

    def guess(number):
        barrier.wait(timeout=10)
        return auth.attempt_login(redis_conn, settings, ADMIN_USER, f"guess {number}", f"198.51.100.{number}",
                                  None).status

    with ThreadPoolExecutor(30) as pool:
        statuses = list(pool.map(guess, range(30)))
    assert sorted(statuses) == [403] * defaults.ADMIN_LOGIN_FREE_FAILURES_PER_ACCOUNT + [429] * (
        30 - defaults.ADMIN_LOGIN_FREE_FAILURES_PER_ACCOUNT)
