"""Forward work waiting per lead (`bridge.storage.pending`): written by the relay, the job and replay, read by
the reverse sync. Real Redis, the real relay and a real burst worker (the sync core replaced)."""

from __future__ import annotations

from bridge import defaults
from bridge.exceptions import PermanentError, RetryableError
from bridge.ops import jobs
from bridge.queue import event_job_id
from bridge.storage import keys, pending
from tests.ops_support import deliver, raising, run_jobs, succeeding
from workers.relay import Relay


def test_an_event_waits_until_removed_and_counts_once(redis_conn):
    assert pending.add(redis_conn, "lead1", "e1", now=100.0) is True
    assert pending.add(redis_conn, "lead1", "e2", now=101.0) is True
    assert pending.add(redis_conn, "lead1", "e1", now=102.0) is False  # queued again: still since 100
    assert pending.waiting(redis_conn, "lead1", now=103.0) == ["e1", "e2"]
    pending.remove(redis_conn, "lead1", "e1")
    assert pending.waiting(redis_conn, "lead1", now=103.0) == ["e2"]
    assert pending.waiting(redis_conn, "other", now=103.0) == []


def test_entries_past_their_age_stop_counting_and_are_dropped(redis_conn):
    ttl = defaults.PENDING_EVENT_TTL_SECONDS
    pending.add(redis_conn, "lead1", "left-by-a-killed-job", now=1000.0)
    assert pending.waiting(redis_conn, "lead1", now=1000.0 + ttl + 1) == []
    pending.add(redis_conn, "lead1", "new", now=1000.0 + ttl + 1)
    assert redis_conn.zrange(keys.lead_pending_events("lead1"), 0, -1) == [b"new"]  # dropped, not just hidden
    assert 0 < redis_conn.ttl(keys.lead_pending_events("lead1")) <= ttl  # an idle lead's set goes too


def test_the_relay_marks_an_event_waiting_and_its_processed_job_settles_it(client, redis_conn, settings,
                                                                         webhook_secret, monkeypatch):
    lead = deliver(client, webhook_secret)
    Relay(redis_conn, "test-relay").drain()
    assert pending.waiting(redis_conn, lead["id"]) == [lead["event_id"]]
    run_jobs(settings, redis_conn, monkeypatch, succeeding)
    assert pending.waiting(redis_conn, lead["id"]) == []
    Relay(redis_conn, "takeover").dispatch(lead["event_id"])  # a relay that died before acknowledging, redone
    assert pending.waiting(redis_conn, lead["id"]) == []  # its job exists and settled: not waiting again


def test_a_retrying_job_keeps_waiting_and_one_failed_for_good_does_not(client, redis_conn, settings,
                                                                       webhook_secret, monkeypatch):
    retried = deliver(client, webhook_secret)
    run_jobs(settings, redis_conn, monkeypatch, raising(RetryableError("LionDesk answered 503")))
    assert pending.waiting(redis_conn, retried["id"]) == [retried["event_id"]]  # its retry is scheduled

    failed = deliver(client, webhook_secret)
    run_jobs(settings, redis_conn, monkeypatch, raising(PermanentError("refused")))
    assert pending.waiting(redis_conn, failed["id"]) == []


def test_a_replay_waits_again_and_a_refused_replay_does_not(client, redis_conn, settings, webhook_secret,
                                                            monkeypatch):
    lead = deliver(client, webhook_secret)
    run_jobs(settings, redis_conn, monkeypatch, raising(PermanentError("refused")))
    job_id = event_job_id(lead["event_id"])
    (result,) = jobs.replay(redis_conn, [job_id], by="support", via=jobs.CLI)
    assert result.replayed and pending.waiting(redis_conn, lead["id"]) == [lead["event_id"]]
    run_jobs(settings, redis_conn, monkeypatch, succeeding)
    assert pending.waiting(redis_conn, lead["id"]) == []
    (again,) = jobs.replay(redis_conn, [job_id], by="support", via=jobs.CLI)  # done: nothing to replay
    assert not again.replayed and pending.waiting(redis_conn, lead["id"]) == []


def test_the_mark_goes_down_before_the_job_is_queued(client, redis_conn, webhook_secret, monkeypatch):
    # A job quick to finish must find its mark to take away, or the event would wait for good.
    import workers.relay

    lead = deliver(client, webhook_secret)
    seen = []
    real_enqueue = workers.relay.enqueue_event

    def enqueue_and_look(*args, **kwargs):
        seen.append(pending.waiting(redis_conn, lead["id"]))
        return real_enqueue(*args, **kwargs)

    monkeypatch.setattr(workers.relay, "enqueue_event", enqueue_and_look)
    Relay(redis_conn, "test-relay").drain()
    assert seen == [[lead["event_id"]]]
