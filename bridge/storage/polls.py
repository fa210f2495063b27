"""The poll state: one Redis hash that the reverse sync, the poll trigger and the status pages share.

This module is its only reader and writer. The poll records how its last run went; the trigger
records the last slot it enqueued and a poll job that failed for good (new polls wait for it).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import redis

from bridge.storage import keys
from bridge.storage.redis import text, text_hash


@dataclass(frozen=True)
class PollState:
    """What the poll-state hash holds; every field is absent (None/0) before the first poll."""

    last_run: float | None = None
    """When the last poll finished (unix seconds)."""
    cursor: str | None = None
    """The LionDesk `modified_at` the next poll reads from (minus an overlap)."""
    outcome: str | None = None
    """How the last poll ended: ok, partial, failed..."""
    error: str = ""
    read: int = 0
    pushed: int = 0
    created: int = 0
    deferred: int = 0
    conflicts: int = 0
    duration_ms: float = 0.0
    runs: int = 0
    """Polls run so far, for support and tests."""
    last_slot: int | None = None
    """Start of the last slot whose poll the trigger enqueued (unix seconds)."""
    failed_job: str | None = None
    """A poll job that failed for good; no new poll starts while it waits in the failed store."""


TRIGGER_FIELDS = ("runs", "last_slot", "failed_job")
"""Fields the poll trigger and the run counter keep; a poll run writes every other field."""

RUN_FIELDS = tuple(field.name for field in fields(PollState) if field.name not in TRIGGER_FIELDS)
"""The fields one poll run writes (`record_run`)."""

_TYPES = {field.name: field.type for field in fields(PollState)}


def load(conn: redis.Redis) -> PollState:
    """The whole poll state, typed; fields never written (or unreadable) keep their defaults."""
    typed = {name: _typed(_TYPES[name], raw) for name, raw in text_hash(conn.hgetall(keys.poll_state())).items()
             if name in _TYPES and raw}
    return PollState(**{name: value for name, value in typed.items() if value is not None})


def cursor(conn: redis.Redis) -> str | None:
    """The cursor the last poll left, or None before the first poll."""
    return text(conn.hget(keys.poll_state(), "cursor")) or None


def record_run(conn: redis.Redis, run: dict) -> None:
    """Store how one poll run went (the RUN_FIELDS of `run`) and count it, in one transaction."""
    unknown = set(run) - set(RUN_FIELDS)
    if unknown:  # a misspelt field would be stored and never read
        raise ValueError(f"not poll-run fields: {sorted(unknown)}")
    with conn.pipeline() as pipe:
        pipe.hset(keys.poll_state(), mapping={name: "" if value is None else value for name, value in run.items()})
        pipe.hincrby(keys.poll_state(), "runs", 1)
        pipe.execute()


def last_slot(conn: redis.Redis) -> int | None:
    """Start of the last slot whose poll was enqueued, or None."""
    raw = text(conn.hget(keys.poll_state(), "last_slot"))
    return int(raw) if raw else None


def record_slot(conn: redis.Redis, start: int) -> None:
    """Remember that the poll of the slot starting at `start` was enqueued."""
    conn.hset(keys.poll_state(), "last_slot", start)


def failed_job(conn: redis.Redis) -> str | None:
    """The poll job recorded as failed for good, or None."""
    return text(conn.hget(keys.poll_state(), "failed_job")) or None


def record_failed_job(conn: redis.Redis, job_id: str) -> None:
    """Remember a poll job that failed for good."""
    conn.hset(keys.poll_state(), "failed_job", job_id)


def _typed(kind: str, raw: str):
    """A stored text as the field's type (annotations are strings here); None when it does not parse."""
    try:
        if kind.startswith("float"):
            return float(raw)
        if kind.startswith("int"):
            return int(float(raw))
    except ValueError:
        return None
    return raw
