"""Error answers in each simulated service's own shape, from one exception type."""

from __future__ import annotations

import json
import re

from flask import Response, jsonify, request

FEATHERS_NAMES = {
    400: "BadRequest", 401: "NotAuthenticated", 402: "PaymentError", 403: "Forbidden",
    404: "NotFound", 405: "MethodNotAllowed", 406: "NotAcceptable", 408: "Timeout",
    409: "Conflict", 411: "LengthRequired", 422: "Unprocessable", 429: "TooManyRequests",
    500: "GeneralError", 501: "NotImplemented", 502: "BadGateway", 503: "Unavailable",
}
"""Feathers' error classes by status (@feathersjs/errors)."""

GATEWAY_STATUSES = frozenset({502, 503})
"""Answered by the load balancer in front of a service, so the body is HTML, not the
service's JSON: clients must cope with a non-JSON error body."""


class ApiError(Exception):
    """Raised by a sandbox view: answer `status` with `message` in the service's error shape."""

    def __init__(self, status: int, message: str, errors: dict | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors or {}
        self.headers = headers or {}


def bad_request(message: str, **field_errors: str) -> ApiError:
    """A 400 naming the offending fields."""
    return ApiError(400, message, field_errors)


def not_found(what: str) -> ApiError:
    """A 404 for a record or route that does not exist."""
    return ApiError(404, f"No record found for {what}")


def json_body():
    """The request body parsed as JSON whatever its Content-Type (None when empty); 400 when not JSON."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise ApiError(400, "Invalid JSON in request body") from None


def body_object() -> dict:
    """The request's JSON body, which must be an object ({} when empty); 400 otherwise."""
    body = json_body()
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object")
    return body


def feathers_body(status: int, message: str, errors: dict | None = None) -> dict:
    """The Feathers error body {"name","message","code","className","errors"}."""
    name = FEATHERS_NAMES.get(status, "GeneralError")
    class_name = re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()
    return {"name": name, "message": message, "code": status, "className": class_name, "errors": errors or {}}


def gateway_page(status: int) -> str:
    """The HTML a load balancer sends for a 502 / 503."""
    title = {502: "502 Bad Gateway", 503: "503 Service Temporarily Unavailable"}[status]
    return f"<html><head><title>{title}</title></head><body><center><h1>{title}</h1></center></body></html>\n"


def error_response(service: str, status: int, message: str, errors: dict | None = None,
                   headers: dict | None = None) -> Response:
    """Answer an error the way `service` (liondesk | liondesk_v1 | realgeeks | control) would."""
    if status in GATEWAY_STATUSES and service != "control":
        response = Response(gateway_page(status), status=status, mimetype="text/html")
    elif service == "liondesk":
        response = jsonify(feathers_body(status, message, errors))
    elif service == "liondesk_v1":
        # Transport-level failures of v1 (the application answers errors inside a 200).
        response = jsonify({"error": status, "errorText": message})
    elif service == "realgeeks":
        response = jsonify({"error": message})
    else:
        response = jsonify({"error": message, "errors": errors or {}})
    response.status_code = status
    response.headers.update(headers or {})
    return response
