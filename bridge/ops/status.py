"""What the bridge is doing right now: the intake backlog, queue depths, the oldest waiting
job, LionDesk authorisation, the last LionDesk poll, whether Redis takes writes, its memory against
maxmemory and which workers are alive. Read live from Redis by /healthz, /metrics, `bridge jobs stats` and the console overview."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

from rq.job import Job
from rq.serializers import DefaultSerializer as DEFAULT_SERIALIZER
from rq.registry import FailedJobRegistry, ScheduledJobRegistry

import redis

from bridge import defaults
from bridge.clients.oauth import auth_state
from bridge.queue import event_queue, poll_queue
from bridge.storage import beats, keys, parked, polls, usage
from bridge.storage.redis import text

QUEUE_NAMES = (defaults.EVENT_QUEUE, defaults.POLL_QUEUE)
"""The RQ queues the bridge runs; their scheduled and failed registries are summed."""

NEEDS_REAUTHORIZATION = "needs_reauthorization"
"""The LionDesk authorisation state in which no job can reach LionDesk."""

LAST_FAILURE = "last_failure"
"""RQ job meta field where the worker's failure policy (workers/failure.py) keeps the last failed
attempt: error class and text, outcome, when, when the job first failed, which vendor failed."""

LIONDESK_SERVICES = ("liondesk", "liondesk_v1")
"""Service names of LionDesk's APIs, in an UpstreamError and in the call counters (bridge.ops.metrics `calls`)."""

LIONDESK_FAILING, REAUTHORIZE, NO_WORKER, REDIS_FULL_NOTICE = "liondesk_failing", "reauthorize", "no_worker", "redis_full"
"""What the console's banner can ask a person to look at (kinds of `Notice`)."""

REDIS_NEARLY_FULL_NOTICE = "redis_nearly_full"
"""A `Notice` kind: Redis memory past the warning threshold of its maxmemory, not full yet."""


@dataclass
class Notice:
    """One thing that needs a person, for the banner at the top of every console page."""

    kind: str
    text: str
    since: float | None = None
    count: int | None = None


def queue_depths(conn) -> dict[str, int]:
    """Return how many jobs wait on each queue, wait for a retry (scheduled), and sit in the failed store."""
    return {
        "events": event_queue(conn).count,
        "poll": poll_queue(conn).count,
        "scheduled": sum(ScheduledJobRegistry(name, connection=conn).count for name in QUEUE_NAMES),
        "failed": sum(FailedJobRegistry(name, connection=conn).count for name in QUEUE_NAMES),
    }


def oldest_waiting_age(conn, now: float | None = None) -> float | None:
    """Return the age in seconds of the job that has waited longest on any queue, or None when none waits."""
    now = time.time() if now is None else now
    ages = []
    for queue in (event_queue(conn), poll_queue(conn)):
        head = queue.get_job_ids(0, 1)
        job = queue.fetch_job(head[0]) if head else None
        if job is not None and job.enqueued_at is not None:
            enqueued = job.enqueued_at
            if enqueued.tzinfo is None:  # RQ stores naive UTC
                enqueued = enqueued.replace(tzinfo=timezone.utc)
            ages.append(max(now - enqueued.timestamp(), 0.0))
    return round(max(ages), 1) if ages else None


def intake_backlog(conn, now: float | None = None) -> dict:
    """Deliveries accepted but not yet relayed onto the job queue: how many (`entries`) and the
    age in seconds of the oldest (`oldest_age_seconds`, None when none waits).

    These are the intake stream's entries the relays' consumer group has not acknowledged:
    those no relay has read yet, and those read by a relay that has not finished with them
    (or died). A backlog that only grows means no worker is running, or none reaches this
    Redis. Redis 7 reports the unread count itself (the group's `lag`); older servers are
    counted by reading, at most INTAKE_BACKLOG_COUNT_LIMIT entries (the figure is then a floor).
    """
    now = time.time() if now is None else now
    stream = keys.intake_stream()
    if not conn.exists(stream):
        return {"entries": 0, "oldest_age_seconds": None}
    group = next((g for g in conn.xinfo_groups(stream) if text(g.get("name")) == defaults.RELAY_GROUP), None)
    if group is None:  # no worker ever started on this Redis: every entry waits
        unread, after, pending, oldest_pending = conn.xlen(stream), "-", 0, None
    else:
        after = "(" + text(group["last-delivered-id"])
        pending = int(group.get("pending") or 0)
        oldest_pending = text(conn.xpending(stream, defaults.RELAY_GROUP)["min"]) if pending else None
        unread = group.get("lag")
        if unread is None:  # Redis < 7, or a lag Redis cannot know after deletions
            unread = len(conn.xrange(stream, min=after, count=defaults.INTAKE_BACKLOG_COUNT_LIMIT))
    first_unread = conn.xrange(stream, min=after, count=1) if unread else []
    oldest = [entry for entry in (oldest_pending, text(first_unread[0][0]) if first_unread else None) if entry]
    ages = [max(now - int(entry.split("-")[0]) / 1000, 0.0) for entry in oldest]
    return {"entries": int(unread) + pending, "oldest_age_seconds": round(max(ages), 1) if ages else None}


def liondesk_auth(conn, settings=None) -> dict:
    """Return LionDesk's authorisation state as the OAuth client records it (`state`, `reason`, `since`; no token)."""

    return {"reason": None, "since": None, **auth_state(conn, settings)}


def liondesk_channels(conn, settings=None, *, echo: bool = False, now: float | None = None) -> dict:
    """Return the LionDesk channels in use: the task channel (v2.1 or v2.0) and the v1 channel's last answer.

    With `echo`, a v1 channel not checked within LIONDESK_V1_ECHO_MAX_AGE_SECONDS is checked
    now with v1 `Echo` (changes nothing; short timeouts, so a dead v1 cannot hang /healthz).
    """
    from bridge.clients.liondesk import channels, record_v1_answer
    from bridge.clients.liondesk_v1 import LionDeskV1Client
    from bridge.exceptions import UpstreamError

    now = time.time() if now is None else now
    enabled = bool(settings is not None and settings.liondesk_v1_enabled)
    current = channels(conn)
    checked = current["v1"]["checked_at"]
    if echo and enabled and (checked is None or now - float(checked) > defaults.LIONDESK_V1_ECHO_MAX_AGE_SECONDS):
        client = LionDeskV1Client(settings)
        client.service.timeout = (defaults.HTTP_CONNECT_TIMEOUT_SECONDS, defaults.V1_ECHO_TIMEOUT_SECONDS)
        try:
            client.echo()
            record_v1_answer(conn, True, now=now)
        except UpstreamError as exc:
            record_v1_answer(conn, False, str(exc), now=now)
        current = channels(conn)
    v1 = {**current["v1"], "state": current["v1"]["state"] if enabled else "off"}
    return {"tasks": current["tasks"], "v1": v1}


def poll_status(conn) -> dict:
    """Return what the last LionDesk poll recorded (last_run, cursor, outcome); empty before the first poll."""
    return asdict(polls.load(conn))


REDIS_OK, REDIS_FULL, REDIS_UNREACHABLE = "ok", "full", "unreachable"
"""What Redis is to the bridge: taking writes, refusing them (maxmemory reached), or away."""

REDIS_MESSAGES = {REDIS_FULL: "Redis full", REDIS_UNREACHABLE: "Redis unreachable"}
"""How /healthz and the console name a Redis that is not ok."""


def redis_trouble(exc: BaseException) -> str | None:
    """REDIS_UNREACHABLE or REDIS_FULL when `exc` is Redis being away or refusing writes, else None.

    Either is waited out, never died of. A Redis still loading its data after a restart
    counts as away; a replica promoted away from (READONLY) or a failing save (MISCONF) as
    refusing writes.
    """
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
        return REDIS_UNREACHABLE
    if isinstance(exc, (redis.OutOfMemoryError, redis.ReadOnlyError)):
        return REDIS_FULL
    if isinstance(exc, redis.ResponseError) and _refuses_writes(str(exc)):
        return REDIS_FULL
    return None


def _refuses_writes(message: str) -> bool:
    """Whether a Redis error without a class of its own says Redis refuses writes.

    redis-py has no class for MISCONF, and a refusal met inside a Lua script (RQ's and the
    intake's) arrives as a bare ResponseError quoting the OOM reply: only the text tells.
    """
    return message.startswith("MISCONF") or "command not allowed when used memory" in message


def redis_state(conn) -> str:
    """REDIS_OK, or REDIS_FULL when Redis is at maxmemory with nothing it may evict (writes refused:
    `usage.refuses_writes`). Raises redis.RedisError when Redis does not answer (the caller reports REDIS_UNREACHABLE).
    """
    return REDIS_FULL if usage.memory_state(conn).level == usage.FULL else REDIS_OK


def redis_health(conn) -> dict:
    """Redis as the console's banner shows it: `state` (ok, full, unreachable) and `message` (None when ok)."""
    try:
        state = redis_state(conn)
    except redis.RedisError as exc:
        return {"state": REDIS_UNREACHABLE, "message": f"{REDIS_MESSAGES[REDIS_UNREACHABLE]} ({exc.__class__.__name__})"}
    return {"state": state, "message": REDIS_MESSAGES.get(state)}


@dataclass(frozen=True)
class WorkerStatus:
    """The worker processes as their heartbeats tell it (what the console's banner is drawn from)."""

    live: int
    """Worker processes with a live heartbeat record."""
    last_seen: float | None
    """When a worker last beat (unix seconds): now while one is alive; None when none did within a week."""
    silent_seconds: float | None
    """Seconds since a worker last beat (0 while one is alive); None when none ever did."""
    no_worker: bool
    """True when no worker beat for WORKER_SILENT_ALARM_SECONDS (or ever): nothing processes leads."""
    message: str | None
    """The sentence for the banner when `no_worker`, else None."""
    workers: tuple[dict, ...] = ()
    """Each live process: name, host, pid, started, last beat."""


def worker_status(conn, now: float | None = None) -> WorkerStatus:
    """Count the live workers from their heartbeats and say whether none has been seen for too long."""
    now = time.time() if now is None else now
    alive = beats.live(conn)
    last_seen = now if alive else beats.last_seen(conn)
    silent = None if last_seen is None else round(max(now - last_seen, 0.0), 1)
    no_worker = not alive and (silent is None or silent >= defaults.WORKER_SILENT_ALARM_SECONDS)
    message = None
    if no_worker:
        minutes = defaults.WORKER_SILENT_ALARM_SECONDS // 60
        message = (f"No worker seen for {minutes} minutes or more: leads are accepted but not processed"
                   if last_seen is not None else "No worker has ever run: leads are accepted but not processed")
    return WorkerStatus(live=len(alive), last_seen=last_seen, silent_seconds=silent, no_worker=no_worker,
                        message=message, workers=tuple({"process": beat.process, "host": beat.host, "pid": beat.pid,
                                                        "started": beat.started, "beat": beat.beat} for beat in alive))


def redis_memory(conn, settings=None) -> dict:
    """Return Redis memory used against its maxmemory: bytes, percent, level (ok / warning / full / unlimited),
    `warning` (above the threshold or full) and a headline for people."""
    percent = settings.alert_redis_memory_percent if settings is not None else defaults.ALERT_REDIS_MEMORY_PERCENT
    state = usage.memory_state(conn, percent)
    return {**state.to_json(), "warning": state.level in (usage.WARNING, usage.FULL), "headline": state.headline()}


def waiting_jobs(conn, limit: int = defaults.CONSOLE_BANNER_SCAN_JOBS) -> dict:
    """Count the lead jobs waiting for a next attempt: on LionDesk failing (and since when), and on an operator.

    Read from what the failure policy keeps on each job (its meta field only, not the job nor the
    lead's story), so the banner of every console page stays two small round trips during a long
    outage. Past `limit` waiting jobs the counts are of the `limit` soonest (`more` says so).
    """
    key = ScheduledJobRegistry(defaults.EVENT_QUEUE, connection=conn).key
    ids = [text(raw) for raw in conn.zrange(key, 0, limit - 1)]
    failing, waiting, since = 0, 0, None
    for failure in last_failures(conn, ids):
        if failure is None:
            continue
        if failure.get("outcome") == "waiting":
            waiting += 1
        elif failure.get("service") in LIONDESK_SERVICES:
            failing += 1
            first = failure.get("first_at")
            if isinstance(first, (int, float)) and not isinstance(first, bool):
                since = first if since is None else min(since, first)
    return {"liondesk_failing": failing, "waiting_for_operator": waiting, "liondesk_failing_since": since,
            "more": len(ids) == limit and conn.zcard(key) > limit}


def last_failures(conn, job_ids: list[str]) -> list[dict | None]:
    """The last failure the failure policy kept on each job (None: none, or unreadable), reading only
    each job's meta field (one round trip)."""
    pipe = conn.pipeline(transaction=False)
    for job_id in job_ids:
        pipe.hget(Job.key_for(job_id), "meta")
    found = []
    for raw in pipe.execute():
        try:
            meta = DEFAULT_SERIALIZER.loads(raw) if raw else None
        except Exception:  # noqa: BLE001 (a record another program wrote: anything may fail to load)
            meta = None
        failure = meta.get(LAST_FAILURE) if isinstance(meta, dict) else None
        found.append(failure if isinstance(failure, dict) else None)
    return found


def attention(conn, settings=None, now: float | None = None) -> list[Notice]:
    """What needs a person right now, most urgent first: LionDesk refusing the bridge's access,
    LionDesk failing with leads waiting, no worker running, Redis full."""
    notices = []
    waiting = waiting_jobs(conn)
    auth = liondesk_auth(conn, settings)
    if auth.get("state") == NEEDS_REAUTHORIZATION:
        held = waiting["waiting_for_operator"]
        notices.append(Notice(REAUTHORIZE, "LionDesk needs re-authorisation: it refused the bridge's access"
                              + (f" ({auth['reason']})" if auth.get("reason") else "")
                              + (f"; {held} lead{'s' if held != 1 else ''} waiting for it" if held else ""),
                              since=_unix(auth.get("since")), count=held))
    if waiting["liondesk_failing"]:
        count = waiting["liondesk_failing"]
        notices.append(Notice(LIONDESK_FAILING, f"LionDesk is failing: {count}{'+' if waiting['more'] else ''} "
                              f"lead{'s' if count != 1 else ''} "
                              "waiting for their next attempt", since=waiting["liondesk_failing_since"], count=count))
    workers = worker_status(conn, now)
    if workers.no_worker:
        notices.append(Notice(NO_WORKER, workers.message,
                              since=workers.last_seen))
    if redis_health(conn)["state"] == REDIS_FULL:
        notices.append(Notice(REDIS_FULL_NOTICE, "Redis is full (at its memory limit): new deliveries are refused "
                              "(Real Geeks delivers them again later)"))
    else:
        memory = redis_memory(conn, settings)
        if memory["warning"]:
            notices.append(Notice(REDIS_NEARLY_FULL_NOTICE, f"Redis is nearly full: {memory['headline']}. "
                                  "`bridge redis trim` makes room (`--dry-run` first), or move to a bigger plan"))
    return notices


def _unix(value) -> float | None:
    """A time the OAuth state reports (ISO 8601 text or unix seconds) as unix seconds, or None."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()
    return None


def next_attempt_at(conn, job_id: str) -> float | None:
    """When RQ's scheduler runs a waiting job next (unix seconds), or None when it is not waiting."""
    for name in QUEUE_NAMES:
        score = conn.zscore(ScheduledJobRegistry(name, connection=conn).key, job_id)
        if score is not None:
            return score
    return None


def parked_status(conn) -> dict:
    """Return how many leads and deliveries wait for Real Geeks to send the lead's details, and the oldest's age."""
    return {"reason": parked.WAITING_FOR_DETAILS, **parked.counts(conn)}
