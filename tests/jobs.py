"""Job functions used only by worker tests (importable by a worker subprocess via PYTHONPATH)."""

import os
import time

from bridge.exceptions import PermanentError, RetryableError
from bridge.storage.redis import connect


def _conn():
    """A Redis client for the URL the worker under test uses."""
    return connect(os.environ["REDIS_URL"])


def flaky(counter_key: str, failures: int) -> str:
    """Fail with a retryable error the first `failures` times, then succeed."""
    attempts = _conn().incr(counter_key)
    if attempts <= failures:
        raise RetryableError(f"attempt {attempts} fails on purpose")
    return f"succeeded on attempt {attempts}"


def always_permanent() -> None:
    """Fail with a permanent error."""
    raise PermanentError("LionDesk said 422: first_name too long")


def slow(started_key: str, done_key: str, seconds: float) -> str:
    """Mark the start, sleep, then mark completion (for shutdown and SIGKILL tests)."""
    conn = _conn()
    conn.incr(started_key)
    time.sleep(seconds)
    conn.incr(done_key)
    return "done"
