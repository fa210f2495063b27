"""Who may use the support console and /metrics: the login check against the first user
(ADMIN_USERNAME) and the named users, sessions kept in Redis, CSRF tokens, and the throttle
that slows password guessing without locking anyone out."""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from dataclasses import dataclass

from flask import current_app, g, has_request_context, request, session
from flask.sessions import SecureCookieSessionInterface

from bridge import defaults
from bridge.storage import keys, sessions, users
from bridge.storage.redis import text
from bridge.translate.text import folded

CONSOLE_PATH = "/admin"
"""URL prefix of the support console."""

SESSION_PATHS = (CONSOLE_PATH, "/metrics")
"""URL prefixes where a console session means something: the console, and /metrics
(open to a logged-in support person as well as to a bearer token)."""

CSRF_FIELD = "csrf_token"
"""Name of the hidden form field that carries the CSRF token."""

DEVICE_COOKIE = "bridge_device"
"""Cookie marking a browser its user logged in from (signed; no secret in it)."""


class ConsoleSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session for the console (and /metrics) only, marked Secure whenever the request came over HTTPS.

    The cookie carries the session id (the session itself lives in Redis) and the CSRF token.

    gunicorn trusts the router's X-Forwarded-Proto (forwarded_allow_ips), so behind
    Heroku every console request is HTTPS and the cookie never travels in clear; a
    plain-HTTP local run still works.
    """

    def open_session(self, app, request):
        # Only the console and /metrics have sessions. Everything else (above all the webhook,
        # the hot path) gets Flask's null session and skips building a cookie signer per request.
        if not request.path.startswith(SESSION_PATHS):
            return None
        return super().open_session(app, request)

    def get_cookie_secure(self, app) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"] or (has_request_context() and request.is_secure))


def configure_sessions(app) -> None:
    """Give the app console sessions: HttpOnly, SameSite=Lax, Secure over HTTPS, limited lifetime."""
    app.session_interface = ConsoleSessionInterface()
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
                      SESSION_COOKIE_NAME="bridge_console",
                      PERMANENT_SESSION_LIFETIME=defaults.ADMIN_SESSION_SECONDS)


@dataclass(frozen=True)
class LoginOutcome:
    """What one login attempt came to: a user to log in, or the status and sentence to answer with."""

    outcome: str
    """ok, failed, or throttled (for the log line)."""
    status: int
    message: str | None = None
    user: str | None = None
    version: str | None = None
    retry_after: int | None = None

    @property
    def ok(self) -> bool:
        """Whether the credentials were right and the user may be logged in."""
        return self.outcome == "ok"


def attempt_login(conn, settings, username: str, password: str, address: str, device_cookie: str | None,
                  now: float | None = None) -> LoginOutcome:
    """Check one login attempt against the throttle and the credentials.

    Slowing attackers without locking out the owner: a browser that logged in to this
    account before (it holds a signed device cookie) is checked at once, whatever anyone
    else tried, up to a few failures of its own. Any other browser is held to a limit per
    address, and to a delay per account that grows with the account's recent failures up
    to ADMIN_LOGIN_MAX_DELAY_SECONDS: a botnet gets one guess a minute at the account, and
    the owner on a new browser waits that long at most, never a lockout.

    Every attempt that gets to the password check is counted before the check (and the
    count forgotten when the password is right): attempts sent all at once cannot slip
    through together while none has been counted yet.
    """
    now = time.time() if now is None else now
    device = _trusted_device(device_cookie, username, now)
    if device and not _claim(conn, f"device:{device}", defaults.ADMIN_LOGIN_MAX_FAILURES_PER_DEVICE):
        device = None  # a stolen device cookie does not buy unlimited guesses
    if device is None:
        address_full = LoginOutcome(
            "throttled", 429, f"Too many failed logins from this address. Try again in "
            f"{defaults.ADMIN_LOGIN_WINDOW_SECONDS // 60} minutes.", retry_after=defaults.ADMIN_LOGIN_WINDOW_SECONDS)
        if int(conn.get(keys.admin_login_failures(f"addr:{address}")) or 0) >= \
                defaults.ADMIN_LOGIN_MAX_FAILURES_PER_ADDRESS:
            return address_full
        wait = _claim_account(conn, username, now)
        if wait > 0:
            return LoginOutcome("throttled", 429, f"Too many failed logins for this account lately. Try again "
                                f"in {wait} seconds.", retry_after=wait)
        if not _claim(conn, f"addr:{address}", defaults.ADMIN_LOGIN_MAX_FAILURES_PER_ADDRESS):
            return address_full  # another attempt from this address took the last try a moment ago
    checked = check_credentials(conn, settings, username, password)
    if checked is None:
        return LoginOutcome("failed", 403, "Wrong username or password.")
    name, version = checked
    pipe = conn.pipeline(transaction=False)
    pipe.delete(keys.admin_login_failures(f"device:{device}" if device else f"addr:{address}"))
    if device is None:  # the right password from a new browser: whoever failed before was the owner
        pipe.delete(keys.admin_login_throttle(_account(username)))
    pipe.execute()
    return LoginOutcome("ok", 302, user=name, version=version)


# KEYS[1]: the account's throttle hash (failures, last_at).
# ARGV: now, free failures, first delay, longest delay, lifetime of the hash (seconds).
_CLAIM_ACCOUNT = """
local failures = tonumber(redis.call('HGET', KEYS[1], 'failures') or '0')
local last = tonumber(redis.call('HGET', KEYS[1], 'last_at') or '0')
local now = tonumber(ARGV[1])
local extra = failures - tonumber(ARGV[2])
if extra >= 0 then
  local delay = math.min(tonumber(ARGV[3]) * 2 ^ math.min(extra, 32), tonumber(ARGV[4]))
  local wait = delay - (now - last)
  if wait > 0 then return tostring(wait) end
end
redis.call('HINCRBY', KEYS[1], 'failures', 1)
redis.call('HSET', KEYS[1], 'last_at', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return '0'
"""


def _claim_account(conn, username: str, now: float) -> int:
    """Count an attempt at the account, unless its delay has not passed: then the seconds still to wait.

    The delay after the account's n-th recent failure: none for the first
    ADMIN_LOGIN_FREE_FAILURES_PER_ACCOUNT, then ADMIN_LOGIN_FIRST_DELAY_SECONDS doubling with
    each further one, up to ADMIN_LOGIN_MAX_DELAY_SECONDS. One script: read, decide, count.
    """
    wait = conn.eval(_CLAIM_ACCOUNT, 1, keys.admin_login_throttle(_account(username)), repr(now),
                     defaults.ADMIN_LOGIN_FREE_FAILURES_PER_ACCOUNT, defaults.ADMIN_LOGIN_FIRST_DELAY_SECONDS,
                     defaults.ADMIN_LOGIN_MAX_DELAY_SECONDS,
                     defaults.ADMIN_LOGIN_WINDOW_SECONDS + defaults.ADMIN_LOGIN_MAX_DELAY_SECONDS)
    return math.ceil(float(text(wait)))


def _claim(conn, subject: str, limit: int) -> bool:
    """Count an attempt against an address or device; whether it is within the limit. Each count
    lapses ADMIN_LOGIN_WINDOW_SECONDS after the last attempt counted."""
    pipe = conn.pipeline(transaction=True)
    pipe.incr(keys.admin_login_failures(subject))
    pipe.expire(keys.admin_login_failures(subject), defaults.ADMIN_LOGIN_WINDOW_SECONDS)
    count, _ = pipe.execute()
    return count <= limit


def check_credentials(conn, settings, username: str, password: str) -> tuple[str, str] | None:
    """The (name, password version) of the console user these credentials belong to, or None.

    ADMIN_USERNAME / ADMIN_PASSWORD is the first user; the others are stored (bridge
    admin add-user). A failure always costs one scrypt check, so the answer's timing does
    not tell whether the name is the first user's, a stored user's or nobody's.
    """
    if not settings.admin_enabled:
        return None
    if credentials_ok(settings, username, password):
        return settings.admin_username, _first_user_version(settings)
    if folded(username) == folded(settings.admin_username):
        users.burn_time(password)
        return None
    user = users.authenticate(conn, username, password)
    return (user.name, f"user:{user.version}") if user else None


def credentials_ok(settings, username: str, password: str) -> bool:
    """Whether the pair matches ADMIN_USERNAME and ADMIN_PASSWORD, in time independent of where they differ."""
    if not settings.admin_enabled:
        return False
    # Comparing digests hides the lengths too; `&` (not `and`) always compares both.
    return secrets_equal(username, settings.admin_username) & secrets_equal(password, settings.admin_password)


def secrets_equal(given: str, expected: str) -> bool:
    """Compare a given secret with the expected one in constant time, whatever their lengths."""
    return hmac.compare_digest(hashlib.sha256(given.encode("utf-8")).digest(),
                               hashlib.sha256(expected.encode("utf-8")).digest())


def log_in(conn, outcome: LoginOutcome) -> None:
    """Start a fresh console session for a successful login (a new session id and CSRF token: no fixation)."""
    session.clear()
    session.permanent = True
    session.update(sid=sessions.create(conn, outcome.user, outcome.version, client_address()),
                   csrf=secrets.token_urlsafe(32))


def log_out(conn) -> None:
    """End the console session, for every copy of its cookie."""
    sessions.end(conn, session.get("sid"))
    session.clear()


def current_user() -> str | None:
    """The console user of this request, or None when not (or no longer) logged in.

    A session ends on logout (or `bridge admin logout-all`) everywhere, since it lives in
    Redis; after ADMIN_SESSION_SECONDS; and when its user's password changes or the user
    is removed. Read once per request.
    """
    if "console_user" not in g:
        g.console_user = _session_user()
    return g.console_user


def _session_user() -> str | None:
    """Who this request's session belongs to, checked against Redis."""
    settings = current_app.config["BRIDGE_SETTINGS"]
    if not settings.admin_enabled or not isinstance(session.get("sid"), str):
        return None
    conn = current_app.extensions["bridge.redis"]
    record = sessions.load(conn, session["sid"])
    if record is None or time.time() - record.created_at > defaults.ADMIN_SESSION_SECONDS:
        return None
    if folded(record.user) == folded(settings.admin_username):
        current = _first_user_version(settings)
    else:
        user = users.get(conn, record.user)
        current = f"user:{user.version}" if user else None
    if current is None or not hmac.compare_digest(record.version, current):
        return None
    return record.user


def remember_device(response, user: str) -> None:
    """Mark the browser as one `user` logged in from: its later logins skip the throttles others caused."""
    issued = int(time.time())
    nonce = secrets.token_urlsafe(12)
    response.set_cookie(DEVICE_COOKIE, f"{issued}.{nonce}.{_device_signature(user, issued, nonce)}",
                        max_age=defaults.ADMIN_DEVICE_SECONDS, path=CONSOLE_PATH, httponly=True, samesite="Lax",
                        secure=bool(current_app.config["SESSION_COOKIE_SECURE"] or request.is_secure))


def _trusted_device(cookie: str | None, username: str, now: float) -> str | None:
    """The id of the device cookie when it was issued to `username` within its lifetime, else None."""
    try:
        issued, nonce, signature = (cookie or "").split(".")
        issued_at = int(issued)
    except ValueError:
        return None
    if now - issued_at > defaults.ADMIN_DEVICE_SECONDS:
        return None
    return nonce if hmac.compare_digest(signature, _device_signature(username, issued_at, nonce)) else None


def _device_signature(user: str, issued: int, nonce: str) -> str:
    """The signature tying a device cookie to a user name (any case) and its issue time."""
    material = f"device\0{folded(user)}\0{issued}\0{nonce}".encode("utf-8")
    return hmac.new(current_app.secret_key.encode("utf-8"), material, hashlib.sha256).hexdigest()[:32]


def csrf_token() -> str:
    """This session's CSRF token, created on first use (the login form needs one before any login)."""
    if not isinstance(session.get("csrf"), str):
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def csrf_ok(submitted: str | None) -> bool:
    """Whether a submitted form carries this session's CSRF token."""
    expected = session.get("csrf")
    if not (isinstance(expected, str) and submitted):
        return False
    return hmac.compare_digest(expected.encode(), submitted.encode())


def client_address() -> str:
    """The address of the browser behind this request.

    Heroku's router appends the address it accepted the connection from as the last
    X-Forwarded-For hop; earlier hops are whatever the client sent. Without a router a
    client could forge the header, which is why the per-username limit exists too.
    """
    hops = [hop.strip() for hop in request.headers.get("X-Forwarded-For", "").split(",") if hop.strip()]
    return (hops[-1] if hops else request.remote_addr or "unknown")[:64]


def _account(username: str) -> str:
    """The throttle's name for an account.

    Hashed: the key name holds neither a typed password (users mistype into the
    username box) nor an unbounded string.
    """
    return hashlib.sha256(folded(username).encode("utf-8")).hexdigest()[:24]


def _first_user_version(settings) -> str:
    """The password version of the first user (ADMIN_USERNAME): changing ADMIN_PASSWORD ends its sessions."""
    return f"env:{_credentials_version(settings)}"


def _credentials_version(settings) -> str:
    """A fingerprint of the configured credentials, keyed with the app's secret key."""
    material = f"{settings.admin_username}\0{settings.admin_password}".encode("utf-8")
    return hmac.new(current_app.secret_key.encode("utf-8"), material, hashlib.sha256).hexdigest()[:32]
