"""The yardstick for bench/webhook.py: a Flask endpoint that only answers 200."""

from flask import Flask


def create_app() -> Flask:
    """A Flask app whose webhook route does nothing at all."""
    app = Flask(__name__)

    @app.post("/webhooks/realgeeks")
    def receive():
        """Answer 200 without looking at the request."""
        return "", 200

    return app
