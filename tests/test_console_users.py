"""Named console users and server-side sessions: `bridge admin`, logins as people, logout that
ends every copy of a session cookie, logout-all, and the audit naming the person."""

import pytest
from rq.job import Job, JobStatus

from bridge.cli import main
from bridge.exceptions import PermanentError
from bridge.storage import history, keys, sessions, users
from bridge.queue import event_job_id
from tests.ops_support import (ADMIN_PASSWORD, ADMIN_USER, console_app, csrf_of, deliver, log_in, log_out, raising,
                               run_jobs)

ALICE_PASSWORD = "alice's long passphrase"


@pytest.fixture
def console(make_settings, redis_conn):
    """The web app with the console switched on."""
    return console_app(make_settings)


@pytest.fixture
def cli(runner, redis_url):
    """Run `bridge ARGS...` against the test Redis with the console configured; return click's result."""
    def invoke(*args, input=None):
        env = {"REDIS_URL": redis_url, "ADMIN_USERNAME": ADMIN_USER, "ADMIN_PASSWORD": ADMIN_PASSWORD}
        return runner.invoke(main, list(args), env=env, input=input)
    return invoke


def copy_of(console, client):
    """Another browser holding a copy of `client`'s session cookie."""
    cookie = client.get_cookie("bridge_console")
    assert cookie is not None
    thief = console.test_client()
    thief.set_cookie(cookie.key, cookie.value)
    return thief


def test_add_user_from_stdin_and_log_in_as_them(cli, console, redis_conn):
    result = cli("admin", "add-user", "alice", "--password-stdin", input=f"{ALICE_PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert result.stdout == "added console user alice\n"
    stored = redis_conn.hget(keys.console_users(), "alice")
    assert ALICE_PASSWORD.encode() not in stored and b"scrypt$32768$8$1$" in stored
    browser = console.test_client()
    assert log_in(browser, "Alice", "wrong password here").status_code == 403
    assert log_in(browser, "Alice", ALICE_PASSWORD).status_code == 302  # names are not case-sensitive
    assert "Log out alice" in browser.get("/admin/").get_data(as_text=True)


def test_add_user_prompts_twice_without_echo(cli, console):
    result = cli("admin", "add-user", "bob", input=f"bob's long passphrase\nbob's long passphrase\n")
    assert result.exit_code == 0, result.output
    assert "bob's long passphrase" not in result.output
    assert log_in(console.test_client(), "bob", "bob's long passphrase").status_code == 302
    mismatch = cli("admin", "add-user", "carol", input="one long passphrase\nanother passphrase!\n")
    assert mismatch.exit_code != 0 and users.get(console.extensions["bridge.redis"], "carol") is None


@pytest.mark.parametrize("name, password, message", [
    ("alice", "short", "at least 12 characters"),
    ("alice", "ALICE", "at least 12 characters"),
    ("alicealice12", "alicealice12", "must not be the user name"),
    (ADMIN_USER, "a long enough password", "is the first user"),
    ("bad name", "a long enough password", "letters, digits"),
    (".x", "a long enough password", "letters, digits"),
])
def test_add_user_refuses_weak_passwords_and_bad_names(cli, redis_conn, name, password, message):
    result = cli("admin", "add-user", name, "--password-stdin", input=f"{password}\n")
    assert result.exit_code == 2 and message in result.output
    assert redis_conn.hlen(keys.console_users()) == 0


def test_replays_and_dismissals_are_recorded_with_the_persons_name(cli, console, redis_conn, webhook_secret,
                                                                     monkeypatch):
    cli("admin", "add-user", "alice", "--password-stdin", input=f"{ALICE_PASSWORD}\n")
    browser = console.test_client()
    first = deliver(browser, webhook_secret, first_name="Noah")
    second = deliver(browser, webhook_secret, first_name="Ava")
    run_jobs(console.config["BRIDGE_SETTINGS"], redis_conn, monkeypatch, raising(PermanentError("LionDesk said 422")))
    assert log_in(browser, "alice", ALICE_PASSWORD).status_code == 302
    token = csrf_of(browser.get("/admin/failed").get_data(as_text=True))
    job_id = event_job_id(first["event_id"])
    assert browser.post("/admin/failed/replay", data={"job_id": job_id, "scope": "selected",
                                                      "csrf_token": token}).status_code == 302
    other = event_job_id(second["event_id"])
    assert browser.post(f"/admin/jobs/{other}/dismiss", data={"reason": "test lead", "csrf_token": token}
                        ).status_code == 302
    assert Job.fetch(job_id, connection=redis_conn).get_status() == JobStatus.QUEUED
    replayed, dismissed = history.read(redis_conn, first["id"])[-1], history.read(redis_conn, second["id"])[-1]
    assert (replayed["kind"], replayed["by"], replayed["via"]) == ("replayed", "alice", "console")
    assert (dismissed["kind"], dismissed["by"]) == ("dismissed", "alice")


def test_logout_ends_a_copied_session_cookie(console):
    browser = console.test_client()
    assert log_in(browser).status_code == 302
    thief = copy_of(console, browser)
    assert thief.get("/admin/").status_code == 200  # a copied cookie works while the session is open...
    log_out(browser)
    assert thief.get("/admin/").status_code == 302  # ...and not a moment after logout
    assert thief.get("/admin/failed").headers["Location"].startswith("/admin/login")


def test_logout_all_ends_every_session(cli, console, redis_conn):
    cli("admin", "add-user", "alice", "--password-stdin", input=f"{ALICE_PASSWORD}\n")
    browsers = [console.test_client() for _ in range(3)]
    assert log_in(browsers[0]).status_code == 302
    assert log_in(browsers[1], "alice", ALICE_PASSWORD).status_code == 302
    assert log_in(browsers[2], "alice", ALICE_PASSWORD).status_code == 302
    copies = [copy_of(console, browser) for browser in browsers]
    listed = cli("admin", "sessions").stdout.splitlines()
    assert listed[-1] == "3 open sessions"
    assert [line.split()[0] for line in listed[:-1]] == [ADMIN_USER, "alice", "alice"]
    assert all(line.endswith("from 127.0.0.1") for line in listed[:-1])

    result = cli("admin", "logout-all", "--user", "ALICE")
    assert result.exit_code == 0 and result.stdout == "ended 2 open sessions of ALICE\n"
    assert [client.get("/admin/").status_code for client in browsers + copies] == [200, 302, 302, 200, 302, 302]

    result = cli("admin", "logout-all")
    assert result.exit_code == 0 and result.stdout == "ended 1 open session\n"
    assert all(client.get("/admin/").status_code == 302 for client in browsers + copies)
    assert redis_conn.zcard(keys.console_sessions()) == 0


def test_a_new_password_or_removal_ends_the_users_sessions(cli, console, redis_conn):
    cli("admin", "add-user", "alice", "--password-stdin", input=f"{ALICE_PASSWORD}\n")
    browser = console.test_client()
    assert log_in(browser, "alice", ALICE_PASSWORD).status_code == 302
    result = cli("admin", "add-user", "alice", "--password-stdin", input="a brand new passphrase\n")
    assert result.stdout == "changed the password of alice; ended 1 open session\n"
    assert browser.get("/admin/").status_code == 302
    assert log_in(browser, "alice", ALICE_PASSWORD).status_code == 403
    assert log_in(browser, "alice", "a brand new passphrase").status_code == 302

    redis_conn.delete(*redis_conn.keys(keys.console_session("*")))  # even a session the list lost track of...
    assert browser.get("/admin/").status_code == 302
    assert log_in(browser, "alice", "a brand new passphrase").status_code == 302
    users.remove(redis_conn, "alice")  # ...or a user removed behind the CLI's back: no record, no session
    assert browser.get("/admin/").status_code == 302
    assert cli("admin", "remove-user", "alice").exit_code == 1


def test_users_lists_the_first_user_and_the_added_ones(cli):
    cli("admin", "add-user", "zed", "--password-stdin", input="zed's long passphrase\n")
    cli("admin", "add-user", "alice", "--password-stdin", input=f"{ALICE_PASSWORD}\n")
    lines = cli("admin", "users").stdout.splitlines()
    assert lines[0] == f"{ADMIN_USER}  (first user: ADMIN_USERNAME / ADMIN_PASSWORD)"
    assert [line.split()[0] for line in lines[1:]] == ["alice", "zed"]


def test_sessions_live_in_redis_under_a_digest_and_expire(console, redis_conn):
    from bridge import defaults

    browser = console.test_client()
    assert log_in(browser).status_code == 302
    session_keys = redis_conn.keys(keys.console_session("*"))
    assert len(session_keys) == 1
    assert 0 < redis_conn.ttl(session_keys[0]) <= defaults.ADMIN_SESSION_SECONDS
    stored = redis_conn.hgetall(session_keys[0])
    assert stored[b"user"] == ADMIN_USER.encode() and ADMIN_PASSWORD.encode() not in b"".join(stored.values())


def test_password_hashes_verify_and_resist_tampering():
    stored = users.hash_password("correct horse")
    assert users.verify_password(stored, "correct horse")
    assert not users.verify_password(stored, "correct horsE")
    for broken in ("", "scrypt$1$2", stored.replace("scrypt", "bcrypt"), stored[:-4] + "AAAA", "scrypt$x$8$1$a$b"):
        assert not users.verify_password(broken, "correct horse"), broken


def test_an_unknown_session_id_is_no_session(redis_conn):
    assert sessions.load(redis_conn, "made-up") is None
    assert sessions.load(redis_conn, "") is None
    assert sessions.end_all(redis_conn) == 0
