"""Records with one owner: the poll state and the Redis text helpers, against a real Redis."""

from __future__ import annotations

import pytest

from bridge.storage import keys, polls
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
