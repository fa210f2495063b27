"""GET /healthz: is Redis answering, and how far behind is the queue."""

from __future__ import annotations

import time
from datetime import timezone

import redis
from flask import Blueprint, current_app, jsonify

from workers.queue import event_queue

bp = Blueprint("health", __name__)


def queue_backlog(conn) -> dict:
    """Return the event queue's depth and the age in seconds of its oldest waiting job."""
    queue = event_queue(conn)
    depth = queue.count
    oldest_age = None
    head = queue.get_job_ids(0, 1)
    job = queue.fetch_job(head[0]) if head else None
    if job is not None and job.enqueued_at is not None:
        enqueued = job.enqueued_at
        if enqueued.tzinfo is None:  # RQ stores naive UTC
            enqueued = enqueued.replace(tzinfo=timezone.utc)
        oldest_age = round(time.time() - enqueued.timestamp(), 1)
    return {"depth": depth, "oldest_age_seconds": oldest_age}


@bp.get("/healthz")
def healthz():
    """Report Redis reachability and the queue backlog; 503 when Redis is down."""
    conn = current_app.extensions["bridge.redis"]
    try:
        conn.ping()
        backlog = queue_backlog(conn)
    except redis.RedisError as exc:
        return jsonify(status="unavailable", redis=f"error: {exc.__class__.__name__}"), 503
    return jsonify(status="ok", redis="ok", queue=backlog), 200
