"""What a job needs to run (settings, Redis, metrics, API clients), built once per worker process."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import redis

from bridge.config import Settings, load_settings
from bridge.ops.metrics import Metrics
from bridge.storage.redis import connect, redis_url


@dataclass
class Context:
    """Long-lived collaborators of the jobs in one worker process."""

    settings: Settings
    redis: redis.Redis
    extras: dict = field(default_factory=dict)

    calls: list = field(default_factory=list)
    """Outbound calls made by the job in hand (service, method, path, status, ms): the job
    shell writes them into the lead's history."""

    @cached_property
    def metrics(self) -> Metrics:
        """Shared metrics counters."""
        return Metrics(self.redis)

    @cached_property
    def clients(self):
        """The API clients of this process, reporting every call to `observe_call`."""
        from bridge.clients import build_clients

        return build_clients(self.settings, self.redis, observer=self.observe_call)

    def observe_call(self, service: str, method: str, path: str, status, duration_ms: float) -> None:
        """Record one outbound call for the lead's history and the metrics (never tokens or bodies)."""
        self.calls.append({"service": service, "method": method, "path": path, "status": status,
                           "ms": round(duration_ms, 1)})
        self.metrics.call(service, status)

    def take_calls(self) -> list[dict]:
        """Return and forget the calls recorded since the last take."""
        calls, self.calls = self.calls, []
        return calls


_context: Context | None = None


def get_context() -> Context:
    """Return this process's context, building it from the environment on first use."""
    global _context
    if _context is None:
        settings = load_settings()
        _context = Context(settings=settings, redis=connect(redis_url(settings)))
    return _context


def set_context(context: Context | None) -> None:
    """Install a context (tests, or a worker that built one already); None forgets it."""
    global _context
    _context = context
