"""What a job needs to run (settings, Redis, metrics, API clients), built once per worker process."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property

import redis

from bridge.clients import build_clients
from bridge.config import Settings, load_settings
from bridge.ops.metrics import Metrics
from bridge.storage import history, keys, kinds
from bridge.storage.redis import connect, redis_url


@dataclass
class Context:
    """Long-lived collaborators of the jobs in one worker process."""

    settings: Settings
    redis: redis.Redis
    extras: dict = field(default_factory=dict)

    story: tuple[str, str] | None = None
    """(Real Geeks lead id, event id) of the job in hand: its outbound calls go into that lead's history."""

    def __post_init__(self):
        keys.use_retention(self.settings.retention)  # the records this process writes live as configured

    @cached_property
    def metrics(self) -> Metrics:
        """Shared metrics counters."""
        return Metrics(self.redis)

    @cached_property
    def clients(self):
        """The API clients of this process, reporting every call to `observe_call`."""

        return build_clients(self.settings, self.redis, observer=self.observe_call)

    def observe_call(self, service: str, method: str, path: str, status, duration_ms: float) -> None:
        """Record one outbound call in the metrics and, in its place, in the lead's story (never tokens or bodies)."""
        with self.redis.pipeline(transaction=False) as pipe:  # one round trip per call, not four
            Metrics(pipe).call(service, status)
            if self.story is not None:
                lead_id, event_id = self.story
                history.append(pipe, lead_id, kinds.CALL, event_id=event_id, service=service, method=method,
                               path=path, status=status, ms=round(duration_ms, 1))
            pipe.execute()

    @contextmanager
    def telling(self, lead_id: str, event_id: str | None):
        """Within the block, outbound calls are written into this lead's story."""
        self.story = (lead_id, event_id)
        try:
            yield
        finally:
            self.story = None


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
