"""Decide what a correctly signed delivery is, without any I/O.

The cheap checks run on the request path and choose the HTTP answer (`classify`); the
schema check (`schema_errors`) runs in the worker's relay, off the request path, since
its answer to Real Geeks would be a 2xx either way (see the README).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from marshmallow import ValidationError

from bridge.jsonlimits import Parsed
from bridge.intake.signature import ACTION_HEADER
from bridge.storage.events import IGNORED, QUEUED, REJECTED
from bridge.translate.realgeeks import LEAD_ACTIONS, load_event, normalize_id, schema_for


@dataclass
class Verdict:
    """What to do with one delivery and what to answer Real Geeks."""

    status: str
    http_status: int
    action: str | None = None
    lead_id: str | None = None
    errors: dict = field(default_factory=dict)
    payload: dict | None = None
    """The parsed body of a queued delivery (the intake indexes its lead for search)."""


def action_of(headers, payload) -> str | None:
    """The delivery's action: the X-Lead-Router-Action header wins over the body's `action`."""
    value = headers.get(ACTION_HEADER) or (payload.get("action") if isinstance(payload, dict) else None)
    return value.strip() if isinstance(value, str) and value.strip() else None


def _lead_id(payload: dict) -> str | None:
    """The normalised Real Geeks lead id of a payload, if it carries a usable one."""
    value = payload.get("id")
    if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip():
        return normalize_id(str(value))
    return None


def classify(parsed: Parsed, headers, partner_id: str | None) -> Verdict:
    """Classify a signed delivery, parsed once by `jsonlimits.parse`, by its shape, action and partner.

    Not JSON, past the JSON limits or not an object → 400. Another partner's delivery →
    403. No action → kept as rejected and acknowledged. Actions the bridge does not act
    on → acknowledged and recorded as ignored. Everything else is queued (its schema is
    checked by the relay). Accepted deliveries are answered 200, as Real Geeks' own
    receiver answers them; the body's status word says which of these it was.
    """
    if parsed.problem is not None:
        return Verdict(REJECTED, 400, errors={"body": [parsed.problem]})
    payload = parsed.value
    if not isinstance(payload, dict):
        return Verdict(REJECTED, 400, errors={"body": ["JSON body must be an object"]})

    action = action_of(headers, payload)
    lead_id = _lead_id(payload) if action in LEAD_ACTIONS else None
    if partner_id is not None and payload.get("partner_id") != partner_id:
        return Verdict(REJECTED, 403, action, lead_id,
                       {"partner_id": [f"expected {partner_id!r}, got {payload.get('partner_id')!r}"]})
    if action is None:
        return Verdict(REJECTED, 200, None, lead_id,
                       {"action": ["missing: neither X-Lead-Router-Action nor body action"]})
    if schema_for(action) is None:
        return Verdict(IGNORED, 200, action, lead_id)
    return Verdict(QUEUED, 200, action, lead_id, payload=payload)


def schema_errors(action: str, payload: dict) -> dict:
    """Return marshmallow's errors for a payload of `action`, or {} when it is valid."""
    try:
        load_event(action, payload)
    except ValidationError as exc:
        return exc.normalized_messages()
    return {}
