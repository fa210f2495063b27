"""Alerts: what each condition says and when, where it goes (chat webhook, e-mail), and
`bridge alerts test`, against a real Redis and receivers on 127.0.0.1."""

from __future__ import annotations

import time

import pytest

from bridge.cli import main
from bridge.clients.oauth import Tokens, mark_needs_reauthorization, store_tokens
from bridge.config import load_settings
from bridge.exceptions import ConfigError, PermanentError
from bridge.ops import alerts
from bridge.ops.metrics import Metrics
from bridge.queue import enqueue_event, event_job_id, event_queue
from bridge.storage import alerts as store
from bridge.storage import keys
from tests.alert_support import SmtpReceiver, WebhookReceiver
from tests.ops_support import deliver, raising, run_jobs

PUBLIC = "https://bridge.example.com"


@pytest.fixture
def receiver():
    """A chat webhook on 127.0.0.1."""
    hook = WebhookReceiver()
    yield hook
    hook.stop()


@pytest.fixture
def smtp():
    """An SMTP server on 127.0.0.1."""
    server = SmtpReceiver()
    yield server
    server.stop()


@pytest.fixture
def alerting(make_settings, receiver):
    """Settings sending alerts to the receiver, with a link base, no waiting before LionDesk alerts, and
    no no-worker alert within a week (no worker runs in these tests)."""
    return make_settings(alert_webhook_url=receiver.url, public_url=PUBLIC, alert_liondesk_failing_minutes=0,
                         alert_no_worker_minutes=7 * 24 * 60)


def tick(conn, settings, **kwargs):
    """One evaluation now, whatever process took the last period."""
    conn.delete(keys.alert_tick())
    return alerts.tick(conn, settings, **kwargs)


def kinds(messages, condition=None):
    """(condition, kind) of each message, optionally of one condition only."""
    return [(m.condition, m.kind) for m in messages if condition in (None, m.condition)]


# ---- deciding -------------------------------------------------------------------------------

CONDITION = alerts.Condition("x", "X", "/", lambda *a: None)


def seen(holds, **kwargs):
    return alerts.Observation(holds, text="broken", recovery="fixed", **kwargs)


def test_one_alert_per_window_a_reminder_after_it_and_a_recovery():
    state, hour = store.AlertState(), 3600.0
    message, state = alerts.decide(CONDITION, state, seen(True), 1000.0, hour)
    assert message.kind == alerts.PROBLEM and state.active and state.sent_at == 1000.0
    for now in (1001.0, 1000.0 + hour - 1):
        message, state = alerts.decide(CONDITION, state, seen(True), now, hour)
        assert message is None
    message, state = alerts.decide(CONDITION, state, seen(True), 1000.0 + hour, hour)
    assert message.kind == alerts.REMINDER
    message, state = alerts.decide(CONDITION, state, seen(False), 1000.0 + hour + 5, hour)
    assert (message.kind, message.text) == (alerts.RECOVERY, "fixed") and not state.active and state.since is None
    message, state = alerts.decide(CONDITION, state, seen(False), 1000.0 + hour + 6, hour)
    assert message is None  # one recovery


def test_a_flapping_condition_is_announced_once_per_window():
    state, hour = store.AlertState(), 3600.0
    sent = []
    for step in range(20):  # holds, clears, holds, ... every minute
        message, state = alerts.decide(CONDITION, state, seen(step % 2 == 0), step * 60.0, hour)
        sent.append(message and message.kind)
    assert sent.count(alerts.PROBLEM) == 1 and sent.count(alerts.RECOVERY) == 1
    message, state = alerts.decide(CONDITION, state, seen(True), hour + 1, hour)
    assert message.kind == alerts.PROBLEM  # a new window


def test_a_condition_must_hold_its_time_before_it_is_announced():
    state = store.AlertState()
    message, state = alerts.decide(CONDITION, state, seen(True, hold_for=600), 0.0, 3600)
    assert message is None and state.since == 0.0
    message, state = alerts.decide(CONDITION, state, seen(True, hold_for=600), 599.0, 3600)
    assert message is None
    message, state = alerts.decide(CONDITION, state, seen(True, hold_for=600), 600.0, 3600)
    assert message.kind == alerts.PROBLEM
    unheld = store.AlertState()
    for now in (0.0, 300.0):
        message, unheld = alerts.decide(CONDITION, unheld, seen(now == 0.0, hold_for=600), now, 3600)
    assert message is None and not unheld.active  # it cleared before its time: never announced, no recovery


def test_a_counting_condition_announces_only_news():
    state = store.AlertState()
    news = seen(True, news=True, mark=5.0, announced={"at_mark": ["a"]})
    message, state = alerts.decide(CONDITION, state, news, 0.0, 60)
    assert message.kind == alerts.PROBLEM and (state.mark, state.facts) == (5.0, {"at_mark": ["a"]})
    message, state = alerts.decide(CONDITION, state, seen(True, news=False, mark=5.0, facts=state.facts), 100.0, 60)
    assert message is None and state.facts == {"at_mark": ["a"]}  # nothing new, however long
    later = seen(True, news=True, mark=7.0, announced={"at_mark": ["b"]}, facts=state.facts)
    message, state = alerts.decide(CONDITION, state, later, 110.0, 60)
    assert message.kind == alerts.PROBLEM and state.mark == 7.0


# ---- what goes where ------------------------------------------------------------------------

@pytest.mark.parametrize("url, posted, shape", [
    ("https://hooks.slack.com/services/T0/B0/xyz", "https://hooks.slack.com/services/T0/B0/xyz", "text"),
    ("https://chat.example.org/hooks/abc123", "https://chat.example.org/hooks/abc123", "text"),  # Mattermost
    ("https://discord.com/api/webhooks/123/tok", "https://discord.com/api/webhooks/123/tok/slack", "text"),
    ("https://discord.com/api/webhooks/123/tok/slack", "https://discord.com/api/webhooks/123/tok/slack", "text"),
    ("https://prod-01.westus.logic.azure.com:443/workflows/abc/triggers/manual/paths/invoke?sig=s",
     "https://prod-01.westus.logic.azure.com:443/workflows/abc/triggers/manual/paths/invoke?sig=s", "card"),
    ("https://default1.environment.api.powerplatform.com/powerautomate/automations/direct/workflows/x",
     "https://default1.environment.api.powerplatform.com/powerautomate/automations/direct/workflows/x", "card"),
])
def test_webhook_payload_fits_the_chat_service(url, posted, shape):
    target, body = alerts.webhook_payload(url, "hello")
    assert target == posted
    if shape == "text":
        assert body == {"text": "hello"}
    else:
        (attachment,) = body["attachments"]
        assert body["type"] == "message" and attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
        assert attachment["content"]["body"][0]["text"] == "hello"


def test_chat_text_formats_nothing_a_lead_wrote():
    _, body = alerts.webhook_payload("https://hooks.slack.com/services/x",
                                     "lead Eve <!channel> @everyone & <https://evil.example|bank> mei@example.com")
    assert body["text"] == ("lead Eve &lt;!channel&gt; @\u2060everyone &amp; &lt;https://evil.example|bank&gt; "
                            "mei@\u2060example.com")
    _, card = alerts.webhook_payload("https://x.logic.azure.com/workflows/1", "a <b> @c")
    assert card["attachments"][0]["content"]["body"][0]["text"] == "a <b> @c"  # Teams: a text block, no pings


def test_a_lead_name_cannot_forge_lines_of_an_alert(alerting, receiver, redis_conn, client, webhook_secret,
                                                     monkeypatch):
    deliver(client, webhook_secret, first_name="Eve\n✅ Real Geeks → LionDesk bridge: Resolved: Leads failed")
    run_jobs(alerting, redis_conn, monkeypatch, raising(PermanentError("LionDesk said\r\nno")))
    assert kinds(tick(redis_conn, alerting)) == [("lead_failed", alerts.PROBLEM)]
    (text,) = receiver.texts
    assert not any(line.startswith("✅") for line in text.splitlines())
    assert "Eve\\n✅" in text and "LionDesk said\\r\\nno" in text


def test_render_names_the_bridge_and_links_the_page_that_fixes_it(make_settings):
    message = alerts.Message(alerts.PROBLEM, "lead_failed", "Leads failed", "2 leads failed", "/failed")
    text = alerts.render(make_settings(public_url=PUBLIC), message)
    assert text.splitlines() == ["🔴 Real Geeks → LionDesk bridge (bridge.example.com): Leads failed",
                                 "2 leads failed", f"Fix it: {PUBLIC}/admin/failed"]
    assert "set BRIDGE_PUBLIC_URL" in alerts.render(make_settings(), message)
    recovered = alerts.Message(alerts.RECOVERY, "lead_failed", "Leads failed", "none left", "/failed")
    assert alerts.render(make_settings(public_url=PUBLIC), recovered).splitlines()[0].endswith("Resolved: Leads failed")


# ---- the conditions, evaluated against a real Redis ------------------------------------------

def test_a_lead_failed_for_good_is_announced_once_with_its_name_and_error(alerting, receiver, redis_conn, client,
                                                                           webhook_secret, monkeypatch):
    lead = deliver(client, webhook_secret, first_name="Noah", last_name="Lee")
    run_jobs(alerting, redis_conn, monkeypatch, raising(PermanentError("LionDesk said 422: source unknown")))
    assert kinds(tick(redis_conn, alerting), "lead_failed") == [("lead_failed", alerts.PROBLEM)]
    (text,) = receiver.texts
    assert "1 lead failed for good" in text and f"lead {lead['id']} (Noah Lee)" in text
    assert "PermanentError: LionDesk said 422: source unknown" in text and f"{PUBLIC}/admin/failed" in text
    assert tick(redis_conn, alerting) == [] and len(receiver.posts) == 1  # the same failure: said once

    second = deliver(client, webhook_secret, first_name="Ava")
    run_jobs(alerting, redis_conn, monkeypatch, raising(PermanentError("LionDesk said 422")))
    assert tick(redis_conn, alerting) == []  # news, but within the window: it waits
    later = tick(redis_conn, alerting, now=time.time() + alerting.alert_window_minutes * 60 + 1)
    assert kinds(later) == [("lead_failed", alerts.PROBLEM)]
    text = [text for text in receiver.texts if "Leads failed" in text][-1]
    assert f"lead {second['id']} (Ava" in text and lead["id"] not in text

    for job_id in (event_job_id(lead["event_id"]), event_job_id(second["event_id"])):
        from bridge.ops import jobs as job_tools
        job_tools.dismiss(redis_conn, job_id, "test leads", by="support", via="cli")
    assert kinds(tick(redis_conn, alerting)) == [("lead_failed", alerts.RECOVERY)]
    assert "No failed leads left" in receiver.texts[-1]


@pytest.mark.parametrize("reason, words", [
    ("400 invalid_grant: refresh token revoked", "needs re-authorisation"),
    ("401 invalid_client: unknown client", "refuses the bridge's app"),
])
def test_liondesk_refusing_the_bridge_and_its_recovery(alerting, receiver, redis_conn, reason, words):
    settings = alerting.__class__(**{**alerting.__dict__, "liondesk_client_id": "id", "liondesk_client_secret": "s"})
    assert tick(redis_conn, settings) == []
    mark_needs_reauthorization(redis_conn, reason, "refresh-token", time.time())
    assert kinds(tick(redis_conn, settings)) == [("liondesk_auth", alerts.PROBLEM)]
    assert words in receiver.texts[-1] and reason in receiver.texts[-1] and f"{PUBLIC}/admin/" in receiver.texts[-1]
    assert "refresh-token" not in receiver.texts[-1]
    store_tokens(redis_conn, Tokens("access", "refresh", time.time() + 3600), time.time())
    assert kinds(tick(redis_conn, settings)) == [("liondesk_auth", alerts.RECOVERY)]


def test_an_app_conflict_the_oauth_client_records_is_announced(alerting, receiver, redis_conn):
    from bridge.clients.oauth import clear_app_conflict, record_app_conflict

    settings = alerting.__class__(**{**alerting.__dict__, "liondesk_client_id": "id", "liondesk_client_secret": "s"})
    store_tokens(redis_conn, Tokens("access", "refresh", time.time() + 3600), time.time())
    record_app_conflict(redis_conn, "contacts", "401 on /contacts with a token /me accepts", 1.8e9)
    assert kinds(tick(redis_conn, settings)) == [("liondesk_auth", alerts.PROBLEM)]
    text = receiver.texts[-1]
    assert "refuses the bridge's app since 2027-01-15" in text and "registered under another account" in text
    assert "401 on /contacts with a token /me accepts" in text
    clear_app_conflict(redis_conn, "contacts")
    assert kinds(tick(redis_conn, settings)) == [("liondesk_auth", alerts.RECOVERY)]


def test_liondesk_failing_is_read_from_the_call_counters(alerting, receiver, redis_conn):
    metrics = Metrics(redis_conn)
    metrics.call("liondesk", 200)
    assert tick(redis_conn, alerting) == []  # the first look only learns the counters
    metrics.call("liondesk", 503)
    metrics.call("liondesk_v1", "UpstreamTimeout")
    assert kinds(tick(redis_conn, alerting)) == [("liondesk_failing", alerts.PROBLEM)]
    assert "0 leads wait on their retry ladder" in receiver.texts[-1] and f"{PUBLIC}/admin/retrying" in receiver.texts[-1]
    assert tick(redis_conn, alerting) == []  # no call at all since: still failing, already said
    metrics.call("liondesk", 429)
    assert tick(redis_conn, alerting) == []
    metrics.call("liondesk", 422)  # LionDesk answered (it refused one lead): LionDesk is up
    assert kinds(tick(redis_conn, alerting)) == [("liondesk_failing", alerts.RECOVERY)]
    assert "LionDesk answers again" in receiver.texts[-1]


def test_liondesk_failing_waits_its_minutes(make_settings, receiver, redis_conn):
    settings = make_settings(alert_webhook_url=receiver.url, alert_liondesk_failing_minutes=10,
                             alert_no_worker_minutes=7 * 24 * 60)
    metrics, start = Metrics(redis_conn), time.time()
    tick(redis_conn, settings, now=start)
    metrics.call("liondesk", 503)
    assert tick(redis_conn, settings, now=start + 30) == []
    metrics.call("liondesk", 503)
    assert tick(redis_conn, settings, now=start + 30 + 599) == []
    assert kinds(tick(redis_conn, settings, now=start + 30 + 600)) == [("liondesk_failing", alerts.PROBLEM)]


def test_a_backlog_older_than_its_minutes(alerting, receiver, redis_conn):
    queue = event_queue(redis_conn)
    enqueue_event(queue, "e-backlog")
    assert tick(redis_conn, alerting) == []
    later = time.time() + alerting.alert_backlog_minutes * 60 + 1
    assert kinds(tick(redis_conn, alerting, now=later)) == [("backlog", alerts.PROBLEM)]
    assert "The oldest waiting lead has waited 15 min" in receiver.texts[-1] and "(1 waiting)" in receiver.texts[-1]
    queue.empty()
    assert kinds(tick(redis_conn, alerting, now=later + 1)) == [("backlog", alerts.RECOVERY)]


def test_a_delivery_no_relay_picked_up_is_a_backlog_too(alerting, receiver, redis_conn, client, webhook_secret):
    deliver(client, webhook_secret)  # accepted into the intake stream; no worker relays it
    assert tick(redis_conn, alerting) == []
    later = time.time() + alerting.alert_backlog_minutes * 60 + 1
    assert kinds(tick(redis_conn, alerting, now=later)) == [("backlog", alerts.PROBLEM)]
    assert "(1 waiting)" in receiver.texts[-1]


def test_redis_memory_above_its_share_of_the_limit(alerting, receiver, redis_conn):
    used = int(redis_conn.info("memory")["used_memory"])
    previous = redis_conn.config_get("maxmemory")["maxmemory"]
    try:
        redis_conn.config_set("maxmemory", int(used / 0.85))
        assert kinds(tick(redis_conn, alerting)) == [("redis_memory", alerts.PROBLEM)]
        assert "Redis uses 8" in receiver.texts[-1] and "(alert at 80 %)" in receiver.texts[-1]
        redis_conn.config_set("maxmemory", used * 4)
        assert kinds(tick(redis_conn, alerting)) == [("redis_memory", alerts.RECOVERY)]
    finally:
        redis_conn.config_set("maxmemory", previous)


def test_no_worker_waits_its_minutes(make_settings, receiver, redis_conn):
    settings, start = make_settings(alert_webhook_url=receiver.url), time.time()
    assert tick(redis_conn, settings, now=start) == []  # none registered here: the clock starts
    minutes = settings.alert_no_worker_minutes
    assert tick(redis_conn, settings, now=start + minutes * 60 - 1) == []
    assert kinds(tick(redis_conn, settings, now=start + minutes * 60)) == [("no_worker", alerts.PROBLEM)]
    assert "No worker has been seen for 5 min or more" in receiver.texts[-1]


def test_one_process_evaluates_each_period(alerting, redis_conn):
    mark_needs_reauthorization(redis_conn, "400 invalid_grant", None, time.time())
    settings = alerting.__class__(**{**alerting.__dict__, "alert_check_seconds": 60})
    redis_conn.delete(keys.alert_tick())
    assert kinds(alerts.tick(redis_conn, settings, owner="web.1")) == [("liondesk_auth", alerts.PROBLEM)]
    assert alerts.tick(redis_conn, settings, owner="worker.7") == []  # the period is taken
    assert redis_conn.get(keys.alert_tick()).startswith(b"web.1@")


def test_a_destination_that_refuses_keeps_the_alert_for_the_next_tick(alerting, receiver, redis_conn):
    mark_needs_reauthorization(redis_conn, "400 invalid_grant", None, time.time())
    receiver.status = 500
    assert tick(redis_conn, alerting) == []
    state = store.load(redis_conn, "liondesk_auth")
    assert not state.active and state.last_error == "webhook: answered 500: invalid_token"
    receiver.status = 200
    assert kinds(tick(redis_conn, alerting)) == [("liondesk_auth", alerts.PROBLEM)]
    assert len(receiver.posts) == 2 and store.load(redis_conn, "liondesk_auth").last_error is None


def test_an_unreachable_webhook_never_raises_and_never_shows_its_url(make_settings, redis_conn):
    from tests.support import free_port

    settings = make_settings(alert_webhook_url=f"http://127.0.0.1:{free_port()}/hooks/secret-token")
    problems = alerts.deliver(settings, alerts.test_message())
    assert problems == ["webhook: no answer (ConnectionError)"]


def test_an_alert_by_email(make_settings, smtp, redis_conn):
    settings = load_settings({"SMTP_URL": f"smtp://alerts%40example.com:app%20password@127.0.0.1:{smtp.port}",
                              "ALERT_EMAIL_TO": "support@example.com, ops@example.com",
                              "BRIDGE_PUBLIC_URL": PUBLIC})
    message = alerts.Message(alerts.PROBLEM, "no_worker", "No worker", "No worker has been seen", "/")
    assert alerts.deliver(settings, message) == []
    (sent,) = smtp.messages
    assert sent["auth"] == ("alerts@example.com", "app password")
    assert sent["from"] == "alerts@example.com" and sent["to"] == ["support@example.com", "ops@example.com"]
    mail = sent["message"]
    assert mail["Subject"] == "[bridge alert] No worker" and mail["To"] == "support@example.com, ops@example.com"
    body = mail.get_content()
    assert "No worker has been seen" in body and f"{PUBLIC}/admin/" in body and "🔴" in body


def test_email_upgrades_with_starttls_before_it_logs_in(tmp_path, monkeypatch):
    from tests.alert_support import self_signed_tls

    context, certificate = self_signed_tls(tmp_path)
    server = SmtpReceiver(tls=context)
    try:
        settings = load_settings({"SMTP_URL": f"smtp://alerts%40example.com:secret@localhost:{server.port}",
                                  "ALERT_EMAIL_TO": "support@example.com"})
        (problem,) = alerts.deliver(settings, alerts.test_message())  # a certificate nobody vouches for
        assert "SSLCertVerificationError" in problem and server.messages == []
        monkeypatch.setenv("SSL_CERT_FILE", certificate)  # now this machine trusts it
        assert alerts.deliver(settings, alerts.test_message()) == []
        (sent,) = server.messages
        assert sent["tls"] and sent["auth"] == ("alerts@example.com", "secret") and sent["auth_over_tls"]
    finally:
        server.stop()


def test_email_to_an_unreachable_server_is_a_sentence(make_settings):
    from tests.support import free_port

    settings = load_settings({"SMTP_URL": f"smtps://u:p@127.0.0.1:{free_port()}", "ALERT_EMAIL_TO": "a@example.com",
                              "ALERT_EMAIL_FROM": "bridge@example.com"})
    (problem,) = alerts.deliver(settings, alerts.test_message())
    assert problem.startswith("e-mail: 127.0.0.1:") and "ConnectionRefusedError" in problem and ":p@" not in problem


@pytest.mark.parametrize("host, loopback", [("localhost", True), ("127.0.0.1", True), ("::1", True),
                                            ("smtp.example.com", False), ("10.0.0.5", False)])
def test_only_a_local_relay_may_go_without_starttls(host, loopback):
    assert alerts._loopback(host) is loopback


# ---- settings and the CLI -------------------------------------------------------------------

@pytest.mark.parametrize("env, variable", [
    ({"SMTP_URL": "smtp://a%40b.co:p@mail.example.com"}, "ALERT_EMAIL_TO"),
    ({"ALERT_EMAIL_TO": "a@b.co"}, "SMTP_URL"),
    ({"SMTP_URL": "smtp://user:p@mail.example.com", "ALERT_EMAIL_TO": "a@b.co"}, "ALERT_EMAIL_FROM"),
    ({"SMTP_URL": "http://mail.example.com", "ALERT_EMAIL_TO": "a@b.co"}, "SMTP_URL"),
    ({"SMTP_URL": "smtp://a%40b.co:p@mail.example.com", "ALERT_EMAIL_TO": "not an address"}, "ALERT_EMAIL_TO"),
    ({"ALERT_WEBHOOK_URL": "hooks.slack.com/services/x"}, "ALERT_WEBHOOK_URL"),
    ({"ALERT_REDIS_MEMORY_PERCENT": "120"}, "ALERT_REDIS_MEMORY_PERCENT"),
    ({"ALERT_BACKLOG_MINUTES": "-1"}, "ALERT_BACKLOG_MINUTES"),
    ({"BRIDGE_PUBLIC_URL": "bridge.example.com"}, "BRIDGE_PUBLIC_URL"),
])
def test_alert_settings_are_checked(env, variable):
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    assert caught.value.variable == variable


@pytest.fixture
def cli(runner, redis_url):
    """Run `bridge ARGS...` against the test Redis with extra environment."""
    def invoke(*args, **env):
        return runner.invoke(main, list(args), env={"REDIS_URL": redis_url, **env})
    return invoke


def test_alerts_test_sends_one_alert_everywhere(cli, receiver, smtp):
    result = cli("alerts", "test", ALERT_WEBHOOK_URL=receiver.url, SMTP_URL=f"smtp://127.0.0.1:{smtp.port}",
                 ALERT_EMAIL_TO="support@example.com", ALERT_EMAIL_FROM="bridge@example.com")
    assert result.exit_code == 0, result.output
    assert result.stdout == "sent: test alert by webhook\nsent: test alert by e-mail\n"
    (text,) = receiver.texts
    assert text.startswith("🔔 Real Geeks → LionDesk bridge: Test alert") and "Nothing is wrong" in text
    (mail,) = smtp.messages
    assert mail["message"]["Subject"] == "[bridge test] Test alert" and mail["auth"] is None


def test_alerts_test_says_which_destination_failed(cli, receiver):
    receiver.status = 404
    result = cli("alerts", "test", ALERT_WEBHOOK_URL=receiver.url)
    assert result.exit_code == 1 and "bridge: not sent by webhook: answered 404" in result.stderr
    assert cli("alerts", "test").exit_code == 2


def test_alerts_status_lists_every_condition(cli, redis_conn, receiver):
    store.save(redis_conn, "no_worker", store.AlertState(active=True, since=1.8e9, sent_at=1.8e9 + 300,
                                                         last_error="webhook: answered 500: x"))
    result = cli("alerts", "status", ALERT_WEBHOOK_URL=receiver.url)
    lines = result.stdout.splitlines()
    assert lines[0] == "alerts go to: webhook"
    assert [line.split()[0] for line in lines[1:]] == [condition.name for condition in alerts.CONDITIONS]
    (no_worker,) = [line for line in lines if line.startswith("no_worker")]
    assert "ALERTED" in no_worker and "holds since 2027-01-15" in no_worker and "answered 500" in no_worker
