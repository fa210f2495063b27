"""LionDesk OAuth2 tokens: issue, rotate, expire and revoke them (no HTTP here).

Rotation is assumed (the reference marks it unknown): every refresh returns a new
refresh token and the one used stops working at once. That is the stricter of the two
possibilities, so a client that survives the sandbox survives either. An access token
stays valid until it expires even after a refresh issued a newer one.
"""

from __future__ import annotations

import secrets
import time
from datetime import datetime, timezone
from typing import Callable

from bridge.defaults import SANDBOX_ACCESS_TOKEN_LIFETIME_SECONDS

CLIENT_ID = "sandbox-client"
CLIENT_SECRET = "sandbox-secret"
INITIAL_REFRESH_TOKEN = "sandbox-refresh-token"
DEFAULT_CODE = "sandbox-code"


class OAuthError(Exception):
    """An RFC 6749 token-endpoint error: `error` is invalid_grant, invalid_client, ..."""

    def __init__(self, status: int, error: str, description: str):
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description


class TokenStore:
    """Issued access tokens (with expiry), live refresh tokens and unused authorization codes."""

    def __init__(self, clock: Callable[[], float] = time.time,
                 lifetime_seconds: float = SANDBOX_ACCESS_TOKEN_LIFETIME_SECONDS):
        self.clock = clock
        self.lifetime_seconds = lifetime_seconds
        self.access: dict[str, float] = {}
        self.refresh: set[str] = {INITIAL_REFRESH_TOKEN}
        self.codes: set[str] = {DEFAULT_CODE}
        self.refresh_count = 0

    def check_client(self, client_id: str | None, client_secret: str | None) -> None:
        """Refuse any client but the sandbox's app."""
        if client_id != CLIENT_ID or not secrets.compare_digest(client_secret or "", CLIENT_SECRET):
            raise OAuthError(401, "invalid_client", "Client authentication failed")

    def exchange_code(self, code: str | None) -> dict:
        """Trade a one-time authorization code for a fresh token pair."""
        if code not in self.codes:
            raise OAuthError(400, "invalid_grant", "Invalid authorization code")
        self.codes.discard(code)
        return self._issue()

    def use_refresh_token(self, token: str | None) -> dict:
        """Trade a live refresh token for a new pair; the old refresh token dies (rotation)."""
        if not token or token not in self.refresh:
            raise OAuthError(400, "invalid_grant", "Invalid refresh token")
        self.refresh.discard(token)
        self.refresh_count += 1
        return self._issue()

    def new_code(self) -> str:
        """Register and return a one-time authorization code (what the consent screen hands out)."""
        code = secrets.token_hex(16)
        self.codes.add(code)
        return code

    def is_valid(self, access_token: str | None) -> bool:
        """Whether an access token was issued here and has not expired."""
        expires_at = self.access.get(access_token or "")
        return expires_at is not None and self.clock() < expires_at

    def expire_all(self) -> None:
        """Make every access token issued so far expired."""
        now = self.clock()
        self.access = {token: min(expiry, now) for token, expiry in self.access.items()}

    def revoke_refresh_tokens(self) -> None:
        """Kill every refresh token: the next refresh gets invalid_grant (the grant is gone)."""
        self.refresh.clear()

    def _issue(self) -> dict:
        """Create a token pair and answer it the way LionDesk does."""
        access, refresh = secrets.token_hex(20), secrets.token_hex(20)
        expires_at = self.clock() + self.lifetime_seconds
        self.access[access] = expires_at
        self.refresh.add(refresh)
        expires = datetime.fromtimestamp(expires_at, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        return {"access_token": access, "refresh_token": refresh, "expires": expires,
                "expires_in": int(self.lifetime_seconds), "scope": "write", "token_type": "Bearer"}
