"""The relay: intake stream entries become exactly one RQ job each, even when a worker dies."""

from bridge import defaults
from bridge.sandbox.sample import sample_lead
from bridge.storage import keys
from tests.support import signed_post
from bridge.queue import event_job_id, event_queue
from workers.relay import Relay


def deliver(client, secret, count=1):
    """Post `count` new leads; return their event ids."""
    return [signed_post(client, "/webhooks/realgeeks", sample_lead(), secret).json["event_id"]
            for _ in range(count)]


def test_each_entry_becomes_one_job_and_is_acknowledged(client, redis_conn, webhook_secret):
    event_ids = deliver(client, webhook_secret, 3)
    assert Relay(redis_conn, "a").drain() == 3
    assert event_queue(redis_conn).job_ids == [event_job_id(e) for e in event_ids]
    pending = redis_conn.xpending(keys.intake_stream(), defaults.RELAY_GROUP)
    assert pending["pending"] == 0


def test_relaying_an_event_twice_still_makes_one_job(client, redis_conn, webhook_secret):
    (event_id,) = deliver(client, webhook_secret)
    relay = Relay(redis_conn, "a")
    relay.drain()
    relay.dispatch(event_id)  # as a relay that died before acknowledging would, on takeover
    assert event_queue(redis_conn).job_ids == [event_job_id(event_id)]


def test_entry_of_a_dead_worker_is_taken_over(client, redis_conn, webhook_secret, monkeypatch):
    (event_id,) = deliver(client, webhook_secret)
    Relay(redis_conn, "dead")  # ensures the group exists
    # "dead" reads the entry and dies before relaying or acknowledging it
    redis_conn.xreadgroup(defaults.RELAY_GROUP, "dead", {keys.intake_stream(): ">"}, count=10)
    survivor = Relay(redis_conn, "survivor")
    assert survivor.drain() == 0  # not idle long enough yet: still the dead worker's
    monkeypatch.setattr(defaults, "RELAY_CLAIM_IDLE_MILLISECONDS", 0)
    survivor._last_claim = 0.0
    assert survivor.relay_once() == 1
    assert event_queue(redis_conn).job_ids == [event_job_id(event_id)]
    assert redis_conn.xpending(keys.intake_stream(), defaults.RELAY_GROUP)["pending"] == 0


def test_entries_stored_before_any_worker_started_are_relayed(client, redis_conn, webhook_secret):
    event_ids = deliver(client, webhook_secret, 2)  # no consumer group exists yet
    assert Relay(redis_conn, "late").drain() == 2
    assert len(event_queue(redis_conn).job_ids) == len(event_ids)
