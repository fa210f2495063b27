"""POST /webhooks/realgeeks: every outcome of the intake, against a real Redis."""

import hashlib
import json
from pathlib import Path

import pytest
import redis

from bridge.intake.signature import SIGNATURE_HEADER, sign, signature_ok
from bridge.sandbox.sample import sample_lead
from bridge.storage import events, history, keys
from tests.support import signed_post
from bridge.queue import event_job_id, event_queue
from workers.relay import Relay

URL = "/webhooks/realgeeks"
FIXTURE = Path(__file__).parent / "fixtures" / "new_lead.json"
PUBLISHED_SIGNATURE = "2c7f249af030ec39c0374c3493cfd305c89a5da3d71e0ecf84d5d60c41a618ab"


def stored_event_count(conn):
    """How many events the intake has stored."""
    return conn.zcard(keys.events_by_time())


def test_published_test_vector_signs_the_fixture_bytes():
    body = FIXTURE.read_bytes()
    assert len(body) == 970
    assert hashlib.sha256(body).hexdigest() == "750808ab9af42adb6a734f7d23a3b46039fcf7121a615703702ee7e6abf6eab6"
    assert sign(body, "seekrit") == PUBLISHED_SIGNATURE
    assert signature_ok(body, PUBLISHED_SIGNATURE.upper(), "seekrit")
    assert not signature_ok(body + b"\n", PUBLISHED_SIGNATURE, "seekrit")


def test_published_test_vector_is_accepted_end_to_end(make_settings, redis_conn):
    from bridge.web import create_app

    client = create_app(make_settings(realgeeks_webhook_secret="seekrit")).test_client()
    response = client.post(URL, data=FIXTURE.read_bytes(), headers={SIGNATURE_HEADER: PUBLISHED_SIGNATURE})
    assert response.status_code == 200, response.json
    event = events.load(redis_conn, response.json["event_id"])
    assert event.body == FIXTURE.read_bytes()
    assert event.lead_id == "a27c20af4497415d9e4e7334dd1d40d2"


@pytest.mark.parametrize("signature", [None, "", "0" * 64, "sha256=" + "0" * 64])
def test_missing_or_wrong_signature_is_401_and_stores_nothing(client, redis_conn, signature):
    headers = {SIGNATURE_HEADER: signature} if signature is not None else {}
    response = client.post(URL, data=json.dumps(sample_lead()), headers=headers)
    assert response.status_code == 401
    assert stored_event_count(redis_conn) == 0
    assert event_queue(redis_conn).count == 0


def test_signature_made_with_another_secret_is_401(client, redis_conn):
    response = signed_post(client, URL, sample_lead(), "not-the-secret")
    assert response.status_code == 401
    assert stored_event_count(redis_conn) == 0


def relayed(conn):
    """Run the worker's relay until the intake stream is empty; return the event queue."""
    Relay(conn, "test-relay").drain()
    return event_queue(conn)


def test_valid_delivery_is_stored_with_headers_and_queued_as_one_job(client, redis_conn, webhook_secret):
    payload = sample_lead()
    response = signed_post(client, URL, payload, webhook_secret, headers={
        "X-Lead-Router-Timestamp": "2016-12-24T01:58:52.789337607Z"})
    assert response.status_code == 200
    assert response.json["status"] == "queued"
    event_id = response.json["event_id"]

    event = events.load(redis_conn, event_id)
    assert event.status == events.QUEUED
    assert json.loads(event.body) == payload
    assert event.headers["X-Lead-Router-Timestamp"] == "2016-12-24T01:58:52.789337607Z"
    assert event.headers[SIGNATURE_HEADER]
    assert event.received_at > 0
    assert event.lead_id == payload["id"]

    queue = relayed(redis_conn)
    assert queue.job_ids == [event_job_id(event_id)]
    job = queue.fetch_job(event_job_id(event_id))
    assert job.args == (event_id,)
    assert job.retries_left == 6
    assert [entry["kind"] for entry in history.read(redis_conn, payload["id"])] == ["received"]


def test_identical_delivery_is_acknowledged_without_a_second_job(client, redis_conn, webhook_secret):
    body = json.dumps(sample_lead()).encode()
    first = signed_post(client, URL, None, webhook_secret, body=body)
    second = signed_post(client, URL, None, webhook_secret, body=body)
    assert first.status_code == 200
    assert second.status_code == 200
    assert second.json == {**second.json, "status": "duplicate", "event_id": first.json["event_id"]}
    assert relayed(redis_conn).count == 1
    assert stored_event_count(redis_conn) == 1
    ttl = redis_conn.ttl(keys.delivery_dedupe(hashlib.sha256(body).hexdigest()))
    assert 7 * 24 * 3600 - 60 < ttl <= 7 * 24 * 3600


def test_same_lead_with_a_different_body_is_a_new_event(client, redis_conn, webhook_secret):
    payload = sample_lead()
    signed_post(client, URL, payload, webhook_secret)
    signed_post(client, URL, {**payload, "action": "updated", "phone": "808-555-0101"}, webhook_secret)
    assert relayed(redis_conn).count == 2


def test_action_header_wins_over_body_action(client, redis_conn, webhook_secret):
    response = signed_post(client, URL, sample_lead(action="created"), webhook_secret, action="updated")
    assert events.load(redis_conn, response.json["event_id"]).action == "updated"


def test_action_falls_back_to_body(client, redis_conn, webhook_secret):
    response = signed_post(client, URL, sample_lead(action="activity_added"), webhook_secret)
    assert response.json["action"] == "activity_added"


@pytest.mark.parametrize("body, reason", [(b"{not json", "not valid JSON"), (b"[1, 2]", "must be an object"),
                                          (b"\xff\xfe", "not valid JSON"), (b"", "not valid JSON")])
def test_signed_non_object_body_is_400_and_kept_for_support(client, redis_conn, webhook_secret, body, reason):
    response = signed_post(client, URL, None, webhook_secret, body=body)
    assert response.status_code == 400
    assert reason in json.dumps(response.json["errors"])
    (rejected,) = events.list_rejected(redis_conn)
    assert rejected.body == body
    assert relayed(redis_conn).count == 0


def test_body_over_one_mebibyte_is_413(client, redis_conn, webhook_secret):
    payload = sample_lead(notes="x" * (1024 * 1024))
    response = signed_post(client, URL, payload, webhook_secret)
    assert response.status_code == 413
    assert stored_event_count(redis_conn) == 0


def test_body_just_under_the_limit_is_accepted(client, webhook_secret):
    payload = sample_lead(notes="")
    padding = 1024 * 1024 - len(json.dumps(payload).encode()) - 10  # the same lead: the same length but the notes
    response = signed_post(client, URL, {**payload, "notes": "x" * padding}, webhook_secret)
    assert response.status_code == 200


def test_other_partner_id_is_403(make_settings, redis_conn, webhook_secret):
    from bridge.web import create_app

    client = create_app(make_settings(realgeeks_partner_id="our-partner")).test_client()
    refused = signed_post(client, URL, sample_lead(partner_id="someone-else"), webhook_secret)
    assert refused.status_code == 403
    assert relayed(redis_conn).count == 0
    accepted = signed_post(client, URL, sample_lead(partner_id="our-partner"), webhook_secret)
    assert accepted.status_code == 200


def test_unknown_action_is_acknowledged_stored_and_ignored(client, redis_conn, webhook_secret):
    response = signed_post(client, URL, {"action": "user_deleted", "id": "14187"}, webhook_secret)
    assert response.status_code == 200
    assert response.json["status"] == "ignored"
    assert events.load(redis_conn, response.json["event_id"]).status == events.IGNORED
    assert relayed(redis_conn).count == 0


def test_user_updated_is_queued(client, redis_conn, webhook_secret):
    response = signed_post(client, URL, {"action": "user_updated", "id": "14187", "name": "Jack Johnson",
                                         "email": "jack@music.com", "role": "Agent"}, webhook_secret)
    assert response.status_code == 200
    assert relayed(redis_conn).count == 1


def test_delivery_without_an_action_is_kept_as_rejected_and_acknowledged(client, redis_conn, webhook_secret):
    payload = {"id": "abc", "first_name": "No action"}
    response = signed_post(client, URL, payload, webhook_secret)
    assert response.status_code == 200
    assert response.json["status"] == "rejected" and "action" in response.json["errors"]
    (rejected,) = events.list_rejected(redis_conn)
    assert json.loads(rejected.body) == payload
    assert relayed(redis_conn).count == 0


@pytest.mark.parametrize("payload, field", [
    ({"action": "created", "first_name": "No Id"}, "id"),
    ({"action": "created", "id": "abc", "email": "not-an-email"}, "email"),
    ({"action": "activity_added", "id": "abc", "activities": [{"description": "no type"}]}, "activities"),
    ({"action": "updated", "id": "abc", "created": "last tuesday"}, "created"),
    ({"action": "user_updated", "name": "No id"}, "id"),
])
def test_signed_payload_failing_the_schema_is_kept_with_its_errors_and_gets_no_job(
        client, redis_conn, webhook_secret, payload, field):
    response = signed_post(client, URL, payload, webhook_secret)
    assert response.status_code == 200  # acknowledged: redelivering the same bytes cannot fix it
    assert relayed(redis_conn).count == 0
    (rejected,) = events.list_rejected(redis_conn)
    assert rejected.id == response.json["event_id"]
    assert field in rejected.errors
    assert json.loads(rejected.body) == payload
    assert events.load(redis_conn, rejected.id).status == events.REJECTED


def test_rejected_lead_delivery_shows_in_the_lead_history(client, redis_conn, webhook_secret):
    signed_post(client, URL, {"action": "created", "id": "ABC-def", "email": "nope"}, webhook_secret)
    relayed(redis_conn)
    received, rejected = history.read(redis_conn, "abcdef")
    assert received["kind"] == "received"
    assert rejected["kind"] == "rejected" and "email" in rejected["errors"]


def test_unset_secret_refuses_with_503(make_settings, redis_conn):
    from bridge.web import create_app

    client = create_app(make_settings(realgeeks_webhook_secret=None)).test_client()
    response = client.post(URL, data=b"{}", headers={SIGNATURE_HEADER: sign(b"{}", "")})
    assert response.status_code == 503
    assert stored_event_count(redis_conn) == 0


def test_redis_down_is_503_never_2xx(make_settings, webhook_secret):
    from bridge.web import create_app
    from tests.support import free_port

    client = create_app(make_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0")).test_client()
    response = signed_post(client, URL, sample_lead(), webhook_secret)
    assert response.status_code == 503
    assert response.headers["Retry-After"]


def test_redis_failing_during_the_store_is_503(app, client, webhook_secret, monkeypatch):
    def broken(*args, **kwargs):
        raise redis.ConnectionError("connection reset")

    monkeypatch.setattr(redis.connection.Connection, "send_command", broken)
    response = signed_post(client, URL, sample_lead(), webhook_secret)
    assert response.status_code == 503


def test_a_connection_redis_closed_is_replaced_and_the_delivery_stored(app, client, redis_conn, webhook_secret):
    assert signed_post(client, URL, sample_lead(), webhook_secret).status_code == 200
    assert redis_conn.client_kill_filter(skipme=True) >= 1  # the store's connection too, as Redis closes idle ones
    response = signed_post(client, URL, sample_lead(), webhook_secret)
    assert response.status_code == 200 and response.json["status"] == "queued"
    assert stored_event_count(redis_conn) == 2


def test_a_script_redis_forgot_is_loaded_again(app, client, redis_conn, webhook_secret):
    redis_conn.script_flush()  # as after a Redis restart
    response = signed_post(client, URL, sample_lead(), webhook_secret)
    assert response.status_code == 200 and response.json["status"] == "queued"


def test_get_is_405(client):
    assert client.get(URL).status_code == 405


# --- delivery identity and ordering (issue 12, item 1) -----------------------------------

STAMP = "X-Lead-Router-Timestamp"


def stamp_at(seconds: float, digits: int = 9) -> str:
    """An X-Lead-Router-Timestamp for unix time `seconds`, with `digits` fractional digits (0-9)."""
    from datetime import datetime, timezone

    whole = int(seconds)
    text = datetime.fromtimestamp(whole, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f"{round((seconds - whole) * 1e9):09d}"[:digits]
    return f"{text}.{fraction}Z" if digits else f"{text}Z"


def test_identical_bytes_at_different_timestamps_are_two_changes(client, redis_conn, webhook_secret):
    import time

    body = json.dumps(sample_lead(action="updated")).encode()
    now = time.time()
    first = signed_post(client, URL, None, webhook_secret, body=body, headers={STAMP: stamp_at(now - 2)})
    second = signed_post(client, URL, None, webhook_secret, body=body, headers={STAMP: stamp_at(now - 1)})
    assert [first.json["status"], second.json["status"]] == ["queued", "queued"]
    assert first.json["event_id"] != second.json["event_id"]
    assert relayed(redis_conn).count == 2
    one, two = (events.load(redis_conn, answer.json["event_id"]) for answer in (first, second))
    assert one.ordered_by == two.ordered_by == "timestamp"
    assert two.order_ns - one.order_ns == 1_000_000_000


@pytest.mark.parametrize("digits", [0, 3, 6, 9])
def test_a_redelivery_with_the_same_timestamp_is_a_duplicate_however_the_stamp_is_written(
        client, redis_conn, webhook_secret, digits):
    import time

    body = json.dumps(sample_lead(action="updated")).encode()
    moment = int(time.time()) - 10  # a whole second: every number of digits names the same instant
    first = signed_post(client, URL, None, webhook_secret, body=body, headers={STAMP: stamp_at(moment, 9)})
    again = signed_post(client, URL, None, webhook_secret, body=body, headers={STAMP: stamp_at(moment, digits)})
    assert first.status_code == again.status_code == 200
    assert again.json["status"] == "duplicate" and again.json["event_id"] == first.json["event_id"]
    assert relayed(redis_conn).count == 1


def test_without_the_header_identical_bytes_are_one_delivery(client, redis_conn, webhook_secret):
    body = json.dumps(sample_lead(action="updated")).encode()
    assert signed_post(client, URL, None, webhook_secret, body=body).json["status"] == "queued"
    assert signed_post(client, URL, None, webhook_secret, body=body).json["status"] == "duplicate"
    # the same bytes with a header are a delivery of their own (the header names a change)
    assert signed_post(client, URL, None, webhook_secret, body=body,
                       headers={STAMP: stamp_at(1.7e9)}).json["status"] == "queued"


@pytest.mark.parametrize("offset, by, note", [
    (0, "timestamp", None), (-3600, "timestamp", None), (240, "timestamp", None),
    (3 * 86400 + 120, "receipt", "ahead of receipt (more than 5.0 minutes)"),
    (-8 * 86400, "receipt", "before receipt (more than 7.0 days)"),
    (None, "receipt", "no X-Lead-Router-Timestamp header"),
    ("last tuesday", "receipt", "'last tuesday' is not a timestamp"),
])
def test_the_timestamp_orders_only_within_its_tolerance_and_the_story_says_so(
        client, redis_conn, webhook_secret, offset, by, note):
    import time

    payload = sample_lead(action="updated")
    headers = {}
    if isinstance(offset, str):
        headers[STAMP] = offset
    elif offset is not None:
        headers[STAMP] = stamp_at(time.time() + offset)
    answer = signed_post(client, URL, payload, webhook_secret, headers=headers)
    event = events.load(redis_conn, answer.json["event_id"])
    assert event.ordered_by == by
    received_ns = int(event.received_at * 1e9)
    if by == "receipt":
        assert event.order_ns == received_ns and note in event.order_note
    else:
        assert abs(event.order_ns - (received_ns + offset * 1e9)) < 1e7 and event.order_note is None
    relayed(redis_conn)
    (received,) = [entry for entry in history.read(redis_conn, payload["id"]) if entry["kind"] == "received"]
    assert received["ordered_by"] == by
    assert received.get("order_note") == event.order_note


def test_the_forward_sync_orders_by_what_the_intake_decided(redis_conn):
    from bridge.sync.forward import received_ns

    decided = events.Event(id="e", body=b"{}", headers={STAMP: "2030-01-01T00:00:00Z"}, received_at=1.7e9,
                           status=events.QUEUED, order_ns=1_700_000_000_000_000_000, ordered_by="receipt")
    assert received_ns(decided) == 1_700_000_000_000_000_000  # the far-future header was refused at intake
    older = events.Event(id="e", body=b"{}", headers={STAMP: "2016-12-24T01:58:52.789337607Z"}, received_at=1.7e9,
                         status=events.QUEUED)  # stored before the intake decided: the header, as before
    assert received_ns(older) == 1482544732789337607
