"""`bridge jobs ...` and `bridge lead ...`: the support commands, thin over bridge.ops.jobs and bridge.ops.leads."""

from __future__ import annotations

import getpass
import json
import os
import sys

import click

from bridge.cli.environment import redis_or_exit, settings_or_exit
from bridge.exceptions import JobNotFailed, JobNotFound
from bridge.ops import jobs as job_tools
from bridge.ops import leads as lead_tools
from bridge.ops import present


def connect_or_exit():
    """Open the configured Redis, or stop with the configuration error."""
    return _settings_and_redis()[1]


def _settings_and_redis():
    """Load the settings and open their Redis, or stop with the configuration error."""
    settings = settings_or_exit()
    return settings, redis_or_exit(settings)


def operator() -> str:
    """Who is running this command: the OS user, as recorded in a lead's history."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER (some containers)
        return f"uid {os.getuid()}"


def echo_json(data) -> None:
    """Print data as indented JSON."""
    click.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))


@click.group()
def jobs():
    """Inspect, replay and dismiss jobs."""


@jobs.command("failed")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def jobs_failed(as_json):
    """List failed jobs: lead, action, error, attempts, first and last attempt."""
    failed = job_tools.list_failed(connect_or_exit())
    if as_json:
        echo_json([job.to_json() for job in failed])
        return
    for job in failed:
        lead = f"lead {job.lead_id}" if job.lead_id else (job.description or "no lead")
        name = f" ({job.lead_name})" if job.lead_name else ""
        click.echo(f"{job.id}  {job.action or '-'}  {lead}{name}")
        click.echo(f"  error:    {job.error_class or 'Error'}: {job.error or '(no message)'}")
        click.echo(f"  attempts: {job.attempts if job.attempts is not None else '?'}, "
                   f"first {present.format_time(job.first_attempt_at)}, "
                   f"last {present.format_time(job.last_attempt_at)}")
    click.echo(f"{len(failed)} failed job{'s' if len(failed) != 1 else ''}")


@jobs.command("replay")
@click.argument("job_ids", nargs=-1)
@click.option("--all", "replay_all", is_flag=True, help="Replay every failed job (see --since).")
@click.option("--since", help="With --all: only jobs last tried at or after this ISO 8601 time (UTC if no zone).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of results.")
def jobs_replay(job_ids, replay_all, since, as_json):
    """Put failed jobs back on their queue with a fresh retry budget (safe to repeat)."""
    if bool(job_ids) == replay_all:
        raise click.UsageError("give JOB_ID... or --all, not both")
    if since and not replay_all:
        raise click.UsageError("--since only applies with --all")
    try:
        since_time = present.parse_time(since) if since else None
    except ValueError:
        raise click.BadParameter(f"not an ISO 8601 time: {since!r}", param_hint="--since") from None
    settings, conn = _settings_and_redis()
    ladder = settings.retry_intervals
    try:
        if replay_all:
            results = job_tools.replay_matching(conn, job_tools.JobFilter(since=since_time),
                                                by=operator(), via=job_tools.CLI, intervals=ladder)
        else:
            results = job_tools.replay(conn, list(job_ids), by=operator(), via=job_tools.CLI, intervals=ladder)
    except JobNotFound as exc:
        click.echo(f"bridge: {exc}", err=True)
        sys.exit(1)
    if as_json:
        echo_json([result.to_json() for result in results])
        return
    for result in results:
        if result.replayed:
            click.echo(f"replayed {result.job_id} (fresh retry budget)")
        else:
            click.echo(f"skipped {result.job_id}: not failed (status: {result.status})")
    click.echo(f"{sum(r.replayed for r in results)} replayed, {sum(not r.replayed for r in results)} skipped")


@jobs.command("dismiss")
@click.argument("job_id")
@click.option("--reason", required=True, help="Why the job needs no replay (kept in the lead's history).")
def jobs_dismiss(job_id, reason):
    """Remove a failed job from the failed list, recording why."""
    if not reason.strip():
        raise click.BadParameter("must not be blank", param_hint="--reason")
    try:
        dismissed = job_tools.dismiss(connect_or_exit(), job_id, reason, by=operator(), via=job_tools.CLI)
    except (JobNotFound, JobNotFailed) as exc:
        click.echo(f"bridge: {exc}", err=True)
        sys.exit(1)
    click.echo(f"dismissed {job_id}" if dismissed else f"{job_id} was already dismissed")


@jobs.command("stats")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def jobs_stats(as_json):
    """Queue depths, the oldest waiting job, and job outcomes over the last hour and day."""
    stats = job_tools.stats(connect_or_exit())
    if as_json:
        echo_json(stats)
        return
    queues = stats["queues"]
    click.echo("queues:  " + ", ".join(f"{name} {count}" for name, count in queues.items()))
    click.echo(f"oldest waiting job: {present.format_age(stats['oldest_waiting_seconds'])}")
    click.echo(f"{'':<10}{'last hour':>10}{'last day':>10}")
    for outcome, counts in stats["outcomes"].items():
        click.echo(f"{outcome:<10}{counts['last_hour']:>10}{counts['last_day']:>10}")


@click.command("lead")
@click.argument("lead_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def lead(lead_id, as_json):
    """Show a Real Geeks lead's LionDesk mapping and its full history."""
    story = lead_tools.lead_story(connect_or_exit(), lead_id)
    if not story.known:
        click.echo(f"bridge: no record of lead {story.lead_id}", err=True)
        sys.exit(1)
    if as_json:
        echo_json(story.to_json())
        return
    click.echo(f"Real Geeks lead {story.lead_id}" + (f": {story.name}" if story.name else ""))
    contact = " ".join(filter(None, (story.email, story.phone)))
    if contact:
        click.echo(f"  {contact}")
    if story.mapping.linked:
        click.echo(f"LionDesk: contact {story.mapping.contact_id}, lead {story.mapping.liondesk_lead_id or '-'}")
    else:
        click.echo("LionDesk: not linked yet")
    click.echo(f"History ({len(story.history)} entries, oldest first):")
    for entry in story.history:
        when, kind = present.format_time(entry.get("at")), entry.get("kind", "?")
        click.echo(f"  {when}  {kind:<15} {present.describe_entry(entry)}")
