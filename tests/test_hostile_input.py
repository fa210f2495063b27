"""Hostile and broken input gets a 4xx and harms nothing else (issue 14, item 5)."""

import io
import json
import math
import secrets

import pytest

from bridge import defaults
from bridge.jsonlimits import Limits, parse, shape_problem
from bridge.intake.signature import SIGNATURE_HEADER, sign
from bridge.sandbox.sample import sample_lead
from bridge.storage import events, keys
from bridge.queue import event_queue
from workers.relay import Relay

URL = "/webhooks/realgeeks"


def nested(depth: int) -> bytes:
    """A JSON object nested `depth` levels deep (the outer object is level 1)."""
    return b'{"a":' * (depth - 1) + b"{}" + b"}" * (depth - 1)


def post_signed(client, body: bytes, secret: str, **headers):
    """POST raw bytes with a correct signature."""
    return client.post(URL, data=body, headers={SIGNATURE_HEADER: sign(body, secret),
                                                "X-Lead-Router-Action": "created", **headers})


def stored_count(conn) -> int:
    """How many deliveries the intake stored."""
    return conn.zcard(keys.events_by_time())


# --- the pure limit checks -------------------------------------------------------------

def test_an_ordinary_lead_parses_to_its_value():
    body = json.dumps(sample_lead()).encode()
    parsed = parse(body)
    assert parsed.problem is None and parsed.value == json.loads(body)


@pytest.mark.parametrize("depth, ok", [(64, True), (65, False), (981, False), (5000, False), (400_000, False)])
def test_depth_is_limited_without_blowing_the_stack(depth, ok):
    parsed = parse(nested(depth))
    assert (parsed.problem is None) is ok
    if not ok:
        assert parsed.problem == "nested deeper than 64 levels" and parsed.value is None


def test_deep_arrays_and_unclosed_brackets_are_refused_too():
    assert parse(b"[" * 70 + b"]" * 70).problem == "nested deeper than 64 levels"
    assert parse(b"[" * 100_000).problem == "nested deeper than 64 levels"


@pytest.mark.parametrize("text, problem", [
    ("1" * 30, None), ("-" + "1" * 30, None), ("1" * 31, "an integer has more than 30 digits"),
    ("1" * 5000, "an integer has more than 30 digits"), ("-" + "9" * 5000, "an integer has more than 30 digits"),
    ("1e308", None), ("1e999", "a number is too large"), ("-1e999", "a number is too large"),
    ("0." + "1" * 200, "a number is longer than 100 characters"),
    ("NaN", "NaN is not a JSON number"), ("Infinity", "Infinity is not a JSON number"),
    ("-Infinity", "-Infinity is not a JSON number"),
])
def test_number_size_is_limited(text, problem):
    parsed = parse(f'{{"n": {text}}}'.encode())
    assert parsed.problem == problem
    if problem is None:
        assert math.isfinite(parsed.value["n"])


def test_value_count_is_limited():
    limit = defaults.WEBHOOK_JSON_MAX_VALUES
    at_limit = b"[" + b"0," * (limit - 2) + b"0]"  # the list and limit - 1 numbers
    assert parse(at_limit).problem is None
    over = b"[" + b"0," * (limit - 1) + b"0]"
    assert parse(over).problem == f"more than {limit} values"


def test_shape_problem_walks_only_what_it_must():
    limits = Limits(max_depth=2, max_values=4)
    assert shape_problem({"a": [1]}, limits) is None
    assert shape_problem({"a": [[1]]}, limits) == "nested deeper than 2 levels"
    assert shape_problem([1, 2, 3, 4], limits) == "more than 4 values"
    assert shape_problem({"a": {"b": {}}}, limits, bounds=(2, 4)) is None  # bounds vouch for it: no walk
    assert shape_problem("text", limits) is None


def test_brackets_and_commas_inside_strings_are_not_structure():
    body = json.dumps({"notes": "[[[[{{{{" * 100 + "," * 300_000}).encode()
    assert parse(body).problem is None


def test_not_json_keeps_its_reason():
    assert parse(b"{not json").problem.startswith("not valid JSON")
    assert parse(b"\xff\xfe").problem.startswith("not valid JSON")


# --- the webhook -----------------------------------------------------------------------

@pytest.mark.parametrize("body, reason", [
    (nested(981), "nested deeper than 64 levels"),
    (nested(100_000), "nested deeper than 64 levels"),
    (b'{"id": ' + b"7" * 5000 + b"}", "an integer has more than 30 digits"),
    (b'{"id": 1e999}', "a number is too large"),
    (b'{"a": [' + b"0," * defaults.WEBHOOK_JSON_MAX_VALUES + b"0]}", "more values"),
])
def test_signed_hostile_json_is_400_and_kept_as_rejected(client, redis_conn, webhook_secret, body, reason):
    response = post_signed(client, body, webhook_secret)
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.json["status"] == "rejected"
    if reason != "more values":
        assert response.json["errors"] == {"body": [reason]}
    else:
        assert response.json["errors"]["body"][0].startswith("more than")
    (stored,) = events.list_rejected(redis_conn)
    assert stored.body == body and stored.errors == response.json["errors"]
    Relay(redis_conn, "test-relay").drain()
    assert event_queue(redis_conn).count == 0


def test_unsigned_hostile_json_is_401_and_stores_nothing(client, redis_conn):
    response = client.post(URL, data=nested(100_000), headers={SIGNATURE_HEADER: "0" * 64})
    assert response.status_code == 401
    assert stored_count(redis_conn) == 0


@pytest.mark.parametrize("value", ["é" * 64, "\u2603" * 64, "ÿ", "0" * 63 + "é"])
def test_a_signature_header_that_is_not_ascii_is_401_and_stores_nothing(client, redis_conn, value):
    body = json.dumps(sample_lead()).encode()
    response = client.post(URL, data=body, environ_overrides={"HTTP_X_LEAD_ROUTER_SIGNATURE": value})
    assert response.status_code == 401
    assert response.json["status"] == "bad_signature"
    assert stored_count(redis_conn) == 0


@pytest.mark.parametrize("header", ["X-Lead-Router-Timestamp", "X-Lead-Router-Action"])
def test_other_non_ascii_headers_of_a_signed_delivery_do_no_harm(client, redis_conn, webhook_secret, header):
    body = json.dumps(sample_lead()).encode()
    environ = {"HTTP_" + header.upper().replace("-", "_"): "2026-01-01T00:00:00Zé" if "Time" in header else "créé"}
    response = client.post(URL, data=body, headers={SIGNATURE_HEADER: sign(body, webhook_secret)},
                           environ_overrides=environ)
    assert response.status_code == 200, response.json
    event = events.load(redis_conn, response.json["event_id"])
    if "Time" in header:  # unusable for ordering: receipt time orders, and the story says why
        assert response.json["status"] == "queued" and event.ordered_by == "receipt"
        assert "is not a timestamp" in event.order_note
    else:  # an action nobody acts on: kept as ignored
        assert response.json["status"] == "ignored" and event.action == "créé"


@pytest.mark.parametrize("value", ["Bearer é" + "x" * 30, "Bearer \u2603", "é"])
def test_a_metrics_token_that_is_not_ascii_is_401(make_settings, redis_conn, value):
    from bridge.web import create_app

    client = create_app(make_settings(metrics_token="the-token")).test_client()
    response = client.get("/metrics", environ_overrides={"HTTP_AUTHORIZATION": value})
    assert response.status_code == 401


def chunked_post(client, body: bytes, secret: str):
    """POST `body` the way a WSGI server hands over a chunked request: no Content-Length, a terminated stream."""
    return client.post(URL, input_stream=io.BytesIO(body), headers={SIGNATURE_HEADER: sign(body, secret)},
                       environ_overrides={"wsgi.input_terminated": True})


def test_chunked_body_over_the_limit_is_413_and_stores_nothing(client, redis_conn, webhook_secret):
    body = json.dumps(sample_lead(notes="x" * defaults.WEBHOOK_MAX_BODY_BYTES)).encode()
    response = chunked_post(client, body, webhook_secret)
    assert response.status_code == 413
    assert stored_count(redis_conn) == 0


def test_chunked_body_of_exactly_the_limit_is_accepted(client, redis_conn, webhook_secret):
    payload = sample_lead(notes="")
    padding = defaults.WEBHOOK_MAX_BODY_BYTES - len(json.dumps(payload).encode())
    body = json.dumps({**payload, "notes": "x" * padding}).encode()
    assert len(body) == defaults.WEBHOOK_MAX_BODY_BYTES
    response = chunked_post(client, body, webhook_secret)
    assert response.status_code == 200, response.json
    assert events.load(redis_conn, response.json["event_id"]).body == body


# --- the relay -------------------------------------------------------------------------

def test_relay_rejects_a_hostile_event_queued_before_the_limits(redis_conn):
    """An event stored as queued (by an older intake) is rejected by the relay, not turned into a job."""
    body = nested(981)
    event = events.Event(id=events.new_event_id(), body=body, headers={}, received_at=1.0, status=events.QUEUED,
                         action="created", lead_id="deadbeef")
    redis_conn.hset(keys.event(event.id), mapping=event.to_redis())
    redis_conn.xadd(keys.intake_stream(), {"event": event.id})
    Relay(redis_conn, "test-relay").drain()
    stored = events.load(redis_conn, event.id)
    assert stored.status == events.REJECTED
    assert stored.errors == {"body": ["nested deeper than 64 levels"]}
    assert event_queue(redis_conn).count == 0


# --- a real gunicorn, as in production -------------------------------------------------

@pytest.fixture(scope="module")
def gunicorn_web(tmp_path_factory, redis_url):
    """The Procfile's web process (gunicorn) over the test Redis; yields (base URL, webhook secret)."""
    from tests.support import Processes, start_web

    processes = Processes(tmp_path_factory.mktemp("hostile-web"))
    secret = secrets.token_hex(16)
    try:
        base_url = start_web(processes, {"REDIS_URL": redis_url, "REALGEEKS_WEBHOOK_SECRET": secret})
        yield base_url, secret
    finally:
        processes.stop_all()


def chunks_of(body: bytes, size: int = 64 * 1024):
    """Yield `body` in pieces, so requests sends it with Transfer-Encoding: chunked."""
    for start in range(0, len(body), size):
        yield body[start:start + size]


@pytest.mark.parametrize("extra, expected", [(1, 413), (512 * 1024, 413), (0, 200)])
def test_gunicorn_chunked_body_over_the_limit_is_413(gunicorn_web, redis_conn, extra, expected):
    import requests

    base_url, secret = gunicorn_web
    payload = sample_lead(notes="")
    padding = defaults.WEBHOOK_MAX_BODY_BYTES - len(json.dumps(payload).encode()) + extra
    body = json.dumps({**payload, "notes": "x" * padding}).encode()
    assert len(body) == defaults.WEBHOOK_MAX_BODY_BYTES + extra
    try:
        response = requests.post(f"{base_url}{URL}", data=chunks_of(body), timeout=30,
                                 headers={SIGNATURE_HEADER: sign(body, secret)})
    except requests.ConnectionError:
        pytest.fail("gunicorn reset the connection instead of answering")
    assert response.request.headers.get("Transfer-Encoding") == "chunked"
    assert "Content-Length" not in response.request.headers
    assert response.status_code == expected, response.text
    assert stored_count(redis_conn) == (1 if expected == 200 else 0)


def test_gunicorn_non_ascii_signature_is_401(gunicorn_web, redis_conn):
    import http.client

    base_url, _ = gunicorn_web
    body = json.dumps(sample_lead()).encode()
    connection = http.client.HTTPConnection(base_url.removeprefix("http://"), timeout=10)
    connection.putrequest("POST", URL)
    connection.putheader("Content-Length", str(len(body)))
    connection.putheader(SIGNATURE_HEADER, "é".encode("latin-1") * 64)
    connection.endheaders(body)
    response = connection.getresponse()
    assert response.status == 401, response.read()
    assert stored_count(redis_conn) == 0


# --- the console renders whatever one record holds -------------------------------------

@pytest.fixture
def console(make_settings, redis_conn):
    """A logged-in console client, and the settings it runs with."""
    from bridge.web import create_app
    from tests.ops_support import ADMIN_PASSWORD, ADMIN_USER, log_in

    settings = make_settings(admin_username=ADMIN_USER, admin_password=ADMIN_PASSWORD, retry_intervals=(0,))
    app = create_app(settings)
    app.config["TESTING"] = True
    client = app.test_client()
    assert log_in(client).status_code == 302
    return client, settings


def store_event(conn, body: bytes, *, status=events.QUEUED, lead_id="cafe01", errors=None, action="created"):
    """Store an event directly (as an older intake, or a hand, could have), bypassing today's checks."""
    event = events.Event(id=events.new_event_id(), body=body, headers={"User-Agent": "x"}, received_at=1.7e9,
                         status=status, action=action, lead_id=lead_id, errors=errors or {})
    conn.hset(keys.event(event.id), mapping=event.to_redis())
    conn.zadd(keys.events_by_time(), {event.id: event.received_at})
    if status == events.REJECTED:
        conn.zadd(keys.rejected_events(), {event.id: event.received_at})
    return event


HUGE = json.dumps(sample_lead(notes="n" * 900_000)).encode()
HOSTILE_BODIES = {"deep": nested(981), "long_int": b'{"id": ' + b"7" * 5000 + b"}", "huge": HUGE,
                  "not_json": b"\xff\xfe{", "a_list": b"[1, 2]"}


def page_of(client, url) -> str:
    """GET a console page that must answer 200; return its text."""
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code, response.get_data(as_text=True)[:500])
    return response.get_data(as_text=True)


def test_failed_jobs_of_hostile_events_do_not_break_the_failed_list(console, redis_conn, monkeypatch):
    from bridge.exceptions import PermanentError
    from tests.ops_support import run_jobs
    from bridge.queue import enqueue_event, event_job_id

    client, settings = console
    stored = {name: store_event(redis_conn, body, lead_id=f"cafe{n}") for n, (name, body) in
              enumerate(HOSTILE_BODIES.items())}
    for event in stored.values():
        enqueue_event(event_queue(redis_conn), event.id, intervals=(0,))

    def handler(context, event):
        raise PermanentError("LionDesk said: " + "ee " * 40_000)

    run_jobs(settings, redis_conn, monkeypatch, handler)
    text = page_of(client, "/admin/failed")
    assert all(event_job_id(event.id) in text for event in stored.values())
    assert "ee " * 40_000 not in text
    for name, event in stored.items():
        job_page = page_of(client, f"/admin/jobs/{event_job_id(event.id)}")
        assert "PermanentError" in job_page
        if name == "huge":
            assert "n" * 900_000 in job_page  # the whole payload, on its own page
    lead_page = page_of(client, f"/admin/leads/{stored['deep'].lead_id}")
    assert "attempt" in lead_page


@pytest.mark.parametrize("errors", [
    {"body": ["plain"]}, {"deep": json.loads(nested(60))}, ["a", "list"], "just text",
    {"huge": ["x" * 100_000]}, {"n": [1, None, True, 2.5]},
])
def test_rejected_list_shows_odd_records(console, redis_conn, errors):
    client, _ = console
    for body in HOSTILE_BODIES.values():
        store_event(redis_conn, body, status=events.REJECTED, errors=errors)
    text = page_of(client, "/admin/rejected")
    assert text.count('class="card rejected"') == len(HOSTILE_BODIES)
    assert "n" * 900_000 not in text and "characters cut" in text
    assert "x" * 100_000 not in text


def test_lead_page_shows_oddly_typed_history(console, redis_conn):
    from bridge.storage import history

    client, _ = console
    lead_id = "beef02"
    store_event(redis_conn, HUGE, lead_id=lead_id)
    for record in ({"kind": "received", "at": "yesterday", "event_id": 12, "status": None, "errors": ["x"]},
                   {"kind": 7, "at": None}, {"kind": ["a"], "at": [1]}, {"at": 1e30, "kind": "call", "ms": [1]},
                   {"kind": "rejected", "at": 1.7e9, "errors": json.loads(nested(60))},
                   {"kind": "attempt_failed", "at": 1.7e9, "error": "y" * 100_000, "extra": json.loads(nested(60))},
                   {"kind": "processed", "at": 1.7e9, "summary": {"a": 1}}):
        history.append_entry(redis_conn, lead_id, record)
    redis_conn.rpush(keys.lead_history(lead_id), b"[1, 2]", b'"text"', b"42")
    text = page_of(client, f"/admin/leads/{lead_id}")
    assert "y" * 100_000 not in text and "characters cut" in text


def test_history_entries_past_the_json_limits_read_as_placeholders(redis_conn):
    """One entry nested 5,000 deep or holding a 5,000-digit integer would stop json.loads
    (RecursionError, ValueError) and with it every reader of the story: it reads as a placeholder."""
    from bridge.ops.present import describe_entry
    from bridge.storage import history

    lead_id = "beef03"
    history.append(redis_conn, lead_id, "processed", action="created", attempt=1)
    deep, huge = nested(5000), b'{"kind": "call", "status": ' + b"9" * 5000 + b"}"
    redis_conn.rpush(keys.lead_history(lead_id), deep, huge, b"[1, 2]")
    history.append(redis_conn, lead_id, "processed", action="updated", attempt=1)
    story = history.read(redis_conn, lead_id)
    assert [entry["kind"] for entry in story] == ["processed", "unreadable", "unreadable", "unreadable", "processed"]
    assert story[1]["bytes"] == len(deep) and "nested deeper" in story[1]["problem"]
    assert "digits" in story[2]["problem"] and story[3]["problem"] == "not a JSON object"
    assert describe_entry(story[1]).startswith(f"unreadable entry ({len(deep)} bytes): nested deeper than")


def test_lead_page_and_cli_show_unreadable_history_entries(console, redis_conn, redis_url, runner):
    from bridge.cli import main

    client, _ = console
    lead_id = "beef04"
    store_event(redis_conn, HUGE, lead_id=lead_id)
    redis_conn.rpush(keys.lead_history(lead_id), nested(5000), b'{"kind": "call", "ms": ' + b"7" * 5000 + b"}")
    text = page_of(client, f"/admin/leads/{lead_id}")
    assert text.count("unreadable entry (") == 2
    result = runner.invoke(main, ["lead", lead_id], env={"REDIS_URL": redis_url})
    assert result.exit_code == 0 and result.output.count("unreadable entry (") == 2, result.output
