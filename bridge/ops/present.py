"""How support tools show things to people: times, ages and lead-history entries.

The CLI and the console both use these, so a history entry reads the same everywhere.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

# Facts every entry carries, or that the headline of a known kind already says.
_HEADLINE_FACTS = {
    "received": ("action", "status", "event_id"),
    "processed": ("action", "attempt", "summary", "event_id"),
    "attempt_failed": ("attempt", "outcome", "error_class", "error", "event_id", "action"),
    "replayed": ("job_id", "by", "via", "event_id"),
    "dismissed": ("job_id", "by", "via", "reason", "event_id"),
    "rejected": ("action", "errors", "event_id"),
    "call": ("service", "method", "path", "status", "ms", "event_id"),
}

_SERVICE_NAMES = {"liondesk": "LionDesk", "liondesk_v1": "LionDesk v1", "realgeeks": "Real Geeks"}


def format_time(timestamp: float | None) -> str:
    """Return a unix time as `YYYY-MM-DD HH:MM:SSZ` (UTC), or "-" when unknown."""
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def iso_time(timestamp: float | None) -> str | None:
    """Return a unix time as ISO 8601 UTC for JSON output, or None when unknown."""
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).isoformat(timespec="seconds")


def format_age(seconds: float | None) -> str:
    """Return a duration as a short human reading (`45 s`, `12 min`, `3.5 h`, `2.0 d`)."""
    if seconds is None:
        return "-"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def parse_time(text: str) -> float:
    """Parse an ISO 8601 date or time (naive means UTC, as every time the tools show is) into unix seconds."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.timestamp()


def describe_entry(entry: dict, *, with_event: bool = True) -> str:
    """Return one line saying what a lead-history entry records (`with_event`: name the event it belongs to)."""
    kind = entry.get("kind", "?")
    if kind == "call":
        service = _SERVICE_NAMES.get(entry.get("service"), entry.get("service", "?"))
        line = f"{service} {entry.get('method', '?')} {entry.get('path', '?')} → {entry.get('status', '?')}"
        if entry.get("ms") is not None:
            line += f" ({entry['ms']} ms)"
    elif kind == "received":
        line = f"{entry.get('action') or 'unknown'} delivery {entry.get('status', '?')}"
        if entry.get("errors"):
            line += f": {_errors_text(entry['errors'])}"
    elif kind == "rejected":
        line = f"{entry.get('action') or 'unknown'} delivery rejected: {_errors_text(entry.get('errors') or {})}"
    elif kind == "processed":
        line = f"{entry.get('action') or 'event'} processed (attempt {entry.get('attempt', '?')})"
        if entry.get("summary"):
            line += f": {entry['summary']}"
    elif kind == "attempt_failed":
        line = (f"attempt {entry.get('attempt', '?')} failed, {entry.get('outcome', '?')}: "
                f"{entry.get('error_class', 'Error')}: {entry.get('error', '')}")
    elif kind == "replayed":
        line = f"job {entry.get('job_id', '?')} replayed by {entry.get('by', '?')} ({entry.get('via', '?')})"
    elif kind == "dismissed":
        line = (f"failed job {entry.get('job_id', '?')} dismissed by {entry.get('by', '?')} "
                f"({entry.get('via', '?')}): {entry.get('reason', '')}")
    else:
        line = kind.replace("_", " ")
    extra = other_facts(entry)
    if extra:
        line += " " + " ".join(f"{key}={_fact_text(value)}" for key, value in extra.items())
    if with_event and entry.get("event_id"):
        line += f" [event {entry['event_id']}]"
    return line


def other_facts(entry: dict) -> dict:
    """Return the facts of an entry that its headline does not already say."""
    shown = {"at", "kind", *_HEADLINE_FACTS.get(entry.get("kind"), ("event_id",))}
    return {key: value for key, value in entry.items() if key not in shown}


def pretty_body(body: bytes) -> str:
    """Return a stored webhook body for reading: indented JSON, or the raw text when it is not JSON."""
    try:
        return json.dumps(json.loads(body), indent=2, ensure_ascii=False)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return body.decode("utf-8", errors="replace")


def _errors_text(errors) -> str:
    """Flatten marshmallow-style validation errors into `field: message; ...`."""
    if isinstance(errors, dict):
        return "; ".join(f"{field}: {_errors_text(message)}" for field, message in errors.items())
    if isinstance(errors, list):
        return ", ".join(_errors_text(message) for message in errors)
    return str(errors)


def _fact_text(value) -> str:
    """Render one fact compactly: strings as they are, everything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, default=str, separators=(",", ":"))
