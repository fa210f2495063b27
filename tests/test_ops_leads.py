"""`bridge lead`, the lead search index, and how history entries read."""

import json
import re

import pytest

from bridge import defaults

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
    assert tokens == {"e:jack@music.com", "p:1010555808", "n:jack van halen", "n:van halen", "n:halen"}


@pytest.mark.parametrize("name, indexed", [
    ("Zoë", {"zoe"}), ("JOSÉ", {"jose"}), ("Straße", {"strasse"}), ("O'Brien-Ng", {"obrien ng", "ng"}),
    ("Ñúñez", {"nunez"}),
])
def test_names_are_indexed_without_accents_or_case(name, indexed):
    assert search.tokens({"first_name": name}) == {f"n:{value}" for value in indexed}


@pytest.mark.parametrize("query, prefixes", [
    ("JACK@music.com ", ["e:jack@music.com"]),
    ("jack@mus", ["e:jack@mus"]),
    ("(808) 555-0101", ["p:1010555808"]),
    ("+1 808 555 0101", ["p:1010555808"]),
    ("55-0101", []),
    ("55 50 101", ["p:1010555"]),
    ("Jack  Van Halen", ["n:jack van halen"]),
    ("Mei.Wong", ["n:mei wong", "e:mei.wong"]),
    ("Zoë", ["n:zoe", "e:zoë"]),
    ("j", []),
    ("  ", []),
])
def test_query_prefixes(query, prefixes):
    assert search.prefixes(query) == prefixes


@pytest.fixture
def indexed(client, redis_conn, settings, webhook_secret, monkeypatch):
    """Three delivered and indexed leads: Mei Wong, Mei Silva and Zoë Tanaka-Åberg."""
    found = {
        "wong": deliver(client, webhook_secret, first_name="Mei", last_name="Wong", phone="808-555-0199",
                        email="Mei.Wong@Example.com"),
        "silva": deliver(client, webhook_secret, first_name="Mei", last_name="Silva", phone="+1 415 555 0199",
                         email="msilva@example.org"),
        "zoe": deliver(client, webhook_secret, first_name="Zoë", last_name="Tanaka-Åberg", phone="(212) 555-4433",
                       email="zoe@example.net"),
    }
    run_jobs(settings, redis_conn, monkeypatch)  # the intake indexed them, before any job ran
    return {name: payload["id"] for name, payload in found.items()}


@pytest.mark.parametrize("query, expected", [
    ("mei.wong@example.COM", ["wong"]),          # a whole address
    ("MEI.WONG", ["wong"]),                      # the start of one
    ("msil", ["silva"]),
    ("zoe@", ["zoe"]),
    ("+1 (808) 555-0199", ["wong"]),             # a whole number, with or without country code
    ("8085550199", ["wong"]),
    ("55-0199", []),                             # six digits are no phone number
    ("5550199", ["silva", "wong"]),              # the last seven digits find both
    ("555 4433", ["zoe"]),
    ("mei wong", ["wong"]),
    ("MEI", ["silva", "wong"]),
    ("zoe", ["zoe"]),                            # no accents needed
    ("ZOË TANAKA", ["zoe"]),
    ("aberg", ["zoe"]),                          # the start of any word of the name
    ("tanaka aberg", ["zoe"]),
    ("nobody@example.com", []),
    ("x", []),
])
def test_search_finds_leads_by_what_support_is_told(redis_conn, indexed, query, expected):
    assert sorted(leads.search(redis_conn, query)) == sorted(indexed[name] for name in expected)


def test_search_by_real_geeks_or_liondesk_id_comes_first(redis_conn, indexed):
    assert leads.search(redis_conn, dashed(indexed["wong"])) == [indexed["wong"]]
    redis_conn.hset(keys.lead_mapping(indexed["zoe"]), mapping={"contact_id": "4455012"})
    redis_conn.set(keys.contact_mapping("4455012"), indexed["zoe"])
    assert leads.search(redis_conn, "4455012") == [indexed["zoe"]]
    assert leads.search(redis_conn, "999999") == []


def test_exact_values_rank_before_longer_ones(redis_conn):
    search.add(redis_conn, "longer", {"first_name": "Ann", "last_name": "Marie"})
    search.add(redis_conn, "exact", {"first_name": "Ann"})
    assert leads.search(redis_conn, "ann") == ["exact", "longer"]


def test_index_keys_hold_no_personal_data_and_expire(redis_conn, indexed):
    index_keys = redis_conn.keys(keys.lead_search_bucket("*"))
    assert len(index_keys) == 1
    assert not any(b"mei" in key.lower() or b"555" in key for key in redis_conn.keys("*"))
    assert 0 < redis_conn.ttl(index_keys[0]) <= defaults.HISTORY_TTL_SECONDS + defaults.SEARCH_INDEX_BUCKET_SECONDS


def test_an_index_bucket_outlives_its_period_by_a_history_lifetime(redis_conn):
    now = 1_800_000_000.0
    search.add(redis_conn, "old", {"email": "old@example.com"}, now=now)
    year_later = now + defaults.HISTORY_TTL_SECONDS
    assert leads.search(redis_conn, "old@example.com", now=year_later) == ["old"]
    gone = year_later + 2 * defaults.SEARCH_INDEX_BUCKET_SECONDS
    assert leads.search(redis_conn, "old@example.com", now=gone) == []


def test_leads_indexed_before_the_prefix_index_are_still_found_by_exact_values(redis_conn):
    import hashlib

    def legacy(token):  # how the earlier index named its sets
        return keys.lead_search_token(hashlib.sha256(token.encode()).hexdigest()[:32])

    redis_conn.sadd(legacy("email:kai@example.com"), "before")
    redis_conn.sadd(legacy("phone:8085550101"), "before")
    redis_conn.sadd(legacy("name:kai akana"), "before")
    for query in ("Kai@Example.com", "(808) 555-0101", "Kai  Akana"):
        assert leads.search(redis_conn, query) == ["before"], query


def test_the_index_can_be_written_inside_a_transaction(redis_conn):
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


def test_find_lists_matching_leads(cli, redis_conn, indexed):
    redis_conn.hset(keys.lead_mapping(indexed["wong"]), mapping={"contact_id": "9001"})
    result = cli("find", "mei")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[-1] == "2 leads found"
    wong = next(i for i, line in enumerate(lines) if line.startswith(indexed["wong"]))
    assert lines[wong] == f"{indexed['wong']}  Mei Wong  Mei.Wong@Example.com  808-555-0199"
    assert lines[wong + 1] == "  LionDesk: contact 9001"
    assert lines[wong + 2].startswith("  last:") and "created processed (attempt 1)" in lines[wong + 2]
    assert "  LionDesk: not linked yet" in lines


def test_find_json(cli, indexed):
    data = json.loads(cli("find", "5550199", "--json").stdout)
    assert sorted(card["lead_id"] for card in data) == sorted([indexed["wong"], indexed["silva"]])
    card = next(card for card in data if card["lead_id"] == indexed["silva"])
    assert card["name"] == "Mei Silva" and card["phone"] == "+1 415 555 0199" and card["mapping"] == {}
    assert card["last_entry"]["kind"] == "processed" and card["last_entry"]["at_iso"].endswith("+00:00")


def test_find_nothing_exits_1(cli, indexed):
    result = cli("find", "nobody@example.com")
    assert result.exit_code == 1 and result.stdout == "0 leads found\n"
    assert cli("find", "nobody@example.com", "--json").stdout.strip() == "[]"


HOSTILE_NAME = "Eve\x1b[2J\x1b]0;pwned\x07\r\n  2026-01-01 00:00:00Z  replayed        job x replayed by admin"


def test_cli_text_escapes_control_characters_in_lead_data(cli, client, redis_conn, settings, webhook_secret,
                                                          monkeypatch):
    lead = deliver(client, webhook_secret, first_name=HOSTILE_NAME, last_name="Doe\u202eevil")
    run_jobs(settings, redis_conn, monkeypatch, raising(PermanentError("LionDesk said \x1b[31mno\x1b[0m")))
    outputs = [cli("lead", lead["id"]).stdout, cli("find", "eve").stdout, cli("jobs", "failed").stdout]
    for text in outputs:
        assert "\x1b" not in text and "\r" not in text and "\u202e" not in text and "\x07" not in text
        assert "Eve\\x1b[2J\\x1b]0;pwned\\x07\\r\\n" in text
    story_lines = outputs[0].splitlines()
    assert not any(line.lstrip().startswith("2026-01-01") for line in story_lines)  # no forged history line
    assert "LionDesk said \\x1b[31mno\\x1b[0m" in outputs[0] and "Doe\\u202eevil" in outputs[0]
    data = json.loads(cli("lead", lead["id"], "--json").stdout)  # JSON keeps the value exactly, escaped by JSON
    assert data["name"] == f"{HOSTILE_NAME} Doe\u202eevil"


@pytest.mark.parametrize("text, shown", [
    ("plain é ü 日本", "plain é ü 日本"),
    ("a\x1b[2Jb", "a\\x1b[2Jb"),
    ("line\nforged", "line\\nforged"),
    ("tab\tcr\r", "tab\\tcr\\r"),
    ("del\x7f c1\x9b", "del\\x7f c1\\x9b"),
    ("\u202eevil\u2066\u2028", "\\u202eevil\\u2066\\u2028"),
])
def test_terminal_safe(text, shown):
    assert present.terminal_safe(text) == shown


def test_the_console_search_box_finds_the_same_way(make_settings, redis_conn, indexed):
    from tests.ops_support import console_app, csrf_of, log_in

    browser = console_app(make_settings).test_client()
    assert log_in(browser).status_code == 302
    for query, expected in (("tanaka ab", indexed["zoe"]), ("555 4433", indexed["zoe"]), ("msilva@", indexed["silva"])):
        token = csrf_of(browser.get("/admin/leads").get_data(as_text=True))
        response = browser.post("/admin/leads", data={"q": query, "csrf_token": token})
        assert response.status_code == 303 and response.headers["Location"] == f"/admin/leads/{expected}", query
    token = csrf_of(browser.get("/admin/leads").get_data(as_text=True))
    both = browser.post("/admin/leads", data={"q": "5550199", "csrf_token": token}).get_data(as_text=True)
    assert set(re.findall(r'<li data-lead-id="(\w+)"', both)) == {indexed["wong"], indexed["silva"]}
