"""GET /livez: are this process and Redis answering (for platform health checks).
GET /healthz: is Redis answering, can the bridge reach LionDesk, how far behind is the queue, the last poll."""

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
    """Report Redis, LionDesk authorisation and the backlog; 503 if Redis is down or LionDesk needs re-authorising."""
    conn = current_app.extensions["bridge.redis"]
    try:
        conn.ping()
        backlog = queue_backlog(conn)
        liondesk = status.liondesk_auth(conn, current_app.config["BRIDGE_SETTINGS"])
        poll = status.poll_status(conn)
        memory = status.redis_memory(conn, current_app.config["BRIDGE_SETTINGS"])
    except redis.RedisError as exc:
        return jsonify(status="unavailable", redis=f"error: {exc.__class__.__name__}"), 503
    # The reason may quote LionDesk's answer; it is for the console, not an unauthenticated probe.
    liondesk = {"state": liondesk["state"], "since": liondesk["since"]}
    # Likewise the poll's error text: the probe gets when it ran, how far it read, and how it ended.
    poll = {name: poll.get(name) for name in ("last_run", "cursor", "outcome")}
    # Memory: used against maxmemory, and a warning well before Redis refuses writes. A full
    # Redis is not a reason to take the web process out of rotation (it still answers 503 to
    # deliveries it cannot store, and recovers by itself once room is made), so the code stays 200.
    memory = {name: memory[name] for name in ("used_bytes", "maxmemory_bytes", "percent", "level", "warning")}
    if liondesk["state"] == status.NEEDS_REAUTHORIZATION:
        return jsonify(status="needs_reauthorization", redis="ok", liondesk=liondesk, queue=backlog, poll=poll,
                       redis_memory=memory), 503
    return jsonify(status="ok", redis="ok", liondesk=liondesk, queue=backlog, poll=poll, redis_memory=memory), 200
