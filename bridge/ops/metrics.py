"""Metrics kept in Redis, so every web and worker process on every machine adds to one count.

The /metrics endpoint renders them with prometheus_client's collector API.
"""

from __future__ import annotations

import logging

import redis

from bridge import defaults
from bridge.storage import keys
from bridge.storage.redis import text_hash

log = logging.getLogger(__name__)

LATENCY = "job_latency_seconds"
"""Metric family of the job-duration histogram: one field per bucket (not cumulative), plus `sum`."""


class Metrics:
    """Counters shared through Redis; a Redis error never breaks the caller."""

    def __init__(self, conn: redis.Redis):
        self.conn = conn

    def _incr(self, family: str, label: str, amount: float = 1) -> None:
        """Add `amount` to one labelled counter."""
        try:
            self.conn.hincrbyfloat(keys.metric(family), label, amount)
        except redis.RedisError:
            log.debug("metric %s not recorded: redis unavailable", family)

    def webhook(self, outcome: str) -> None:
        """Count one webhook delivery by outcome (queued, duplicate, ignored, rejected, ...)."""
        self._incr("webhooks", outcome)

    def job(self, outcome: str, kind: str = "event") -> None:
        """Count one job run by kind (event, poll, contact) and outcome (processed, retrying, failed, waiting)."""
        self._incr("jobs", f"{kind}|{outcome}")

    def call(self, service: str, status: str | int) -> None:
        """Count one outbound HTTP call by service and status (or error class)."""
        self._incr("calls", f"{service}|{status}")

    def observe_job_latency(self, seconds: float) -> None:
        """Count one job run's duration in its histogram bucket (JOB_LATENCY_BUCKETS_SECONDS) and in the sum."""
        bucket = next((repr(float(bound)) for bound in defaults.JOB_LATENCY_BUCKETS_SECONDS if seconds <= bound),
                      "+Inf")
        try:
            pipe = self.conn.pipeline(transaction=False)
            pipe.hincrby(keys.metric(LATENCY), bucket, 1)
            pipe.hincrbyfloat(keys.metric(LATENCY), "sum", seconds)
            pipe.execute()
        except redis.RedisError:
            log.debug("job latency not recorded: redis unavailable")

    def latency_histogram(self) -> tuple[list[tuple[str, float]], float]:
        """Return the job-duration histogram as cumulative (upper bound, count) buckets ending at +Inf, and the sum."""
        stored = self.counts(LATENCY)
        buckets, running = [], 0.0
        for bound in [repr(float(b)) for b in defaults.JOB_LATENCY_BUCKETS_SECONDS] + ["+Inf"]:
            running += stored.get(bound, 0.0)
            buckets.append((bound, running))
        return buckets, stored.get("sum", 0.0)

    def counts(self, family: str) -> dict[str, float]:
        """Return the current counters of one family."""
        return {name: float(value) for name, value in text_hash(self.conn.hgetall(keys.metric(family))).items()}
