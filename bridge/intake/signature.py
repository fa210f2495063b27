"""The Real Geeks webhook signature: lowercase hex HMAC-SHA256 of the raw body."""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Lead-Router-Signature"
ACTION_HEADER = "X-Lead-Router-Action"
TIMESTAMP_HEADER = "X-Lead-Router-Timestamp"


def sign(body: bytes, secret: str) -> str:
    """Return the signature Real Geeks would send for `body` under `secret`."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def signature_ok(body: bytes, header_value: str | None, secret: str) -> bool:
    """Whether `header_value` signs exactly these bytes; compared in constant time.

    A header that is not ASCII text (WSGI hands headers over as Latin-1) cannot be a hex
    signature, and compare_digest would raise on it: it is simply wrong.
    """
    if not header_value or not isinstance(header_value, str) or not header_value.isascii():
        return False
    return hmac.compare_digest(sign(body, secret), header_value.strip().lower())
