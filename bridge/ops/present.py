"""How support tools show things to people: times, ages and lead-history entries.

The CLI and the console both use these, so a history entry reads the same everywhere.
"""

from __future__ import annotations

import itertools
import json
import re
from datetime import datetime, timezone, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bridge import defaults
from bridge.jsonlimits import parse
from bridge.storage import kinds

# Facts every entry carries, or that the headline of a known kind already says.
_HEADLINE_FACTS = {
    kinds.RECEIVED: ("action", "status", "event_id"),
    kinds.PROCESSED: ("action", "attempt", "summary", "event_id"),
    kinds.ATTEMPT_FAILED: ("attempt", "outcome", "error_class", "error", "event_id", "action", "next_attempt_at", "job_id"),
    kinds.REPLAYED: ("job_id", "by", "via", "event_id"),
    kinds.RETRIED_NOW: ("job_id", "by", "via", "event_id", "retries_left"),
    kinds.DISMISSED: ("job_id", "by", "via", "reason", "event_id"),
    kinds.REJECTED: ("action", "errors", "event_id"),
    kinds.DUPLICATE: ("action", "event_id"),
    kinds.CALL: ("service", "method", "path", "status", "ms", "event_id"),
    kinds.UNREADABLE: ("problem", "bytes"),
}

_SERVICE_NAMES = {"liondesk": "LionDesk", "liondesk_v1": "LionDesk v1", "realgeeks": "Real Geeks"}


_UNSAFE_FOR_TERMINALS = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
"""Characters a terminal acts on instead of showing: C0 and C1 controls (ESC starts ANSI
sequences that move the cursor, clear the screen or set the window title; CR and LF start
forged lines), DEL, and the Unicode line separators and bidirectional overrides that
reorder what follows them."""


def terminal_safe(text: str) -> str:
    """Return `text` with every character a terminal would act on written as a visible escape
    (ESC as `\\x1b`, a newline as `\\n`, U+202E as `\\u202e`), for plain-text CLI output."""
    return _UNSAFE_FOR_TERMINALS.sub(_escape, text)


def _escape(match: re.Match) -> str:
    """The visible escape of one unsafe character, as Python writes it in a string literal."""
    char = match.group()
    return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char) or (
        f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")


def format_time(timestamp: float | None, zone: tzinfo | None = None) -> str:
    """Return a unix time as `YYYY-MM-DD HH:MM:SSZ` (UTC), or in `zone` as `YYYY-MM-DD HH:MM:SS TZ`; "-" when unknown."""
    moment = _moment(timestamp)
    if moment is None:
        return "-"
    if zone is None or zone.utcoffset(moment) is None or _is_utc(zone):
        return moment.strftime("%Y-%m-%d %H:%M:%SZ")
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %Z")


def time_zone(name: str | None) -> tzinfo:
    """The IANA time zone called `name` (None or blank: UTC); raises ValueError for an unknown name."""
    if not name or not name.strip():
        return timezone.utc
    return _zone(name.strip())


@lru_cache(maxsize=16)
def _zone(name: str) -> tzinfo:
    """ZoneInfo of a name, read once per process (the tz database is a file per zone)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (an IANA name such as America/Los_Angeles)") from None


def _is_utc(zone: tzinfo) -> bool:
    """Whether a zone is UTC itself (shown with the short `Z` suffix)."""
    return zone is timezone.utc or getattr(zone, "key", None) in ("UTC", "Etc/UTC")


def iso_time(timestamp: float | None) -> str | None:
    """Return a unix time as ISO 8601 UTC for JSON output, or None when unknown."""
    moment = _moment(timestamp)
    return moment.isoformat(timespec="seconds") if moment else None


def _moment(timestamp) -> datetime | None:
    """A unix time as a UTC datetime, or None when it is missing or not a usable time (a stored record may hold anything)."""
    if not isinstance(timestamp, (int, float)) or isinstance(timestamp, bool):
        return None
    try:
        return datetime.fromtimestamp(timestamp, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


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


def parse_time(text: str, zone: tzinfo | None = None) -> float:
    """Parse an ISO 8601 date or time into unix seconds; one without an offset is in `zone` (None: UTC)."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone or timezone.utc)
    return value.timestamp()


def describe_entry(entry: dict, *, with_event: bool = True, zone: tzinfo | None = None,
                   limit: int | None = defaults.CONSOLE_PAYLOAD_PREVIEW_CHARACTERS) -> str:
    """Return one line saying what a lead-history entry records (`with_event`: name the event it belongs to;
    `zone`: where times it mentions are shown).

    Whatever a stored entry holds (another type, a huge or deeply nested fact), the line
    is text of at most `limit` characters (None: whole) and a note of what was cut.
    """
    if not isinstance(entry, dict):
        return clip(f"unreadable entry: {_fact_text(entry)}", limit)
    kind = entry.get("kind")
    kind = kind if isinstance(kind, str) and kind else "?"
    if kind == kinds.CALL:
        service = _SERVICE_NAMES.get(entry.get("service"), entry.get("service", "?"))
        line = f"{service} {entry.get('method', '?')} {entry.get('path', '?')} → {entry.get('status', '?')}"
        if entry.get("ms") is not None:
            line += f" ({entry['ms']} ms)"
    elif kind == kinds.RECEIVED:
        line = f"{entry.get('action') or 'unknown'} delivery {entry.get('status', '?')}"
        if entry.get("errors"):
            line += f": {_errors_text(entry['errors'])}"
    elif kind == kinds.REJECTED:
        line = f"{entry.get('action') or 'unknown'} delivery rejected: {_errors_text(entry.get('errors') or {})}"
    elif kind == kinds.DUPLICATE:
        line = f"{entry.get('action') or 'unknown'} delivery repeated an earlier one: acknowledged, nothing to do"
    elif kind == kinds.PROCESSED:
        line = f"{entry.get('action') or 'event'} processed (attempt {entry.get('attempt', '?')})"
        if entry.get("summary"):
            line += f": {entry['summary']}"
    elif kind == kinds.ATTEMPT_FAILED:
        line = (f"attempt {entry.get('attempt', '?')} failed, {entry.get('outcome', '?')}: "
                f"{entry.get('error_class', 'Error')}: {entry.get('error', '')}")
        if _moment(entry.get("next_attempt_at")) is not None:
            line += f"; next attempt at {format_time(entry['next_attempt_at'], zone)}"
    elif kind == kinds.REPLAYED:
        line = f"job {entry.get('job_id', '?')} replayed by {entry.get('by', '?')} ({entry.get('via', '?')})"
    elif kind == kinds.RETRIED_NOW:
        line = (f"job {entry.get('job_id', '?')} run now by {entry.get('by', '?')} ({entry.get('via', '?')}), "
                f"ahead of its next attempt; it counts as one of its retries")
    elif kind == kinds.DISMISSED:
        line = (f"failed job {entry.get('job_id', '?')} dismissed by {entry.get('by', '?')} "
                f"({entry.get('via', '?')}): {entry.get('reason', '')}")
    elif kind == kinds.UNREADABLE:  # history.read's placeholder for an entry past the JSON limits
        line = f"unreadable entry ({entry.get('bytes', '?')} bytes): {entry.get('problem', '?')}"
    else:
        line = kind.replace("_", " ")
    extra = other_facts(entry)
    if extra:
        line += " " + " ".join(f"{key}={_fact_text(value)}" for key, value in extra.items())
    if with_event and entry.get("event_id"):
        line += f" [event {_fact_text(entry['event_id'])}]"
    return clip(line, limit)


def other_facts(entry: dict) -> dict:
    """Return the facts of an entry that its headline does not already say."""
    kind = entry.get("kind")
    shown = {"at", "kind", *_HEADLINE_FACTS.get(kind if isinstance(kind, str) else None, ("event_id",))}
    return {key: value for key, value in entry.items() if key not in shown}


def pretty_body(body: bytes, limit: int | None = None) -> str:
    """Return a stored webhook body for reading: indented JSON, or the raw text when it is not
    JSON within the intake's limits; cut at `limit` characters (None: whole) with a note."""
    if isinstance(body, str):
        body = body.encode("utf-8", errors="replace")
    elif not isinstance(body, bytes):
        return clip(_fact_text(body), limit)
    if limit is not None and len(body) > limit:
        # Far too long to show whole: indenting all of it only to cut it would cost for nothing.
        return clip(body.decode("utf-8", errors="replace"), limit)
    parsed = parse(body)
    if parsed.problem is None:
        return clip(json.dumps(parsed.value, indent=2, ensure_ascii=False), limit)
    return clip(body.decode("utf-8", errors="replace"), limit)


def clip(text: str, limit: int | None = defaults.CONSOLE_PAYLOAD_PREVIEW_CHARACTERS) -> str:
    """Return `text` cut to `limit` characters (None: whole), saying how many were cut."""
    if limit is None or len(text) <= limit:
        return text
    return f"{text[:limit]} … [{len(text) - limit:,} more characters cut]"


def shown(value, limit: int | None = defaults.CONSOLE_PAYLOAD_PREVIEW_CHARACTERS) -> str:
    """Return any stored value as text for a page (nothing for None), cut at `limit` characters."""
    if value is None:
        return ""
    return clip(value if isinstance(value, str) else _fact_text(value), limit)


def error_items(errors, limit: int | None = defaults.CONSOLE_PAYLOAD_PREVIEW_CHARACTERS,
                most: int = defaults.CONSOLE_ERROR_FIELDS) -> list[tuple[str, str]]:
    """Return stored validation errors as (field, message text) pairs, whatever their type; past `most`
    fields, one last pair says how many more there are."""
    if isinstance(errors, dict):
        items = [(clip(str(field), 200), shown(messages, limit)) for field, messages in itertools.islice(errors.items(), most)]
        if len(errors) > most:
            items.append(("", f"… and {len(errors) - most:,} more fields with errors"))
        return items
    if errors in (None, "", [], ()):
        return []
    return [("", shown(errors, limit))]


def errors_sentence(errors) -> str:
    """Validation errors as plain sentences for people: `The email field: Not a valid email address.`"""
    items = error_items(errors, 500)
    if not items:
        return "The delivery was not valid."
    sentences = []
    for field_name, message in items:
        message = _errors_text(_unjson(message)).strip() or "is not valid"
        message = message if message.endswith(".") else message + "."
        sentences.append(f"{field_name.replace('_', ' ').capitalize()}: {message}" if field_name else message)
    return clip(" ".join(sentences), 2000)


def _unjson(text: str):
    """A compact JSON rendering back to data when it is one (error lists were shown as JSON), else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _errors_text(errors, depth: int = 0) -> str:
    """Flatten marshmallow-style validation errors into `field: message; ...` (past 20 levels: …)."""
    if depth > 20:
        return "…"
    if isinstance(errors, dict):
        return "; ".join(f"{field}: {_errors_text(message, depth + 1)}" for field, message in errors.items())
    if isinstance(errors, list):
        return ", ".join(_errors_text(message, depth + 1) for message in errors)
    return _fact_text(errors)


def _fact_text(value) -> str:
    """Render one fact compactly: strings as they are, everything else as JSON (or a note when it cannot be)."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, default=str, separators=(",", ":"))
    except (RecursionError, ValueError, TypeError):  # nested too deeply, an int too long to print
        return f"<{type(value).__name__} that cannot be shown>"
