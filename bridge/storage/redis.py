"""Redis connections: one way to open them, for the web, the workers and the CLI."""

from __future__ import annotations

import logging
import os
import threading
from urllib.parse import urlparse

import redis

from bridge import defaults
from bridge.config import redis_tls
from bridge.exceptions import ConfigError
from bridge.storage.embedded import ensure_embedded_redis

log = logging.getLogger(__name__)

_warned_pid: int | None = None  # the process that already said verification is off
_warned_lock = threading.Lock()


def connect(url: str, *, verify: bool | None = None, timeout: float | None = None) -> redis.Redis:
    """Open a Redis client for `url` with short timeouts and health checks.

    For `rediss://`, `verify` says whether the server's certificate is verified: pass
    `settings.redis_tls_verify`. Left as None it is decided from the process
    environment by the same rule (`bridge.config.redis_tls`): verified, unless
    REDIS_TLS_INSECURE=1 or Heroku Redis (self-signed certificates) is detected.
    A CA bundle can be named in the URL: `rediss://…?ssl_ca_certs=/path/ca.pem`.
    `timeout` (seconds), when given, replaces both the connect and the reply timeouts.
    """
    options = dict(
        # RESP2 replies parse measurably cheaper than RESP3 on the webhook's hot path.
        protocol=2,
        socket_connect_timeout=timeout or defaults.REDIS_CONNECT_TIMEOUT_SECONDS,
        socket_timeout=timeout or defaults.REDIS_SOCKET_TIMEOUT_SECONDS,
        health_check_interval=defaults.REDIS_HEALTH_CHECK_SECONDS,
    )
    if url.startswith("rediss://"):
        if verify is None:

            verify = redis_tls(os.environ, url)[0]
        if not verify:
            options["ssl_cert_reqs"] = None
            _warn_unverified(url)
    return redis.Redis.from_url(url, **options)


def _warn_unverified(url: str) -> None:
    """Log, once per process, that the Redis server's certificate is not verified, and why."""
    global _warned_pid
    with _warned_lock:
        if _warned_pid == os.getpid():
            return
        _warned_pid = os.getpid()
    from bridge.config import redis_tls

    try:
        reason = redis_tls(os.environ, url)[1]
    except ConfigError:
        reason = None
    parsed = urlparse(url)
    reason = reason or "verification switched off by the caller"
    log.warning("TLS certificate verification to Redis at %s:%s is OFF (%s): the connection is "
                "encrypted, but the server is not authenticated. Set REDIS_TLS_INSECURE=0 to verify it.",
                parsed.hostname, parsed.port, reason)


def redis_url(settings) -> str:
    """Return REDIS_URL, or the URL of the embedded local Redis (started if needed)."""
    if settings.redis_url:
        return settings.redis_url

    return ensure_embedded_redis()


def text(value) -> str | None:
    """A Redis reply as text: bytes decoded as UTF-8 (bad bytes replaced), str and None unchanged."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


def text_hash(raw: dict) -> dict[str, str]:
    """A Redis hash (HGETALL) with its names and values as text."""
    return {text(name): text(value) for name, value in raw.items()}


_DELETE_IF_EQUAL = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


def delete_if_equal(conn: redis.Redis, key: str, value: str) -> bool:
    """Delete the string at `key` only if it still holds `value`, in one atomic step; return whether it did.

    Compare-and-delete: what another process wrote there meanwhile is never touched (a lock
    taken by a live job, a contact map claimed by another lead)."""
    return bool(conn.eval(_DELETE_IF_EQUAL, 1, key, value))
