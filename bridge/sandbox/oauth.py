"""LionDesk's OAuth2 endpoints: /oauth2/token (code and refresh grants) and /oauth2/authorize."""

from __future__ import annotations

from urllib.parse import urlencode

from flask import Blueprint, jsonify, redirect, request

from bridge.sandbox.state import sandbox_state
from bridge.sandbox.tokens import CLIENT_ID, OAuthError

bp = Blueprint("liondesk_oauth", __name__, url_prefix="/liondesk/oauth2")


def _token_request() -> dict:
    """The token request's parameters: a JSON body as documented, or a form body (whether
    LionDesk takes one is unknown; standard OAuth clients send it)."""
    if request.mimetype == "application/x-www-form-urlencoded":
        return request.form.to_dict()
    body = request.get_json(force=True, silent=True)
    return body if isinstance(body, dict) else {}


def _oauth_error(exc: OAuthError):
    """An RFC 6749 error body."""
    return jsonify({"error": exc.error, "error_description": exc.description}), exc.status


@bp.post("/token")
def token():
    """The token endpoint: authorization_code and refresh_token grants."""
    params = _token_request()
    with sandbox_state() as state:
        try:
            state.tokens.check_client(params.get("client_id"), params.get("client_secret"))
            grant = params.get("grant_type")
            if grant == "refresh_token":
                return jsonify(state.tokens.use_refresh_token(params.get("refresh_token")))
            if grant == "authorization_code":
                return jsonify(state.tokens.exchange_code(params.get("code")))
            raise OAuthError(400, "unsupported_grant_type", f"Unsupported grant type {grant!r}")
        except OAuthError as exc:
            return _oauth_error(exc)


@bp.get("/authorize")
def authorize():
    """The consent screen, approved at once: redirect back with a fresh one-time code."""
    if request.args.get("client_id") != CLIENT_ID:
        return jsonify({"error": "invalid_client", "error_description": "Unknown client_id"}), 400
    if request.args.get("response_type", "code") != "code":
        return jsonify({"error": "unsupported_response_type",
                        "error_description": "The sandbox only supports response_type=code"}), 400
    redirect_uri = request.args.get("redirect_uri")
    if not redirect_uri:
        return jsonify({"error": "invalid_request", "error_description": "redirect_uri is required"}), 400
    with sandbox_state() as state:
        code = state.tokens.new_code()
    params = {"code": code}
    if "state" in request.args:
        params["state"] = request.args["state"]
    separator = "&" if "?" in redirect_uri else "?"
    return redirect(f"{redirect_uri}{separator}{urlencode(params)}")
