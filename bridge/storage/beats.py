"""Worker heartbeats: one expiring record per worker process, and an index of when each last beat.

This module is their only reader and writer. A worker process beats every WORKER_BEAT_SECONDS;
its record lives WORKER_BEAT_TTL_SECONDS, so a process that died (SIGKILL, an out-of-memory
dyno, a lost machine) has no record a few seconds later: its jobs are retried and its lead
locks taken over (`workers/liveness.py`, `storage/locks.py`). The index keeps the name and
the time of each process's last beat for a week, so the console can say when a worker was
last seen after every record has expired.

A full Redis (maxmemory with `noeviction`) refuses HSET and ZADD but not EXPIRE: a beat then
only renews the record's lifetime, and the worker stays counted as alive.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields

import redis

from bridge import defaults
from bridge.storage import keys
from bridge.storage.redis import text, text_hash

LIVE_SCAN = 100
"""How many of the most recently beating processes are checked for a live record. A fleet
has far fewer; while Redis is full the index stops moving, and live workers are among the
newest members at the moment it filled."""


@dataclass(frozen=True)
class Beat:
    """What a worker process's heartbeat record says about it."""

    process: str
    """The process's name (host, pid and a random part): what its lead locks carry."""
    host: str
    pid: int
    started: float
    """When the process started (unix seconds)."""
    beat: float
    """Its last beat (unix seconds, the worker's clock)."""
    rq_worker: str
    """The RQ worker the process runs now; after a Redis outage it starts a new one under a new name."""


_CONVERT = {field.name: {"int": int, "float": float}.get(field.type, str) for field in fields(Beat)}
"""How each field is read back from its text."""


def record(conn: redis.Redis, beat: Beat, ttl: float = defaults.WORKER_BEAT_TTL_SECONDS) -> bool:
    """Write one beat: the record with a fresh lifetime, and the index.

    Returns True when written, False when Redis is full and only the lifetime of the
    existing record could be renewed. Raises the Redis error when the record is not alive
    afterwards (Redis away, or full with the record already expired).
    """
    key, index = keys.worker_beat(beat.process), keys.worker_beats()
    with conn.pipeline(transaction=False) as pipe:
        pipe.hset(key, mapping={name: str(value) for name, value in asdict(beat).items()})
        pipe.expire(key, int(ttl))
        pipe.zadd(index, {beat.process: beat.beat})
        pipe.zremrangebyscore(index, 0, beat.beat - defaults.WORKER_BEATS_RETENTION_SECONDS)
        pipe.zremrangebyrank(index, 0, -defaults.WORKER_BEATS_MAX - 1)
        written, renewed, *rest = pipe.execute(raise_on_error=False)
    if isinstance(renewed, Exception):
        raise renewed
    if isinstance(written, Exception):
        if isinstance(written, redis.OutOfMemoryError) and renewed:
            return False
        raise written
    return True


def forget(conn: redis.Redis, process: str) -> None:
    """Remove a process's record when it stops cleanly (the index keeps when it was last seen)."""
    conn.delete(keys.worker_beat(process))


def alive(conn: redis.Redis, process: str) -> bool:
    """Whether `process` has a live heartbeat record."""
    return bool(conn.exists(keys.worker_beat(process)))


def known(conn: redis.Redis, process: str) -> bool:
    """Whether `process` ever beat (within the index's retention): a worker of ours, alive or dead."""
    return conn.zscore(keys.worker_beats(), process) is not None


def live(conn: redis.Redis) -> list[Beat]:
    """The worker processes with a live record, most recent beat first."""
    names = [text(name) for name in conn.zrevrange(keys.worker_beats(), 0, LIVE_SCAN - 1)]
    if not names:
        return []
    with conn.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.hgetall(keys.worker_beat(name))
        found = pipe.execute()
    return [beat for beat in (_beat(text_hash(raw)) for raw in found if raw) if beat is not None]


def last_seen(conn: redis.Redis) -> float | None:
    """When any worker process last wrote a full beat (unix seconds), or None when none did within the retention."""
    newest = conn.zrevrange(keys.worker_beats(), 0, 0, withscores=True)
    return float(newest[0][1]) if newest else None


def new_beat(process: str, host: str, pid: int, started: float, rq_worker: str) -> Beat:
    """A beat of `process` stamped now."""
    return Beat(process=process, host=host, pid=pid, started=started, beat=time.time(), rq_worker=rq_worker)


def _beat(raw: dict[str, str]) -> Beat | None:
    """A Beat from its stored hash (every value is text there); None for a record missing a field."""
    if not all(name in raw for name in _CONVERT):
        return None
    return Beat(**{name: convert(raw[name]) for name, convert in _CONVERT.items()})
