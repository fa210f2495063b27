"""What the alerting has said and seen, shared by every process that evaluates alerts.

One hash per condition (lead failed, LionDesk refused, ...): whether its problem alert went
out and when, since when the condition holds, and what it last announced. Every web and
worker process runs the evaluator; a tick slot taken with SET NX makes one of them evaluate
each period, so a condition is announced once, not once per process.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields

from bridge.storage import keys
from bridge.storage.redis import text_hash


@dataclass
class AlertState:
    """One condition's alerting state."""

    active: bool = False
    """Whether the condition's problem alert went out and no recovery since."""
    since: float | None = None
    """When the condition was first seen holding in its current stretch (None: it does not hold)."""
    sent_at: float | None = None
    """When its last problem alert went out (the window counts from here)."""
    mark: float = 0.0
    """How far announcements got, for conditions that count things (the newest failed lead announced)."""
    facts: dict = field(default_factory=dict)
    """What the condition's observer keeps between ticks (counters last read, for one)."""
    last_error: str | None = None
    """Why the last send failed, if it did (shown by `bridge alerts status`)."""


_NUMBERS = {"since", "sent_at", "mark"}


def load(conn, condition: str) -> AlertState:
    """One condition's state (a fresh one when nothing is stored)."""
    stored = text_hash(conn.hgetall(keys.alert_state(condition)))
    state = AlertState()
    for item in fields(AlertState):
        raw = stored.get(item.name)
        if raw in (None, ""):
            continue
        try:
            if item.name == "active":
                state.active = raw == "1"
            elif item.name in _NUMBERS:
                setattr(state, item.name, float(raw))
            elif item.name == "facts":
                facts = json.loads(raw)
                state.facts = facts if isinstance(facts, dict) else {}
            else:
                setattr(state, item.name, raw)
        except ValueError:
            continue  # an unreadable field starts afresh rather than stopping the alerting
    return state


def save(conn, condition: str, state: AlertState) -> None:
    """Store one condition's state."""
    values = asdict(state)
    mapping = {"active": "1" if state.active else "0", "facts": json.dumps(state.facts, separators=(",", ":"))}
    mapping.update({name: "" if values[name] is None else repr(values[name]) for name in _NUMBERS})
    mapping["last_error"] = state.last_error or ""
    conn.hset(keys.alert_state(condition), mapping=mapping)


def claim_tick(conn, period_seconds: float, owner: str) -> bool:
    """Take this period's evaluation for `owner`; False when another process already has it."""
    return bool(conn.set(keys.alert_tick(), owner, nx=True, px=max(int(period_seconds * 1000) - 50, 1)))
