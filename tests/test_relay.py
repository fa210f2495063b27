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


# --- the intake backlog (issue 15, item 1) -----------------------------------------------

def test_the_backlog_counts_unread_and_unfinished_entries_with_the_oldest_age(client, redis_conn, webhook_secret):
    import time

    from bridge.ops.status import intake_backlog

    assert intake_backlog(redis_conn) == {"entries": 0, "oldest_age_seconds": None}
    deliver(client, webhook_secret, 3)  # no worker ever started: no consumer group yet
    backlog = intake_backlog(redis_conn, now=time.time() + 60)
    assert backlog["entries"] == 3 and 59 <= backlog["oldest_age_seconds"] <= 61
    Relay(redis_conn, "a")  # the group exists, nothing read
    assert intake_backlog(redis_conn)["entries"] == 3
    redis_conn.xreadgroup(defaults.RELAY_GROUP, "dies", {keys.intake_stream(): ">"}, count=1)  # read, never acked
    assert intake_backlog(redis_conn)["entries"] == 3
    assert Relay(redis_conn, "b").drain() == 2
    backlog = intake_backlog(redis_conn, now=time.time() + 60)
    assert backlog["entries"] == 1 and backlog["oldest_age_seconds"] >= 59  # the dead relay's entry
    redis_conn.xack(keys.intake_stream(), defaults.RELAY_GROUP, *[entry_id for entry_id, _ in
                                                                  redis_conn.xrange(keys.intake_stream())])
    assert intake_backlog(redis_conn) == {"entries": 0, "oldest_age_seconds": None}


def test_the_backlog_is_in_healthz_and_metrics(make_settings, redis_conn, webhook_secret):
    from bridge.web import create_app

    client = create_app(make_settings(metrics_token="t0ken")).test_client()
    deliver(client, webhook_secret, 2)
    intake = client.get("/healthz").get_json()["intake"]
    assert intake["entries"] == 2 and intake["oldest_age_seconds"] is not None
    text = client.get("/metrics", headers={"Authorization": "Bearer t0ken"}).get_data(as_text=True)
    assert "\nbridge_intake_backlog 2.0\n" in text and "\nbridge_intake_oldest_seconds " in text
    Relay(redis_conn, "a").drain()
    assert client.get("/healthz").get_json()["intake"] == {"entries": 0, "oldest_age_seconds": None}


# --- what the intake writes and the relay no longer does ---------------------------------

def test_the_story_and_search_index_are_written_at_intake(client, redis_conn, webhook_secret):
    from bridge.ops import leads
    from bridge.storage import history

    payload = sample_lead(first_name="Kai", last_name="Lee")
    signed_post(client, "/webhooks/realgeeks", payload, webhook_secret)
    assert [entry["kind"] for entry in history.read(redis_conn, payload["id"])] == ["received"]
    assert leads.search(redis_conn, payload["email"]) == [payload["id"]]
    assert leads.search(redis_conn, "kai lee") == [payload["id"]]
    Relay(redis_conn, "a").drain()
    assert [entry["kind"] for entry in history.read(redis_conn, payload["id"])] == ["received"]  # not twice


def test_an_event_stored_by_an_older_intake_gets_its_story_and_index_from_the_relay(redis_conn):
    import json

    from bridge.ops import leads
    from bridge.storage import events, history

    payload = sample_lead()
    event = events.Event(id=events.new_event_id(), body=json.dumps(payload).encode(), headers={}, received_at=1.7e9,
                         status=events.QUEUED, action="created", lead_id=payload["id"])  # no ordering decided
    redis_conn.hset(keys.event(event.id), mapping=event.to_redis())
    redis_conn.xadd(keys.intake_stream(), {"event": event.id})
    Relay(redis_conn, "a").drain()
    assert [entry["kind"] for entry in history.read(redis_conn, payload["id"])] == ["received"]
    assert leads.search(redis_conn, payload["email"]) == [payload["id"]]
    assert event_queue(redis_conn).job_ids == [event_job_id(event.id)]


def test_a_rejected_event_is_recorded_in_one_round_trip(client, redis_conn, webhook_secret, monkeypatch):
    import redis

    from bridge.storage import events, history

    answer = signed_post(client, "/webhooks/realgeeks", {"action": "created", "id": "abc1", "email": "nope"},
                         webhook_secret)
    executed = []
    real = redis.client.Pipeline.execute
    monkeypatch.setattr(redis.client.Pipeline, "execute",
                        lambda pipe, *a, **k: executed.append(len(pipe)) or real(pipe, *a, **k))
    Relay(redis_conn, "a").drain()
    assert len(executed) == 1, executed  # marks, index and story together
    assert events.load(redis_conn, answer.json["event_id"]).status == events.REJECTED
    assert [entry["kind"] for entry in history.read(redis_conn, "abc1")] == ["received", "rejected"]
