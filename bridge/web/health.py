"""GET /livez: are this process and Redis answering (for platform health checks).
GET /healthz: does Redis answer and take writes, can the bridge reach LionDesk, how far behind are the
intake and the queue, how many workers are alive (from their heartbeats), the last poll."""

from __future__ import annotations

import redis
from flask import Blueprint, current_app, jsonify

from bridge.ops import status

bp = Blueprint("health", __name__)


def queue_backlog(conn) -> dict:
    """Return the queue depths and the age in seconds of the oldest waiting job."""
    depths = status.queue_depths(conn)
    return {"depth": depths["events"], "oldest_age_seconds": status.oldest_waiting_age(conn), **depths}


@bp.get("/livez")
def livez():
    """200 when this process and Redis answer (one PING); 503 otherwise. No auth, no LionDesk."""
    try:
        current_app.extensions["bridge.redis"].ping()
    except redis.RedisError:
        return jsonify(status="unavailable"), 503
    return jsonify(status="ok"), 200


@bp.get("/healthz")
def healthz():
    """Report Redis, LionDesk authorisation, the intake backlog (accepted, not yet relayed onto the
    job queue: grows while no worker runs), the queue, the workers and the last poll.

    503 when Redis is unreachable or full (intake refuses deliveries then) or LionDesk needs
    re-authorising. No worker alive is reported (`workers.no_worker`) but stays 200: web
    processes start before workers, and platforms must not restart the web for it.
    """
    conn = current_app.extensions["bridge.redis"]
    redis_health = status.redis_health(conn)
    try:
        if redis_health["state"] == status.REDIS_UNREACHABLE:
            raise redis.ConnectionError(redis_health["message"])
        backlog = queue_backlog(conn)
        intake = status.intake_backlog(conn)
        settings = current_app.config["BRIDGE_SETTINGS"]
        liondesk = status.liondesk_auth(conn, settings)
        channels = status.liondesk_channels(conn, settings, echo=True)
        poll = status.poll_status(conn)
        workers = status.worker_status(conn)
    except redis.RedisError as exc:
        message = redis_health["message"] or f"Redis unreachable ({exc.__class__.__name__})"
        return jsonify(status="unavailable", redis=status.REDIS_UNREACHABLE, redis_message=message), 503
    # The reason may quote LionDesk's answer; it is for the console, not an unauthenticated probe.
    conflict = liondesk.get("app_conflict")
    liondesk = {"state": liondesk["state"], "since": liondesk["since"],
                "tasks_channel": channels["tasks"]["channel"], "v1": channels["v1"]["state"]}
    if conflict:  # named once here, whatever number of leads it touched
        liondesk["app_conflict"] = {"problem": conflict["problem"], "since": conflict["since"],
                                    "scopes": conflict["scopes"]}
    # Likewise the poll's error text: the probe gets when it ran, how far it read, and how it ended.
    poll = {name: poll.get(name) for name in ("last_run", "cursor", "outcome")}
    # Host names and pids are for the console too: the probe gets the count and the alarm.
    workers = {"live": workers.live, "last_seen": workers.last_seen, "silent_seconds": workers.silent_seconds,
               "no_worker": workers.no_worker, "message": workers.message}
    body = dict(redis=redis_health["state"], liondesk=liondesk, intake=intake, queue=backlog, poll=poll,
                workers=workers)
    if redis_health["state"] == status.REDIS_FULL:
        return jsonify(status="redis_full", redis_message=redis_health["message"], **body), 503
    if liondesk["state"] == status.NEEDS_REAUTHORIZATION:
        return jsonify(status="needs_reauthorization", **body), 503
    return jsonify(status="ok", **body), 200
