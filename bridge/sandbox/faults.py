"""Fault knobs per simulated service: latency, 5xx, 429 with Retry-After, outages.

With a `seed`, the sequence of injected faults is reproducible: each service draws
from its own random.Random(seed), one number per request, in arrival order.
"""

from __future__ import annotations

import random
import threading
from dataclasses import asdict, dataclass, field, fields
from typing import NamedTuple

from bridge.defaults import SANDBOX_RETRY_AFTER_SECONDS

SERVICES = ("liondesk", "liondesk_v1", "realgeeks")
OUTAGE_MODES = ("503", "drop")
"""An outage answers 503 from the "load balancer", or drops the connection without answering."""


class Fault(NamedTuple):
    """What to do instead of answering: `kind` is error | rate_limit | outage | drop."""

    kind: str
    status: int


FAIL_NEXT_STATUSES = (400, 403, 404, 422, 429, 500, 502, 503, 504)
"""What `fail_next` may answer: refusals (4xx) as well as the retryable failures."""


@dataclass
class FaultSettings:
    """The knobs of one service; all off by default."""

    latency_ms: float = 0.0
    error_rate: float = 0.0
    error_statuses: list[int] = field(default_factory=lambda: [500, 502, 503])
    rate_limit_rate: float = 0.0
    retry_after_seconds: int = SANDBOX_RETRY_AFTER_SECONDS
    outage: str | None = None
    fail_next: int = 0
    fail_next_status: int = 503
    seed: int | None = None
    lose_next_answer: str | None = None
    """A path template ("/liondesk/campaigns/{campaign_id}/contacts"): the next call to it is carried
    out, then its answer is lost (a 502 instead), as when the caller crashes or the network drops
    between LionDesk's work and our record of it. Cleared after one use."""


def validate_changes(changes: dict) -> dict:
    """Check a control-API body of knob changes; return it or raise ValueError naming the knob."""
    known = {f.name for f in fields(FaultSettings)}
    for name, value in changes.items():
        if name not in known:
            raise ValueError(f"unknown fault knob {name!r}; known: {sorted(known)}")
        if name in ("error_rate", "rate_limit_rate") and not (isinstance(value, (int, float)) and 0 <= value <= 1):
            raise ValueError(f"{name} must be a number between 0 and 1")
        if name in ("latency_ms", "retry_after_seconds", "fail_next") and not (
                isinstance(value, (int, float)) and value >= 0):
            raise ValueError(f"{name} must be a non-negative number")
        if name == "outage" and value not in (None, False, True, *OUTAGE_MODES):
            raise ValueError(f"outage must be null, true, {' or '.join(OUTAGE_MODES)}")
        if name == "error_statuses" and not (isinstance(value, list) and value
                                             and all(isinstance(s, int) and 500 <= s <= 599 for s in value)):
            raise ValueError("error_statuses must be a non-empty list of 5xx codes")
        if name == "fail_next_status" and value not in FAIL_NEXT_STATUSES:
            raise ValueError(f"fail_next_status must be one of {', '.join(map(str, FAIL_NEXT_STATUSES))}")
        if name == "lose_next_answer" and value is not None and not (isinstance(value, str) and value.startswith("/")):
            raise ValueError("lose_next_answer must be a path template starting with / or null")
        if name == "seed" and value is not None and not isinstance(value, int):
            raise ValueError("seed must be an integer or null")
    return changes


def decide(settings: FaultSettings, rng: random.Random) -> Fault | None:
    """The fault for the next request of a service, if any (consumes fail_next and one draw)."""
    if settings.outage:
        return Fault("drop" if settings.outage == "drop" else "outage", 503)
    if settings.fail_next > 0:
        settings.fail_next -= 1
        kind = "rate_limit" if settings.fail_next_status == 429 else "error"
        return Fault(kind, settings.fail_next_status)
    if not (settings.error_rate or settings.rate_limit_rate):
        return None
    draw = rng.random()
    if draw < settings.error_rate:
        return Fault("error", rng.choice(settings.error_statuses))
    if draw < settings.error_rate + settings.rate_limit_rate:
        return Fault("rate_limit", 429)
    return None


class FaultBoard:
    """The current knobs of every service, and their random generators, behind a lock."""

    def __init__(self):
        self._lock = threading.Lock()
        self.clear()

    def clear(self) -> None:
        """Turn every fault off."""
        with self._lock:
            self._settings = {service: FaultSettings() for service in SERVICES}
            self._rngs = {service: random.Random() for service in SERVICES}

    def configure(self, services: list[str], changes: dict) -> None:
        """Apply validated knob `changes` to `services`; a `seed` restarts their generators."""
        validate_changes(changes)
        with self._lock:
            for service in services:
                settings = self._settings[service]
                for name, value in changes.items():
                    if name == "outage":
                        value = "503" if value is True else value or None
                    setattr(settings, name, value)
                if "seed" in changes:
                    self._rngs[service] = random.Random(changes["seed"])

    def draw(self, service: str) -> tuple[float, Fault | None]:
        """The latency (ms) and fault to apply to one request of `service`."""
        with self._lock:
            settings = self._settings[service]
            return settings.latency_ms, decide(settings, self._rngs[service])

    def take_lost_answer(self, service: str, template: str) -> bool:
        """Whether this answer of `service` to `template` is to be lost (consumes the knob)."""
        with self._lock:
            settings = self._settings[service]
            if settings.lose_next_answer != template:
                return False
            settings.lose_next_answer = None
            return True

    def retry_after(self, service: str) -> int:
        """The Retry-After value, in seconds, that `service` sends with a 429."""
        with self._lock:
            return int(self._settings[service].retry_after_seconds)

    def snapshot(self) -> dict:
        """Every service's knobs as plain data."""
        with self._lock:
            return {service: asdict(settings) for service, settings in self._settings.items()}
