"""Structured logs: one JSON line per webhook and per job, with personal data masked."""

from __future__ import annotations

import json
import logging
import re
import sys

_EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9-])[A-Za-z0-9.-]*\.([A-Za-z]{2,})")
_PHONE = re.compile(r"(?<![\w.])\+?\d[\d\s().-]{6,}\d(?![\w.])")
_SECRET_KEYS = re.compile(r"token|secret|password|authorization|signature|api_key|user_key", re.I)


def mask_email(text: str) -> str:
    """Replace every e-mail address in `text` with a masked form: j***@m***.com."""
    return _EMAIL.sub(lambda m: f"{m[1]}***@{m[2]}***.{m[3]}", text)


def mask_phone(text: str) -> str:
    """Replace every phone-like number in `text` with its last two digits only."""
    return _PHONE.sub(lambda m: "***" + re.sub(r"\D", "", m[0])[-2:], text)


def scrub(value):
    """Mask personal data and drop secrets from a value about to be logged."""
    if isinstance(value, dict):
        return {k: ("[redacted]" if _SECRET_KEYS.search(str(k)) else scrub(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v) for v in value]
    if isinstance(value, str):
        return mask_phone(mask_email(value))
    return value


def event_line(logger: logging.Logger, kind: str, **facts) -> None:
    """Write one JSON log line describing a webhook or a job."""
    if logger.isEnabledFor(logging.INFO):
        logger.info(json.dumps({"kind": kind, **scrub(facts)}, default=str, separators=(",", ":")))


def configure(level: str = "INFO") -> None:
    """Send the bridge's logs to stderr, one record per line (what a Heroku log drain wants)."""
    root = logging.getLogger()
    if any(getattr(h, "_bridge", False) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler._bridge = True
    root.addHandler(handler)
    root.setLevel(level)
