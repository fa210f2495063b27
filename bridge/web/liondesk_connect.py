"""The console's "Connect LionDesk" round trip, so re-authorising needs no shell:
GET /admin/liondesk/connect → LionDesk's authorize page → GET /admin/liondesk/callback?code&state.

Behind the console login, like every /admin page. `state` is a random one-time value kept in
Redis for LIONDESK_CONNECT_STATE_SECONDS and bound to the console user who started the round
trip (RFC 6749 §10.12: a callback without our state, or another user's, is refused), so no
one can plant their own LionDesk account's code in our bridge. The redirect URI is
LIONDESK_REDIRECT_URI when set (it must be the one registered on the LionDesk app), else
this callback's own URL. Scopes as production clients ask: "write read" (§2.1).
"""

from __future__ import annotations

import logging
import secrets
from urllib.parse import urlencode

from flask import Blueprint, abort, current_app, redirect, render_template, request, url_for

from bridge import defaults
from bridge.clients.liondesk import LionDeskClient
from bridge.exceptions import BridgeError
from bridge.storage import keys
from bridge.web import auth
from bridge.web import console as admin

# Its page, templates/liondesk_connect.html, sits with the console's (whose folder Flask searches too).
bp = Blueprint("liondesk_connect", __name__, url_prefix=f"{auth.CONSOLE_PATH}/liondesk")
log = logging.getLogger("bridge.admin")

SCOPES = "write read"
"""The scopes the production plugins ask for (space-delimited, docs/vendors/liondesk-api.md §2.1)."""


def init_app(app) -> None:
    """Mount the connect pages when the console is on (they need its login)."""
    if app.config["BRIDGE_SETTINGS"].admin_enabled:
        app.register_blueprint(bp)


bp.context_processor(admin._template_globals)


@bp.before_request
def _guard():
    """Only a logged-in console user may connect LionDesk."""
    if auth.current_user() is None:
        return redirect(url_for("admin.login", next=request.full_path.rstrip("?")))
    return None


@bp.after_request
def _headers(response):
    """The console's cache and framing rules."""
    for name, value in admin.SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def _redirect_uri() -> str:
    """Where LionDesk sends the browser back: LIONDESK_REDIRECT_URI, else this callback."""
    settings = current_app.config["BRIDGE_SETTINGS"]
    return settings.liondesk_redirect_uri or url_for(".callback", _external=True)


@bp.get("/connect")
def connect():
    """Start the round trip: remember a fresh `state` for this user and send the browser to LionDesk."""
    settings = current_app.config["BRIDGE_SETTINGS"]
    if not settings.liondesk_configured:
        return render_template("liondesk_connect.html", outcome="not_configured"), 409
    state = secrets.token_urlsafe(24)
    current_app.extensions["bridge.redis"].set(keys.liondesk_connect_state(state), auth.current_user(),
                                               ex=defaults.LIONDESK_CONNECT_STATE_SECONDS)
    query = urlencode({"response_type": "code", "client_id": settings.liondesk_client_id,
                       "redirect_uri": _redirect_uri(), "scope": SCOPES, "state": state})
    return redirect(f"{settings.liondesk_api_url.rstrip('/')}/oauth2/authorize?{query}")


@bp.get("/callback")
def callback():
    """Finish the round trip: check `state`, trade the code for tokens, show whose account is connected."""
    conn = current_app.extensions["bridge.redis"]
    state, code = request.args.get("state") or "", request.args.get("code") or ""
    owner = conn.getdel(keys.liondesk_connect_state(state)) if state else None
    if owner is None or owner.decode() != auth.current_user():
        abort(400, "This LionDesk answer does not belong to a connection started here (or it is older than "
                   f"{defaults.LIONDESK_CONNECT_STATE_SECONDS // 60} minutes): start again from the overview.")
    if not code:
        reason = request.args.get("error_description") or request.args.get("error") or "no code came back"
        return render_template("liondesk_connect.html", outcome="refused", reason=reason), 400
    client = LionDeskClient(current_app.config["BRIDGE_SETTINGS"], conn)
    try:
        client.auth.exchange_authorization_code(code, _redirect_uri())
        me = client.get_me() or {}
    except BridgeError as exc:
        log.warning("console LionDesk connect failed: %s", exc)
        return render_template("liondesk_connect.html", outcome="failed", reason=str(exc)), 502
    log.info("LionDesk connected from the console by %s: LionDesk user %s", auth.current_user(), me.get("id"))
    return render_template("liondesk_connect.html", outcome="connected", me=me)
