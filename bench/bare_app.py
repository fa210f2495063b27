"""The yardsticks for bench/webhook.py, run under the same gunicorn settings as the bridge.

`create_app` is the bare endpoint the issue's target is stated against: it answers 200
without reading the request. `create_floor_app` is the least any persist-then-acknowledge
endpoint can do: read the body, write it to Redis in one round trip, answer. The gap
between the two is what one durable write costs on the machine at hand; the gap between
the floor and the bridge is what the bridge's own code costs.
"""

import os
import uuid

import redis
from flask import Flask, request


def create_app() -> Flask:
    """A Flask app whose webhook route does nothing at all."""
    app = Flask(__name__)

    @app.post("/webhooks/realgeeks")
    def receive():
        """Answer 200 without looking at the request."""
        return "", 200

    return app


def create_floor_app() -> Flask:
    """A Flask app whose webhook route stores the raw body with one Redis SET, then answers 200."""
    app = Flask(__name__)
    conn = redis.Redis.from_url(os.environ["REDIS_URL"])

    @app.post("/webhooks/realgeeks")
    def receive():
        """Write the body under a fresh key (expiring, so the benchmark's Redis stays small)."""
        conn.set(f"floor:{uuid.uuid4().hex}", request.get_data(), ex=600)
        return "", 200

    return app
