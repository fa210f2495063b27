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

    @cached_property
    def metrics(self) -> Metrics:
        """Shared metrics counters."""
        return Metrics(self.redis)


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
