"""What a failed attempt means for its job: retry on the ladder, wait, or give up now."""

from __future__ import annotations

from rq.exceptions import AbandonedJobError

from bridge import defaults
from bridge.exceptions import PermanentError, RetryableError, WaitingError

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
    decision = decide(exc)
    if job is None:
        return decision
    if decision == GIVE_UP:
        job.retries_left = 0
        return decision
    if job.retries_left is None or not job.retry_intervals:
        return decision
    if decision == WAIT:
        job.retries_left += 1
    step = max(len(job.retry_intervals) - job.retries_left, 0)
    if isinstance(exc, AbandonedJobError) and job.retries_left > 0:
        job.retry_intervals = [*job.retry_intervals[:step], 0, *job.retry_intervals[step + 1:]]
        return decision
    wanted = defaults.WAITING_RETRY_SECONDS if decision == WAIT else getattr(exc, "retry_after", None)
    if wanted and job.retries_left > 0:
        intervals = list(job.retry_intervals)
        intervals[step] = max(intervals[step], int(wanted + 0.999))
        job.retry_intervals = intervals
    return decision


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
    apply(job, exc_value)
    return True


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
