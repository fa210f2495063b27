"""The Flask application factory: the web process of the bridge."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from bridge import defaults
from bridge.config import Settings, load_settings
from bridge.intake import webhook
from bridge.intake.store import DeliveryStore
from bridge.ops import logs
from bridge.ops.metrics import Metrics
from bridge.storage import keys
from bridge.storage.redis import connect, redis_url
from bridge.web import auth, health, prometheus
from bridge.web import liondesk_connect
from bridge.web import console as admin


def session_secret(settings: Settings) -> str:
    """SECRET_KEY, else a key derived from the console and webhook secrets.

    Derived, not random: every web process and dyno then signs sessions alike and a
    restart does not log support out; changing the console password ends all sessions.
    """
    if settings.secret_key:
        return settings.secret_key
    material = "\x1f".join(filter(None, (settings.admin_username, settings.admin_password,
                                          settings.realgeeks_webhook_secret)))
    if not material:
        return secrets.token_hex(32)  # nothing to sign sessions for, nothing to derive from
    return hmac.new(b"bridge session key", material.encode("utf-8"), hashlib.sha256).hexdigest()


def create_app(settings: Settings | None = None) -> Flask:
    """Create the web app from `settings` (default: the environment)."""
    settings = settings or load_settings()
    logs.configure()
    app = Flask(__name__)
    app.config.update(
        BRIDGE_SETTINGS=settings,
        MAX_CONTENT_LENGTH=defaults.WEBHOOK_MAX_BODY_BYTES,
        SECRET_KEY=session_secret(settings),
        JSON_SORT_KEYS=False,
    )
    keys.use_retention(settings.retention)  # the records this process writes live as configured
    conn = connect(redis_url(settings))
    app.extensions["bridge.redis"] = conn
    app.extensions["bridge.store"] = DeliveryStore(conn)
    app.extensions["bridge.metrics"] = Metrics(conn)

    webhook.mount(app, webhook.Intake(settings, app.extensions["bridge.store"], app.extensions["bridge.metrics"],
                                      max_body=defaults.WEBHOOK_MAX_BODY_BYTES))
    app.register_blueprint(health.bp)

    auth.configure_sessions(app)  # console-only sessions: no cookie work on any other route

    app.register_blueprint(prometheus.bp)
    admin.init_app(app)  # the support console, only when ADMIN_USERNAME and ADMIN_PASSWORD are set
    liondesk_connect.init_app(app)  # the console's "Connect LionDesk" round trip
    # Web processes evaluate alerts too (with no worker running, they are the ones left to say so): each
    # gunicorn worker starts its evaluator as it boots (gunicorn.conf.py `post_worker_init`), after the
    # fork, so no request pays for it and a thread is never started in the master.

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        """Answer HTTP errors (404, 405, 413...) as JSON, like every other answer."""
        return jsonify(status="error", error=exc.description), exc.code

    return app
