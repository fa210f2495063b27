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


class Verifier:
    """Checks signatures under one secret, its HMAC key prepared once rather than per delivery."""

    def __init__(self, secret: str):
        self._keyed = hmac.new(secret.encode("utf-8"), digestmod=hashlib.sha256)

    def ok(self, body: bytes, header_value: str | None) -> bool:
        """Whether `header_value` signs exactly these bytes; compared in constant time.

        A header that is not ASCII text (WSGI hands headers over as Latin-1) cannot be a hex
        signature, and compare_digest would raise on it: it is simply wrong.
        """
        if not header_value or not isinstance(header_value, str) or not header_value.isascii():
            return False
        mac = self._keyed.copy()
        mac.update(body)
        return hmac.compare_digest(mac.hexdigest(), header_value.strip().lower())


def signature_ok(body: bytes, header_value: str | None, secret: str) -> bool:
    """Whether `header_value` signs exactly these bytes under `secret` (see Verifier.ok)."""
    return Verifier(secret).ok(body, header_value)
