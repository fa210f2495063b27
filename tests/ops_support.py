"""Helpers for the support-tool tests: real signed deliveries, the real relay and a real
burst worker in this process, with the sync core replaced by a function of the test's choosing."""

from __future__ import annotations

import re

from bridge.context import Context, set_context
from bridge.sandbox.sample import sample_lead
from bridge.sync import handlers
from tests.support import signed_post
from workers.relay import Relay
from workers.worker import build_worker

WEBHOOK = "/webhooks/realgeeks"
ADMIN_USER, ADMIN_PASSWORD = "support", "correct horse battery staple"


def deliver(client, secret, **overrides) -> dict:
    """POST a signed new-lead delivery; return its payload with the `event_id` the bridge gave it."""
    payload = sample_lead(**overrides)
    response = signed_post(client, WEBHOOK, payload, secret)
    assert response.status_code == 200, response.json
    return {**payload, "event_id": response.json["event_id"]}


def raising(error: BaseException):
    """A stand-in for handle_event that always fails with `error`."""
    def handle_event(context, event):
        raise error
    return handle_event


def succeeding(context, event) -> str:
    """A stand-in for handle_event that always succeeds."""
    return "synced (test)"


def run_jobs(settings, conn, monkeypatch, handler=succeeding, *, scheduled: bool = False) -> None:
    """Relay the intake into RQ jobs, then run them with a real burst worker using `handler` as the sync core
    (`scheduled`: with its scheduler, so scheduled retries that are due run too)."""
    monkeypatch.setattr(handlers, "handle_event", handler)
    Relay(conn, "test-relay", settings.retry_intervals).drain()
    try:
        build_worker(Context(settings=settings, redis=conn)).work(burst=True, with_scheduler=scheduled,
                                                                   logging_level="WARNING")
    finally:
        set_context(None)


def csrf_of(html: str) -> str:
    """The CSRF token a console page put in its forms."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "page has no CSRF field"
    return match[1]


def log_in(client, username: str = ADMIN_USER, password: str = ADMIN_PASSWORD, **headers):
    """Log in to the console like a browser: fetch the form, post it with its token."""
    token = csrf_of(client.get("/admin/login").get_data(as_text=True))
    return client.post("/admin/login", data={"username": username, "password": password, "csrf_token": token},
                       headers=headers)


def console_app(make_settings, **overrides):
    """The web app with the console switched on (the first user is ADMIN_USER), in testing mode."""
    from bridge.web import create_app

    app = create_app(make_settings(admin_username=ADMIN_USER, admin_password=ADMIN_PASSWORD, **overrides))
    app.config["TESTING"] = True
    return app


def log_out(client) -> None:
    """Press the console's Log out button."""
    token = csrf_of(client.get("/admin/").get_data(as_text=True))
    assert client.post("/admin/logout", data={"csrf_token": token}).status_code == 302
