"""What a failed attempt means for its job: retry on the ladder, wait, or give up now."""

from __future__ import annotations

import time

import redis

from rq.exceptions import AbandonedJobError

from bridge import defaults
from bridge.exceptions import PermanentError, RetryableError, UpstreamError, WaitingError
from bridge.ops.status import LAST_FAILURE

RETRY, WAIT, GIVE_UP = "retry", "wait", "give_up"

RETRYING, WAITING, FAILED = "retrying", "waiting", "failed"
"""What becomes of a job after a failed attempt (history, logs and metrics use these)."""


def decide(exc: BaseException) -> str:
    """Classify an exception: permanent errors give up, waiting errors wait, the rest retry.

    Unexpected exceptions (bugs) are retried: a fix deployed within the ladder's hours
    lets the lead through without anyone replaying it.
    """
    if isinstance(exc, PermanentError):
        return GIVE_UP
    if isinstance(exc, WaitingError):
        return WAIT
    return RETRY


def apply(job, exc: BaseException) -> str:
    """Adjust `job`'s retry state for this failure before RQ handles it; return the decision.

    RQ retries a job while `retries_left > 0`, waiting `retry_intervals[len - left]`.
    Giving up sets the budget to zero; waiting gives the spent retry back and waits
    WAITING_RETRY_SECONDS; a Retry-After longer than the ladder's step wins. An attempt
    abandoned by its worker (killed, or cut off by a Redis outage) is retried at once: the
    job did nothing wrong, but it spends its retry, so a job that kills its worker every
    time still ends in the failed store.
    """
    decision, retries_left, intervals = _plan(job, exc)
    if job is not None and retries_left is not None:
        job.retries_left, job.retry_intervals = retries_left, intervals
    return decision


def next_delay(job, exc: BaseException) -> int | None:
    """Seconds until RQ runs `job` again after this failure (as `apply` will set it), or None when it will not."""
    decision, retries_left, intervals = _plan(job, exc)
    if decision == GIVE_UP or not retries_left or not intervals:
        return None
    return intervals[max(len(intervals) - retries_left, 0)]


def _plan(job, exc: BaseException) -> tuple[str, int | None, list | None]:
    """The decision for this failure and the retry budget and ladder the job should then have (pure)."""
    decision = decide(exc)
    if job is None:
        return decision, None, None
    if decision == GIVE_UP:
        return decision, 0, job.retry_intervals
    if job.retries_left is None or not job.retry_intervals:
        return decision, job.retries_left, job.retry_intervals
    retries_left, intervals = job.retries_left, list(job.retry_intervals)
    if decision == WAIT:
        retries_left += 1
    step = max(len(intervals) - retries_left, 0)
    if isinstance(exc, AbandonedJobError) and retries_left > 0:
        intervals[step] = 0  # its worker died: the attempt never really ran, so run it again at once
        return decision, retries_left, intervals
    wanted = defaults.WAITING_RETRY_SECONDS if decision == WAIT else getattr(exc, "retry_after", None)
    if wanted and retries_left > 0:
        intervals[step] = max(intervals[step], int(wanted + 0.999))
    return decision, retries_left, intervals


def outcome(job, exc: BaseException) -> str:
    """Say what the failure of this attempt will lead to, before RQ acts on it."""
    decision = decide(exc)
    if decision == WAIT:
        return WAITING
    if decision == RETRY and job is not None and (job.retries_left or 0) > 0:
        return RETRYING
    return FAILED


def exception_handler(job, exc_type, exc_value, traceback) -> bool:
    """RQ exception handler that applies the failure policy to every job the worker runs.

    RQ calls handlers before it decides between retry and the failed store, so the
    budget set here is the one it acts on. Returning True lets RQ's own logging run.
    """
    what = outcome(job, exc_value)
    apply(job, exc_value)
    remember_failure(job, exc_value, what)
    return True


def remember_failure(job, exc: BaseException, what: str) -> None:
    """Keep this attempt's error (and when the job first failed) on the job, in its meta field.

    Jobs without a lead story (polls) have nowhere else to say why they wait, and the console's
    banner, Retrying and Failed pages read these instead of every lead's story. Saved here, not
    left to RQ: RQ writes the meta when it schedules a retry but not when a job fails for good.
    """
    if job is None:
        return
    previous = job.meta.get(LAST_FAILURE) if isinstance(job.meta.get(LAST_FAILURE), dict) else {}
    now = round(time.time(), 3)
    job.meta[LAST_FAILURE] = {"error_class": exc.__class__.__name__, "error": str(exc)[:500], "at": now,
                              "outcome": what, "first_at": previous.get("first_at", now),
                              # which vendor failed, for "LionDesk failing since ..." (None: not a vendor's failure)
                              "service": exc.service if isinstance(exc, UpstreamError) else None}
    try:
        job.save_meta()
    except redis.RedisError:  # Redis away: RQ's own save of a retry still carries it; a record, never a reason to fail
        pass


EXPECTED = (RetryableError,)
"""Failures the bridge names and plans for (WaitingError is one): logged in one line."""


class OneLineExpectedFailures:
    """Worker mixin: a job failing on an expected, named exception (waiting for
    re-authorisation, retrying on the ladder) logs one line without a traceback; any
    other exception keeps RQ's full traceback. The exception handlers still run."""

    def handle_exception(self, job, *exc_info):
        exc = exc_info[1] if len(exc_info) > 1 else None
        if not isinstance(exc, EXPECTED):
            return super().handle_exception(job, *exc_info)
        from rq.job_lifecycle import call_exception_handlers

        self.log.warning("Worker %s: job %s %s: %s: %s", self.name, job.id, outcome(job, exc),
                         exc.__class__.__name__, exc, extra={"queue": job.origin, "job_id": job.id})
        call_exception_handlers(self._exc_handlers, job, *exc_info)
