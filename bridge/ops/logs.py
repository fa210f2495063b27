"""Structured logs: one JSON line per webhook and per job, with personal data masked."""

from __future__ import annotations

import functools
import json
import logging
import re
import sys

# Each pattern that starts with a run of characters (an e-mail's local part, a credential's
# name) may only start where that run starts (the lookbehinds): otherwise a long run without
# a match is rescanned from every one of its positions, quadratic time (an 8,000-letter value
# took seconds, freezing a worker on one hostile lead). A match starting inside a run would
# also match from the run's start, so the masking is the same.
_EMAIL = re.compile(r"(?<![A-Za-z0-9._%+-])([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9-])[A-Za-z0-9.-]*\.([A-Za-z]{2,})")
# A date-time is tried first at each position: "2026-11-22 06:32" looks like a phone number too.
_PHONE = re.compile(r"(?P<date>\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?)?)"
                    r"|(?<![\w.])\+?\d[\d\s().-]{6,}\d(?![\w.])")
_SECRET_KEYS = re.compile(r"token|secret|password|authorization|signature|api_key|user_key", re.I)
# Credentials quoted inside free text (an exception message repeating a request or an answer).
_AUTH_SCHEME = re.compile(r"\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+", re.I)
_CREDENTIAL = re.compile(r"(?<![\w-])([\w-]*(?:token|secret|password|passwd|api_?key|user_key)[\"']?\s*[:=]\s*[\"']?)"
                         r"([^\s\"',&;}]+)", re.I)

# A string of word characters with at least one that is not a digit can hold no e-mail
# (no "@"), no phone number (the phone pattern needs a non-word character or the string's
# edge on both sides of its digits, so the whole string would be digits) and no quoted
# credential (those need ":", "=" or a space): ids, actions and outcomes skip the maskers.
# Digits first, then the first non-digit: the same strings as `\w*[^\W\d]\w*`, but that
# form tries every split of a long word before failing on what follows it (quadratic).
_PLAIN_WORD = re.compile(r"\d*[^\W\d]\w*")
# Identifiers (event_id, lead_id, job_id, ...) are what support searches by: logged
# verbatim when they are a single token, even when they happen to be all digits.
_IDENTIFIER = re.compile(r"[\w.:-]+")

RQ_LOGGERS = ("rq.worker", "rq.job", "rq.queue", "rq.registry", "rq.scheduler", "rq.webhook")
"""RQ's loggers; the worker's logs a failed job's traceback, exception message included."""


def mask_email(text: str) -> str:
    """Replace every e-mail address in `text` with a masked form: j***@m***.com."""
    return _EMAIL.sub(lambda m: f"{m[1]}***@{m[2]}***.{m[3]}", text)


def mask_phone(text: str) -> str:
    """Replace every phone-like number in `text` with its last two digits only."""
    return _PHONE.sub(lambda m: m[0] if m["date"] else "***" + re.sub(r"\D", "", m[0])[-2:], text)


def mask_credentials(text: str) -> str:
    """Replace credentials written into `text` (Bearer tokens, token=..., "secret": "...") with [redacted]."""
    text = _AUTH_SCHEME.sub(lambda m: f"{m[1]} [redacted]", text)
    return _CREDENTIAL.sub(lambda m: f"{m[1]}[redacted]", text)


def scrub(value):
    """Mask personal data and drop secrets from a value about to be logged."""
    if isinstance(value, str):
        if _PLAIN_WORD.fullmatch(value):
            return value
        return mask_phone(mask_email(mask_credentials(value)))
    if isinstance(value, dict):
        return {k: _scrub_field(str(k), v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v) for v in value]
    return value


@functools.lru_cache(maxsize=1024)
def _names_secret(key: str) -> bool:
    """Whether a field named `key` holds a secret (a log line has few distinct names: cached)."""
    return _SECRET_KEYS.search(key) is not None


def _scrub_field(key: str, value):
    """Scrub one named value: secrets by name are dropped, identifiers kept, the rest masked."""
    if _names_secret(key):
        return "[redacted]"
    if key.endswith("_id") and isinstance(value, str) and _IDENTIFIER.fullmatch(value):
        return value
    return scrub(value)


class ScrubFilter(logging.Filter):
    """Masks personal data and credentials in a record's message and traceback before any handler sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_bridge_scrubbed", False):
            return True
        record.msg, record.args = scrub(record.getMessage()), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        record._bridge_scrubbed = True
        return True


def event_line(logger: logging.Logger, kind: str, **facts) -> None:
    """Write one JSON log line describing a webhook or a job."""
    if logger.isEnabledFor(logging.INFO):
        # scrubbed here field by field, so the handler's filter need not scan the line again
        logger.info(json.dumps({"kind": kind, **scrub(facts)}, default=str, separators=(",", ":")),
                    extra={"_bridge_scrubbed": True})


def configure(level: str = "INFO") -> None:
    """Send the bridge's logs to stderr, one record per line (what a Heroku log drain wants), scrubbed.

    The scrubbing filter sits on our handler (so nothing we write leaks, whichever
    library logged it) and on RQ's loggers (so their tracebacks are clean for any
    other handler too, such as an error tracker's).
    """
    for name in RQ_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, ScrubFilter) for f in logger.filters):
            logger.addFilter(ScrubFilter())
    root = logging.getLogger()
    if any(getattr(h, "_bridge", False) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ScrubFilter())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler._bridge = True
    root.addHandler(handler)
    root.setLevel(level)
