"""Job tools for support, shared by `bridge jobs` and the console: list failed jobs and
jobs waiting for their next attempt, replay failed ones with a fresh retry budget, run
waiting ones now, preview what a bulk action will touch, dismiss, and count outcomes.

A job is described from three sources: RQ's job (status, retry budget, traceback),
the stored event it processes (action, lead, payload) and the lead's history (each
attempt's error and time, written by workers/jobs.py).
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

import redis
from rq import Queue
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job
from rq.registry import FailedJobRegistry, ScheduledJobRegistry
from rq.results import Result

from bridge import defaults
from bridge.exceptions import JobNotFailed, JobNotFound
from bridge.ops import leads, present, status
from bridge.ops.status import LAST_FAILURE
from bridge.storage import events, history, keys, kinds, pending
from bridge.queue import contact_job_id, event_id_of_job, poll_job_id, retry_ladder
from bridge.storage.redis import text

log = logging.getLogger(__name__)

CLI, CONSOLE = "cli", "console"
"""Where a support action came from, recorded with it in the lead's history."""

OUTCOMES = ("processed", "retrying", "waiting", "failed")
"""Job outcomes workers/jobs.py reports; `record_outcome` keeps their times for stats."""

STATS_WINDOWS = {"last_hour": 3600, "last_day": 24 * 3600}
"""The periods `bridge jobs stats` counts outcomes over, in seconds."""

LEAD, POLL, CONTACT, OTHER = "lead", "poll", "contact", "other"
"""Kinds of job: a Real Geeks delivery of a lead (event jobs), the LionDesk poll, one LionDesk contact
synced back. Lead jobs are what support replays in bulk; the others are listed apart."""

LEAD_JOBS, NON_LEAD_JOBS = frozenset({LEAD}), frozenset({POLL, CONTACT, OTHER})
"""The two groups support sees apart: lead jobs, and the poll and contact jobs."""

RETRYING, WAITING = "retrying", "waiting"
"""Why a scheduled job waits: on the retry ladder, or for something an operator must fix (re-authorisation)."""


@dataclass
class JobSummary:
    """One job as support sees it: what it was for, how it failed, how often, and when."""

    id: str
    queue: str | None
    status: str
    event_id: str | None = None
    lead_id: str | None = None
    lead_name: str | None = None
    action: str | None = None
    description: str | None = None
    error_class: str | None = None
    error: str | None = None
    attempts: int | None = None
    first_attempt_at: float | None = None
    last_attempt_at: float | None = None
    retries_left: int | None = None
    dismissed: dict | None = None
    kind: str | None = None
    outcome: str | None = None
    """What the last failed attempt led to: retrying, waiting or failed."""
    next_attempt_at: float | None = None
    """When RQ's scheduler runs a retrying or waiting job next (unix seconds)."""

    def to_json(self) -> dict:
        """Return the summary as JSON-ready data, times in ISO 8601 UTC."""
        data = asdict(self)
        for name in ("first_attempt_at", "last_attempt_at", "next_attempt_at"):
            data[name] = present.iso_time(getattr(self, name))
        return data


@dataclass(frozen=True)
class JobFilter:
    """Which failed jobs to show or replay; every criterion left as None matches all."""

    action: str | None = None
    error_class: str | None = None
    since: float | None = None
    until: float | None = None
    kinds: frozenset[str] | None = None
    """Kinds of job (LEAD, POLL, CONTACT, OTHER) to take; None: every kind."""

    def matches(self, job: JobSummary) -> bool:
        """Whether `job` meets every criterion; times compare against its last attempt."""
        when = job.last_attempt_at
        return ((self.kinds is None or job.kind in self.kinds)
                and (self.action is None or job.action == self.action)
                and (self.error_class is None or job.error_class == self.error_class)
                and (self.since is None or (when is not None and when >= self.since))
                and (self.until is None or (when is not None and when <= self.until)))


@dataclass
class JobDetail:
    """Everything the console shows about one job."""

    summary: JobSummary
    event: events.Event | None
    traceback: str | None
    story: list[dict] = field(default_factory=list)


@dataclass
class ReplayResult:
    """What a replay did with one job: queued again, or left alone because it was not failed."""

    job_id: str
    replayed: bool
    status: str

    def to_json(self) -> dict:
        """Return the result as JSON-ready data."""
        return asdict(self)


@dataclass
class RetryNowResult:
    """What retry-now did with one job: made due now, or left alone because it was not waiting."""

    job_id: str
    due_now: bool
    status: str
    retries_left: int | None = None

    def to_json(self) -> dict:
        """Return the result as JSON-ready data."""
        return asdict(self)


@dataclass
class Preview:
    """What a bulk action would touch, told before it runs: how many jobs, by kind, action and error."""

    job_ids: list[str]
    by_kind: dict[str, int]
    by_action: dict[str, int]
    by_error: dict[str, int]

    @property
    def total(self) -> int:
        """How many jobs the action would touch."""
        return len(self.job_ids)

    def to_json(self) -> dict:
        """Return the preview as JSON-ready data."""
        return {"total": self.total, "by_kind": self.by_kind, "by_action": self.by_action,
                "by_error": self.by_error, "job_ids": self.job_ids}


def preview(summaries: list[JobSummary]) -> Preview:
    """Count the jobs a bulk action would touch by kind, action and error class, most frequent first (pure)."""
    def counted(values) -> dict[str, int]:
        counts: dict[str, int] = {}
        for value in values:
            counts[value] = counts.get(value, 0) + 1
        return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))

    return Preview(job_ids=[summary.id for summary in summaries],
                   by_kind=counted(summary.kind or OTHER for summary in summaries),
                   by_action=counted(summary.action or "-" for summary in summaries),
                   by_error=counted(summary.error_class or "unknown" for summary in summaries))


def job_kind(job_id: str) -> str:
    """Which kind of job an id names: lead (an event), poll or contact, from the id the bridge gave it."""
    if event_id_of_job(job_id) is not None:
        return LEAD
    if job_id.startswith(poll_job_id("")):
        return POLL
    if job_id.startswith(contact_job_id("")):
        return CONTACT
    return OTHER


def summarise(job_id: str, job: Job | None, event: events.Event | None, story: list[dict],
              last_result: Result | None = None, dismissed: dict | None = None) -> JobSummary:
    """Describe a job from what is stored about it (pure: no I/O).

    Attempts, their times and the error come from the lead's history; for a job with
    no lead history (a user event, a poll) they fall back to RQ's own record.
    """
    event_id = event_id_of_job(job_id)
    attempts = [entry for entry in story
                if entry.get("kind") == kinds.ATTEMPT_FAILED and entry.get("event_id") == event_id]
    summary = JobSummary(
        id=job_id,
        queue=job.origin if job else None,
        status="dismissed" if dismissed else (_status_of(job) if job else _jobless_status(event)),
        event_id=event_id,
        lead_id=event.lead_id if event else None,
        lead_name=leads.person_name(leads.event_payload(event)),
        action=event.action if event else None,
        description=job.description if job else None,
        retries_left=job.retries_left if job else None,
        dismissed=dismissed,
        kind=job_kind(job_id),
    )
    remembered = job.meta.get(LAST_FAILURE) if job is not None and isinstance(job.meta, dict) else None
    remembered = remembered if isinstance(remembered, dict) else {}
    if attempts:
        summary.error_class = _text_or_none(attempts[-1].get("error_class"))
        summary.error = _text_or_none(attempts[-1].get("error"))
        summary.outcome = _text_or_none(attempts[-1].get("outcome"))
        summary.attempts = len(attempts)
        summary.first_attempt_at = _number_or_none(attempts[0].get("at"))
        summary.last_attempt_at = _number_or_none(attempts[-1].get("at"))
    elif last_result is not None and last_result.type == Result.Type.FAILED:
        summary.error = _last_line(last_result.exc_string)
        summary.error_class = _text_or_none(remembered.get("error_class"))
        summary.first_attempt_at = _timestamp(job.created_at) if job else None
        summary.last_attempt_at = _timestamp(last_result.created_at)
    elif remembered:  # a poll or contact job between attempts: RQ keeps no result until it fails for good
        summary.error_class = _text_or_none(remembered.get("error_class"))
        summary.error = _text_or_none(remembered.get("error"))
        summary.outcome = _text_or_none(remembered.get("outcome"))
        summary.first_attempt_at = _number_or_none(remembered.get("first_at"))
        summary.last_attempt_at = _number_or_none(remembered.get("at"))
    if summary.status == "failed":
        summary.outcome = "failed"
    return summary


def list_failed(conn, job_filter: JobFilter = JobFilter()) -> list[JobSummary]:
    """Return the failed jobs of every queue that match `job_filter`, most recently failed first."""
    ids = [job_id for name in status.QUEUE_NAMES
           for job_id in FailedJobRegistry(name, connection=conn).get_job_ids()]
    stories: dict[str, list[dict]] = {}
    found = []
    for job_id, job in zip(ids, _jobs(conn, ids)):
        if job is None:
            continue  # its data expired a moment before the registry entry: nothing left to show
        summary = _summary_of(conn, job_id, job, stories)
        if job_filter.matches(summary):
            found.append(summary)
    found.sort(key=lambda summary: summary.last_attempt_at or 0, reverse=True)
    return found


def job_detail(conn, job_id: str) -> JobDetail | None:
    """Return what is known about one job (even one whose RQ data expired), or None when nothing is."""
    (job,), event = _jobs(conn, [job_id]), _event_of(conn, job_id)
    if job is None and event is None:
        return None
    if isinstance(job, Unreadable):
        return JobDetail(summary=_summary_of(conn, job_id, job, {}), event=event, traceback=None, story=[])
    stories: dict[str, list[dict]] = {}
    summary = _describe(conn, job_id, job, event, stories, dismissal(conn, job_id))
    summary.next_attempt_at = status.next_attempt_at(conn, job_id) if job else None
    result = job.latest_result() if job else None
    traceback = result.exc_string if result is not None and result.type == Result.Type.FAILED else None
    story = stories.get(event.lead_id, []) if event and event.lead_id else []
    return JobDetail(summary=summary, event=event, traceback=traceback, story=story)


def replay(conn, job_ids: list[str], *, by: str, via: str,
           intervals=defaults.RETRY_INTERVALS_SECONDS, missing_ok: bool = False) -> list[ReplayResult]:
    """Put failed (or dismissed) jobs back on their queue with a fresh retry budget (`intervals`: the ladder).

    Every id is checked first: one unknown id raises JobNotFound and nothing is
    replayed (`missing_ok`: a job that expired since it was listed is reported as gone
    instead). A job that is not failed any more (already replayed, running, done)
    is left alone, so repeating a replay never queues a job twice.
    """
    jobs = _fetch_all(conn, job_ids, missing_ok)
    return [_replay_one(conn, job, by=by, via=via, intervals=intervals) if isinstance(job, Job)
            else ReplayResult(_id_of(job), replayed=False, status=_gone(job)) for job in jobs]


def summaries(conn, job_ids: list[str], missing_ok: bool = False) -> list[JobSummary]:
    """Describe the given jobs in full (story read); an unknown one raises JobNotFound, or with `missing_ok`
    is left out."""
    jobs = [job for job in _fetch_all(conn, job_ids, missing_ok) if not isinstance(job, str)]
    stories: dict[str, list[dict]] = {}
    return [_summary_of(conn, _id_of(job), job, stories) for job in jobs]


def _fetch_all(conn, job_ids: list[str], missing_ok: bool) -> list:
    """Fetch the jobs of `job_ids` (each once, in order); an unknown one raises JobNotFound, or with
    `missing_ok` stands in the list as its id."""
    job_ids = list(dict.fromkeys(job_ids))
    jobs = _jobs(conn, job_ids)
    missing = [job_id for job_id, job in zip(job_ids, jobs) if job is None]
    if missing and not missing_ok:
        raise JobNotFound(missing)
    return [job if job is not None else job_id for job_id, job in zip(job_ids, jobs)]


def replay_matching(conn, job_filter: JobFilter, *, by: str, via: str,
                    intervals=defaults.RETRY_INTERVALS_SECONDS) -> list[ReplayResult]:
    """Replay every failed job matching `job_filter` (see `replay`)."""
    ids = [summary.id for summary in failed_briefly(conn, job_filter)]
    return replay(conn, ids, by=by, via=via, intervals=intervals, missing_ok=True)


def waiting_ids(conn, kinds: frozenset[str] | None = None) -> list[tuple[str, float]]:
    """Ids of the jobs waiting for their next attempt and when it is, soonest first (of `kinds` only)."""
    due = [(text(raw), score) for name in status.QUEUE_NAMES
           for raw, score in conn.zrange(ScheduledJobRegistry(name, connection=conn).key, 0, -1, withscores=True)]
    due.sort(key=lambda pair: pair[1])
    return [(job_id, score) for job_id, score in due if kinds is None or job_kind(job_id) in kinds]


def list_retrying(conn, job_filter: JobFilter = JobFilter(), limit: int | None = None) -> list[JobSummary]:
    """Return the jobs waiting for their next attempt (on the retry ladder, or waiting for an operator),
    soonest first, each with why it waits, its attempts and when it runs next; at most `limit` of them
    (a page: each costs its job, its event and its lead's story)."""
    due = waiting_ids(conn, job_filter.kinds)
    stories: dict[str, list[dict]] = {}
    found: list[JobSummary] = []
    for start in range(0, len(due), WAITING_CHUNK):
        chunk = due[start:start + WAITING_CHUNK]
        for (job_id, score), job in zip(chunk, _jobs(conn, [job_id for job_id, _ in chunk])):
            if job is None:
                continue  # its data expired; RQ's scheduler drops the entry
            summary = _summary_of(conn, job_id, job, stories)
            summary.next_attempt_at = score
            if summary.outcome not in (RETRYING, WAITING):
                summary.outcome = RETRYING  # scheduled without a recorded failure (an old job): it waits on its ladder
            if job_filter.matches(summary):
                found.append(summary)
                if limit is not None and len(found) >= limit:
                    return found
    return found


WAITING_CHUNK = 200
"""Waiting jobs read per round of `list_retrying`."""


def waiting_briefly(conn, kinds: frozenset[str] | None = None) -> list[JobSummary]:
    """Every waiting job of `kinds` told briefly (kind, action, lead, error class, next attempt), for a
    bulk preview: two round trips in all (each job's kept failure and each event's meta), no story read."""
    due = waiting_ids(conn, kinds)
    found = _briefly(conn, [job_id for job_id, _ in due], "scheduled")
    for summary, (_, score) in zip(found, due):
        summary.next_attempt_at = score
    return found


def failed_briefly(conn, job_filter: JobFilter = JobFilter()) -> list[JobSummary]:
    """The failed jobs matching `job_filter`, most recently failed first, told briefly from each job's kept
    failure and its event's meta (no story read): what the Failed page counts and filters, and a bulk
    replay previews. A job that failed before failures were kept on it is described in full."""
    ids = [job_id for name in status.QUEUE_NAMES for job_id in FailedJobRegistry(name, connection=conn).get_job_ids()]
    found = _briefly(conn, ids, "failed")
    unkept = [summary.id for summary in found if summary.last_attempt_at is None]
    if unkept:
        full = {summary.id: summary for summary in summaries(conn, unkept, missing_ok=True)}
        found = [full.get(summary.id, summary) for summary in found]
    found = [summary for summary in found if job_filter.matches(summary)]
    found.sort(key=lambda summary: summary.last_attempt_at or 0, reverse=True)
    return found


def _briefly(conn, job_ids: list[str], state: str) -> list[JobSummary]:
    """Jobs told from their kept failures and their events' metas: two round trips, whatever their number."""
    event_ids = [event_id_of_job(job_id) for job_id in job_ids]
    stored = [event_id for event_id in event_ids if event_id]
    metas = dict(zip(stored, [meta for meta, _ in events.metas(conn, stored)]))
    found = []
    for job_id, event_id, failure in zip(job_ids, event_ids, status.last_failures(conn, job_ids)):
        meta = (metas.get(event_id) or {}) if event_id else {}
        failure = failure or {}
        found.append(JobSummary(id=job_id, queue=None, status=state, event_id=event_id, lead_id=meta.get("lead_id"),
                                action=meta.get("action"), kind=job_kind(job_id),
                                error_class=_text_or_none(failure.get("error_class")),
                                error=_text_or_none(failure.get("error")), outcome=_text_or_none(failure.get("outcome")),
                                first_attempt_at=_number_or_none(failure.get("first_at")),
                                last_attempt_at=_number_or_none(failure.get("at"))))
    return found


def retry_now(conn, job_ids: list[str], *, by: str, via: str, now: float | None = None,
              missing_ok: bool = False) -> list[RetryNowResult]:
    """Make waiting jobs due now, so the scheduler of a running worker starts them within a second or two.

    The retry budget is left as it is: the ladder already counted this attempt when it scheduled
    it, so an attempt run early is one of the job's retries like any other (a job that fails
    again goes on to the next step). Every id is checked first: one unknown id raises JobNotFound
    and nothing is touched (`missing_ok`: it is reported as expired instead). A job no longer waiting (it started meanwhile, or finished) is left alone.
    Only the schedule's time changes (ZADD XX): RQ's scheduler stays the one that moves the job to
    its queue, so a retry-now racing the scheduler, or another retry-now, cannot queue it twice.
    """
    when = int(time.time() if now is None else now)  # RQ's scheduler compares whole seconds
    results = []
    for job in _fetch_all(conn, job_ids, missing_ok):
        if not isinstance(job, Job):
            results.append(RetryNowResult(_id_of(job), due_now=False, status=_gone(job)))
            continue
        registry = ScheduledJobRegistry(job.origin, connection=conn)
        pipe = conn.pipeline(transaction=True)
        pipe.zadd(registry.key, {job.id: when}, xx=True)
        pipe.zscore(registry.key, job.id)
        _, score = pipe.execute()
        if score is None:
            results.append(RetryNowResult(job.id, due_now=False, status=_status_of(job)))
            continue
        _write_history(conn, job.id, kinds.RETRIED_NOW, by=by, via=via, retries_left=job.retries_left)
        results.append(RetryNowResult(job.id, due_now=True, status="scheduled", retries_left=job.retries_left))
    return results


def dismiss(conn, job_id: str, reason: str, *, by: str, via: str) -> bool:
    """Take a failed job out of the failed store, keeping why and who; False if it was already dismissed.

    The job's data stays (until its failure TTL) so it can still be inspected or replayed.
    Raises JobNotFound for an unknown id and JobNotFailed for a job that is not failed.
    """
    reason = reason.strip()
    if not reason:
        raise ValueError("a reason is required to dismiss a job")
    (job,) = _jobs(conn, [job_id])
    if job is None:
        raise JobNotFound([job_id])
    if isinstance(job, Unreadable):
        raise JobNotFailed(job_id, "unreadable")
    if conn.hexists(keys.failed_dismissed(), job_id):
        return False
    if not FailedJobRegistry(job.origin, connection=conn).remove(job):
        raise JobNotFailed(job_id, _status_of(job))
    record = {"reason": reason, "by": by, "via": via, "at": round(time.time(), 3)}
    with conn.pipeline() as pipe:
        pipe.hset(keys.failed_dismissed(), job_id, json.dumps(record))
        pipe.expire(keys.failed_dismissed(), defaults.FAILED_JOB_TTL_SECONDS)
        pipe.execute()
    _write_history(conn, job_id, kinds.DISMISSED, reason=reason, by=by, via=via)
    return True


def dismissal(conn, job_id: str) -> dict | None:
    """Return why, when and by whom a job was dismissed, or None when it was not."""
    raw = conn.hget(keys.failed_dismissed(), job_id)
    return json.loads(raw) if raw else None


def record_outcome(conn, outcome: str, kind: str = "event", now: float | None = None) -> None:
    """Note that a job run of `kind` ended with `outcome`, for `bridge jobs stats`; a Redis error never fails the job."""
    now = time.time() if now is None else now
    key = keys.job_outcomes(outcome, kind)
    try:
        pipe = conn.pipeline(transaction=False)
        pipe.zadd(key, {f"{now:.6f}-{secrets.token_hex(4)}": now})
        pipe.zremrangebyscore(key, "-inf", now - defaults.JOB_STATS_TTL_SECONDS)
        pipe.expire(key, defaults.JOB_STATS_TTL_SECONDS)
        pipe.execute()
    except redis.RedisError:
        log.debug("job outcome %s not recorded: redis unavailable", outcome)


def outcome_counts(conn, now: float | None = None, kind: str = "event") -> dict[str, dict[str, int]]:
    """Return how many job runs of `kind` ended with each outcome over the last hour and the last day."""
    now = time.time() if now is None else now
    pipe = conn.pipeline(transaction=False)
    for outcome in OUTCOMES:
        for seconds in STATS_WINDOWS.values():
            pipe.zcount(keys.job_outcomes(outcome, kind), now - seconds, now)
    counts = iter(pipe.execute())
    return {outcome: {window: next(counts) for window in STATS_WINDOWS} for outcome in OUTCOMES}


CHART_OUTCOMES = ("processed", "failed")
"""The outcomes the overview's chart draws per hour: delivered, and failed for good."""


def hourly_outcomes(conn, now: float | None = None, hours: int = 24, kind: str = "event") -> list[dict]:
    """Return, for each of the last `hours` clock hours (the current one last), how many job runs of
    `kind` were processed and how many failed for good: `{"start": unix seconds, "processed": n, "failed": n}`."""
    now = time.time() if now is None else now
    first = (int(now) // 3600 - hours + 1) * 3600
    pipe = conn.pipeline(transaction=False)
    for hour in range(hours):
        start = first + hour * 3600
        for outcome in CHART_OUTCOMES:
            pipe.zcount(keys.job_outcomes(outcome, kind), start, f"({start + 3600}")
    counts = iter(pipe.execute())
    return [{"start": first + hour * 3600, **{outcome: next(counts) for outcome in CHART_OUTCOMES}}
            for hour in range(hours)]


def stats(conn, now: float | None = None) -> dict:
    """Return queue depths, the oldest waiting job's age and recent outcome counts."""
    return {"queues": status.queue_depths(conn),
            "oldest_waiting_seconds": status.oldest_waiting_age(conn, now),
            "outcomes": outcome_counts(conn, now),
            "parked": status.parked_status(conn)}


def _replay_one(conn, job: Job, *, by: str, via: str, intervals) -> ReplayResult:
    """Requeue one job from the failed store (or the dismissed list) with the full retry ladder."""
    ladder = retry_ladder(intervals)
    # A fresh budget starts a fresh record of failures ("failing since"). Set to None, not popped:
    # RQ does not write an empty meta, so the old one would stay.
    job.meta[LAST_FAILURE] = None
    event = _event_of(conn, job.id)
    # Waiting again before it is queued again (see pending.add); taken back below if not replayed.
    added = bool(event and event.lead_id) and pending.add(conn, event.lead_id, event.id)
    # RQ's requeue keeps the spent budget (retries_left 0 after giving up): a replayed
    # job would fail for good at its first hiccup. Restore the whole ladder instead.
    job.retries_left, job.retry_intervals = ladder.max, list(ladder.intervals)
    try:
        FailedJobRegistry(job.origin, connection=conn).requeue(job)
    except InvalidJobOperation:
        # Not in the failed store: replay it only if support dismissed it. HDEL is the
        # guard, so two racing replays of a dismissed job queue it once.
        if not conn.hdel(keys.failed_dismissed(), job.id):
            if added:
                pending.remove(conn, event.lead_id, event.id)
            return ReplayResult(job.id, replayed=False, status=_status_of(job))
        job.started_at = job.ended_at = None
        Queue(job.origin, connection=conn).enqueue_job(job)
    _write_history(conn, job.id, kinds.REPLAYED, by=by, via=via, retries=ladder.max)
    return ReplayResult(job.id, replayed=True, status="queued")


def _describe(conn, job_id: str, job: Job | None, event: events.Event | None, stories: dict,
              dismissed: dict | None = None) -> JobSummary:
    """Load the rest of what `summarise` needs for one job (reusing lead stories already read) and summarise it."""
    lead_id = event.lead_id if event else None
    if lead_id and lead_id not in stories:
        stories[lead_id] = history.read(conn, lead_id)
    story = stories.get(lead_id, []) if lead_id else []
    has_attempts = any(entry.get("kind") == kinds.ATTEMPT_FAILED for entry in story)
    last_result = job.latest_result() if job is not None and not has_attempts else None
    return summarise(job_id, job, event, story, last_result, dismissed)


def _write_history(conn, job_id: str, kind: str, **facts) -> None:
    """Record a support action on a job in its lead's history (jobs without a lead have none)."""
    event = _event_of(conn, job_id)
    if event is not None and event.lead_id:
        history.append(conn, event.lead_id, kind, job_id=job_id, event_id=event.id, **facts)


def _event_of(conn, job_id: str) -> events.Event | None:
    """The stored event an event job processes, if it is still stored."""
    event_id = event_id_of_job(job_id)
    return events.load(conn, event_id) if event_id else None


@dataclass(frozen=True)
class Unreadable:
    """A job whose RQ record exists but cannot be read (written by hand, or by another release)."""

    job_id: str
    problem: str


def _jobs(conn, job_ids: list[str]) -> list:
    """Fetch RQ jobs in one round trip: each a Job, None when RQ does not have it, or Unreadable.

    One record RQ cannot load (a date that is not one, a meta that will not unpickle) must not
    break every page that lists it: fetched one by one then, each broken one stands as Unreadable.
    """
    try:
        return Job.fetch_many(job_ids, connection=conn)
    except Exception:  # noqa: BLE001 (a stored record may hold anything: whatever RQ raises on it)
        pass
    found = []
    for job_id in job_ids:
        try:
            found.append(Job.fetch(job_id, connection=conn))
        except NoSuchJobError:
            found.append(None)
        except Exception as exc:  # noqa: BLE001 (as above)
            found.append(Unreadable(job_id, f"{exc.__class__.__name__}: {str(exc)[:200]}"))
    return found


def _summary_of(conn, job_id: str, job, stories: dict) -> JobSummary:
    """Summarise a fetched job for a list; an unreadable one (or one that fails to describe) still gets its row."""
    event = _event_of(conn, job_id)
    if not isinstance(job, Unreadable):
        try:
            return _describe(conn, job_id, job, event, stories)
        except Exception as exc:  # noqa: BLE001 (a stored record may hold anything)
            job = Unreadable(job_id, f"{exc.__class__.__name__}: {str(exc)[:200]}")
    return JobSummary(id=job_id, queue=None, status="unreadable", event_id=event_id_of_job(job_id),
                      lead_id=event.lead_id if event else None, action=event.action if event else None,
                      kind=job_kind(job_id), error_class="UnreadableJob",
                      error=f"RQ's record of this job cannot be read ({job.problem})")


def _id_of(job) -> str:
    """The job id of what `_fetch_all` gives: a Job, an Unreadable, or the id of a job RQ does not have."""
    if isinstance(job, Job):
        return job.id
    return job.job_id if isinstance(job, Unreadable) else job


def _gone(job) -> str:
    """The status a replay or retry-now reports for a job it could not act on: expired, or unreadable."""
    return "unreadable" if isinstance(job, Unreadable) else "expired"


def _jobless_status(event: events.Event | None) -> str:
    """Why an event has no RQ job: the relay rejected its payload, or the job's data expired."""
    return "rejected" if event is not None and event.status == events.REJECTED else "expired"


def _status_of(job: Job) -> str:
    """The job's RQ status as text (`failed`, `queued`, `scheduled`, `finished`, ...)."""
    value = job.get_status(refresh=False)
    return getattr(value, "value", None) or str(value or "unknown")


def _timestamp(moment: datetime | None) -> float | None:
    """Unix seconds of an RQ datetime (RQ stores naive UTC)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return round(moment.timestamp(), 3)


def _text_or_none(value) -> str | None:
    """A stored fact as text when it is text (a record may hold anything), else None."""
    return value if isinstance(value, str) else None


def _number_or_none(value) -> float | None:
    """A stored fact as a number when it is one (not a bool), else None."""
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _last_line(text: str | None) -> str | None:
    """The last non-blank line of a traceback: the exception and its message."""
    lines = [line for line in (text or "").splitlines() if line.strip()]
    return lines[-1].strip()[:500] if lines else None
