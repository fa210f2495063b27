"""The console's pages, driven like a browser without JavaScript: real deliveries, real failed jobs."""

import html
import re

import pytest
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry

from bridge import defaults
from bridge.web import create_app
from bridge.exceptions import PermanentError, RetryableError
from bridge.storage import history, keys
from tests.ops_support import ADMIN_PASSWORD, ADMIN_USER, WEBHOOK, csrf_of, deliver, log_in, run_jobs
from tests.support import signed_post
from bridge.queue import event_job_id, event_queue


@pytest.fixture
def console_settings(make_settings):
    """Settings with the console on."""
    return make_settings(admin_username=ADMIN_USER, admin_password=ADMIN_PASSWORD)


@pytest.fixture
def browser(console_settings, redis_conn):
    """A logged-in console client."""
    app = create_app(console_settings)
    app.config["TESTING"] = True
    client = app.test_client()
    assert log_in(client).status_code == 302
    return client


def page(client, url) -> str:
    """GET a console page that must answer 200; return its HTML."""
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    return response.get_data(as_text=True)


def submit(client, form_page_url, action, data) -> str:
    """Post a form found on `form_page_url` (with that page's CSRF token), follow the redirect, return the HTML."""
    token = csrf_of(page(client, form_page_url))
    response = client.post(action, data={**data, "csrf_token": token}, follow_redirects=True)
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


def flash_of(text: str) -> str:
    """The text of the #flash area."""
    match = re.search(r'<div id="flash"[^>]*>(.*?)</div>', text, re.S)
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", match[1]))).strip()


def job_ids_on(text: str) -> list[str]:
    """Job ids of the rows of the failed-jobs table."""
    return re.findall(r'<tr data-job-id="([^"]+)"', text)


@pytest.fixture
def failures(browser, redis_conn, make_settings, webhook_secret, monkeypatch):
    """Three failed jobs: permanent `created` and `updated` ones, and a retryable one that spent its ladder."""
    refused = deliver(browser, webhook_secret, first_name="Noah", last_name="Lee")
    updated = deliver(browser, webhook_secret, action="updated", first_name="Ava", last_name="Brown")
    flaky = deliver(browser, webhook_secret, first_name="Liam", last_name="Silva")

    def handler(context, event):
        if event.lead_id == flaky["id"]:
            raise RetryableError("LionDesk answered 503")
        raise PermanentError(f"LionDesk said 422 for {event.action}")

    run_jobs(make_settings(retry_intervals=(0,)), redis_conn, monkeypatch, handler)
    return {"refused": refused, "updated": updated, "flaky": flaky}


def test_overview_shows_queues_outcomes_liondesk_and_the_last_poll(browser, redis_conn, failures):
    redis_conn.hset(keys.liondesk_auth_state(), mapping={
        "state": "needs_reauthorization", "reason": "400 invalid_grant", "since": "1700000000"})
    redis_conn.hset(keys.poll_state(), mapping={"last_run": "1700000100", "cursor": "2023-11-14T22:15:00Z",
                                                "outcome": "ok: 3 contacts"})
    text = page(browser, "/admin/")
    assert re.search(r'id="queue-failed" data-count="3"', text)
    assert re.search(r'id="queue-events" data-count="0"', text)
    assert re.search(r'<tr id="outcome-failed">.*?data-last-day="3"', text, re.S)
    assert 'data-state="needs_reauthorization"' in text and "400 invalid_grant" in text
    assert "2023-11-14 22:13:20Z" in text  # since, as UTC
    assert "2023-11-14 22:15:00Z" in text and "ok: 3 contacts" in text


def test_overview_without_any_poll_or_auth_state(browser):
    text = page(browser, "/admin/")
    assert "No poll has run yet." in text and 'data-state="not_configured"' in text


def test_failed_jobs_are_listed_and_filtered(browser, failures):
    ids = {name: event_job_id(lead["event_id"]) for name, lead in failures.items()}
    text = page(browser, "/admin/failed")
    assert set(job_ids_on(text)) == set(ids.values())
    assert "Noah Lee" in text and "Ava Brown" in text
    assert 'data-matching="3" data-total="3"' in text

    assert job_ids_on(page(browser, "/admin/failed?action=updated")) == [ids["updated"]]
    assert job_ids_on(page(browser, "/admin/failed?error_class=RetryableError")) == [ids["flaky"]]
    assert job_ids_on(page(browser, "/admin/failed?since=2000-01-01T00:00&until=2000-01-02T00:00")) == []
    assert set(job_ids_on(page(browser, "/admin/failed?since=2000-01-01T00:00"))) == set(ids.values())
    bad = page(browser, "/admin/failed?since=yesterday")
    assert "Ignored since" in flash_of(bad) and len(job_ids_on(bad)) == 3


def test_job_page_shows_payload_error_and_history(browser, failures):
    lead = failures["flaky"]
    text = page(browser, f"/admin/jobs/{event_job_id(lead['event_id'])}")
    assert 'data-status="failed"' in text
    assert "RetryableError" in text and "LionDesk answered 503" in text
    assert 'id="traceback"' in text and "Traceback" in text
    assert f'"id": "{lead["id"]}",\n' in html.unescape(text)  # the stored payload, pretty-printed
    assert text.count('data-kind="attempt_failed"') == 2
    assert 'id="replay-form"' in text and 'id="dismiss-form"' in text


def test_replay_one_from_its_page(browser, redis_conn, failures):
    lead = failures["refused"]
    job_id = event_job_id(lead["event_id"])
    text = submit(browser, f"/admin/jobs/{job_id}", "/admin/failed/replay",
                  {"job_id": job_id, "scope": "selected", "next": f"/admin/jobs/{job_id}"})
    assert flash_of(text) == "Replayed 1 job with a fresh retry budget."
    assert 'data-status="queued"' in text and 'id="replay-form"' not in text
    job = Job.fetch(job_id, connection=redis_conn)
    assert job.get_status() == JobStatus.QUEUED
    assert job.retries_left == len(defaults.RETRY_INTERVALS_SECONDS)
    entry = history.read(redis_conn, lead["id"])[-1]
    assert (entry["kind"], entry["by"], entry["via"]) == ("replayed", ADMIN_USER, "console")

    again = submit(browser, "/admin/failed", "/admin/failed/replay", {"job_id": job_id, "scope": "selected"})
    assert "Replayed 0 jobs with a fresh retry budget; 1 skipped" in flash_of(again)
    assert event_queue(redis_conn).job_ids == [job_id]


def test_bulk_replay_of_the_selected_jobs(browser, redis_conn, failures):
    chosen = [event_job_id(failures[name]["event_id"]) for name in ("refused", "updated")]
    text = submit(browser, "/admin/failed", "/admin/failed/replay", {"job_id": chosen, "scope": "selected"})
    assert flash_of(text) == "Replayed 2 jobs with a fresh retry budget."
    assert job_ids_on(text) == [event_job_id(failures["flaky"]["event_id"])]
    assert sorted(event_queue(redis_conn).job_ids) == sorted(chosen)


def test_bulk_replay_with_nothing_selected_says_so(browser, redis_conn, failures):
    text = submit(browser, "/admin/failed", "/admin/failed/replay", {"scope": "selected"})
    assert flash_of(text) == "Select at least one job to replay."
    assert event_queue(redis_conn).count == 0


def test_replay_all_matching_the_filter(browser, redis_conn, failures):
    text = submit(browser, "/admin/failed?error_class=PermanentError", "/admin/failed/replay",
                  {"scope": "matching", "error_class": "PermanentError", "action": "", "since": "", "until": ""})
    assert flash_of(text) == "Replayed 2 jobs with a fresh retry budget."
    remaining = FailedJobRegistry(defaults.EVENT_QUEUE, connection=redis_conn).get_job_ids()
    assert remaining == [event_job_id(failures["flaky"]["event_id"])]


def test_dismiss_with_a_reason(browser, redis_conn, failures):
    lead = failures["updated"]
    job_id = event_job_id(lead["event_id"])
    blank = submit(browser, f"/admin/jobs/{job_id}", f"/admin/jobs/{job_id}/dismiss", {"reason": "  "})
    assert flash_of(blank) == "Give a reason to dismiss a job."

    text = submit(browser, f"/admin/jobs/{job_id}", f"/admin/jobs/{job_id}/dismiss",
                  {"reason": "test lead from the agent"})
    assert flash_of(text) == f"Dismissed {job_id}."
    assert job_id not in job_ids_on(text)
    entry = history.read(redis_conn, lead["id"])[-1]
    assert entry["kind"] == "dismissed" and entry["reason"] == "test lead from the agent"
    assert entry["by"] == ADMIN_USER
    shown = page(browser, f"/admin/jobs/{job_id}")
    assert 'data-status="dismissed"' in shown and "test lead from the agent" in shown


def test_unknown_job_and_unknown_lead_are_404_pages(browser):
    assert browser.get("/admin/jobs/event-nothing").status_code == 404
    response = browser.get("/admin/leads/0123abcd")
    assert response.status_code == 404 and "No record of lead 0123abcd" in response.get_data(as_text=True)


def test_rejected_deliveries_show_their_validation_errors(browser, redis_conn, settings, webhook_secret,
                                                          monkeypatch):
    response = signed_post(browser, WEBHOOK, {"action": "created", "id": "ABC-123", "email": "not-an-email"},
                           webhook_secret)
    run_jobs(settings, redis_conn, monkeypatch)  # the relay checks the schema and rejects it
    text = page(browser, "/admin/rejected")
    assert f'data-event-id="{response.json["event_id"]}"' in text
    assert "<strong>email</strong>" in text and "Not a valid email address." in text
    assert "not-an-email" in text  # the payload, for support to read
    assert 'data-total="1"' in text
    job_page = page(browser, f"/admin/jobs/event-{response.json['event_id']}")  # linked from the lead's story
    assert 'data-status="rejected"' in job_page and 'id="replay-form"' not in job_page


def test_lead_search_by_email_phone_name_and_id_leads_to_the_timeline(browser, redis_conn, settings,
                                                                      webhook_secret, monkeypatch):
    lead = deliver(browser, webhook_secret, first_name="Keoni", last_name="Nakamura", phone="(808) 555-0177",
                   email="keoni@example.com")
    namesake = deliver(browser, webhook_secret, first_name="Keoni", last_name="Smith")
    run_jobs(settings, redis_conn, monkeypatch)  # the intake indexed both leads as it stored them

    for query in ("KEONI@example.com", "808.555.0177", "keoni nakamura", lead["id"].upper()):
        token = csrf_of(page(browser, "/admin/leads"))
        response = browser.post("/admin/leads", data={"q": query, "csrf_token": token})
        assert response.status_code == 303, query
        assert response.headers["Location"] == f"/admin/leads/{lead['id']}"

    story = page(browser, f"/admin/leads/{lead['id']}")
    assert "Keoni Nakamura" in story and "keoni@example.com" in story
    assert re.findall(r'data-kind="(\w+)"', story) == ["received", "processed"]
    assert "not linked yet" in story

    token = csrf_of(page(browser, "/admin/leads"))
    both = browser.post("/admin/leads", data={"q": "Keoni", "csrf_token": token}).get_data(as_text=True)
    assert set(re.findall(r'<li data-lead-id="(\w+)"', both)) == {lead["id"], namesake["id"]}
    none = browser.post("/admin/leads", data={"q": "nobody@example.com", "csrf_token": token})
    assert 'id="no-results"' in none.get_data(as_text=True)


def test_lead_page_shows_the_liondesk_mapping(browser, redis_conn, settings, webhook_secret, monkeypatch):
    lead = deliver(browser, webhook_secret)
    run_jobs(settings, redis_conn, monkeypatch)
    redis_conn.hset(keys.lead_mapping(lead["id"]), mapping={"contact_id": "9001", "lead_id": "77"})
    text = page(browser, f"/admin/leads/{lead['id']}")
    assert re.search(r'id="mapping-contact">9001<', text) and re.search(r'id="mapping-lead">77<', text)


def test_pages_are_served_without_any_script(browser, failures):
    for url in ("/admin/", "/admin/failed", "/admin/rejected", "/admin/leads",
                f"/admin/jobs/{event_job_id(failures['refused']['event_id'])}"):
        text = page(browser, url)
        assert "<script" not in text and 'name="viewport"' in text
    css = browser.get("/admin/static/console.css")
    assert css.status_code == 200 and b"@media" in css.data
