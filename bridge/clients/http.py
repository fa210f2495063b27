"""One way to call an upstream HTTP API: timeouts, failures as named exceptions, an observer per call.

Every client (LionDesk v2, LionDesk v1, Real Geeks) sends through `Service.request`, so
all of them time out the same way, raise the same exception classes for the same
failures, and report every call to the same kind of observer.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timezone
from email.utils import parsedate_to_datetime
from typing import Any

import requests

from bridge import defaults
from bridge.exceptions import (
    RetryableError,
    UpstreamAuthError,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)

log = logging.getLogger(__name__)

Observer = Callable[[str, str, str, "int | str", float], None]
"""Called after every call with (service, method, path, HTTP status or error class name,
duration in milliseconds); it never sees headers, query strings or bodies."""

Params = Mapping[str, Any] | Iterable[tuple[str, Any]] | None
"""Query parameters: a mapping, or (key, value) pairs when a key repeats (`field[$in]`)."""

MAX_MESSAGE_CHARS = 300
"""Longest upstream error text kept in an exception message (it ends up in lead histories)."""


def standard_error_class(status: int) -> type[UpstreamError]:
    """Map an HTTP error status to the exception that says whether trying again can help."""
    if status == 401:
        return UpstreamAuthError
    if status == 429:
        return UpstreamRateLimited
    if status == 408:  # the server gave up waiting for us: a slow network, not a bad request
        return UpstreamTimeout
    if status >= 500:
        return UpstreamUnavailable
    return UpstreamRejected


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Return a Retry-After header (delta seconds or HTTP-date) as seconds from now, or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


def error_body(response: requests.Response) -> dict | None:
    """The JSON object a failed answer carries, or None when its body is not one (HTML, text, empty, a list)."""
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def error_message(response: requests.Response) -> str:
    """Return the service's own explanation of a failed call, whatever its error shape.

    LionDesk v2 answers Feathers errors (`message`, `errors` per field), Real Geeks
    `{"error": "..."}`, LionDesk v1 `errorText`; anything else falls back to the reason.
    """
    body = error_body(response)
    message = None
    if body is not None:
        candidates = (body.get("message"), body.get("errorText"), body.get("error_description"), body.get("error"))
        message = next((str(c) for c in candidates if isinstance(c, str) and c.strip()), None)
        fields = _error_fields(body.get("errors"))
        if fields:
            message = f"{message or 'invalid fields'} (fields: {', '.join(fields)})"
    if not message:
        message = response.reason or "no explanation given"
    return f"{response.status_code} {message}"[:MAX_MESSAGE_CHARS]


def _answer_fields(response: requests.Response) -> list[str]:
    """The field names a failed answer's Feathers `errors` complains about (none when not JSON)."""
    try:
        body = response.json()
    except ValueError:
        return []
    return _error_fields(body.get("errors")) if isinstance(body, dict) else []


def _error_fields(errors: Any) -> list[str]:
    """Return the field names a Feathers `errors` value (object or list of objects) complains about."""
    if isinstance(errors, dict):
        return [str(name) for name in errors]
    if isinstance(errors, list):
        names = (e.get("path") or e.get("field") for e in errors if isinstance(e, dict))
        return [str(name) for name in names if name]
    return []


def error_for(response: requests.Response, *, service: str, method: str, path: str,
              error_class: Callable[[int], type[UpstreamError]] = standard_error_class) -> UpstreamError:
    """Build the exception that describes a failed answer (status >= 400)."""
    cls = error_class(response.status_code)
    facts = dict(service=service, status=response.status_code, method=method, path=path)
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    if cls is UpstreamRateLimited:
        return UpstreamRateLimited(f"{service}: {error_message(response)}", retry_after=retry_after, **facts)
    error = cls(f"{service}: {error_message(response)}", **facts)
    error.fields = tuple(_answer_fields(response))
    if retry_after is not None and isinstance(error, RetryableError):  # a 503 may say when to come back too
        error.retry_after = retry_after
    return error


def single_slash_url(base_url: str, path: str) -> str:
    """Join a base URL and a path with exactly one slash, collapsing any `//` in the path
    (LionDesk's documentation prints every path with a double slash)."""
    path = re.sub(r"/{2,}", "/", path)
    if not path:  # LionDesk v1 has a single endpoint: the base URL itself
        return base_url.rstrip("/")
    return base_url.rstrip("/") + "/" + path.lstrip("/")


def clean_path(path: str) -> str:
    """Return a request path with repeated slashes collapsed, as reported to observers and errors."""
    return re.sub(r"/{2,}", "/", path) or "/"


def query_pairs(params: Params) -> list[tuple[str, Any]]:
    """Return query parameters as (key, value) pairs, keeping repeated keys and expanding list values."""
    if params is None:
        return []
    items = params.items() if isinstance(params, Mapping) else params
    pairs = []
    for key, value in items:
        if isinstance(value, (list, tuple)):
            pairs.extend((key, v) for v in value)
        else:
            pairs.append((key, value))
    return pairs


@dataclass
class Service:
    """One upstream API: its name, base URL, session, and the hooks every call goes through."""

    name: str
    base_url: str
    session: requests.Session = field(default_factory=requests.Session)
    observer: Observer | None = None
    before_send: Callable[[], Any] | None = None
    error_class: Callable[[int], type[UpstreamError]] = standard_error_class
    timeout: tuple[float, float] = (defaults.HTTP_CONNECT_TIMEOUT_SECONDS, defaults.HTTP_READ_TIMEOUT_SECONDS)

    def request(self, method: str, path: str, *, params: Params = None, json_body: Any = None,
                data: bytes | None = None, headers: Mapping[str, str] | None = None, auth=None,
                check: Callable[[requests.Response], None] | None = None,
                observed_path: str | None = None, raise_for_status: bool = True) -> requests.Response:
        """Send one request and return its response; failures raise a named UpstreamError.

        `check` may raise for failures a service reports inside a 200 answer (LionDesk v1);
        `raise_for_status=False` hands error answers back to callers that read them (OAuth).
        """
        method = method.upper()
        observed_path = observed_path or clean_path(path)
        if self.before_send is not None:
            self.before_send()
        started = time.monotonic()
        outcome: int | str = "unexpected_error"
        try:
            try:
                response = self.session.request(
                    method, single_slash_url(self.base_url, path), params=query_pairs(params) or None,
                    json=json_body, data=data, headers=dict(headers or {}), auth=auth, timeout=self.timeout)
            except requests.Timeout as exc:
                outcome = UpstreamTimeout.__name__
                raise UpstreamTimeout(f"{self.name}: no answer within {self.timeout[1]} s ({exc.__class__.__name__})",
                                      service=self.name, method=method, path=observed_path) from exc
            except requests.RequestException as exc:
                outcome = UpstreamUnavailable.__name__
                raise UpstreamUnavailable(f"{self.name}: {exc.__class__.__name__}",
                                          service=self.name, method=method, path=observed_path) from exc
            outcome = response.status_code
            if response.status_code >= 400 and raise_for_status:
                raise error_for(response, service=self.name, method=method, path=observed_path,
                                error_class=self.error_class)
            if check is not None:
                try:
                    check(response)
                except UpstreamError as exc:
                    outcome = exc.__class__.__name__
                    raise
            return response
        finally:
            self._observe(method, observed_path, outcome, (time.monotonic() - started) * 1000)

    def call(self, method: str, path: str, **kwargs) -> Any:
        """Send one request and return its parsed JSON body (None when the body is empty)."""
        response = self.request(method, path, **kwargs)
        return json_of(response, service=self.name, method=method.upper(),
                       path=kwargs.get("observed_path") or clean_path(path))

    def _observe(self, method: str, path: str, outcome: int | str, duration_ms: float) -> None:
        """Tell the observer about one call; its own failure must not fail the call."""
        if self.observer is None:
            return
        try:
            self.observer(self.name, method, path, outcome, round(duration_ms, 1))
        except Exception:  # noqa: BLE001 - recording a call is secondary to making it
            log.exception("observer failed for %s %s %s", self.name, method, path)


def json_of(response: requests.Response, *, service: str, method: str, path: str) -> Any:
    """Return a successful response's JSON body, None when empty; garbage is a retryable failure
    (a proxy's HTML maintenance page answers 200 too)."""
    if not response.content or not response.content.strip():
        return None
    try:
        return response.json()
    except ValueError:
        raise UpstreamUnavailable(f"{service}: answered {response.status_code} with a body that is not JSON",
                                  service=service, status=response.status_code, method=method, path=path) from None


def encode_json(body: Any) -> bytes:
    """Serialise a request body as compact UTF-8 JSON."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
