"""Bounded memory: retention settings, capped story entries, compact records, `bridge redis usage` and
`bridge redis trim` against a real Redis, and every key of a synced lead either expiring or fixed."""

from __future__ import annotations

import fnmatch
import json
import subprocess
import sys
import time

import pytest

from bridge import defaults
from bridge.config import DAY, Retention, load_settings
from bridge.exceptions import ConfigError
from bridge.sandbox.sample import sample_lead
from bridge.storage import events, history, keys, mappings, usage
from bridge.storage.redis import text
from tests.support import ROOT, signed_post

URL = "/webhooks/realgeeks"


@pytest.fixture
def synced(sandbox, redis_url, redis_conn, webhook_secret):
    """A bridge over the sandbox and the test Redis: deliver(payload) stores it, work() runs the worker."""
    from bridge.context import Context
    from bridge.web import create_app
    from workers.worker import run

    env = {**sandbox.environment(), "REDIS_URL": redis_url, "REALGEEKS_WEBHOOK_SECRET": webhook_secret,
           "LIONDESK_MAX_REQUESTS_PER_SECOND": "1000"}
    settings = load_settings(env)
    client = create_app(settings).test_client()
    context = Context(settings=settings, redis=redis_conn)

    class Bridge:
        def deliver(self, payload, action=None):
            response = signed_post(client, URL, payload, webhook_secret, action=action)
            assert response.status_code in (200, 202), response.get_data(as_text=True)
            return response.get_json()

        def work(self):
            run(context, burst=True)

    yield Bridge()
    keys.use_retention(Retention())


def our_keys(conn) -> list[str]:
    """Every key this test run wrote (bridge and RQ prefixes)."""
    return sorted(text(raw) for raw in conn.scan_iter(match=keys.PREFIX.split(":")[0] + ":*", count=1000))


# -- retention settings ---------------------------------------------------------------------------------


def test_retention_periods_are_settings_in_days_with_the_documented_defaults():
    assert load_settings({}).retention == Retention(story=365 * DAY, story_detail=7 * DAY, link=365 * DAY,
                                                    event=90 * DAY, delivered_event=7 * DAY)
    settings = load_settings({"BRIDGE_STORY_RETENTION_DAYS": "30", "BRIDGE_LINK_RETENTION_DAYS": "400",
                              "BRIDGE_DELIVERED_EVENT_RETENTION_DAYS": "2"})
    assert (settings.retention.story, settings.retention.link, settings.retention.delivered_event) == (
        30 * DAY, 400 * DAY, 2 * DAY)


@pytest.mark.parametrize("env, variable", [
    ({"BRIDGE_STORY_RETENTION_DAYS": "0"}, "BRIDGE_STORY_RETENTION_DAYS"),
    ({"BRIDGE_LINK_RETENTION_DAYS": "a year"}, "BRIDGE_LINK_RETENTION_DAYS"),
    ({"BRIDGE_EVENT_RETENTION_DAYS": "5", "BRIDGE_DELIVERED_EVENT_RETENTION_DAYS": "6"},
     "BRIDGE_DELIVERED_EVENT_RETENTION_DAYS"),
])
def test_a_wrong_retention_names_its_variable(env, variable):
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    assert caught.value.variable == variable


def test_the_configured_retention_is_what_records_live(synced, redis_conn, monkeypatch):
    from bridge.context import Context

    settings = load_settings({"BRIDGE_STORY_RETENTION_DAYS": "3", "BRIDGE_LINK_RETENTION_DAYS": "5"})
    Context(settings=settings, redis=redis_conn)  # a worker context installs its settings' retention
    history.append(redis_conn, "ab12", "contact_created", contact_id=1)
    mappings.save_snapshot(redis_conn, "ab12", {"email": "a@b.example"})
    assert 2 * DAY < redis_conn.ttl(keys.lead_history("ab12")) <= 3 * DAY
    assert 4 * DAY < redis_conn.ttl(keys.lead_snapshot("ab12")) <= 5 * DAY


# -- story entries -----------------------------------------------------------------------------------


def test_a_huge_story_entry_is_stored_cut_with_a_note_of_what_was_cut(redis_conn):
    errors = {"activities": {str(n): {"created": ["Not a valid datetime."]} for n in range(100_000)}}
    history.append(redis_conn, "cafe01", "rejected", event_id="e1", action="activity_added", errors=errors,
                   summary="é" * 50_000)
    (raw,) = redis_conn.lrange(keys.lead_history("cafe01"), 0, -1)
    assert len(raw) <= defaults.HISTORY_ENTRY_MAX_BYTES
    (entry,) = history.read(redis_conn, "cafe01")
    assert (entry["kind"], entry["event_id"], entry["action"]) == ("rejected", "e1", "activity_added")
    assert set(entry["cut"]) == {"errors", "summary"}
    assert entry["cut"]["errors"] > 3_000_000 and entry["cut"]["summary"] == len(json.dumps("é" * 50_000,
                                                                                             ensure_ascii=False).encode())
    assert entry["summary"].endswith("…") and entry["errors"]["activities"]["…"].endswith("more left out")


def test_a_small_entry_is_stored_whole_under_short_names_and_read_under_the_long_ones(redis_conn):
    history.append(redis_conn, "cafe02", "contact_updated", event_id="e2", contact_id="7", fields=["last_name"])
    (raw,) = redis_conn.lrange(keys.lead_history("cafe02"), 0, -1)
    stored = json.loads(raw)
    assert {"t", "k", "e"} <= set(stored) and "kind" not in stored and "cut" not in stored
    (entry,) = history.read(redis_conn, "cafe02")
    assert entry == {"at": stored["t"], "kind": "contact_updated", "event_id": "e2", "contact_id": "7",
                     "fields": ["last_name"]}


def test_entries_written_by_the_previous_release_read_as_before(redis_conn):
    old = {"at": 1796000000.5, "kind": "processed", "event_id": "e3", "attempt": 1, "summary": "created contact 1"}
    redis_conn.rpush(keys.lead_history("cafe03"), json.dumps(old))
    assert history.read(redis_conn, "cafe03") == [old]


def test_calls_and_receipts_go_to_the_short_lived_detail_and_read_merged_in_time_order(redis_conn):
    lead = "cafe04"
    for at, kind in ((1.0, "received"), (2.0, "call"), (3.0, "contact_created"), (4.0, "call"), (5.0, "processed")):
        history.append_entry(redis_conn, lead, {"at": at, "kind": kind, "event_id": "e4"})
    assert [entry["kind"] for entry in history.read(redis_conn, lead)] == [
        "received", "call", "contact_created", "call", "processed"]
    assert redis_conn.llen(keys.lead_story_detail(lead)) == 3 and redis_conn.llen(keys.lead_history(lead)) == 2
    assert 6 * DAY < redis_conn.ttl(keys.lead_story_detail(lead)) <= defaults.HISTORY_DETAIL_TTL_SECONDS
    assert 300 * DAY < redis_conn.ttl(keys.lead_history(lead)) <= defaults.HISTORY_TTL_SECONDS


def test_shrink_json_keeps_small_values_and_bounds_big_ones():
    assert history.shrink_json({"a": [1, 2]}, 100) == {"a": [1, 2]}
    assert history.shrink_json(12345, 1) == 12345
    cut = history.shrink_json(list(range(10_000)), 200)
    assert cut[-1].endswith("more left out")
    assert len(json.dumps(cut, separators=(",", ":"), ensure_ascii=False).encode()) <= 200
    assert len(history.shrink_json("x" * 1000, 50).encode()) <= 50


def test_stored_validation_errors_of_a_rejected_event_are_capped(redis_conn):
    event = events.Event(id=events.new_event_id(), body=b"{}", headers={}, received_at=time.time(), status="queued")
    redis_conn.hset(keys.event(event.id), mapping=event.to_redis())
    errors = {"activities": {str(n): {"type": ["Missing data for required field."]} for n in range(100_000)}}
    events.mark_rejected(redis_conn, event, errors)
    meta = redis_conn.hget(keys.event(event.id), "meta")
    assert len(meta) < defaults.STORED_ERRORS_MAX_BYTES + 1000
    stored = events.load(redis_conn, event.id).errors
    assert stored["activities"]["…"].endswith("more left out")


# -- compact link records --------------------------------------------------------------------------------


def test_activity_marks_are_one_bounded_set_per_lead(redis_conn, monkeypatch):
    monkeypatch.setattr(defaults, "ACTIVITY_MARKS_MAX", 5)
    fingerprints = [f"{n:02x}" * 16 for n in range(8)]
    for fingerprint in fingerprints:
        mappings.mark_activity(redis_conn, "cafe05", fingerprint)
    assert redis_conn.zcard(keys.lead_activities("cafe05")) == 5
    assert mappings.activity_seen(redis_conn, "cafe05", fingerprints[-1])
    assert not mappings.activity_seen(redis_conn, "cafe05", fingerprints[0])
    assert not mappings.activity_seen(redis_conn, "cafe05", "f" * 32)
    assert 300 * DAY < redis_conn.ttl(keys.lead_activities("cafe05")) <= defaults.LINK_TTL_SECONDS


def test_an_activity_marked_by_the_previous_release_is_still_seen(redis_conn):
    redis_conn.set(keys.activity_dedupe("cafe06", "a" * 32), 1, ex=100)
    assert mappings.activity_seen(redis_conn, "cafe06", "a" * 32)


def test_once_only_effects_live_in_the_link_hash_and_the_previous_releases_are_still_read(redis_conn):
    mappings.mark_effect(redis_conn, "cafe10", "campaign:6", "done")
    assert mappings.effect_state(redis_conn, "cafe10", "campaign:6") == "done"
    assert not redis_conn.exists(keys.lead_effects("cafe10"))
    assert mappings.load_link(redis_conn, "cafe10").extra == {}  # effects are not link fields
    redis_conn.hset(keys.lead_effects("cafe11"), "offers", "done")  # as the previous release wrote it
    assert mappings.effect_state(redis_conn, "cafe11", "offers") == "done"
    assert mappings.effect_state(redis_conn, "cafe11", "lead") is None


def test_snapshots_are_stored_without_their_cleared_fields_and_read_back_whole(redis_conn):
    snapshot = {"email": "a@b.example", "first_name": "Kai", "city": "", "tags": [], "phone2": "", "zip": None}
    mappings.save_snapshot(redis_conn, "cafe07", snapshot)
    raw = redis_conn.get(keys.lead_snapshot("cafe07"))
    assert b'"city"' not in raw and b" " not in raw
    assert mappings.get_snapshot(redis_conn, "cafe07") == snapshot
    from bridge.translate.snapshot import empty_snapshot

    whole = {**empty_snapshot(), "email": "kai@example.com", "phone": "+18085550101"}
    mappings.save_snapshot(redis_conn, "cafe09", whole)
    assert json.loads(redis_conn.get(keys.lead_snapshot("cafe09"))) == {
        "email": "kai@example.com", "phone": "+18085550101", "~": "*"}
    assert mappings.get_snapshot(redis_conn, "cafe09") == whole
    redis_conn.set(keys.lead_snapshot("cafe08"), json.dumps({"email": "x@y.example", "city": "", "tags": []}))
    assert mappings.get_snapshot(redis_conn, "cafe08") == {"email": "x@y.example", "city": "", "tags": []}


# -- every key expires or is fixed ------------------------------------------------------------------------


def test_after_syncing_a_lead_every_key_expires_or_is_one_of_the_documented_fixed_keys(synced, redis_conn):
    payload = sample_lead(source="Website Property Search")
    synced.deliver(payload)
    synced.work()
    synced.deliver({**payload, "action": "updated", "last_name": "Changed"}, action="updated")
    synced.deliver({"action": "activity_added", "id": payload["id"], "partner_id": payload["partner_id"],
                    "site_uuid": payload["site_uuid"],
                    "activities": [{"type": "property_viewed", "source": "Website", "description": "Viewed 1 Main St",
                                    "created": "2026-12-01T10:00:00.000000Z"}]}, action="activity_added")
    synced.work()
    fixed = usage.fixed_keys()
    found = our_keys(redis_conn)
    assert any(name.startswith(keys.lead_history("")[:-len(":history")]) for name in found)  # the loop has leads' keys
    without = [name for name in found if redis_conn.ttl(name) == -1]
    assert without, "expected the fixed keys (indexes, stream, metrics) among them"
    assert [name for name in without if not any(fnmatch.fnmatchcase(name, pattern) for pattern in fixed)] == []
    lead = payload["id"].replace("-", "").lower()
    assert not any(lead in name for name in without)  # nothing named after a lead lives forever


def test_the_routine_trim_drops_relayed_intake_entries_and_index_entries_of_events_gone(synced, redis_conn):
    from workers.relay import Relay

    event_id = synced.deliver(sample_lead())["event_id"]
    Relay(redis_conn, "test-relay").drain()  # relayed and acknowledged; no worker maintenance ran yet
    assert redis_conn.xlen(keys.intake_stream()) == 1
    redis_conn.delete(keys.event(event_id))  # as when its 7 days are up
    old = time.time() - defaults.DELIVERED_EVENT_TTL_SECONDS - 60
    redis_conn.zadd(keys.events_by_time(), {event_id: old})
    steps = usage.trim_routine(redis_conn)
    assert [(step.what, step.entries) for step in steps] == [
        ("relayed intake entries", 1), ("event index entries of events gone", 1)]
    assert redis_conn.xlen(keys.intake_stream()) == 0 and redis_conn.zscore(keys.events_by_time(), event_id) is None


def test_a_worker_trims_in_its_maintenance(synced, redis_conn):
    synced.deliver(sample_lead())
    synced.work()  # a burst worker runs its maintenance once
    assert redis_conn.xlen(keys.intake_stream()) == 0


# -- usage and trim ----------------------------------------------------------------------------------------


def test_usage_reports_bytes_by_record_kind_and_what_expires_when(synced, redis_conn):
    synced.deliver(sample_lead())
    synced.work()
    report = usage.usage(redis_conn)
    by_kind = {kind.kind: kind for kind in report.kinds}
    for name in ("story", "story detail (calls, deliveries)", "event (delivery body)", "lead link (id map)",
                 "snapshot", "contact → lead map", "search index"):
        assert by_kind[name].keys >= 1 and by_kind[name].bytes > 0, name
        assert by_kind[name].without_ttl == 0 and by_kind[name].ttl_max_seconds > 0, name
    assert by_kind["event (delivery body)"].ttl_max_seconds <= defaults.DELIVERED_EVENT_TTL_SECONDS  # delivered
    assert not report.sampled and report.measured_keys == sum(kind.keys for kind in report.kinds)
    sampled = usage.usage(redis_conn, sample=3)
    assert sampled.sampled and sampled.measured_keys <= 4
    assert sum(kind.keys for kind in sampled.kinds) == sum(kind.keys for kind in report.kinds)


def test_memory_state_warns_well_before_maxmemory(redis_conn, client):
    used = redis_conn.info("memory")["used_memory"]
    try:
        redis_conn.config_set("maxmemory", str(used * 100))
        state = usage.memory_state(redis_conn, 80)
        assert state.level == usage.OK and 0 < state.percent < 5
        redis_conn.config_set("maxmemory", str(int(used / 0.85)))  # 85 %: past the warning, far from full
        assert usage.memory_state(redis_conn, 80).level == usage.WARNING
        health = client.get("/healthz").get_json()["redis_memory"]
        assert health["level"] == "warning" and health["warning"] is True and health["maxmemory_bytes"] > 0
        from bridge.ops import status

        (notice,) = [n for n in status.attention(redis_conn) if n.kind == status.REDIS_NEARLY_FULL_NOTICE]
        assert "nearly full" in notice.text and "bridge redis trim" in notice.text
    finally:
        redis_conn.config_set("maxmemory", "0")
    assert usage.memory_state(redis_conn).level == usage.UNLIMITED


def test_full_means_refusing_writes_within_a_small_margin_of_maxmemory():
    mb = 1_000_000
    assert usage.refuses_writes(25 * mb - 1000, 25 * mb, "noeviction")
    assert not usage.refuses_writes(20 * mb, 25 * mb, "noeviction")
    assert not usage.refuses_writes(25 * mb, 25 * mb, "allkeys-lru")  # it evicts instead
    assert not usage.refuses_writes(25 * mb, 0, "noeviction")  # no limit


def test_metrics_report_redis_memory(make_settings, redis_conn):
    from bridge.web import create_app

    client = create_app(make_settings(metrics_token="m-token")).test_client()
    body = client.get("/metrics", headers={"Authorization": "Bearer m-token"}).get_data(as_text=True)
    assert "bridge_redis_memory_used_bytes " in body and "bridge_redis_memory_max_bytes 0.0" in body
    assert "bridge_redis_memory_warning 0.0" in body


def dump_all(conn) -> dict:
    """Every key of this run with its serialised value and whether it expires: a picture to compare."""
    return {name: (_value(conn, name), conn.ttl(name) > 0) for name in our_keys(conn)}


def _value(conn, name: str):
    """A key's value as data (a hash's fields as a dict): the serialised form of a hash also records
    the order its fields were written in, which a rewrite of the same values changes."""
    return conn.hgetall(name) if conn.type(name) == b"hash" else conn.dump(name)


def test_trim_drops_what_is_expendable_and_never_maps_tokens_or_undelivered_work(synced, redis_conn):
    from bridge.queue import event_queue
    from rq.registry import FailedJobRegistry

    done = sample_lead()
    delivered_id = synced.deliver(done)["event_id"]
    synced.work()
    lead = done["id"].replace("-", "").lower()
    link = mappings.load_link(redis_conn, lead)
    assert link.contact_id and redis_conn.exists(keys.liondesk_tokens())
    # An old lead: its story's newest entry is past the retention, its link still counts.
    history.append_entry(redis_conn, "0ld1ead", {"at": time.time() - 400 * DAY, "kind": "contact_created"})
    mappings.save_link(redis_conn, mappings.load_link(redis_conn, "0ld1ead"), contact_id=999)

    # Undelivered work of every kind: relayed but queued, relayed and failed, read but not
    # acknowledged by a relay that died, and not relayed at all.
    queued_id = synced.deliver(sample_lead())["event_id"]
    failed_id = synced.deliver(sample_lead())["event_id"]
    from workers.relay import Relay

    Relay(redis_conn, "test-relay").drain()
    queue = event_queue(redis_conn)
    failed_job = queue.fetch_job(f"event-{failed_id}")
    queue.remove(failed_job)
    FailedJobRegistry(queue=queue).add(failed_job, ttl=3600, exc_string="LionDesk refused")
    pending_id = synced.deliver(sample_lead())["event_id"]
    redis_conn.xreadgroup(defaults.RELAY_GROUP, "a-relay-that-dies", {keys.intake_stream(): ">"}, count=1)
    waiting_id = synced.deliver(sample_lead())["event_id"]
    undelivered = [queued_id, failed_id, pending_id, waiting_id]

    picture = dump_all(redis_conn)
    plan = usage.trim(redis_conn, dry_run=True)
    assert mappings.effect_state(redis_conn, lead, "contact") == "done"
    assert dump_all(redis_conn) == picture  # a dry run changes nothing
    planned = {step.what: step for step in plan}
    assert planned["delivered events"].keys == 1 and planned["finished jobs and their results"].keys >= 1
    assert planned["stories past their retention"].keys == 1
    assert planned["relayed intake entries"].entries == 2  # the queued and the failed one's (the first went at once)

    done_steps = usage.trim(redis_conn)
    assert [(s.what, s.keys, s.entries) for s in done_steps] == [(s.what, s.keys, s.entries) for s in plan]
    assert not redis_conn.exists(keys.event(delivered_id))
    assert not redis_conn.exists(keys.lead_history("0ld1ead"))
    assert redis_conn.exists(keys.lead_history(lead))  # a story within its retention stays
    for name in (keys.lead_mapping(lead), keys.contact_mapping(link.contact_id), keys.lead_snapshot(lead),
                 keys.lead_activities(lead), keys.liondesk_tokens(),
                 keys.lead_mapping("0ld1ead"), keys.contact_mapping(999)):
        assert redis_conn.exists(name), name
    assert mappings.effect_state(redis_conn, lead, "contact") == "done"  # once-only effects stay done
    for event_id in undelivered:
        assert redis_conn.exists(keys.event(event_id)), event_id
    assert queue.fetch_job(f"event-{queued_id}").get_status() == "queued"
    assert f"event-{failed_id}" in FailedJobRegistry(queue=queue).get_job_ids()
    left = [text(fields[b"event"]) for _, fields in redis_conn.xrange(keys.intake_stream())]
    assert left == [pending_id, waiting_id]
    assert usage.trim(redis_conn, dry_run=True)[2].keys == 0  # nothing finished is left to drop


def test_bridge_redis_usage_and_trim_from_the_command_line(synced, redis_conn, redis_url, runner):
    from bridge.cli import main

    synced.deliver(sample_lead())
    synced.work()
    env = {"REDIS_URL": redis_url}
    shown = runner.invoke(main, ["redis", "usage", "--json"], env=env)
    assert shown.exit_code == 0, shown.output
    report = json.loads(shown.output)
    assert {"story", "lead link (id map)"} <= {kind["kind"] for kind in report["kinds"]}
    text_report = runner.invoke(main, ["redis", "usage"], env=env)
    assert "record kind" in text_report.output and "memory:" in text_report.output

    before = dump_all(redis_conn)
    dry = runner.invoke(main, ["redis", "trim", "--dry-run"], env=env)
    assert dry.exit_code == 0 and "would drop: delivered events: 1 keys" in dry.output
    refused = runner.invoke(main, ["redis", "trim"], env=env, input="n\n")
    assert refused.exit_code == 1 and "nothing changed" in refused.output
    assert dump_all(redis_conn) == before
    trimmed = runner.invoke(main, ["redis", "trim", "--yes"], env=env)
    assert trimmed.exit_code == 0 and "dropped: delivered events: 1 keys" in trimmed.output, trimmed.output
    assert "memory:" in trimmed.output


def test_the_memory_bench_runs_on_a_tiny_count():
    result = subprocess.run([sys.executable, "-m", "bench.memory", "--leads", "2", "--updates", "1",
                             "--activities", "1", "--json"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout)
    assert figures["leads"] == 2 and figures["per_lead"]["kinds"]["story"] > 0
    assert {"≤ 1 hour", "≤ 7 days", "> 7 days"} <= set(figures["per_lead"]["by_lifetime"])
    assert [row["leads_per_day"] for row in figures["sizing"]] == [10, 100]
