"""LionDesk OAuth2: tokens kept in Redis, refreshed by one process at a time, and a dead grant
turned into a state operators can see and fix (`bridge liondesk authorize`).

Whether LionDesk rotates refresh tokens is unknown (docs/vendors/liondesk-api.md §2.3), so we assume
it does: a refresh answer is written to Redis, in one transaction, before its access
token is used, and two refreshes never run at once (a second one would present a refresh
token the first had already spent, and lose the grant). When an answer carries no new
refresh token we keep the old one, as the production clients do.
"""

from __future__ import annotations

import hashlib
import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone

import redis
import requests

from bridge import defaults
from bridge.clients.http import Service, error_body, error_for, error_message, json_of
from bridge.config import Settings
from bridge.exceptions import (
    BridgeError,
    LionDeskNeedsReauthorization,
    LionDeskNotConfigured,
    TokenRefreshBusy,
    UpstreamRejected,
    UpstreamUnavailable,
)
from bridge.storage import keys
from bridge.storage.locks import holding
from bridge.storage.redis import text_hash

log = logging.getLogger(__name__)

TOKEN_PATH = "/oauth2/token"

OK, NEEDS_REAUTHORIZATION, NOT_YET_AUTHORIZED, NOT_CONFIGURED = (
    "ok", "needs_reauthorization", "not_yet_authorized", "not_configured")

REFUSED_STATUSES = frozenset({400, 401, 403})
"""Token-endpoint answers meaning the grant or the app credentials are no good: trying
again cannot help, an operator must act (403 included: LionDesk uses it for an unknown
client id)."""

REFUSED_ERRORS = frozenset({"invalid_grant", "invalid_client", "unauthorized_client"})
"""OAuth2 error codes (RFC 6749 §5.2) that mean the same, whatever status carries them."""


@dataclass(frozen=True)
class Tokens:
    """The stored LionDesk token pair and when the access token expires (unix seconds, None if unknown)."""

    access_token: str | None = None
    refresh_token: str | None = None
    expires_at: float | None = None

    def usable(self, now: float, margin: float) -> bool:
        """Whether the access token exists and stays valid for more than `margin` seconds."""
        return bool(self.access_token) and (self.expires_at is None or self.expires_at - margin > now)


def fingerprint(token: str) -> str:
    """A short one-way digest of a token, to recognise it later without storing it twice."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def tokens_from_answer(answer: dict, previous_refresh_token: str | None, now: float) -> Tokens:
    """Build the token pair a token-endpoint answer grants, keeping the old refresh token if none came."""
    return Tokens(access_token=answer["access_token"],
                  refresh_token=answer.get("refresh_token") or previous_refresh_token,
                  expires_at=expiry_of(answer, now))


def expiry_of(answer: dict, now: float) -> float | None:
    """Return when a granted access token expires (unix seconds), from `expires_in` or else `expires`."""
    try:
        return now + float(answer["expires_in"])
    except (KeyError, TypeError, ValueError):
        pass
    try:
        return datetime.fromisoformat(str(answer["expires"])).timestamp()
    except (KeyError, ValueError):
        return None



def _iso(unix: float | str | None) -> str | None:
    """Format unix seconds as an ISO 8601 UTC time for people."""
    if unix in (None, ""):
        return None
    return datetime.fromtimestamp(float(unix), tz=timezone.utc).isoformat(timespec="seconds")


def read_tokens(conn: redis.Redis) -> Tokens:
    """Return the token pair stored in Redis (empty Tokens when none)."""
    return _tokens_of(conn.hgetall(keys.liondesk_tokens()))


def _tokens_of(raw: dict) -> Tokens:
    """Build Tokens from the stored hash."""
    stored = text_hash(raw)
    expires_at = stored.get("expires_at")
    return Tokens(access_token=stored.get("access_token"), refresh_token=stored.get("refresh_token"),
                  expires_at=float(expires_at) if expires_at else None)


def store_tokens(conn: redis.Redis, tokens: Tokens, now: float, event: str = "refreshed_at") -> None:
    """Replace the stored token pair and clear any needs-reauthorisation state, in one transaction."""
    fields = {"access_token": tokens.access_token, "refresh_token": tokens.refresh_token,
              "expires_at": tokens.expires_at, event: now}
    pipe = conn.pipeline(transaction=True)
    pipe.delete(keys.liondesk_tokens())
    pipe.hset(keys.liondesk_tokens(), mapping={k: v for k, v in fields.items() if v is not None})
    pipe.delete(keys.liondesk_auth_state())
    pipe.execute()


APP_CONFLICT = "LionDesk app registered under another account"
"""The named problem a 401 that is not expiry means (shown once in /healthz, the console and the CLI)."""


def record_app_conflict(conn: redis.Redis, scope: str, reason: str, now: float) -> None:
    """Record that LionDesk refused calls of `scope` (e.g. "users") for our app, why and when.

    One hash for the account: `scopes` lists what is affected; `since` is the first refusal,
    `checked_at` the latest (the client skips the scope until it is older than the recheck delay).
    """
    key = keys.liondesk_app_conflict()
    pipe = conn.pipeline(transaction=True)
    pipe.hsetnx(key, "since", now)
    pipe.hset(key, mapping={"reason": reason[:300], "checked_at": now, f"scope:{scope}": now})
    pipe.execute()


def app_conflict_checked_at(conn: redis.Redis, scope: str) -> float | None:
    """When LionDesk last refused `scope` for our app (unix seconds), or None."""
    value = conn.hget(keys.liondesk_app_conflict(), f"scope:{scope}")
    return float(value) if value else None


def clear_app_conflict(conn: redis.Redis, scope: str | None = None) -> None:
    """Forget a refusal of `scope` (it answered again), or every refusal (a new authorisation)."""
    key = keys.liondesk_app_conflict()
    if scope is None:
        conn.delete(key)
        return
    conn.hdel(key, f"scope:{scope}")
    if not any(name.startswith("scope:") for name in text_hash(conn.hgetall(key))):
        conn.delete(key)


def app_conflict(conn: redis.Redis) -> dict | None:
    """Describe a recorded app conflict for people ({problem, scopes, reason, since}), or None."""
    stored = text_hash(conn.hgetall(keys.liondesk_app_conflict()))
    scopes = sorted(name.split(":", 1)[1] for name in stored if name.startswith("scope:"))
    if not scopes:
        return None
    return {"problem": APP_CONFLICT, "scopes": scopes, "reason": stored.get("reason"),
            "since": _iso(stored.get("since"))}


def mark_needs_reauthorization(conn: redis.Redis, reason: str, refused_token: str | None, now: float) -> None:
    """Record that LionDesk refused our grant, why, when, and which refresh token it refused."""
    state = {"state": NEEDS_REAUTHORIZATION, "reason": reason, "since": now}
    if refused_token:
        state["refused"] = fingerprint(refused_token)
    conn.hset(keys.liondesk_auth_state(), mapping=state)


def auth_state(conn: redis.Redis, settings: Settings | None = None) -> dict:
    """Describe LionDesk authorisation for /healthz and `bridge liondesk status`; never any token.

    A recorded refusal comes first: it is what an operator must act on.
    """
    pipe = conn.pipeline(transaction=False)
    pipe.hgetall(keys.liondesk_auth_state())
    pipe.hgetall(keys.liondesk_tokens())
    state_raw, tokens_raw = pipe.execute()
    state, stored = text_hash(state_raw), text_hash(tokens_raw)
    conflict = app_conflict(conn)
    extra = {"app_conflict": conflict} if conflict else {}
    if state.get("state") == NEEDS_REAUTHORIZATION:
        return {"state": NEEDS_REAUTHORIZATION, "reason": state.get("reason"), "since": _iso(state.get("since")),
                **extra}
    if settings is not None and not settings.liondesk_configured:
        return {"state": NOT_CONFIGURED}
    tokens = _tokens_of(tokens_raw)
    if not (tokens.access_token or tokens.refresh_token):
        return {"state": NOT_YET_AUTHORIZED}
    return {"state": OK, "access_token_expires_at": _iso(tokens.expires_at),
            "has_refresh_token": bool(tokens.refresh_token),
            "authorized_at": _iso(stored.get("authorized_at")), "refreshed_at": _iso(stored.get("refreshed_at")),
            **extra}


def refusal_reason(response: requests.Response) -> str:
    """Explain a refused token request in one line: status, OAuth error code and description."""
    body = error_body(response)
    if body is not None and isinstance(body.get("error"), str):
        description = body.get("error_description") or body.get("message") or ""
        return f"{response.status_code} {body['error']}{': ' + str(description) if description else ''}"[:300]
    return error_message(response)


def oauth_error(response: requests.Response) -> str | None:
    """Return the OAuth2 `error` code of a token-endpoint answer, if it carries one."""
    body = error_body(response)
    return body.get("error") if body is not None and isinstance(body.get("error"), str) else None


class LionDeskAuth:
    """Hands out a valid LionDesk access token, refreshing it (one process at a time) when needed."""

    def __init__(self, settings: Settings, conn: redis.Redis, service: Service, *,
                 clock=time.time, margin: float = defaults.TOKEN_REFRESH_MARGIN_SECONDS):
        self.settings = settings
        self.conn = conn
        self.service = service
        self.clock = clock
        self.margin = margin
        self._unsaved: Tokens | None = None
        """A refresh answer Redis could not take yet: the grant itself, stored before anything else."""

    def access_token(self) -> str:
        """Return an access token good for at least the refresh margin, refreshing first if needed."""
        self._require_configured()
        tokens, state = self._load()
        if state.get("state") == NEEDS_REAUTHORIZATION:
            self._refresh_token_for(tokens, state)  # raises unless a new LIONDESK_REFRESH_TOKEN was deployed
        elif tokens.usable(self.clock(), self.margin):
            return tokens.access_token
        return self.refresh(rejected=tokens.access_token)

    def refresh(self, rejected: str | None = None) -> str:
        """Get a new access token unless another process already replaced `rejected`; return the token to use."""
        self._require_configured()
        try:
            with self._refresh_lock():
                tokens, state = self._load()
                if self._replaced(tokens, state, rejected):
                    return tokens.access_token  # another process refreshed while we waited for the lock
                refresh_token = self._refresh_token_for(tokens, state)
                body = {"grant_type": "refresh_token", "refresh_token": refresh_token}
                if self.settings.liondesk_redirect_uri:  # both production plugins send it (§10)
                    body["redirect_uri"] = self.settings.liondesk_redirect_uri
                answer = self._token_request(body, refused_token=refresh_token)
                new = tokens_from_answer(answer, refresh_token, self.clock())
                self._unsaved = new
                self._store_unsaved()  # before first use: the old refresh token may be spent
        except TokenRefreshBusy:
            tokens, state = self._load()
            if self._replaced(tokens, state, rejected):
                return tokens.access_token
            raise
        log.info("liondesk access token refreshed")
        return new.access_token

    def keep_alive(self) -> bool:
        """Refresh the grant when no token was issued for LIONDESK_KEEPALIVE_SECONDS; return whether it did.

        An account with no leads and no reverse poll makes no calls, and a refresh token
        LionDesk lets lapse (lifetime unpublished, §2.3) would lose the grant silently.
        """
        if not self.settings.liondesk_configured:
            return False
        tokens, state = self._load()
        if state.get("state") == NEEDS_REAUTHORIZATION or not (tokens.refresh_token or
                                                                self.settings.liondesk_refresh_token):
            return False
        stored = text_hash(self.conn.hgetall(keys.liondesk_tokens()))
        issued = max((float(stored[k]) for k in ("refreshed_at", "authorized_at") if stored.get(k)), default=None)
        if issued is not None and self.clock() - issued < defaults.LIONDESK_KEEPALIVE_SECONDS:
            return False
        self.refresh(rejected=tokens.access_token)
        log.info("liondesk grant kept alive with a refresh (idle account)")
        return True

    def run_keep_alive(self, stop, interval: float = defaults.LIONDESK_KEEPALIVE_CHECK_SECONDS) -> None:
        """Call `keep_alive` every `interval` seconds until `stop` (a threading.Event) is set; a worker companion.

        Failures are logged and tried again next time: a refresh LionDesk refuses marks the
        grant dead through the usual path, and a busy lock means another worker is refreshing.
        """
        while not stop.wait(interval):
            try:
                self.keep_alive()
            except (BridgeError, redis.RedisError) as exc:
                log.warning("liondesk keep-alive refresh failed (%s: %s); next try in %.0f s",
                            exc.__class__.__name__, exc, interval)

    def exchange_authorization_code(self, code: str, redirect_uri: str | None = None) -> dict:
        """Trade an authorisation code for tokens, store them, clear needs-reauthorisation; return auth_state."""
        self._require_configured()
        body = {"grant_type": "authorization_code", "code": code}
        redirect_uri = redirect_uri or self.settings.liondesk_redirect_uri
        if redirect_uri:
            body["redirect_uri"] = redirect_uri
        with self._refresh_lock():
            answer = self._token_request(body, refused_token=None)
            store_tokens(self.conn, tokens_from_answer(answer, None, self.clock()), self.clock(),
                         event="authorized_at")
            clear_app_conflict(self.conn)  # a new grant, perhaps from the right account: look again
        log.info("liondesk authorised with a new code")
        return auth_state(self.conn)

    def _require_configured(self) -> None:
        """Raise LionDeskNotConfigured when the OAuth app credentials are missing."""
        if not self.settings.liondesk_configured:
            raise LionDeskNotConfigured("LIONDESK_CLIENT_ID and LIONDESK_CLIENT_SECRET are not set")

    def _store_unsaved(self) -> None:
        """Store the refresh answer this process holds, waiting out Redis trouble for TOKEN_STORE_WAIT_SECONDS.

        LionDesk may have spent the refresh token it replaced, so the answer in hand is the grant:
        lost with a Redis blip, it would cost an operator's re-authorisation. If Redis is still away
        after the wait, the answer stays in this process and is stored before its next token use.
        """
        deadline, delay = time.monotonic() + defaults.TOKEN_STORE_WAIT_SECONDS, 0.25
        while self._unsaved is not None:
            try:
                store_tokens(self.conn, self._unsaved, self.clock())
                self._unsaved = None
            except (redis.ConnectionError, redis.TimeoutError, redis.OutOfMemoryError):
                if time.monotonic() + delay > deadline:
                    raise
                log.warning("liondesk tokens not stored yet (Redis away or full); trying again in %.2f s", delay)
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _load(self) -> tuple[Tokens, dict]:
        """Read the stored tokens and the authorisation state in one round trip (after storing unsaved ones)."""
        if self._unsaved is not None:
            self._store_unsaved()
        pipe = self.conn.pipeline(transaction=False)
        pipe.hgetall(keys.liondesk_tokens())
        pipe.hgetall(keys.liondesk_auth_state())
        tokens_raw, state_raw = pipe.execute()
        return _tokens_of(tokens_raw), text_hash(state_raw)

    def _refresh_token_for(self, tokens: Tokens, state: dict) -> str:
        """Choose the refresh token to present: the stored one wins over LIONDESK_REFRESH_TOKEN once present.

        After a refusal only a LIONDESK_REFRESH_TOKEN other than the refused one is tried:
        that is an operator deploying a new token, the one way out besides `authorize`.
        """
        env_token = self.settings.liondesk_refresh_token
        if state.get("state") == NEEDS_REAUTHORIZATION:
            if env_token and fingerprint(env_token) != state.get("refused"):
                return env_token
            raise LionDeskNeedsReauthorization(
                f"LionDesk refused our authorisation ({state.get('reason')}): run `bridge liondesk authorize`")
        token = tokens.refresh_token or env_token
        if not token:
            # Not recorded as a state: setting LIONDESK_REFRESH_TOKEN alone must be enough to start.
            raise LionDeskNeedsReauthorization(
                "no LionDesk refresh token: set LIONDESK_REFRESH_TOKEN or run `bridge liondesk authorize`")
        return token

    def _token_request(self, body: dict, *, refused_token: str | None) -> dict:
        """POST to the token endpoint and return its answer; a refusal of `refused_token` marks the grant dead."""
        body = {**body, "client_id": self.settings.liondesk_client_id,
                "client_secret": self.settings.liondesk_client_secret}
        response = self.service.request("POST", TOKEN_PATH, json_body=body, raise_for_status=False)
        if response.status_code in REFUSED_STATUSES or oauth_error(response) in REFUSED_ERRORS:
            reason = refusal_reason(response)
            if body["grant_type"] == "authorization_code":  # a bad code is the operator's typo, not a dead grant
                raise UpstreamRejected(f"liondesk refused the authorisation code: {reason}", service=self.service.name,
                                       status=response.status_code, method="POST", path=TOKEN_PATH)
            mark_needs_reauthorization(self.conn, reason, refused_token, self.clock())
            log.error("liondesk refused our refresh token (%s): needs re-authorisation", reason)
            raise LionDeskNeedsReauthorization(f"LionDesk refused our refresh token ({reason})")
        if response.status_code >= 400:
            raise error_for(response, service=self.service.name, method="POST", path=TOKEN_PATH,
                            error_class=self.service.error_class)
        answer = json_of(response, service=self.service.name, method="POST", path=TOKEN_PATH)
        if not isinstance(answer, dict) or not answer.get("access_token"):
            raise UpstreamUnavailable("liondesk token endpoint answered without an access token",
                                      service=self.service.name, status=response.status_code,
                                      method="POST", path=TOKEN_PATH)
        return answer

    def _replaced(self, tokens: Tokens, state: dict, rejected: str | None) -> bool:
        """Whether the stored access token is usable and is not the one the caller saw fail or expire."""
        return (state.get("state") != NEEDS_REAUTHORIZATION and tokens.access_token != rejected
                and tokens.usable(self.clock(), self.margin))

    @contextmanager
    def _refresh_lock(self):
        """Hold the Redis lock that allows one token request at a time across every process."""
        with holding(self.conn, keys.liondesk_token_lock(), timeout=defaults.TOKEN_REFRESH_LOCK_SECONDS,
                     wait=defaults.TOKEN_REFRESH_WAIT_SECONDS, sleep=0.05) as held:
            if not held:
                raise TokenRefreshBusy("another process is refreshing the LionDesk token and has not finished")
            yield
