"""POST /webhooks/realgeeks: verify, store durably, queue, then acknowledge.

The endpoint is a plain WSGI app mounted in front of Flask (`mount`): a delivery needs
none of Flask's routing, request and response objects, sessions or error pages, and on
the intake's hot path they cost about as much as everything the bridge does itself.
Every other path goes on to Flask unchanged.
"""

from __future__ import annotations

import json
import logging
import time
from http import HTTPStatus

import redis

from bridge import defaults
from bridge.intake.classify import classify
from bridge.intake.signature import SIGNATURE_HEADER, Verifier
from bridge.jsonlimits import parse
from bridge.ops import logs

PATH = "/webhooks/realgeeks"
log = logging.getLogger("bridge.webhook")

# Headers worth keeping with a stored event (everything else is transport noise), with
# their WSGI environ names: reading the environ directly is O(1) per header.
KEPT_HEADERS = {name: "HTTP_" + name.upper().replace("-", "_") for name in (
    "User-Agent", "X-Lead-Router-Action", "X-Lead-Router-Signature", "X-Lead-Router-Timestamp",
    "X-Lead-Router-Message-Id", "X-Request-Id", "X-Forwarded-For")}
KEPT_HEADERS["Content-Type"] = "CONTENT_TYPE"

_STATUS_LINES = {status.value: f"{status.value} {status.phrase}" for status in HTTPStatus}


class TooLarge(Exception):
    """The body is over the limit (raised before reading more than limit + 1 bytes of it)."""


class Intake:
    """The webhook endpoint of one web process: its settings, delivery store and metrics."""

    def __init__(self, settings, store, metrics, max_body: int = defaults.WEBHOOK_MAX_BODY_BYTES):
        self.settings, self.store, self.metrics, self.max_body = settings, store, metrics, max_body
        self.verifier = Verifier(settings.realgeeks_webhook_secret) if settings.realgeeks_webhook_secret else None

    def __call__(self, environ, start_response):
        """Accept one Real Geeks Outgoing API delivery (WSGI)."""
        started = time.perf_counter()
        if environ.get("REQUEST_METHOD") != "POST":
            return self._answer(start_response, 405, "method_not_allowed", started, extra_headers=[("Allow", "POST")],
                                error="the webhook accepts POST only")
        if self.verifier is None:
            # Refusing with a 5xx makes Real Geeks deliver again once the operator sets it.
            return self._answer(start_response, 503, "unconfigured", started,
                                error="REALGEEKS_WEBHOOK_SECRET is not set")
        try:
            body = read_body(environ, self.max_body)
        except TooLarge:
            return self._answer(start_response, 413, "too_large", started,
                                error=f"the body is over {self.max_body} bytes")
        except (OSError, ValueError):
            return self._answer(start_response, 400, "incomplete_body", started,
                                error="the body did not arrive whole")
        headers = {name: environ[key] for name, key in KEPT_HEADERS.items() if key in environ}
        if not self.verifier.ok(body, headers.get(SIGNATURE_HEADER)):
            return self._answer(start_response, 401, "bad_signature", started,
                                error=f"missing or wrong {SIGNATURE_HEADER}")

        # Parsed once, here, within the JSON limits; nothing later in the request parses it again.
        verdict = classify(parse(body), headers, self.settings.realgeeks_partner_id)
        try:
            receipt = self.store.store(body, headers, verdict, time.time())
        except redis.RedisError as exc:
            log.error("redis unavailable, refusing delivery: %s", exc.__class__.__name__)
            return self._answer(start_response, 503, "storage_unavailable", started,
                                extra_headers=[("Retry-After", "30")], error="storage unavailable, deliver again later")
        # Only now, with the store call returned, may the answer be a 2xx.
        outcome = "duplicate" if receipt.duplicate else receipt.status
        extra = {"errors": verdict.errors} if verdict.errors else {}
        return self._answer(start_response, verdict.http_status, outcome, started, counted=True,
                            event_id=receipt.event_id, action=verdict.action, lead_id=verdict.lead_id, **extra)

    def _answer(self, start_response, http_status: int, outcome: str, started: float, *, counted: bool = False,
                extra_headers=(), **body) -> list[bytes]:
        """Start the JSON answer and write the one log line this delivery gets.

        Stored deliveries were already counted by the store script (`counted`); the others
        (refused before storage) are counted here.
        """
        if not counted:
            try:
                self.metrics.webhook(outcome)
            except redis.RedisError:
                pass  # a refusal is answered whether or not Redis can count it
        payload = json.dumps({"status": outcome, **body}, separators=(",", ":")).encode()
        start_response(_STATUS_LINES[http_status], [("Content-Type", "application/json"),
                                                    ("Content-Length", str(len(payload))), *extra_headers])
        logs.event_line(log, "webhook", outcome=outcome, http_status=http_status,
                        duration_ms=round((time.perf_counter() - started) * 1000, 2),
                        **{k: body[k] for k in ("event_id", "action", "lead_id") if body.get(k)})
        return [payload]


def read_body(environ, limit: int) -> bytes:
    """Read the whole request body, or raise TooLarge when it is over `limit` bytes.

    With a Content-Length, a larger one is refused before reading. Without one
    (Transfer-Encoding: chunked, which the server marks with `wsgi.input_terminated`),
    read at most limit + 1 bytes: one byte past the limit means too large. Neither means
    no body. A body shorter than its Content-Length raises ValueError.
    """
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH")
    if length:
        size = int(length)
        if size > limit:
            raise TooLarge()
        body = stream.read(size) if size else b""
        if len(body) != size:
            raise ValueError("body shorter than its Content-Length")
        return body
    if not environ.get("wsgi.input_terminated"):
        return b""
    chunks, size = [], 0
    while size <= limit:
        chunk = stream.read(limit + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        raise TooLarge()
    return b"".join(chunks)


def mount(app, intake: Intake) -> None:
    """Serve PATH with `intake` ahead of the Flask app's own routing (the WSGI middleware pattern)."""
    flask_wsgi = app.wsgi_app

    def wsgi(environ, start_response):
        if environ.get("PATH_INFO") == PATH:
            return intake(environ, start_response)
        return flask_wsgi(environ, start_response)

    app.wsgi_app = wsgi
