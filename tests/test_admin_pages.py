"""The console's pages, driven like a browser without JavaScript: real deliveries, real failed jobs."""

import html
import os
import time
import re

import pytest
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry

from bridge import defaults
from bridge.web import create_app
from bridge.exceptions import PermanentError, RetryableError
from bridge.storage import beats, history, keys
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


def confirm_form(text: str) -> dict:
    """The fields of a confirmation page's form (CSRF token and the listed job ids included)."""
    form = re.search(r'<form id="confirm-form" method="post" action="([^"]+)">(.*?)</form>', text, re.S)
    assert form, "no confirmation form on the page"
    fields: dict = {}
    for name, value in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', form[2]):
        fields.setdefault(name, []).append(html.unescape(value))
    return {"action": form[1], **{name: values if name == "job_id" else values[0] for name, values in fields.items()}}


def counts_on(text: str, table: str) -> dict[str, int]:
    """The (name, count) rows of one of the confirmation page's count tables."""
    body = re.search(rf'<table id="{table}">(.*?)</table>', text, re.S)[1]
    return {html.unescape(name): int(count) for name, count in re.findall(r"<th>([^<]*)</th><td>(\d+)</td>", body)}


def test_bulk_replay_of_the_selected_jobs_asks_first(browser, redis_conn, failures):
    chosen = [event_job_id(failures[name]["event_id"]) for name in ("refused", "updated")]
    token = csrf_of(page(browser, "/admin/failed"))
    asked = browser.post("/admin/failed/replay", data={"job_id": chosen, "scope": "selected", "csrf_token": token})
    text = asked.get_data(as_text=True)
    assert asked.status_code == 200 and 'data-total="2"' in text and "Nothing has happened yet." in text
    assert counts_on(text, "by-action") == {"created": 1, "updated": 1}
    assert counts_on(text, "by-error") == {"PermanentError": 2}
    assert event_queue(redis_conn).count == 0  # nothing replayed by asking
    form = confirm_form(text)
    assert sorted(form["job_id"]) == sorted(chosen) and form["confirm"] == "1"

    done = browser.post(form.pop("action"), data=form, follow_redirects=True).get_data(as_text=True)
    assert flash_of(done) == "Replayed 2 jobs with a fresh retry budget."
    assert job_ids_on(done) == [event_job_id(failures["flaky"]["event_id"])]
    assert sorted(event_queue(redis_conn).job_ids) == sorted(chosen)


def test_bulk_replay_with_nothing_selected_says_so(browser, redis_conn, failures):
    text = submit(browser, "/admin/failed", "/admin/failed/replay", {"scope": "selected"})
    assert flash_of(text) == "Select at least one job to replay."
    assert event_queue(redis_conn).count == 0


def test_replay_all_matching_the_filter_replays_exactly_what_it_showed(
        browser, redis_conn, failures, make_settings, webhook_secret, monkeypatch):
    token = csrf_of(page(browser, "/admin/failed?error_class=PermanentError"))
    asked = browser.post("/admin/failed/replay", data={
        "scope": "matching", "error_class": "PermanentError", "action": "", "since": "", "until": "",
        "csrf_token": token}).get_data(as_text=True)
    assert counts_on(asked, "by-error") == {"PermanentError": 2} and counts_on(asked, "by-kind") == {"lead": 2}
    assert FailedJobRegistry(defaults.EVENT_QUEUE, connection=redis_conn).count == 3  # nothing replayed yet

    late = deliver(browser, webhook_secret)  # fails after the preview: not part of what was confirmed
    run_jobs(make_settings(retry_intervals=(0,)), redis_conn, monkeypatch, lambda context, event: (
        _ for _ in ()).throw(PermanentError("late")))
    form = confirm_form(asked)
    text = browser.post(form.pop("action"), data=form, follow_redirects=True).get_data(as_text=True)
    assert flash_of(text) == "Replayed 2 jobs with a fresh retry budget."
    remaining = FailedJobRegistry(defaults.EVENT_QUEUE, connection=redis_conn).get_job_ids()
    assert sorted(remaining) == sorted([event_job_id(failures["flaky"]["event_id"]), event_job_id(late["event_id"])])


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
    assert "Email: Not a valid email address." in html.unescape(text) and "Unnamed lead" in text
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
    assert re.findall(r'<li class="entry" data-kind="(\w+)"', story) == ["received", "processed"]
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
    assert re.search(r'id="mapping-contact" data-contact-id="9001"><a id="contact-link" href="https://www.liondesk.com/admin/index.html"', text)
    assert re.search(r'id="mapping-lead">77<', text)


def test_pages_are_served_without_any_script(browser, failures):
    for url in ("/admin/", "/admin/failed", "/admin/rejected", "/admin/leads",
                f"/admin/jobs/{event_job_id(failures['refused']['event_id'])}"):
        text = page(browser, url)
        assert "<script" not in text and 'name="viewport"' in text
    css = browser.get("/admin/static/console.css")
    assert css.status_code == 200 and b"@media" in css.data


# -- waiting jobs, banner, chart, lead summary, deliveries, hostile records ---------------------


@pytest.fixture
def outage(browser, redis_conn, settings, webhook_secret, monkeypatch):
    """Two leads waiting on the ladder because LionDesk answers 503 (a real worker ran them once)."""
    from bridge.exceptions import UpstreamUnavailable

    first = deliver(browser, webhook_secret, first_name="Kai", last_name="Akana")
    second = deliver(browser, webhook_secret, action="updated", first_name="Mele", last_name="Kahale")
    run_jobs(settings, redis_conn, monkeypatch,
             lambda context, event: (_ for _ in ()).throw(
                 UpstreamUnavailable("LionDesk answered 503", service="liondesk", status=503)))
    return {"first": first, "second": second}


def rows_of(text: str, table: str) -> list[str]:
    """Job ids of the rows of one table."""
    body = re.search(rf'<table id="{table}" class="rows">(.*?)</table>', text, re.S)
    return re.findall(r'<tr data-job-id="([^"]+)"', body[1]) if body else []


def test_retrying_page_lists_waiting_jobs_and_runs_one_now(browser, redis_conn, settings, outage, monkeypatch):
    first = event_job_id(outage["first"]["event_id"])
    text = page(browser, "/admin/retrying")
    assert sorted(rows_of(text, "retrying-jobs")) == sorted([first, event_job_id(outage["second"]["event_id"])])
    assert "Kai Akana" in text and "UpstreamUnavailable" in text and 'data-outcome="retrying"' in text
    assert text.count('class="nowrap next-attempt"><time datetime=') == 2

    done = submit(browser, "/admin/retrying", "/admin/retrying/run", {"one": first})
    assert flash_of(done).startswith("1 job due now: a running worker starts it within seconds")
    entry = history.read(redis_conn, outage["first"]["id"])[-1]
    assert (entry["kind"], entry["by"], entry["via"]) == ("retried_now", ADMIN_USER, "console")
    run_jobs(settings, redis_conn, monkeypatch, lambda context, event: "synced (test)", scheduled=True)
    assert history.read(redis_conn, outage["first"]["id"])[-1]["kind"] == "processed"
    assert rows_of(page(browser, "/admin/retrying"), "retrying-jobs") == [event_job_id(outage["second"]["event_id"])]


def test_run_all_now_asks_first(browser, redis_conn, outage):
    from rq.registry import ScheduledJobRegistry

    registry = ScheduledJobRegistry(defaults.EVENT_QUEUE, connection=redis_conn)
    before = {job_id: redis_conn.zscore(registry.key, job_id) for job_id in registry.get_job_ids()}
    token = csrf_of(page(browser, "/admin/retrying"))
    asked = browser.post("/admin/retrying/run", data={"scope": "all", "csrf_token": token}).get_data(as_text=True)
    assert 'data-verb="run now"' in asked and counts_on(asked, "by-error") == {"UpstreamUnavailable": 2}
    assert {job_id: redis_conn.zscore(registry.key, job_id) for job_id in before} == before
    form = confirm_form(asked)
    done = browser.post(form.pop("action"), data=form, follow_redirects=True).get_data(as_text=True)
    assert flash_of(done).startswith("2 jobs due now")
    assert all(redis_conn.zscore(registry.key, job_id) <= time.time() for job_id in before)


def test_banner_says_liondesk_is_failing_and_since_when(browser, redis_conn, outage):
    text = page(browser, "/admin/failed")  # on every page, not only the overview
    notice = re.search(r'<p class="notice notice-liondesk_failing" data-kind="liondesk_failing" data-count="(\d+)">(.*?)</p>',
                       text, re.S)
    assert notice and notice[1] == "2"
    assert "LionDesk is failing: 2 leads waiting" in notice[2] and "since <time" in notice[2]
    assert 'href="/admin/retrying"' in notice[2]
    overview = page(browser, "/admin/")
    assert 'data-failing="2"' in overview and ", but failing" in overview
    assert 'class="state good"' not in overview


def test_banner_asks_for_reauthorisation_with_the_connect_button(browser, redis_conn):
    redis_conn.hset(keys.liondesk_auth_state(), mapping={
        "state": "needs_reauthorization", "reason": "400 invalid_grant", "since": "1700000000"})
    text = page(browser, "/admin/leads")
    assert 'data-kind="reauthorize"' in text and "LionDesk needs re-authorisation" in text and "invalid_grant" in text
    assert '<a class="button" id="connect-liondesk" href="/admin/liondesk/connect">' in text


def test_banner_says_when_no_worker_runs_and_not_when_one_does(browser, redis_conn):
    assert 'data-kind="no_worker"' in page(browser, "/admin/")
    process = "test-worker-banner"
    beats.record(redis_conn, beats.new_beat(process, "host", os.getpid(), time.time(), "rq:worker:test"))
    try:
        assert 'data-kind="no_worker"' not in page(browser, "/admin/")
    finally:
        beats.forget(redis_conn, process)


def test_banner_says_when_redis_is_full(browser, redis_conn):
    used = redis_conn.info("memory")["used_memory"]
    previous = redis_conn.config_get("maxmemory")["maxmemory"]
    redis_conn.config_set("maxmemory", int(used * 0.9))  # over the limit: reads still answer, writes are refused
    try:
        response = browser.get("/admin/")
        text = response.get_data(as_text=True)
    finally:
        redis_conn.config_set("maxmemory", previous)
    assert response.status_code == 200 and 'data-kind="redis_full"' in text and "Redis is full" in text


def test_overview_chart_shows_delivered_and_failed_per_hour(browser, redis_conn):
    from bridge.ops import jobs as job_tools

    now = time.time()
    for ago, outcome in ((0, "processed"), (0, "processed"), (0, "failed"), (3 * 3600, "processed"),
                         (30 * 3600, "processed")):  # the last is older than the chart's day
        job_tools.record_outcome(redis_conn, outcome, now=now - ago)
    text = page(browser, "/admin/")
    assert 'id="chart" class="card" data-delivered="3" data-failed="1"' in text
    hours = re.findall(r'<g class="hour" data-start="(\d+)" data-delivered="(\d+)" data-failed="(\d+)">', text)
    assert len(hours) == 24
    assert hours[-1][1:] == ("2", "1") and hours[-4][1:] == ("1", "0")
    assert sum(int(delivered) for _, delivered, _ in hours) == 3
    assert "<svg" in text and "<script" not in text


def test_lead_page_leads_with_the_summary(browser, redis_conn, console_settings, webhook_secret, monkeypatch,
                                          make_settings):
    import json as jsonlib

    lead = deliver(browser, webhook_secret, first_name="Keoni", last_name="Nakamura")
    run_jobs(console_settings, redis_conn, monkeypatch)
    redis_conn.hset(keys.lead_mapping(lead["id"]), mapping={"contact_id": "9001", "lead_id": "77", "lead_source_id": "31"})
    redis_conn.hset(keys.lead_effects(lead["id"]), mapping={"campaign:6": "done", "lead": "done"})
    history.append(redis_conn, lead["id"], "assigned", contact_id=9001, user_id=5)
    for kind, records in {"users": [{"id": 5, "first_name": "Lani", "last_name": "Park", "email": "lani@example.com"}],
                          "campaigns": [{"id": 6, "name": "New buyer drip"}],
                          "lead-sources": [{"id": 31, "name": "Real Geeks"}],
                          "lead-routes": [{"id": 1, "lead_source_id": 31, "contact_source_id": 10, "campaign_id": 6,
                                           "distribution_target": "Team Rollout", "team_id": 3}]}.items():
        redis_conn.set(keys.liondesk_reference(kind), jsonlib.dumps(records))
    app = create_app(make_settings(admin_username=ADMIN_USER, admin_password=ADMIN_PASSWORD,
                                   bridge_timezone="Pacific/Honolulu",
                                   liondesk_contact_url="https://crm.example/contacts/{contact_id}"))
    client = app.test_client()
    assert log_in(client).status_code == 302
    text = page(client, f"/admin/leads/{lead['id']}")
    assert text.index('id="summary"') < text.index('id="timeline"')
    assert 'data-state="delivered"' in text and "Delivered to LionDesk" in text
    assert '<a id="contact-link" href="https://crm.example/contacts/9001"' in text
    assert re.search(r'id="summary-agent">Lani Park<', text) and re.search(r'id="summary-campaign">New buyer drip<', text)
    assert re.search(r'id="summary-route">Real Geeks → Team Rollout \(team 3\)<', text)
    stamp = re.search(r'<time datetime="([^"]+)" title="([^"]+) UTC">([^<]+) HST</time>', text)
    assert stamp, "times are in BRIDGE_TIMEZONE with UTC on hover"
    assert 'id="replay-form"' not in text and 'id="retry-now-form"' not in text


def test_lead_page_of_a_waiting_lead_offers_run_now_and_says_when(browser, redis_conn, outage):
    text = page(browser, f"/admin/leads/{outage['first']['id']}")
    assert 'data-state="retrying"' in text and "UpstreamUnavailable: LionDesk answered 503" in text
    assert 'id="summary-next">Next attempt at <time' in text and 'id="retry-now-form"' in text
    assert "; next attempt at " in text  # the story's line says it too
    done = submit(browser, f"/admin/leads/{outage['first']['id']}", "/admin/retrying/run",
                  {"one": event_job_id(outage["first"]["event_id"]), "next": f"/admin/leads/{outage['first']['id']}"})
    assert 'id="lead"' in done and flash_of(done).startswith("1 job due now")


def test_lead_page_of_a_failed_lead_offers_replay(browser, failures):
    text = page(browser, f"/admin/leads/{failures['refused']['id']}")
    assert 'data-state="failed"' in text and "PermanentError: LionDesk said 422 for created" in text
    assert 'id="replay-form"' in text


def test_calls_are_folded_under_their_step(browser, redis_conn, settings, webhook_secret, monkeypatch):
    lead = deliver(browser, webhook_secret)
    run_jobs(settings, redis_conn, monkeypatch)
    entries = history.read(redis_conn, lead["id"])
    redis_conn.delete(keys.lead_history(lead["id"]))
    history.append_entry(redis_conn, lead["id"], entries[0])
    for path in ("/contacts", "/contacts", "/leads"):
        history.append(redis_conn, lead["id"], "call", service="liondesk", method="POST", path=path, status=201, ms=12)
    history.append(redis_conn, lead["id"], "contact_created", contact_id=9001)
    history.append(redis_conn, lead["id"], "call", service="liondesk", method="GET", path="/me", status=200)
    text = page(browser, f"/admin/leads/{lead['id']}")
    top = re.findall(r'<li class="entry" data-kind="(\w+)"', text)
    assert top == ["received", "contact_created", "call", "call", "call", "calls", "call"]  # calls nested in their step
    folded = re.search(r'data-kind="contact_created".*?<details class="calls">\s*<summary>3 calls</summary>', text, re.S)
    assert folded


def test_deliveries_log_lists_filters_and_pages(browser, redis_conn, settings, webhook_secret, monkeypatch):
    from bridge.ops import deliveries

    queued = deliver(browser, webhook_secret, first_name="Ana", last_name="Lima")
    ignored = signed_post(browser, WEBHOOK, {"action": "user_created", "id": "u1", "name": "Agent Smith"},
                          webhook_secret).json
    bad = signed_post(browser, WEBHOOK, {"action": "created", "id": "ABC-9", "first_name": "Rui", "last_name": "Sá",
                                         "email": "not-an-email"}, webhook_secret).json
    repeated = {key: value for key, value in queued.items() if key != "event_id"}
    again = signed_post(browser, WEBHOOK, repeated, webhook_secret)  # Real Geeks delivering the same bytes again
    assert again.json["status"] == "duplicate" and again.json["event_id"] == queued["event_id"]
    run_jobs(settings, redis_conn, monkeypatch)
    text = page(browser, "/admin/deliveries")
    rows = re.findall(r'<tr data-event-id="(\w+)" data-outcome="(\w+)">', text)
    assert rows == [(queued["event_id"], "duplicate"), (bad["event_id"], "rejected"),
                    (ignored["event_id"], ignored["status"]), (queued["event_id"], "queued")]  # newest first
    assert "repeated <a href" in text
    only_repeats = page(browser, "/admin/deliveries?outcome=duplicate")
    assert re.findall(r'data-outcome="(\w+)">', only_repeats) == ["duplicate"] and "Ana Lima" in only_repeats
    story = page(browser, f"/admin/leads/{queued['id']}")
    assert {"received", "duplicate", "processed"} <= set(re.findall(r'<li class="entry" data-kind="(\w+)"', story))
    assert 'data-kind="duplicate"' in story and "delivery repeated an earlier one" in story
    assert "Rui Sá" in text and "Ana Lima" in text
    assert "Email: Not a valid email address." in html.unescape(text)
    only = page(browser, "/admin/deliveries?outcome=rejected")
    assert re.findall(r'<tr data-event-id="(\w+)"', only) == [bad["event_id"]]
    assert re.findall(r'<tr data-event-id="(\w+)"', page(browser, "/admin/deliveries?action=created")) == [
        queued["event_id"], bad["event_id"], queued["event_id"]]
    assert 'class="empty"' in page(browser, "/admin/deliveries?since=2000-01-01T00:00&until=2000-01-02T00:00")

    monkeypatch.setattr(deliveries, "PAGE_SIZE", 3)
    first = page(browser, "/admin/deliveries")
    assert len(re.findall(r'<tr data-event-id=', first)) == 3
    older = html.unescape(re.search(r'<a id="page-older" href="([^"]+)"', first)[1])
    second = page(browser, older)
    assert re.findall(r'<tr data-event-id="(\w+)" data-outcome="(\w+)"', second) == [(queued["event_id"], "queued")]
    assert 'id="page-older"' not in second and 'id="page-newest"' in second


# -- hostile records: one broken record never breaks a list ----------------------------------


def test_corrupt_and_huge_records_render_truncated_with_a_page_of_their_own(
        browser, redis_conn, settings, webhook_secret, monkeypatch, failures):
    lead = failures["refused"]
    huge = "x" * (defaults.CONSOLE_PAYLOAD_PREVIEW_CHARACTERS * 3)
    history.append(redis_conn, lead["id"], "contact_updated", detail=huge)
    redis_conn.rpush(keys.lead_history(lead["id"]), b"\xff\xfe not json", b"[1, 2]", b'{"kind": {"nested": 1}}',
                     b"[" * 5000 + b"]" * 5000, b'{"at": "yesterday", "kind": "call", "service": 7}')
    # An event whose meta is broken, listed in the rejected index and the time index.
    redis_conn.hset(keys.event("0000000000000bad"), mapping={"body": b"\x00" * 10, "meta": b"{broken"})
    redis_conn.zadd(keys.events_by_time(), {"0000000000000bad": time.time()})
    redis_conn.zadd(keys.rejected_events(), {"0000000000000bad": time.time()})
    # A job whose failure record is not what the worker writes.
    job = Job.fetch(event_job_id(failures["updated"]["event_id"]), connection=redis_conn)
    job.meta["last_failure"] = ["not", "a", "dict"]
    job.save_meta()

    story = page(browser, f"/admin/leads/{lead['id']}")
    assert "more characters cut]" in story and len(story) < len(huge)
    link = re.search(r'<a class="whole" href="(/admin/leads/\w+/entries/(\d+))">whole entry</a>', story)
    assert link
    whole = page(browser, link[1])
    assert huge in whole
    assert story.count('data-kind="unreadable"') >= 3
    for url in ("/admin/", "/admin/failed", "/admin/retrying", "/admin/deliveries", "/admin/rejected",
                f"/admin/jobs/{job.id}", "/admin/jobs/event-0000000000000bad"):
        page(browser, url)
    assert 'data-event-id="0000000000000bad" data-outcome="unreadable"' in page(browser, "/admin/deliveries")
    assert browser.get(f"/admin/leads/{lead['id']}/entries/99999").status_code == 404

    # A huge rejected delivery with huge errors: cut short in the lists, whole on its own page.
    from bridge.storage import events

    big = events.Event(id="0000000000000b16", body=b'{"action":"created","note":"' + b"y" * 900_000 + b'"}', headers={},
                       received_at=time.time(), status="rejected", action="created", lead_id=lead["id"],
                       errors={f"activities.{n}.type": ["Not a valid choice."] for n in range(20_000)})
    redis_conn.hset(keys.event(big.id), mapping=big.to_redis())
    redis_conn.zadd(keys.events_by_time(), {big.id: big.received_at})
    redis_conn.zadd(keys.rejected_events(), {big.id: big.received_at})
    for url in ("/admin/rejected", "/admin/deliveries"):
        listed = page(browser, url)
        assert len(listed) < 300_000 and "more characters cut]" in listed, url
    whole = page(browser, f"/admin/jobs/event-{big.id}")
    assert "y" * 900_000 in whole


def test_repeats_log_is_bounded_and_never_fails_the_webhook(browser, redis_conn, webhook_secret, monkeypatch):
    import redis as redis_lib

    from bridge.storage import events

    now = time.time()
    pipe = redis_conn.pipeline()
    for n in range(5):
        events.record_duplicate(pipe, f"e{n}", now - defaults.DEDUPE_TTL_SECONDS - 100 + n, "created", None)
    pipe.execute()
    monkeypatch.setattr(defaults, "DUPLICATE_LOG_MAX_ENTRIES", 3)
    pipe = redis_conn.pipeline()
    for n in range(5):
        events.record_duplicate(pipe, f"f{n}", now + n, "created", None)
    pipe.execute()
    assert [record["of"] for record, _ in events.duplicates(redis_conn)] == ["f4", "f3", "f2"]  # old ones and the excess gone
    assert 0 < redis_conn.ttl(keys.duplicate_deliveries()) <= defaults.DEDUPE_TTL_SECONDS

    lead = deliver(browser, webhook_secret)
    repeated = {key: value for key, value in lead.items() if key != "event_id"}

    def refused(*args, **kwargs):
        raise redis_lib.ConnectionError("gone")

    monkeypatch.setattr(events, "record_duplicate", refused)
    again = signed_post(browser, WEBHOOK, repeated, webhook_secret)
    assert again.status_code in (200, 202) and again.json["status"] == "duplicate"


def test_job_page_of_a_waiting_job_says_when_and_runs_it_now(browser, outage):
    job_id = event_job_id(outage["second"]["event_id"])
    text = page(browser, f"/admin/jobs/{job_id}")
    assert 'id="job-next-attempt"><time' in text and 'id="retry-now-form"' in text and 'id="replay-form"' not in text
    done = submit(browser, f"/admin/jobs/{job_id}", "/admin/retrying/run", {"one": job_id, "next": f"/admin/jobs/{job_id}"})
    assert flash_of(done).startswith("1 job due now")


def test_poll_jobs_are_listed_apart_and_never_swept_into_a_lead_replay(browser, redis_conn, settings, failures,
                                                                      monkeypatch):
    import workers.jobs
    from bridge.queue import enqueue_poll, poll_queue

    def refused_poll(context, **_):
        raise PermanentError("poll refused")

    monkeypatch.setattr(workers.jobs.reverse, "poll", refused_poll)
    enqueue_poll(poll_queue(redis_conn), 1_700_000_000, intervals=(1,))
    run_jobs(settings, redis_conn, monkeypatch)
    text = page(browser, "/admin/failed")
    assert rows_of(text, "failed-others") == ["poll-1700000000"]
    assert "poll-1700000000" not in rows_of(text, "failed-jobs") and 'data-matching="3" data-total="3"' in text
    token = csrf_of(text)
    asked = browser.post("/admin/failed/replay", data={"scope": "matching", "csrf_token": token}).get_data(as_text=True)
    assert counts_on(asked, "by-kind") == {"lead": 3} and "poll-1700000000" not in confirm_form(asked)["job_id"]
    others = browser.post("/admin/failed/replay", data={"scope": "others", "csrf_token": token}).get_data(as_text=True)
    assert confirm_form(others)["job_id"] == ["poll-1700000000"] and counts_on(others, "by-kind") == {"poll": 1}


def test_filters_read_times_in_bridge_timezone(redis_conn, make_settings, webhook_secret, settings, monkeypatch):
    app = create_app(make_settings(admin_username=ADMIN_USER, admin_password=ADMIN_PASSWORD,
                                   bridge_timezone="Pacific/Honolulu"))
    client = app.test_client()
    assert log_in(client).status_code == 302
    lead = deliver(client, webhook_secret)
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    hawaii = datetime.now(ZoneInfo("Pacific/Honolulu"))
    before, after = ((hawaii + timedelta(minutes=delta)).strftime("%Y-%m-%dT%H:%M") for delta in (-5, 5))
    text = page(client, "/admin/deliveries")
    assert "Since (Pacific/Honolulu)" in text and lead["event_id"] in text
    assert lead["event_id"] in page(client, f"/admin/deliveries?since={before}&until={after}")
    # The same wall-clock times read as UTC would miss it by ten hours.
    assert lead["event_id"] not in page(client, f"/admin/deliveries?since={before}Z&until={after}Z")


def test_failed_jobs_told_briefly_agree_with_their_full_story(redis_conn, failures):
    from bridge.ops import jobs as job_tools

    full = job_tools.list_failed(redis_conn)
    brief = job_tools.failed_briefly(redis_conn)
    assert [job.id for job in brief] == [job.id for job in full] and len(brief) == 3
    assert [(b.action, b.error_class, b.error, b.lead_id, b.kind) for b in brief] == [
        (f.action, f.error_class, f.error, f.lead_id, f.kind) for f in full]
    assert all(abs(b.last_attempt_at - f.last_attempt_at) < 1 for b, f in zip(brief, full))
    # A job that failed before failures were kept on it is described from its story instead.
    old = Job.fetch(event_job_id(failures["refused"]["event_id"]), connection=redis_conn)
    old.meta = {"something": "else"}
    old.save_meta()
    (described,) = [job for job in job_tools.failed_briefly(redis_conn) if job.id == old.id]
    assert described.error_class == "PermanentError" and described.attempts == 1
    assert [job.id for job in job_tools.failed_briefly(redis_conn, job_tools.JobFilter(action="updated"))] == [
        event_job_id(failures["updated"]["event_id"])]
