"""/metrics (Prometheus text over the Redis-backed counters, and who may read it) and /healthz."""

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bridge import defaults
from bridge.web import create_app
from bridge.exceptions import PermanentError
from bridge.ops.metrics import Metrics
from bridge.storage import keys
from tests.ops_support import ADMIN_PASSWORD, ADMIN_USER, deliver, log_in, raising, run_jobs
from tests.support import free_port

TOKEN = "metrics-token-for-tests-0123456789"


def samples(text: str) -> dict:
    """Parse Prometheus text into {(sample name, sorted labels): value}."""
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


@pytest.fixture
def token_client(make_settings, redis_conn):
    """A client of an app with METRICS_TOKEN set and no console."""
    return create_app(make_settings(metrics_token=TOKEN)).test_client()


def test_metrics_are_absent_when_neither_console_nor_token_is_configured(client):
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 404


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
                                     {"Authorization": "Bearer "}, {"Authorization": f"Bearer {TOKEN}x"}])
def test_metrics_refuse_a_missing_or_wrong_token(token_client, headers):
    response = token_client.get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert b"bridge_" not in response.data


def test_metrics_with_the_token_count_webhooks_jobs_calls_latency_and_queues(
        token_client, redis_conn, settings, webhook_secret, monkeypatch):
    deliver(token_client, webhook_secret)
    deliver(token_client, webhook_secret)
    run_jobs(settings, redis_conn, monkeypatch, raising(PermanentError("refused")))
    deliver(token_client, webhook_secret)  # stays waiting
    metrics = Metrics(redis_conn)
    metrics.call("liondesk", 201)
    metrics.call("liondesk", 201)
    metrics.call("realgeeks", "UpstreamTimeout")
    metrics.job("processed", "poll")  # polls are counted too, under their own kind
    redis_conn.hincrbyfloat(keys.metric("jobs"), "retrying", 1)  # a counter kept before jobs had kinds

    response = token_client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain; version=")
    found = samples(response.get_data(as_text=True))
    assert found[("bridge_webhooks_total", (("outcome", "queued"),))] == 3
    assert found[("bridge_jobs_total", (("kind", "event"), ("outcome", "failed")))] == 2
    assert found[("bridge_jobs_total", (("kind", "poll"), ("outcome", "processed")))] == 1
    assert found[("bridge_jobs_total", (("kind", "event"), ("outcome", "retrying")))] == 1
    assert found[("bridge_upstream_calls_total", (("service", "liondesk"), ("status", "201")))] == 2
    assert found[("bridge_upstream_calls_total", (("service", "realgeeks"), ("status", "UpstreamTimeout")))] == 1
    assert found[("bridge_job_duration_seconds_count", ())] == 2
    assert found[("bridge_job_duration_seconds_bucket", (("le", "+Inf"),))] == 2
    assert found[("bridge_queue_depth", (("queue", "failed"),))] == 2
    assert found[("bridge_queue_depth", (("queue", "events"),))] == 0  # the third is still in the intake stream
    assert found[("bridge_liondesk_needs_reauthorization", ())] == 0


def test_latency_histogram_buckets_are_cumulative(token_client, redis_conn):
    metrics = Metrics(redis_conn)
    for seconds in (0.01, 0.3, 0.3, 7.0, 99.0):
        metrics.observe_job_latency(seconds)
    found = samples(token_client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).get_data(as_text=True))
    bucket = {labels[0][1]: value for (name, labels), value in found.items()
              if name == "bridge_job_duration_seconds_bucket"}
    assert bucket["0.05"] == 1 and bucket["0.25"] == 1 and bucket["0.5"] == 3
    assert bucket["5.0"] == 3 and bucket["10.0"] == 4 and bucket["25.0"] == 4 and bucket["+Inf"] == 5
    assert len(bucket) == len(defaults.JOB_LATENCY_BUCKETS_SECONDS) + 1
    assert found[("bridge_job_duration_seconds_sum", ())] == pytest.approx(106.61)


def test_metrics_open_to_a_console_session_only(make_settings, redis_conn):
    client = create_app(make_settings(admin_username=ADMIN_USER, admin_password=ADMIN_PASSWORD)).test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 401
    log_in(client)
    response = client.get("/metrics")
    assert response.status_code == 200 and b"bridge_queue_depth" in response.data


def test_metrics_report_liondesk_needing_reauthorization(token_client, redis_conn):
    redis_conn.hset(keys.liondesk_auth_state(), mapping={"state": "needs_reauthorization", "reason": "invalid_grant"})
    found = samples(token_client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).get_data(as_text=True))
    assert found[("bridge_liondesk_needs_reauthorization", ())] == 1


def test_healthz_reports_redis_liondesk_and_backlog(client, redis_conn, settings, make_settings, webhook_secret):
    from workers.relay import Relay

    deliver(client, webhook_secret)
    Relay(redis_conn, "test-relay", settings.retry_intervals).drain()
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json
    assert body["status"] == "ok" and body["redis"] == "ok"
    assert body["liondesk"] == {"state": "not_configured", "since": None, "tasks_channel": "v2.1", "v1": "off"}
    assert body["queue"]["depth"] == body["queue"]["events"] == 1
    assert body["queue"]["failed"] == 0 and body["queue"]["oldest_age_seconds"] >= 0

    configured = create_app(make_settings(liondesk_client_id="id", liondesk_client_secret="secret")).test_client()
    assert configured.get("/healthz").json["liondesk"]["state"] == "not_yet_authorized"
    redis_conn.hset(keys.liondesk_tokens(), mapping={"access_token": "a", "refresh_token": "r",
                                                     "expires_at": "4102444800"})
    assert configured.get("/healthz").json["liondesk"]["state"] == "ok"


def test_healthz_is_503_when_liondesk_needs_reauthorization(client, redis_conn):
    redis_conn.hset(keys.liondesk_auth_state(), mapping={
        "state": "needs_reauthorization", "reason": "400 invalid_grant: token revoked", "since": "1700000000.5"})
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json["status"] == "needs_reauthorization"
    assert response.json["liondesk"] == {"state": "needs_reauthorization", "since": "2023-11-14T22:13:20+00:00",
                                         "tasks_channel": "v2.1", "v1": "off"}
    assert "invalid_grant" not in response.get_data(as_text=True)  # the reason is for the console only


def test_healthz_is_503_when_redis_is_down(make_settings):
    client = create_app(make_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0")).test_client()
    response = client.get("/healthz")
    assert response.status_code == 503 and response.json["status"] == "unavailable"
