"""Records with one owner: the poll state, the lead link and the Redis text helpers, against a real Redis."""

from __future__ import annotations

import pytest

from bridge.storage import history, keys, kinds, mappings, polls
from bridge.storage.redis import text, text_hash


def test_the_poll_state_is_empty_before_the_first_poll(redis_conn):
    assert polls.load(redis_conn) == polls.PollState()
    assert polls.cursor(redis_conn) is None and polls.last_slot(redis_conn) is None
    assert polls.failed_job(redis_conn) is None


def test_a_poll_run_is_stored_typed_and_counted(redis_conn):
    run = dict(last_run=1700000100.5, cursor="2023-11-14T22:15:00.000Z", outcome="ok", error=None, read=3,
               pushed=1, created=0, deferred=0, conflicts=0, duration_ms=12.5)
    polls.record_run(redis_conn, run)
    polls.record_run(redis_conn, run)
    polls.record_slot(redis_conn, 1700000040)
    polls.record_failed_job(redis_conn, "poll-1700000040")
    state = polls.load(redis_conn)
    assert (state.last_run, state.cursor, state.read, state.duration_ms, state.runs) == (
        1700000100.5, "2023-11-14T22:15:00.000Z", 3, 12.5, 2)
    assert state.error == "" and state.last_slot == 1700000040 and state.failed_job == "poll-1700000040"
    assert polls.cursor(redis_conn) == "2023-11-14T22:15:00.000Z"


def test_an_unreadable_field_keeps_its_default_instead_of_breaking_the_status_pages(redis_conn):
    redis_conn.hset(keys.poll_state(), mapping={"last_run": "yesterday", "read": "many", "outcome": "ok",
                                                "written_by_a_newer_release": "1"})
    state = polls.load(redis_conn)
    assert (state.last_run, state.read, state.outcome) == (None, 0, "ok")


def test_a_poll_run_with_a_field_the_record_does_not_have_is_refused(redis_conn):
    with pytest.raises(ValueError, match="not poll-run fields"):
        polls.record_run(redis_conn, {"cursor": "x", "curser": "typo"})
    assert polls.load(redis_conn) == polls.PollState()


def test_redis_replies_read_as_text_whatever_the_client_decoding():
    assert text(b"caf\xc3\xa9") == "café" and text("already") == "already" and text(None) is None
    assert text(b"\xff") == "\ufffd"  # bad bytes are replaced, never an exception in a status page
    assert text_hash({b"a": b"1", "b": "2"}) == {"a": "1", "b": "2"}


def test_a_lead_link_is_written_and_read_typed(redis_conn):
    link = mappings.load_link(redis_conn, "lead1")
    assert link == mappings.LeadLink("lead1") and not link.linked
    mappings.save_link(redis_conn, link, contact_id=9001, liondesk_lead_id=77, site_uuid="site", applied_ns=5,
                       lead_source_id=None, pushed_ns={"phone": 7})
    mappings.save_link(redis_conn, link, pushed_ns={"email": 8})
    assert (link.contact_id, link.liondesk_lead_id, link.applied_ns, link.pushed_ns) == (
        "9001", "77", 5, {"phone": 7, "email": 8})
    assert mappings.load_link(redis_conn, "lead1") == link
    assert mappings.lead_of_contact(redis_conn, 9001) == "lead1"
    stored = text_hash(redis_conn.hgetall(keys.lead_mapping("lead1")))
    assert stored == {"contact_id": "9001", "liondesk_lead_id": "77", "site_uuid": "site", "applied_ns": "5",
                      "pushed_ns:phone": "7", "pushed_ns:email": "8"}
    assert redis_conn.ttl(keys.lead_mapping("lead1")) > 0


def test_a_link_stored_by_the_previous_release_reads_its_liondesk_lead_under_the_new_name(redis_conn):
    # The previous release wrote the LionDesk lead id as `lead_id`; links it stored must keep
    # their LionDesk lead, or the forward sync would create a second one.
    redis_conn.hset(keys.lead_mapping("old1"), mapping={"contact_id": "9001", "lead_id": "77"})
    link = mappings.load_link(redis_conn, "old1")
    assert (link.lead_id, link.liondesk_lead_id, link.extra) == ("old1", "77", {})
    assert link.facts() == {"contact_id": "9001", "liondesk_lead_id": "77"}
    mappings.save_link(redis_conn, link, liondesk_lead_id=78)
    assert mappings.load_link(redis_conn, "old1").liondesk_lead_id == "78"  # the new name wins once written


def test_link_fields_this_release_does_not_know_survive_its_writes(redis_conn):
    redis_conn.hset(keys.lead_mapping("new1"), mapping={"contact_id": "9001", "written_by_a_newer_release": "x",
                                                        "applied_ns": "not a number"})
    link = mappings.load_link(redis_conn, "new1")
    assert link.extra == {"written_by_a_newer_release": "x"} and link.applied_ns == 0
    mappings.save_link(redis_conn, link, applied_ns=12)
    stored = text_hash(redis_conn.hgetall(keys.lead_mapping("new1")))
    assert stored["written_by_a_newer_release"] == "x" and stored["applied_ns"] == "12"


def test_a_link_field_the_record_does_not_have_is_refused(redis_conn):
    link = mappings.load_link(redis_conn, "lead2")
    with pytest.raises(ValueError, match="not lead-link fields"):
        mappings.save_link(redis_conn, link, contact=1)
    with pytest.raises(ValueError, match="not lead-link fields"):
        mappings.save_link(redis_conn, link, lead_id="x")  # the key, never a field: no second meaning
    assert not redis_conn.exists(keys.lead_mapping("lead2"))


def test_history_entries_are_written_only_with_named_kinds(redis_conn):
    assert history.append(redis_conn, "lead3", kinds.PROCESSED, summary="ok")["kind"] == "processed"
    with pytest.raises(ValueError, match="not a history kind"):
        history.append(redis_conn, "lead3", "procesed")
    with pytest.raises(ValueError, match="not a history kind"):
        history.append(redis_conn, "lead3", kinds.UNREADABLE)  # what reading returns, never stored
    assert [entry["kind"] for entry in history.read(redis_conn, "lead3")] == ["processed"]
