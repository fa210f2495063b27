"""`bridge jobs ...` against the real test Redis, with failed jobs made by a real worker."""

import getpass
import json
import time
from datetime import datetime, timezone

import pytest
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry

from bridge import defaults
from bridge.cli import main
from bridge.exceptions import PermanentError, RetryableError
from bridge.ops import jobs
from bridge.storage import history, keys
from tests.ops_support import deliver, raising, run_jobs, succeeding
from bridge.queue import event_job_id, event_queue


@pytest.fixture
def cli(runner, redis_url):
    """Run `bridge ARGS...` against the test Redis; return click's result."""
    def invoke(*args):
        return runner.invoke(main, list(args), env={"REDIS_URL": redis_url})
    return invoke


def failed_ids(conn):
    """Ids in the event queue's failed store."""
    return FailedJobRegistry(defaults.EVENT_QUEUE, connection=conn).get_job_ids()


def kinds(conn, lead_id):
    """The kinds of a lead's history entries, oldest first."""
    return [entry["kind"] for entry in history.read(conn, lead_id)]


def test_failed_lists_a_permanent_failure_with_lead_error_and_attempts(
        cli, client, redis_conn, settings, webhook_secret, monkeypatch):
    lead = deliver(client, webhook_secret, first_name="Leilani", last_name="Kealoha")
    run_jobs(settings, redis_conn, monkeypatch, raising(PermanentError("LionDesk said 422: source unknown")))

    result = cli("jobs", "failed", "--json")
    assert result.exit_code == 0, result.output
    (job,) = json.loads(result.stdout)
    assert job["id"] == event_job_id(lead["event_id"])
    assert job["lead_id"] == lead["id"] and job["lead_name"] == "Leilani Kealoha"
    assert job["action"] == "created" and job["status"] == "failed"
    assert job["error_class"] == "PermanentError" and job["error"] == "LionDesk said 422: source unknown"
    assert job["attempts"] == 1
    assert job["first_attempt_at"] == job["last_attempt_at"] is not None

    text = cli("jobs", "failed").stdout
    assert "Leilani Kealoha" in text and "PermanentError: LionDesk said 422: source unknown" in text
    assert "1 failed job" in text


def test_failed_counts_every_attempt_of_a_spent_ladder(cli, client, redis_conn, make_settings, webhook_secret,
                                                       monkeypatch):
    quick = make_settings(retry_intervals=(0, 0))  # two immediate retries, so one burst spends the ladder
    lead = deliver(client, webhook_secret)
    run_jobs(quick, redis_conn, monkeypatch, raising(RetryableError("LionDesk answered 503")))

    (job,) = json.loads(cli("jobs", "failed", "--json").stdout)
    assert job["id"] == event_job_id(lead["event_id"])
    assert job["attempts"] == 3 and job["error_class"] == "RetryableError"
    assert job["first_attempt_at"] <= job["last_attempt_at"]
    assert kinds(redis_conn, lead["id"]).count("attempt_failed") == 3


def test_no_failed_jobs_says_so(cli, redis_conn):
    result = cli("jobs", "failed")
    assert result.exit_code == 0 and "0 failed jobs" in result.stdout
    assert json.loads(cli("jobs", "failed", "--json").stdout) == []


def test_replay_restores_the_whole_retry_ladder_and_writes_history(
        cli, client, redis_conn, settings, webhook_secret, monkeypatch):
    lead = deliver(client, webhook_secret)
    run_jobs(settings, redis_conn, monkeypatch, raising(PermanentError("refused")))
    job_id = event_job_id(lead["event_id"])
    assert Job.fetch(job_id, connection=redis_conn).retries_left == 0  # what RQ's own requeue would keep

    result = cli("jobs", "replay", job_id)
    assert result.exit_code == 0, result.output
    assert f"replayed {job_id}" in result.stdout

    job = Job.fetch(job_id, connection=redis_conn)
    assert job.retries_left == len(defaults.RETRY_INTERVALS_SECONDS)
    assert job.retry_intervals == list(defaults.RETRY_INTERVALS_SECONDS)
    assert job.get_status() == JobStatus.QUEUED
    assert event_queue(redis_conn).job_ids == [job_id]
    assert failed_ids(redis_conn) == []
    replayed = history.read(redis_conn, lead["id"])[-1]
    assert replayed["kind"] == "replayed" and replayed["job_id"] == job_id
    assert replayed["by"] == getpass.getuser() and replayed["via"] == "cli"
    assert abs(replayed["at"] - time.time()) < 60

    run_jobs(settings, redis_conn, monkeypatch, succeeding)  # the replayed job really runs again
    assert kinds(redis_conn, lead["id"])[-1] == "processed"


def test_replay_uses_the_configured_ladder(cli, runner, client, redis_conn, redis_url, settings, webhook_secret,
                                           monkeypatch):
    lead = deliver(client, webhook_secret)
    run_jobs(settings, redis_conn, monkeypatch, raising(PermanentError("refused")))
    job_id = event_job_id(lead["event_id"])
    result = runner.invoke(main, ["jobs", "replay", job_id],
                           env={"REDIS_URL": redis_url, "BRIDGE_RETRY_INTERVALS": "5,50"})
    assert result.exit_code == 0, result.output
    job = Job.fetch(job_id, connection=redis_conn)
    assert (job.retries_left, job.retry_intervals) == (2, [5, 50])


def test_replaying_twice_queues_the_job_once(cli, client, redis_conn, settings, webhook_secret, monkeypatch):
    lead = deliver(client, webhook_secret)
    run_jobs(settings, redis_conn, monkeypatch, raising(PermanentError("refused")))
    job_id = event_job_id(lead["event_id"])

    assert cli("jobs", "replay", job_id).exit_code == 0
    again = cli("jobs", "replay", job_id)
    assert again.exit_code == 0
    assert f"skipped {job_id}: not failed (status: queued)" in again.stdout
    assert event_queue(redis_conn).job_ids == [job_id]
    assert kinds(redis_conn, lead["id"]).count("replayed") == 1


def test_unknown_job_id_is_an_error_and_nothing_is_replayed(cli, client, redis_conn, settings, webhook_secret,
                                                            monkeypatch):
    lead = deliver(client, webhook_secret)
    run_jobs(settings, redis_conn, monkeypatch, raising(PermanentError("refused")))
    job_id = event_job_id(lead["event_id"])

    result = cli("jobs", "replay", job_id, "event-doesnotexist")
    assert result.exit_code == 1
    assert "no such job: event-doesnotexist" in result.stderr
    assert failed_ids(redis_conn) == [job_id]
    assert "replayed" not in kinds(redis_conn, lead["id"])


@pytest.mark.parametrize("args", [(), ("event-x", "--all"), ("event-x", "--since", "2024-01-01")])
def test_replay_needs_ids_or_all(cli, redis_conn, args):
    result = cli("jobs", "replay", *args)
    assert result.exit_code == 2


def test_replay_all_since_takes_only_later_failures(cli, client, redis_conn, settings, webhook_secret, monkeypatch):
    early = deliver(client, webhook_secret)
    run_jobs(settings, redis_conn, monkeypatch, raising(PermanentError("refused")))
    time.sleep(0.01)  # attempt times are kept to the millisecond
    boundary = datetime.now(timezone.utc).isoformat()
    late = deliver(client, webhook_secret)
    run_jobs(settings, redis_conn, monkeypatch, raising(PermanentError("refused")))
    assert len(failed_ids(redis_conn)) == 2

    result = cli("jobs", "replay", "--all", "--since", boundary, "--json", "--yes")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [{"job_id": event_job_id(late["event_id"]), "replayed": True,
                                          "status": "queued"}]
    assert failed_ids(redis_conn) == [event_job_id(early["event_id"])]

    everything = cli("jobs", "replay", "--all", "--yes")
    assert everything.exit_code == 0 and "1 replayed, 0 skipped" in everything.stdout
    assert failed_ids(redis_conn) == []


def test_replay_rejects_an_unreadable_since(cli, redis_conn):
    result = cli("jobs", "replay", "--all", "--since", "last tuesday")
    assert result.exit_code == 2 and "not an ISO 8601 time" in result.output


def test_stats_counts_queues_and_outcomes(cli, client, redis_conn, settings, webhook_secret, monkeypatch):
    good, bad, flaky = (deliver(client, webhook_secret) for _ in range(3))

    def handler(context, event):
        if event.lead_id == bad["id"]:
            raise PermanentError("refused")
        if event.lead_id == flaky["id"]:
            raise RetryableError("timeout")  # scheduled 30 s later on the ladder
        return "ok"

    run_jobs(settings, redis_conn, monkeypatch, handler)
    deliver(client, webhook_secret)
    from workers.relay import Relay
    Relay(redis_conn, "test-relay", settings.retry_intervals).drain()  # one job left waiting

    stats = json.loads(cli("jobs", "stats", "--json").stdout)
    assert stats["queues"] == {"events": 1, "poll": 0, "scheduled": 1, "failed": 1}
    assert stats["oldest_waiting_seconds"] is not None and stats["oldest_waiting_seconds"] >= 0
    outcomes = stats["outcomes"]
    assert outcomes["processed"] == {"last_hour": 1, "last_day": 1}
    assert outcomes["failed"] == {"last_hour": 1, "last_day": 1}
    assert outcomes["retrying"] == {"last_hour": 1, "last_day": 1}

    text = cli("jobs", "stats").stdout
    assert "events 1, poll 0, scheduled 1, failed 1" in text
    assert "processed" in text and "last hour" in text


def test_outcome_times_older_than_the_stats_window_are_trimmed(redis_conn):
    now = time.time()
    jobs.record_outcome(redis_conn, "processed", now=now - defaults.JOB_STATS_TTL_SECONDS - 10)
    jobs.record_outcome(redis_conn, "processed", now=now - 7200)
    jobs.record_outcome(redis_conn, "processed", now=now)
    assert redis_conn.zcard(keys.job_outcomes("processed")) == 2
    assert jobs.outcome_counts(redis_conn, now)["processed"] == {"last_hour": 1, "last_day": 2}
    assert 0 < redis_conn.ttl(keys.job_outcomes("processed")) <= defaults.JOB_STATS_TTL_SECONDS


def test_dismiss_takes_a_job_out_of_the_failed_list_with_its_reason(
        cli, client, redis_conn, settings, webhook_secret, monkeypatch):
    lead = deliver(client, webhook_secret)
    run_jobs(settings, redis_conn, monkeypatch, raising(PermanentError("duplicate of another lead")))
    job_id = event_job_id(lead["event_id"])

    result = cli("jobs", "dismiss", job_id, "--reason", "agent merged it by hand")
    assert result.exit_code == 0 and f"dismissed {job_id}" in result.stdout
    assert failed_ids(redis_conn) == []
    assert json.loads(cli("jobs", "failed", "--json").stdout) == []
    entry = history.read(redis_conn, lead["id"])[-1]
    assert entry["kind"] == "dismissed" and entry["reason"] == "agent merged it by hand"
    assert entry["by"] == getpass.getuser() and entry["job_id"] == job_id

    again = cli("jobs", "dismiss", job_id, "--reason", "twice")
    assert again.exit_code == 0 and "already dismissed" in again.stdout

    replayed = cli("jobs", "replay", job_id)  # a dismissal can be undone by a replay
    assert replayed.exit_code == 0 and f"replayed {job_id}" in replayed.stdout
    assert event_queue(redis_conn).job_ids == [job_id]
    assert Job.fetch(job_id, connection=redis_conn).retries_left == len(defaults.RETRY_INTERVALS_SECONDS)


def test_dismiss_refuses_unknown_and_unfailed_jobs(cli, client, redis_conn, settings, webhook_secret):
    lead = deliver(client, webhook_secret)
    from workers.relay import Relay
    Relay(redis_conn, "test-relay", settings.retry_intervals).drain()

    unknown = cli("jobs", "dismiss", "event-nope", "--reason", "x")
    assert unknown.exit_code == 1 and "no such job: event-nope" in unknown.stderr
    queued = cli("jobs", "dismiss", event_job_id(lead["event_id"]), "--reason", "x")
    assert queued.exit_code == 1 and "is not failed (status: queued)" in queued.stderr
    assert cli("jobs", "dismiss", "event-nope").exit_code == 2  # --reason is required
    assert cli("jobs", "dismiss", "event-nope", "--reason", "  ").exit_code == 2


# -- waiting jobs: retrying, retry-now, previews ------------------------------------------------


@pytest.fixture
def waiting(client, redis_conn, settings, webhook_secret, monkeypatch):
    """Two lead jobs waiting for their next attempt: one on the ladder (LionDesk 503), one for re-authorisation."""
    from bridge.exceptions import LionDeskNeedsReauthorization, UpstreamUnavailable

    flaky = deliver(client, webhook_secret, first_name="Kai", last_name="Akana")
    held = deliver(client, webhook_secret, action="updated", first_name="Mele", last_name="Kahale")

    def handler(context, event):
        if event.lead_id == flaky["id"]:
            raise UpstreamUnavailable("LionDesk answered 503", service="liondesk", status=503)
        raise LionDeskNeedsReauthorization("LionDesk refused the refresh token")

    before = time.time()
    run_jobs(settings, redis_conn, monkeypatch, handler)
    return {"flaky": flaky, "held": held, "failed_at": before}


def test_retrying_lists_every_waiting_job_with_reason_attempts_and_next_attempt(cli, redis_conn, waiting):
    result = cli("jobs", "retrying", "--json")
    assert result.exit_code == 0, result.output
    listed = {job["lead_id"]: job for job in json.loads(result.stdout)}
    assert set(listed) == {waiting["flaky"]["id"], waiting["held"]["id"]}
    flaky, held = listed[waiting["flaky"]["id"]], listed[waiting["held"]["id"]]
    assert flaky["outcome"] == "retrying" and flaky["error_class"] == "UpstreamUnavailable"
    assert flaky["attempts"] == 1 and flaky["retries_left"] == len(defaults.RETRY_INTERVALS_SECONDS) - 1
    assert flaky["lead_name"] == "Kai Akana" and flaky["kind"] == "lead"
    first_step = defaults.RETRY_INTERVALS_SECONDS[0]
    next_at = datetime.fromisoformat(flaky["next_attempt_at"]).timestamp()
    assert waiting["failed_at"] + first_step - 1 <= next_at <= time.time() + first_step + 1
    assert held["outcome"] == "waiting" and held["error_class"] == "LionDeskNeedsReauthorization"
    assert held["retries_left"] == len(defaults.RETRY_INTERVALS_SECONDS)  # waiting spends no retry
    held_at = datetime.fromisoformat(held["next_attempt_at"]).timestamp()
    assert held_at >= waiting["failed_at"] + defaults.WAITING_RETRY_SECONDS - 1

    text = cli("jobs", "retrying").stdout
    assert "lead jobs:" in text and "Kai Akana" in text and "retrying: UpstreamUnavailable: LionDesk answered 503" in text
    assert "next attempt at " in text and "2 jobs waiting for a next attempt" in text
    # The story says when the next attempt is, too.
    entry = history.read(redis_conn, waiting["flaky"]["id"])[-1]
    assert entry["kind"] == "attempt_failed" and abs(entry["next_attempt_at"] - next_at) < 2
    from bridge.ops import present
    assert "; next attempt at " in present.describe_entry(entry)


def test_retry_now_runs_a_waiting_job_and_the_early_attempt_counts(cli, redis_conn, settings, waiting, monkeypatch):
    job_id = event_job_id(waiting["flaky"]["event_id"])
    spent = len(defaults.RETRY_INTERVALS_SECONDS) - 1

    result = cli("jobs", "retry-now", job_id)
    assert result.exit_code == 0, result.output
    assert f"running {job_id} now ({spent} retries left after this attempt)" in result.stdout
    assert "no worker is running: they run when one starts" in result.stderr  # none beats in this test
    entry = history.read(redis_conn, waiting["flaky"]["id"])[-1]
    assert (entry["kind"], entry["via"], entry["by"]) == ("retried_now", "cli", getpass.getuser())

    from bridge.exceptions import UpstreamUnavailable
    run_jobs(settings, redis_conn, monkeypatch,
             raising(UpstreamUnavailable("still 503", service="liondesk", status=503)), scheduled=True)
    job = Job.fetch(job_id, connection=redis_conn)
    assert job.get_status() == JobStatus.SCHEDULED
    assert job.retries_left == spent - 1  # the early attempt was one of its retries
    attempts = [e for e in history.read(redis_conn, waiting["flaky"]["id"]) if e["kind"] == "attempt_failed"]
    assert [e["attempt"] for e in attempts] == [1, 2]
    (listed,) = [j for j in json.loads(cli("jobs", "retrying", "--json").stdout) if j["id"] == job_id]
    second_step = defaults.RETRY_INTERVALS_SECONDS[1]
    assert datetime.fromisoformat(listed["next_attempt_at"]).timestamp() >= time.time() + second_step - 5

    again = cli("jobs", "retry-now", job_id)
    assert again.exit_code == 0
    run_jobs(settings, redis_conn, monkeypatch, succeeding, scheduled=True)
    assert kinds(redis_conn, waiting["flaky"]["id"])[-1] == "processed"
    assert Job.fetch(job_id, connection=redis_conn).get_status() == JobStatus.FINISHED
    done = cli("jobs", "retry-now", job_id)
    assert done.exit_code == 0 and f"skipped {job_id}: not waiting (status: finished)" in done.stdout


def test_retry_now_refuses_unknown_ids_and_touches_nothing(cli, redis_conn, waiting):
    job_id = event_job_id(waiting["flaky"]["event_id"])
    before = redis_conn.zscore(f"{jobs.ScheduledJobRegistry(defaults.EVENT_QUEUE, connection=redis_conn).key}",
                               job_id)
    result = cli("jobs", "retry-now", job_id, "event-nope")
    assert result.exit_code == 1 and "no such job: event-nope" in result.stderr
    registry = jobs.ScheduledJobRegistry(defaults.EVENT_QUEUE, connection=redis_conn)
    assert redis_conn.zscore(registry.key, job_id) == before
    assert cli("jobs", "retry-now").exit_code == 2
    assert cli("jobs", "retry-now", job_id, "--all").exit_code == 2


def test_retry_now_all_previews_asks_and_runs(cli, runner, redis_url, redis_conn, waiting):
    registry = jobs.ScheduledJobRegistry(defaults.EVENT_QUEUE, connection=redis_conn)
    scores = {job_id: redis_conn.zscore(registry.key, job_id) for job_id in registry.get_job_ids()}
    assert len(scores) == 2

    dry = cli("jobs", "retry-now", "--all", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "would run now 2 jobs" in dry.stdout
    assert "by action: created 1, updated 1" in dry.stdout
    assert "by error: LionDeskNeedsReauthorization 1, UpstreamUnavailable 1" in dry.stdout
    plan = json.loads(cli("jobs", "retry-now", "--all", "--dry-run", "--json").stdout)
    assert plan["total"] == 2 and plan["by_kind"] == {"lead": 2} and plan["dry_run"] is True
    assert {job_id: redis_conn.zscore(registry.key, job_id) for job_id in scores} == scores  # nothing changed

    refused = runner.invoke(main, ["jobs", "retry-now", "--all"], env={"REDIS_URL": redis_url}, input="n\n")
    assert refused.exit_code == 1 and "Run now these 2 jobs?" in refused.stderr
    assert {job_id: redis_conn.zscore(registry.key, job_id) for job_id in scores} == scores

    asked = runner.invoke(main, ["jobs", "retry-now", "--all"], env={"REDIS_URL": redis_url}, input="y\n")
    assert asked.exit_code == 0, asked.output
    assert "2 due now, 0 skipped" in asked.stdout
    assert all(redis_conn.zscore(registry.key, job_id) <= time.time() for job_id in scores)
    assert cli("jobs", "retry-now", "--all", "--kind", "poll", "--yes").stdout.strip() == "nothing to run now"


def test_replay_all_dry_run_counts_and_kind_keeps_poll_jobs_apart(cli, client, redis_conn, settings, webhook_secret,
                                                                 monkeypatch):
    from bridge.queue import enqueue_poll, poll_queue

    deliver(client, webhook_secret, first_name="Noa")
    deliver(client, webhook_secret, action="updated")
    run_jobs(settings, redis_conn, monkeypatch, raising(PermanentError("LionDesk said 422")))
    enqueue_poll(poll_queue(redis_conn), 1_700_000_000, intervals=(1,))
    import workers.jobs
    def refused_poll(context, **_):
        raise PermanentError("poll refused")

    monkeypatch.setattr(workers.jobs.reverse, "poll", refused_poll)
    run_jobs(settings, redis_conn, monkeypatch)
    poll_failed = FailedJobRegistry(defaults.POLL_QUEUE, connection=redis_conn).get_job_ids()
    assert poll_failed == ["poll-1700000000"]

    dry = cli("jobs", "replay", "--all", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "would replay 2 jobs" in dry.stdout and "by kind: lead 2" in dry.stdout
    assert "by error: PermanentError 2" in dry.stdout
    assert len(failed_ids(redis_conn)) == 2  # nothing replayed
    polls = json.loads(cli("jobs", "replay", "--all", "--kind", "poll", "--dry-run", "--json").stdout)
    assert polls["job_ids"] == ["poll-1700000000"] and polls["by_kind"] == {"poll": 1}

    text = cli("jobs", "failed").stdout
    assert text.index("lead jobs:") < text.index("poll and contact jobs:") < text.index("poll-1700000000")

    done = cli("jobs", "replay", "--all", "--yes")
    assert done.exit_code == 0 and "2 replayed, 0 skipped" in done.stdout
    assert failed_ids(redis_conn) == []
    assert FailedJobRegistry(defaults.POLL_QUEUE, connection=redis_conn).get_job_ids() == poll_failed


def test_lead_starts_with_where_the_delivery_stands(cli, redis_conn, waiting):
    result = cli("lead", waiting["flaky"]["id"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[1].startswith("  Waiting: LionDesk failed, retrying at ") and "; next attempt at " in lines[1]
    assert lines[2] == "  UpstreamUnavailable: LionDesk answered 503"
    data = json.loads(cli("lead", waiting["held"]["id"], "--json").stdout)
    assert data["summary"]["state"] == "waiting" and data["summary"]["next_attempt_at"].endswith("+00:00")
    assert data["summary"]["job_id"] == event_job_id(waiting["held"]["event_id"])


def test_times_show_in_bridge_timezone(runner, redis_url, redis_conn, waiting):
    result = runner.invoke(main, ["jobs", "retrying"], env={"REDIS_URL": redis_url, "BRIDGE_TIMEZONE": "Asia/Tokyo"})
    assert result.exit_code == 0 and " JST" in result.stdout and "Z\n" not in result.stdout
    bad = runner.invoke(main, ["jobs", "retrying"], env={"REDIS_URL": redis_url, "BRIDGE_TIMEZONE": "Mars/Olympus"})
    assert bad.exit_code == 2 and "BRIDGE_TIMEZONE" in bad.output


def test_a_page_of_waiting_jobs_and_the_brief_preview_agree(redis_conn, waiting):
    from bridge.ops import status

    everything = jobs.list_retrying(redis_conn)
    assert [job.id for job in jobs.list_retrying(redis_conn, limit=1)] == [everything[0].id]  # the soonest
    brief = jobs.waiting_briefly(redis_conn)
    assert [job.id for job in brief] == [job.id for job in everything]
    assert [(b.action, b.error_class, b.outcome, b.lead_id) for b in brief] == [
        (e.action, e.error_class, e.outcome, e.lead_id) for e in everything]
    assert status.waiting_jobs(redis_conn)["more"] is False
    capped = status.waiting_jobs(redis_conn, limit=1)
    assert capped["more"] is True and capped["liondesk_failing"] + capped["waiting_for_operator"] == 1
