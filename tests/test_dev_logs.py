"""What the terminal of `bridge dev` shows for expected states: one line, no traceback."""

from __future__ import annotations

import logging
import sys

import pytest

from bridge.exceptions import UpstreamRejected, UpstreamUnavailable, WaitingError
from workers import failure


class RecordingBase:
    """Stands in for RQ's worker: its handle_exception logs the traceback."""

    log = logging.getLogger("rq.worker")
    name = "w1"

    def __init__(self):
        self.handled = []
        self._exc_handlers = [lambda job, *exc_info: self.handled.append(exc_info[1]) or True]

    def handle_exception(self, job, *exc_info):
        self.log.error("Worker %s: job %s: exception raised while executing (f)\nTraceback (most recent call last):",
                       self.name, job.id)
        self._exc_handlers[0](job, *exc_info)


class Worker(failure.OneLineExpectedFailures, RecordingBase):
    pass


class Job:
    id = "job-1"
    origin = "events"
    retries_left = 3
    retry_intervals = [30, 120, 600]


def raised(exc):
    try:
        raise exc
    except Exception:
        return sys.exc_info()


@pytest.mark.parametrize("exc, outcome", [
    (WaitingError("LionDesk needs re-authorisation"), "waiting"),
    (UpstreamUnavailable("LionDesk answered 503", service="liondesk", status=503), "retrying"),
])
def test_expected_failures_log_one_line(caplog, exc, outcome):
    worker = Worker()
    with caplog.at_level(logging.INFO, logger="rq.worker"):
        worker.handle_exception(Job(), *raised(exc))
    [record] = caplog.records
    line = record.getMessage()
    assert "\n" not in line and "Traceback" not in line and record.exc_info is None
    assert f"job job-1 {outcome}: {exc.__class__.__name__}: {exc}" in line
    assert worker.handled == [exc]  # the failure policy still runs


def test_unexpected_failures_keep_the_traceback(caplog):
    worker = Worker()
    for exc in (KeyError("bug"), UpstreamRejected("LionDesk answered 422", service="liondesk", status=422)):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="rq.worker"):
            worker.handle_exception(Job(), *raised(exc))
        assert "Traceback" in caplog.records[0].getMessage()


def test_the_bridge_worker_uses_it():
    from workers.worker import BridgeWorker

    assert issubclass(BridgeWorker, failure.OneLineExpectedFailures)
