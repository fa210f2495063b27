"""GET /metrics: the Redis-backed counters in the Prometheus text format.

A custom collector reads Redis at each scrape, so the numbers are the sum over every
web and worker process on every machine, and queue depths are live.
"""

from __future__ import annotations

import redis
from flask import Blueprint, Response, abort, current_app, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from bridge.ops import status
from bridge.ops.metrics import Metrics
from bridge.web import auth

bp = Blueprint("metrics", __name__)


class RedisCollector:
    """Collects the bridge's metrics from Redis for one scrape."""

    def __init__(self, conn: redis.Redis):
        self.conn = conn

    def describe(self):
        """Describe nothing up front, so registering the collector does not read Redis."""
        return []

    def collect(self):
        """Yield every metric family, read from Redis now."""
        metrics = Metrics(self.conn)
        yield _counter("bridge_webhooks", "Webhook deliveries by outcome.", ["outcome"],
                       {(label,): value for label, value in metrics.counts("webhooks").items()})
        yield _counter("bridge_jobs", "Job runs by kind (event, poll, contact) and outcome.", ["kind", "outcome"],
                       {_job_labels(label): value for label, value in metrics.counts("jobs").items()})
        yield _counter("bridge_upstream_calls", "HTTP calls to LionDesk and Real Geeks by service and status.",
                       ["service", "status"],
                       {tuple(label.split("|", 1)): value for label, value in metrics.counts("calls").items()
                        if "|" in label})
        buckets, total = metrics.latency_histogram()
        yield HistogramMetricFamily("bridge_job_duration_seconds", "How long job runs take, in seconds.",
                                    buckets=buckets, sum_value=total)
        depth = GaugeMetricFamily("bridge_queue_depth", "Jobs waiting, scheduled for a retry, or failed.",
                                  labels=["queue"])
        for queue, count in status.queue_depths(self.conn).items():
            depth.add_metric([queue], count)
        yield depth
        intake = status.intake_backlog(self.conn)
        yield GaugeMetricFamily("bridge_intake_backlog", "Accepted deliveries not yet relayed onto the job queue.",
                                value=intake["entries"])
        yield GaugeMetricFamily("bridge_intake_oldest_seconds",
                                "Age of the oldest accepted delivery not yet relayed, in seconds.",
                                value=intake["oldest_age_seconds"] or 0.0)
        oldest = status.oldest_waiting_age(self.conn)
        yield GaugeMetricFamily("bridge_oldest_waiting_job_seconds", "Age of the job waiting longest, in seconds.",
                                value=oldest or 0.0)
        workers = status.worker_status(self.conn)
        yield GaugeMetricFamily("bridge_workers_alive", "Worker processes with a live heartbeat.", value=workers.live)
        yield GaugeMetricFamily("bridge_no_worker", "1 when no worker has beaten for a few minutes (or ever).",
                                value=1.0 if workers.no_worker else 0.0)
        yield GaugeMetricFamily("bridge_redis_full", "1 when Redis is at maxmemory and refuses writes.",
                                value=1.0 if status.redis_state(self.conn) == status.REDIS_FULL else 0.0)
        needs = status.liondesk_auth(self.conn)["state"] == status.NEEDS_REAUTHORIZATION
        yield GaugeMetricFamily("bridge_liondesk_needs_reauthorization",
                                "1 when LionDesk refused our grant and an operator must authorise again.",
                                value=1.0 if needs else 0.0)


def render(conn: redis.Redis) -> bytes:
    """Return the bridge's metrics in the Prometheus text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RedisCollector(conn))
    return generate_latest(registry)


@bp.get("/metrics")
def metrics():
    """Serve the metrics to a console user or a holder of METRICS_TOKEN; absent when neither is configured."""
    settings = current_app.config["BRIDGE_SETTINGS"]
    if not (settings.admin_enabled or settings.metrics_token):
        abort(404)
    if not (_bearer_ok(settings.metrics_token) or auth.current_user()):
        return Response("authentication required\n", 401, {"WWW-Authenticate": 'Bearer realm="metrics"'},
                        mimetype="text/plain")
    try:
        body = render(current_app.extensions["bridge.redis"])
    except redis.RedisError as exc:
        return Response(f"{status.REDIS_MESSAGES[status.REDIS_UNREACHABLE]}: {exc.__class__.__name__}\n", 503,
                        mimetype="text/plain")
    return Response(body, 200, {"Cache-Control": "no-store"}, content_type=CONTENT_TYPE_LATEST)


def _bearer_ok(token: str | None) -> bool:
    """Whether the request carries `Authorization: Bearer <token>` with the configured token."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if not (token and scheme.lower() == "bearer" and given.strip()):
        return False
    return auth.secrets_equal(given.strip(), token)


def _counter(name: str, documentation: str, labels: list[str], values: dict) -> CounterMetricFamily:
    """Build a counter family from {label values: count}."""
    family = CounterMetricFamily(name, documentation, labels=labels)
    for label_values, value in sorted(values.items()):
        family.add_metric(list(label_values), value)
    return family


def _job_labels(label: str) -> tuple[str, str]:
    """(kind, outcome) of a stored job counter; counters from before kinds were kept are event jobs."""
    kind, _, outcome = label.rpartition("|")
    return kind or "event", outcome
