"""POST /webhooks/realgeeks: verify, store durably, queue, then acknowledge."""

from __future__ import annotations

import json
import logging
import time

import redis
from flask import Blueprint, Response, current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from bridge.intake.classify import classify
from bridge.jsonlimits import parse
from bridge.intake.signature import SIGNATURE_HEADER, signature_ok
from bridge.ops import logs

bp = Blueprint("webhook", __name__)
log = logging.getLogger("bridge.webhook")

# Headers worth keeping with a stored event (everything else is transport noise), with
# their WSGI environ names: reading the environ directly is O(1) per header.
KEPT_HEADERS = {name: "HTTP_" + name.upper().replace("-", "_") for name in (
    "User-Agent", "X-Lead-Router-Action", "X-Lead-Router-Signature", "X-Lead-Router-Timestamp",
    "X-Lead-Router-Message-Id", "X-Request-Id", "X-Forwarded-For")}
KEPT_HEADERS["Content-Type"] = "CONTENT_TYPE"


def _answer(http_status: int, outcome: str, started: float, *, counted: bool = False, **body) -> Response:
    """Build the JSON answer and write the one log line this delivery gets.

    Stored deliveries were already counted by the store script (`counted`); the others
    (refused before storage) are counted here.
    """
    logs.event_line(log, "webhook", outcome=outcome, http_status=http_status,
                    duration_ms=round((time.perf_counter() - started) * 1000, 2),
                    **{k: body.get(k) for k in ("event_id", "action", "lead_id") if body.get(k)})
    if not counted:
        current_app.extensions["bridge.metrics"].webhook(outcome)
    # A plain Response rather than jsonify: this is the hot path, and the answer is a flat dict.
    return Response(json.dumps({"status": outcome, **body}, separators=(",", ":")), http_status,
                    mimetype="application/json")


def _read_body(limit: int) -> bytes:
    """Read the whole request body, or raise RequestEntityTooLarge when it is over `limit` bytes.

    With a Content-Length, werkzeug refuses a larger one before reading. Without one
    (Transfer-Encoding: chunked), werkzeug's limited stream stops at the limit and hands
    back the first `limit` bytes as if they were the body, so read the server's stream
    ourselves: at most limit + 1 bytes, and one byte past the limit means too large.
    """
    if request.content_length is not None or "wsgi.input_terminated" not in request.environ:
        return request.get_data(cache=False)  # raises 413 past MAX_CONTENT_LENGTH
    stream, chunks, size = request.environ["wsgi.input"], [], 0
    while size <= limit:
        chunk = stream.read(limit + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        raise RequestEntityTooLarge()
    return b"".join(chunks)


@bp.post("/webhooks/realgeeks")
def receive():
    """Accept one Real Geeks Outgoing API delivery."""
    started = time.perf_counter()
    settings = current_app.config["BRIDGE_SETTINGS"]
    secret = settings.realgeeks_webhook_secret
    if not secret:
        # Refusing with a 5xx makes Real Geeks deliver again once the operator sets it.
        return _answer(503, "unconfigured", started, error="REALGEEKS_WEBHOOK_SECRET is not set")
    body = _read_body(current_app.config["MAX_CONTENT_LENGTH"])
    environ = request.environ
    headers = {name: environ[key] for name, key in KEPT_HEADERS.items() if key in environ}
    if not signature_ok(body, headers.get(SIGNATURE_HEADER), secret):
        return _answer(401, "bad_signature", started, error=f"missing or wrong {SIGNATURE_HEADER}")

    # Parsed once, here, within the JSON limits; nothing later in the request parses it again.
    verdict = classify(parse(body), headers, settings.realgeeks_partner_id)
    try:
        receipt = current_app.extensions["bridge.store"].store(body, headers, verdict, time.time())
    except redis.RedisError as exc:
        log.error("redis unavailable, refusing delivery: %s", exc.__class__.__name__)
        response = _answer(503, "storage_unavailable", started, error="storage unavailable, deliver again later")
        response.headers["Retry-After"] = "30"
        return response
    outcome = "duplicate" if receipt.duplicate else receipt.status
    extra = {"errors": verdict.errors} if verdict.errors else {}
    return _answer(verdict.http_status, outcome, started, counted=True, event_id=receipt.event_id,
                   action=verdict.action, lead_id=verdict.lead_id, **extra)
