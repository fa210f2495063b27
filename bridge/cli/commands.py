"""`bridge jobs ...` and `bridge lead ...`: the support commands, thin over bridge.ops.jobs and bridge.ops.leads."""

from __future__ import annotations

import getpass
import json
import os
import sys

import click

from bridge.cli.environment import redis_or_exit, say, settings_or_exit
from bridge.exceptions import JobNotFailed, JobNotFound
from bridge.ops import jobs as job_tools
from bridge.ops import leads as lead_tools
from bridge.ops import present, status


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
    """Print data as indented JSON (control characters in it come out escaped, as JSON writes them)."""
    click.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))


@click.group()
def jobs():
    """Inspect, replay and dismiss jobs."""


@jobs.command("failed")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def jobs_failed(as_json):
    """List failed jobs: lead, action, error, attempts, first and last attempt (lead jobs apart from the others)."""
    settings, conn = _settings_and_redis()
    _list_jobs(job_tools.list_failed(conn), settings, as_json, _failed_lines, "failed job", "")


def _failed_lines(job, zone) -> list[str]:
    """What `jobs failed` says about one job under its headline."""
    return [f"error:    {job.error_class or 'Error'}: {job.error or '(no message)'}",
            f"attempts: {job.attempts if job.attempts is not None else '?'}, "
            f"first {present.format_time(job.first_attempt_at, zone)}, last {present.format_time(job.last_attempt_at, zone)}"]


def _waiting_lines(job, zone) -> list[str]:
    """What `jobs retrying` says about one job under its headline."""
    return [f"{job.outcome}: {job.error_class or 'Error'}: {job.error or '(no message recorded)'}",
            f"attempts: {job.attempts if job.attempts is not None else '?'}, "
            f"retries left {job.retries_left if job.retries_left is not None else '?'}, "
            f"next attempt at {present.format_time(job.next_attempt_at, zone)}"]


def _list_jobs(summaries, settings, as_json: bool, lines, noun: str, tail: str) -> None:
    """Print jobs as JSON, or grouped (lead jobs apart from poll and contact jobs) with `lines` under each."""
    if as_json:
        echo_json([job.to_json() for job in summaries])
        return
    zone = _zone(settings)
    for title, group in _by_kind(summaries):
        say(f"{title}:")
        for job in group:
            lead = f"lead {job.lead_id}" if job.lead_id else (job.description or "no lead")
            name = f" ({job.lead_name})" if job.lead_name else ""
            say(f"  {job.id}  {job.action or '-'}  {lead}{name}")
            for line in lines(job, zone):
                say(f"    {line}")
    say(f"{len(summaries)} {noun}{'s' if len(summaries) != 1 else ''}{tail}")


KIND_CHOICE = click.Choice([job_tools.LEAD, job_tools.POLL, job_tools.CONTACT, "any"])
"""Which jobs a bulk command takes: lead jobs (the default), the poll, contact syncs, or any."""


def _zone(settings):
    """The time zone the settings show times in."""
    return present.time_zone(settings.bridge_timezone)


def _bulk_filter(kind: str, since_time: float | None = None) -> job_tools.JobFilter:
    """The filter of a bulk command: one kind of job (or any), optionally since a time."""
    return job_tools.JobFilter(kinds=None if kind == "any" else frozenset({kind}), since=since_time)


def _show_preview(verb: str, plan: job_tools.Preview, as_json: bool, err: bool = False) -> None:
    """Say what a bulk command would do: how many jobs, by kind, action and error (`err`: on stderr)."""
    if as_json:
        echo_json({"dry_run": True, **plan.to_json()})
        return
    say(f"would {verb} {plan.total} job{'s' if plan.total != 1 else ''}", err=err)
    for title, counts in (("kind", plan.by_kind), ("action", plan.by_action), ("error", plan.by_error)):
        if counts:
            say(f"  by {title}: " + ", ".join(f"{name} {count}" for name, count in counts.items()), err=err)


def _confirm_bulk(verb: str, plan: job_tools.Preview, yes: bool, as_json: bool) -> bool:
    """Show a bulk command's preview and ask before it runs (unless --yes); False when there is nothing to do."""
    if not plan.total:
        if as_json:
            echo_json([])
        else:
            say(f"nothing to {verb}")
        return False
    if not yes:  # the question goes to stderr, so that --json output stays JSON
        _show_preview(verb, plan, as_json=False, err=True)
        click.confirm(f"{verb.capitalize()} these {plan.total} jobs?", abort=True, err=True)
    return True


def _bulk(conn, verb: str, job_ids, listing, dry_run: bool, yes: bool, as_json: bool, act):
    """Run a job action on the given ids, or on what `listing()` finds (asking first unless `yes`);
    with `dry_run` only say what it would do. Returns the results, or None when it printed all there is."""
    try:
        if listing:
            plan = job_tools.preview(listing())
            if dry_run:
                _show_preview(verb, plan, as_json)
                return None
            if not _confirm_bulk(verb, plan, yes, as_json):
                return None
            results = act(plan.job_ids, True)  # one that expired since the preview is reported, not an error
        elif dry_run:
            _show_preview(verb, job_tools.preview(job_tools.summaries(conn, list(job_ids))), as_json)
            return None
        else:
            results = act(list(job_ids), False)
    except JobNotFound as exc:
        say(f"bridge: {exc}", err=True)
        sys.exit(1)
    if as_json:
        echo_json([result.to_json() for result in results])
        return None
    return results


@jobs.command("replay")
@click.argument("job_ids", nargs=-1)
@click.option("--all", "replay_all", is_flag=True, help="Replay every failed job of --kind (see --since).")
@click.option("--since", help="With --all: only jobs last tried at or after this ISO 8601 time (UTC if no zone).")
@click.option("--kind", type=KIND_CHOICE, default=job_tools.LEAD, show_default=True,
              help="With --all: which jobs (lead jobs; the LionDesk poll and contact syncs are apart).")
@click.option("--dry-run", is_flag=True, help="Say what would be replayed (counts by kind, action, error); change nothing.")
@click.option("--yes", "-y", is_flag=True, help="With --all: do not ask before replaying.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of results.")
def jobs_replay(job_ids, replay_all, since, kind, dry_run, yes, as_json):
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
    results = _bulk(conn, "replay", job_ids, replay_all and (lambda: job_tools.failed_briefly(
                        conn, _bulk_filter(kind, since_time))), dry_run, yes, as_json,
                    lambda ids, missing_ok: job_tools.replay(conn, ids, by=operator(), via=job_tools.CLI,
                                                             intervals=settings.retry_intervals,
                                                             missing_ok=missing_ok))
    if results is None:
        return
    for result in results:
        if result.replayed:
            say(f"replayed {result.job_id} (fresh retry budget)")
        else:
            say(f"skipped {result.job_id}: not failed (status: {result.status})")
    say(f"{sum(r.replayed for r in results)} replayed, {sum(not r.replayed for r in results)} skipped")


@jobs.command("retrying")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def jobs_retrying(as_json):
    """List jobs waiting for their next attempt (retry ladder, or waiting for LionDesk): why, attempts, when next."""
    settings, conn = _settings_and_redis()
    _list_jobs(job_tools.list_retrying(conn), settings, as_json, _waiting_lines, "job", " waiting for a next attempt")


def _by_kind(summaries):
    """Lead jobs first, then the poll and contact jobs, each group with its title (empty groups left out)."""
    leads = [job for job in summaries if job.kind == job_tools.LEAD]
    others = [job for job in summaries if job.kind != job_tools.LEAD]
    return [(title, group) for title, group in (("lead jobs", leads), ("poll and contact jobs", others)) if group]


@jobs.command("retry-now")
@click.argument("job_ids", nargs=-1)
@click.option("--all", "retry_all", is_flag=True, help="Run every waiting job of --kind now.")
@click.option("--kind", type=KIND_CHOICE, default=job_tools.LEAD, show_default=True,
              help="With --all: which jobs (lead jobs; the LionDesk poll and contact syncs are apart).")
@click.option("--dry-run", is_flag=True, help="Say what would run now (counts by kind, action, error); change nothing.")
@click.option("--yes", "-y", is_flag=True, help="With --all: do not ask first.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of results.")
def jobs_retry_now(job_ids, retry_all, kind, dry_run, yes, as_json):
    """Run waiting jobs now instead of at their next attempt; the attempt counts against their retry budget."""
    if bool(job_ids) == retry_all:
        raise click.UsageError("give JOB_ID... or --all, not both")
    conn = connect_or_exit()
    results = _bulk(conn, "run now", job_ids, retry_all and (lambda: job_tools.waiting_briefly(
                        conn, _bulk_filter(kind).kinds)),
                    dry_run, yes, as_json,
                    lambda ids, missing_ok: job_tools.retry_now(conn, ids, by=operator(), via=job_tools.CLI,
                                                                missing_ok=missing_ok))
    if results is None:
        return
    for result in results:
        if result.due_now:
            say(f"running {result.job_id} now ({result.retries_left} retries left after this attempt)")
        else:
            say(f"skipped {result.job_id}: not waiting (status: {result.status})")
    due = sum(r.due_now for r in results)
    say(f"{due} due now, {len(results) - due} skipped; a running worker starts them within seconds")
    if due and status.worker_status(conn).no_worker:
        say("bridge: warning: no worker is running: they run when one starts", err=True)


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
        say(f"bridge: {exc}", err=True)
        sys.exit(1)
    say(f"dismissed {job_id}" if dismissed else f"{job_id} was already dismissed")


@jobs.command("stats")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def jobs_stats(as_json):
    """Queue depths, the oldest waiting job, and job outcomes over the last hour and day."""
    stats = job_tools.stats(connect_or_exit())
    if as_json:
        echo_json(stats)
        return
    queues = stats["queues"]
    say("queues:  " + ", ".join(f"{name} {count}" for name, count in queues.items()))
    say(f"oldest waiting job: {present.format_age(stats['oldest_waiting_seconds'])}")
    say(f"{'':<10}{'last hour':>10}{'last day':>10}")
    for outcome, counts in stats["outcomes"].items():
        say(f"{outcome:<10}{counts['last_hour']:>10}{counts['last_day']:>10}")


@click.command("lead")
@click.argument("lead_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def lead(lead_id, as_json):
    """Show a Real Geeks lead's LionDesk mapping and its full history."""
    settings, conn = _settings_and_redis()
    zone = _zone(settings)
    story = lead_tools.lead_story(conn, lead_id)
    if not story.known:
        say(f"bridge: no record of lead {story.lead_id}", err=True)
        sys.exit(1)
    summary = lead_tools.lead_summary(conn, story, settings.liondesk_contact_url)
    if as_json:
        echo_json({**story.to_json(), "summary": summary.to_json()})
        return
    say(f"Real Geeks lead {story.lead_id}" + (f": {story.name}" if story.name else ""))
    say(f"  {summary.headline}" + (f" at {present.format_time(summary.at, zone)}" if summary.at else "")
               + (f"; next attempt at {present.format_time(summary.next_attempt_at, zone)}"
                  if summary.next_attempt_at else ""))
    if summary.reason:
        say(f"  {summary.reason}")
    contact = " ".join(filter(None, (story.email, story.phone)))
    if contact:
        say(f"  {contact}")
    if story.mapping.linked:
        say(f"LionDesk: contact {story.mapping.contact_id}, lead {story.mapping.liondesk_lead_id or '-'}")
    else:
        say("LionDesk: not linked yet")
    say(f"History ({len(story.history)} entries, oldest first):")
    for entry in story.history:
        when, kind = present.format_time(entry.get("at"), zone), entry.get("kind", "?")
        say(f"  {when}  {kind:<15} {present.describe_entry(entry, zone=zone)}")


@click.command("find")
@click.argument("query")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def find(query, as_json):
    """Find leads by Real Geeks id, LionDesk contact id, e-mail (or its start), phone (or its last 7+ digits) or name.

    Names match without accents or case, from the start of any of their words
    ("zoe" finds Zoë Tanaka, "tan" finds her too). Exit 1 when nothing matches.
    """
    settings, conn = _settings_and_redis()
    zone = _zone(settings)
    cards = lead_tools.lead_cards(conn, lead_tools.search(conn, query))
    if as_json:
        echo_json([card.card_json() for card in cards])
    else:
        for card in cards:
            say("  ".join(filter(None, (card.lead_id, card.name, card.email, card.phone))))
            linked = card.mapping.linked
            say(f"  LionDesk: contact {card.mapping.contact_id}" if linked else "  LionDesk: not linked yet")
            last = card.history[-1] if card.history else None
            if isinstance(last, dict):
                when = present.format_time(last.get("at"), zone)
                say(f"  last:     {when}  {present.describe_entry(last, zone=zone)}")
        say(f"{len(cards)} lead{'s' if len(cards) != 1 else ''} found")
    if not cards:
        sys.exit(1)
