"""Fixtures: a real Redis (ours unless TEST_REDIS_URL/REDIS_URL names one), then app → client → runner.

Against a Redis we did not start, every key we write carries a prefix unique to this
run, and cleanup deletes only keys under it: a shared Redis is never flushed.
"""

import os
import secrets
import tempfile

# Must be set before rq or bridge are imported: both read their key prefixes at import.
_EXTERNAL_REDIS = os.environ.get("TEST_REDIS_URL") or os.environ.get("REDIS_URL")
_RUN = secrets.token_hex(4)
os.environ["BRIDGE_KEY_PREFIX"] = f"t{_RUN}:bridge:"
os.environ["RQ_KEY_PREFIX"] = f"t{_RUN}:rq"
os.environ.pop("REDIS_URL", None)  # nothing under test may fall back to the developer's Redis
# Should anything under test start the embedded Redis, it lands here and is stopped at the end.
_STATE_DIR = tempfile.mkdtemp(prefix="bridge-test-state-")
os.environ["BRIDGE_STATE_DIR"] = _STATE_DIR

import pytest  # noqa: E402

from tests.support import free_port, start_test_redis  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _no_leftover_embedded_redis():
    """Stop an embedded Redis that code under test started by falling back to it."""
    yield
    from pathlib import Path

    from bridge.storage.embedded import stop_embedded_redis

    stop_embedded_redis(Path(_STATE_DIR))


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """URL of the Redis the suite talks to; started here unless one was given."""
    if _EXTERNAL_REDIS:
        yield _EXTERNAL_REDIS
        return
    directory = tmp_path_factory.mktemp("redis")
    process = start_test_redis(directory, free_port())
    try:
        yield process.url
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def redis_conn(redis_url):
    """A client of the test Redis; every key of this run is deleted after the test."""
    from bridge.storage.redis import connect

    conn = connect(redis_url)
    yield conn
    delete_run_keys(conn)
    conn.close()


def delete_run_keys(conn):
    """Delete every key carrying this run's prefixes, and nothing else."""
    for pattern in (f"t{_RUN}:*",):
        batch = []
        for key in conn.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= 500:
                conn.delete(*batch)
                batch.clear()
        if batch:
            conn.delete(*batch)


@pytest.fixture
def webhook_secret():
    """A webhook secret generated for this test."""
    return secrets.token_hex(16)


@pytest.fixture
def make_settings(redis_url, webhook_secret):
    """Build Settings for tests; keyword arguments override fields."""
    from bridge.config import Settings

    def make(**overrides):
        values = dict(redis_url=redis_url, realgeeks_webhook_secret=webhook_secret, secret_key="test")
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def settings(make_settings):
    """Default test settings."""
    return make_settings()


@pytest.fixture
def app(settings, redis_conn):
    """The web app over the test Redis."""
    from bridge.web import create_app

    app = create_app(settings)
    app.config["TESTING"] = True
    return app


@pytest.fixture
def client(app):
    """A test client of the web app."""
    return app.test_client()


@pytest.fixture
def runner(app):
    """A click runner for the `bridge` command line."""
    from click.testing import CliRunner

    return CliRunner()


@pytest.fixture
def sandbox():
    """A fresh LionDesk / Real Geeks sandbox, served over HTTP on 127.0.0.1 from a thread."""
    from tests.support import Sandbox

    box = Sandbox()
    yield box
    box.stop()


@pytest.fixture
def sandbox_settings(sandbox, make_settings):
    """Settings whose API clients all point at the sandbox."""
    from bridge.config import load_settings

    base = make_settings()
    env = {**sandbox.environment(), "REDIS_URL": base.redis_url,
           "REALGEEKS_WEBHOOK_SECRET": base.realgeeks_webhook_secret, "LIONDESK_MAX_REQUESTS_PER_SECOND": "1000"}
    return load_settings(env)
