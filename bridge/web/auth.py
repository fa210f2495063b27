"""Who may use the support console and /metrics: the login check, the session, CSRF
tokens and the lockout after repeated failed logins."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

from flask import current_app, has_request_context, request, session
from flask.sessions import SecureCookieSessionInterface

from bridge import defaults
from bridge.storage import keys

CONSOLE_PATH = "/admin"
"""URL prefix of the support console."""

SESSION_PATHS = (CONSOLE_PATH, "/metrics")
"""URL prefixes where a console session means something: the console, and /metrics
(open to a logged-in support person as well as to a bearer token)."""

CSRF_FIELD = "csrf_token"
"""Name of the hidden form field that carries the CSRF token."""


class ConsoleSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session for the console (and /metrics) only, marked Secure whenever the request came over HTTPS.

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


def log_in(settings, username: str) -> None:
    """Start a fresh console session for `username` (a new session and CSRF token: no fixation)."""
    session.clear()
    session.permanent = True
    session.update(user=username, login_at=time.time(), v=_credentials_version(settings),
                   csrf=secrets.token_urlsafe(32))


def log_out() -> None:
    """End the console session."""
    session.clear()


def current_user() -> str | None:
    """The console user of this request, or None when not (or no longer) logged in.

    A session ends after ADMIN_SESSION_SECONDS, and at once when ADMIN_USERNAME or
    ADMIN_PASSWORD changes: it carries a fingerprint of the credentials it was opened with.
    """
    settings = current_app.config["BRIDGE_SETTINGS"]
    if not settings.admin_enabled:
        return None
    user, version, login_at = session.get("user"), session.get("v"), session.get("login_at")
    if not (user and isinstance(version, str) and isinstance(login_at, (int, float))):
        return None
    if time.time() - login_at > defaults.ADMIN_SESSION_SECONDS:
        return None
    if not hmac.compare_digest(version, _credentials_version(settings)):
        return None
    return user


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


def login_locked(conn, username: str, address: str) -> bool:
    """Whether this username or address failed to log in too often lately to be allowed to try."""
    subjects = _login_subjects(username, address)
    counts = conn.mget([key for key, _ in subjects])
    return any(int(count or 0) >= limit for count, (_, limit) in zip(counts, subjects))


def record_login_failure(conn, username: str, address: str) -> None:
    """Count a failed login against the username and the address; each count lapses a window after its last failure."""
    pipe = conn.pipeline(transaction=False)
    for key, _ in _login_subjects(username, address):
        pipe.incr(key)
        pipe.expire(key, defaults.ADMIN_LOGIN_WINDOW_SECONDS)
    pipe.execute()


def clear_login_failures(conn, username: str, address: str) -> None:
    """Forget the failed logins of a username and address after a successful login."""
    conn.delete(*(key for key, _ in _login_subjects(username, address)))


def _login_subjects(username: str, address: str) -> list[tuple[str, int]]:
    """The failure counters a login attempt touches, each with its limit."""
    # Hashed: the key name holds neither a typed password (users mistype into the
    # username box) nor an unbounded string.
    user = hashlib.sha256(username.casefold().encode("utf-8")).hexdigest()[:24]
    return [(keys.admin_login_failures(f"user:{user}"), defaults.ADMIN_LOGIN_MAX_FAILURES_PER_USERNAME),
            (keys.admin_login_failures(f"addr:{address}"), defaults.ADMIN_LOGIN_MAX_FAILURES_PER_ADDRESS)]


def _credentials_version(settings) -> str:
    """A fingerprint of the configured credentials, keyed with the app's secret key."""
    material = f"{settings.admin_username}\0{settings.admin_password}".encode("utf-8")
    return hmac.new(current_app.secret_key.encode("utf-8"), material, hashlib.sha256).hexdigest()[:32]
