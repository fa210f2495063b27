"""`bridge lead`, the lead search index, and how history entries read."""

import json

import pytest

from bridge.cli import main
from bridge.exceptions import PermanentError
from bridge.ops import leads, present
from bridge.storage import keys, search
from tests.ops_support import WEBHOOK, deliver, raising, run_jobs
from tests.support import signed_post
from bridge.queue import event_job_id


@pytest.fixture
def cli(runner, redis_url):
    """Run `bridge ARGS...` against the test Redis; return click's result."""
    def invoke(*args):
        return runner.invoke(main, list(args), env={"REDIS_URL": redis_url})
    return invoke


def dashed(lead_id: str) -> str:
    """The dashed, uppercase form of a lead id that support may paste."""
    return f"{lead_id[:8]}-{lead_id[8:12]}-{lead_id[12:16]}-{lead_id[16:20]}-{lead_id[20:]}".upper()


def test_lead_shows_mapping_and_the_whole_story(cli, client, redis_conn, settings, webhook_secret, monkeypatch):
    lead = deliver(client, webhook_secret, first_name="Kai", last_name="Akana", phone="808-555-0101")
    run_jobs(settings, redis_conn, monkeypatch, raising(PermanentError("LionDesk said 422: bad source")))
    job_id = event_job_id(lead["event_id"])
    assert cli("jobs", "replay", job_id).exit_code == 0
    run_jobs(settings, redis_conn, monkeypatch)  # the replay succeeds
    signed_post(client, WEBHOOK, {"action": "updated", "id": lead["id"], "email": "not-an-email"}, webhook_secret)
    run_jobs(settings, redis_conn, monkeypatch)  # the relay rejects it on schema

    result = cli("lead", dashed(lead["id"]))
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert f"Real Geeks lead {lead['id']}: Kai Akana" in text
    assert "808-555-0101" in text and lead["email"] in text
    assert "LionDesk: not linked yet" in text
    assert "attempt 1 failed, failed: PermanentError: LionDesk said 422: bad source" in text
    assert f"job {job_id} replayed by" in text
    assert "created processed (attempt 1): synced (test)" in text
    assert "updated delivery rejected: email: Not a valid email address." in text

    redis_conn.hset(keys.lead_mapping(lead["id"]), mapping={"contact_id": "9001", "lead_id": "77"})
    assert "LionDesk: contact 9001, lead 77" in cli("lead", lead["id"]).stdout


def test_lead_json_has_mapping_and_history(cli, client, redis_conn, settings, webhook_secret, monkeypatch):
    lead = deliver(client, webhook_secret)
    run_jobs(settings, redis_conn, monkeypatch)
    redis_conn.hset(keys.lead_mapping(lead["id"]), mapping={"contact_id": "9001", "lead_id": "77"})

    data = json.loads(cli("lead", lead["id"], "--json").stdout)
    assert data["lead_id"] == lead["id"]
    assert data["mapping"] == {"contact_id": "9001", "liondesk_lead_id": "77"}  # the previous release's name, read
    assert [entry["kind"] for entry in data["history"]] == ["received", "processed"]
    assert data["history"][0]["event_id"] == lead["event_id"]
    assert data["history"][0]["at_iso"].endswith("+00:00")


def test_unknown_lead_is_an_error(cli, redis_conn):
    result = cli("lead", "0123456789abcdef0123456789abcdef")
    assert result.exit_code == 1
    assert "no record of lead 0123456789abcdef0123456789abcdef" in result.stderr


def test_search_tokens_of_a_payload():
    tokens = search.tokens({"email": " Jack@Music.COM ", "second_email": "", "phone": "+1 (808) 555-0101",
                                  "phone2": "12", "first_name": "Jack", "last_name": "  Van  Halen ",
                                  "notes": "jack@elsewhere.com"})
    assert tokens == {"email:jack@music.com", "phone:8085550101", "name:jack", "name:van halen",
                      "name:jack van halen"}


@pytest.mark.parametrize("query, token", [
    ("JACK@music.com ", "email:jack@music.com"),
    ("(808) 555-0101", "phone:8085550101"),
    ("+1 808 555 0101", "phone:8085550101"),
    ("Jack  Van Halen", "name:jack van halen"),
    ("555", None),
    ("  ", None),
])
def test_query_tokens(query, token):
    assert search.query_token(query) == token


def test_search_finds_a_lead_by_id_email_phone_or_name(client, redis_conn, settings, webhook_secret, monkeypatch):
    lead = deliver(client, webhook_secret, first_name="Mei", last_name="Wong", phone="808-555-0199",
                   email="Mei.Wong@Example.com")
    other = deliver(client, webhook_secret, first_name="Mei", last_name="Silva")
    run_jobs(settings, redis_conn, monkeypatch)  # the intake indexed both, before any job ran

    assert leads.search(redis_conn, dashed(lead["id"])) == [lead["id"]]
    assert leads.search(redis_conn, "mei.wong@example.COM") == [lead["id"]]
    assert leads.search(redis_conn, "+1 (808) 555-0199") == [lead["id"]]
    assert leads.search(redis_conn, "mei wong") == [lead["id"]]
    assert set(leads.search(redis_conn, "MEI")) == {lead["id"], other["id"]}
    assert leads.search(redis_conn, "nobody@example.com") == []
    assert not any(b"mei" in key.lower() or b"555" in key for key in redis_conn.keys(keys.lead_search_token("*")))


def test_index_lead_works_inside_a_transaction(redis_conn):
    with redis_conn.pipeline() as pipe:
        pipe.multi()
        search.add(pipe, "abc123", {"email": "a@b.co", "first_name": "Ann", "phone": None, "last_name": 7})
        pipe.execute()
    assert leads.search(redis_conn, "a@b.co") == ["abc123"]
    assert leads.search(redis_conn, "ann") == ["abc123"]


@pytest.mark.parametrize("entry, line", [
    ({"kind": "received", "action": "created", "status": "queued", "event_id": "e1"},
     "created delivery queued [event e1]"),
    ({"kind": "attempt_failed", "attempt": 2, "outcome": "retrying", "error_class": "UpstreamTimeout",
      "error": "LionDesk did not answer", "event_id": "e1", "action": "created"},
     "attempt 2 failed, retrying: UpstreamTimeout: LionDesk did not answer [event e1]"),
    ({"kind": "call", "service": "liondesk", "method": "POST", "path": "/contacts", "status": 201},
     "LionDesk POST /contacts → 201"),
    ({"kind": "rejected", "action": "updated", "errors": {"email": ["Not a valid email address."]}},
     "updated delivery rejected: email: Not a valid email address."),
])
def test_history_entries_read_as_one_line(entry, line):
    assert present.describe_entry({"at": 1.0, **entry}) == line
