"""The console's locks end to end, against the Procfile's gunicorn `web` process over HTTP:
the lockout attack (the owner still logs in), logout ending a copied session cookie, and
`bridge admin logout-all` ending every session."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import requests

from bridge import defaults
from bridge.storage.redis import connect
from tests.conftest import delete_run_keys
from tests.ops_support import ADMIN_PASSWORD, ADMIN_USER
from tests.support import ROOT, Processes, start_web

pytestmark = pytest.mark.e2e


@pytest.fixture
def web(tmp_path, redis_url):
    """The web process with the console on; yields its base URL and environment."""
    processes = Processes(tmp_path)
    conn = connect(redis_url)
    env = {"REDIS_URL": redis_url, "PYTHONPATH": str(ROOT), "ADMIN_USERNAME": ADMIN_USER,
           "ADMIN_PASSWORD": ADMIN_PASSWORD, "SECRET_KEY": "e2e-console", "REALGEEKS_WEBHOOK_SECRET": "x" * 32}
    try:
        yield start_web(processes, env, concurrency=2), env
    finally:
        processes.stop_all()
        delete_run_keys(conn)
        conn.close()


def log_in(url: str, browser: requests.Session, username=ADMIN_USER, password=ADMIN_PASSWORD,
           address: str = "192.0.2.1") -> requests.Response:
    """Fetch the login form and post it, as from `address` (what the router puts in X-Forwarded-For)."""
    form = browser.get(f"{url}/admin/login", timeout=10).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form)[1]
    return browser.post(f"{url}/admin/login", allow_redirects=False, timeout=30,
                        data={"username": username, "password": password, "csrf_token": token},
                        headers={"X-Forwarded-For": address})


def logged_in(url: str, browser: requests.Session) -> bool:
    """Whether the console's overview opens for this browser (not a redirect to the login)."""
    return browser.get(f"{url}/admin/", allow_redirects=False, timeout=10).status_code == 200


def log_out(url: str, browser: requests.Session) -> None:
    """Press Log out."""
    page = browser.get(f"{url}/admin/", timeout=10).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)[1]
    assert browser.post(f"{url}/admin/logout", data={"csrf_token": token}, allow_redirects=False,
                        timeout=10).status_code == 302


def copy_of(browser: requests.Session) -> requests.Session:
    """Another browser with a copy of this one's session cookie (and nothing else)."""
    thief = requests.Session()
    thief.cookies.set("bridge_console", browser.cookies["bridge_console"], path="/")
    return thief


def test_the_lockout_attack_leaves_the_owner_able_to_log_in(web):
    url, _ = web
    owner = requests.Session()
    assert log_in(url, owner).status_code == 302
    log_out(url, owner)
    attacker = requests.Session()
    statuses = [log_in(url, attacker, password=f"guess {n}", address=f"198.51.100.{n}").status_code
                for n in range(defaults.ADMIN_LOGIN_FREE_FAILURES_PER_ACCOUNT + 15)]
    free = defaults.ADMIN_LOGIN_FREE_FAILURES_PER_ACCOUNT
    assert statuses[:free] == [403] * free and 429 in statuses[free:]  # checked, then slowed down
    assert set(statuses) == {403, 429}
    # The owner's browser, from an address the attacker also used, gets in at once with the right password.
    assert log_in(url, owner, address="198.51.100.3").status_code == 302 and logged_in(url, owner)


def test_logout_ends_a_copied_session_cookie_and_logout_all_ends_every_session(web):
    url, env = web
    browser = requests.Session()
    assert log_in(url, browser).status_code == 302
    thief = copy_of(browser)
    assert logged_in(url, thief)
    log_out(url, browser)
    assert not logged_in(url, thief) and not logged_in(url, browser)

    sessions = [requests.Session() for _ in range(3)]
    for session in sessions:
        assert log_in(url, session).status_code == 302
    copies = [copy_of(session) for session in sessions]
    assert all(logged_in(url, session) for session in sessions + copies)
    result = subprocess.run([sys.executable, "-m", "bridge.cli", "admin", "logout-all"], cwd=ROOT,
                            env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout == "ended 3 open sessions\n", result.stderr
    assert not any(logged_in(url, session) for session in sessions + copies)
