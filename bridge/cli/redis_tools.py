"""`bridge redis usage` and `bridge redis trim`: what the bridge keeps in Redis, and making room safely."""

from __future__ import annotations

import json
import sys

import click

from bridge.cli.environment import redis_or_exit, settings_or_exit


def _open():
    """The settings (their retention installed) and their Redis."""
    from bridge.storage import keys

    settings = settings_or_exit()
    keys.use_retention(settings.retention)
    return settings, redis_or_exit(settings)


def _echo_json(data) -> None:
    """Print data as indented JSON."""
    click.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))


@click.group("redis")
def redis_group():
    """Redis memory: what takes room (usage) and making room (trim)."""


@redis_group.command("usage")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--sample", type=click.IntRange(1), default=None, metavar="KEYS",
              help="Measure at most this many keys one by one (default 20,000); beyond it a sample is scaled up.")
def usage_command(as_json, sample):
    """Bytes by record kind, what expires when, and memory used against maxmemory."""
    from bridge import defaults
    from bridge.storage import usage

    settings, conn = _open()
    report = usage.usage(conn, sample=sample or defaults.REDIS_USAGE_SAMPLE_KEYS,
                         warning_percent=settings.alert_redis_memory_percent)
    if as_json:
        _echo_json(report.to_json())
        return
    click.echo(f"memory: {report.memory.headline()}  (policy {report.memory.policy})")
    how = (f"a sample of {report.measured_keys:,} keys, scaled up" if report.sampled
           else f"all {report.measured_keys:,} keys measured")
    click.echo(f"keys:   {report.total_keys:,} ({how}; {report.others:,} not the bridge's)")
    click.echo("")
    click.echo(f"{'record kind':<40} {'keys':>9} {'bytes':>12} {'no TTL':>7}  {'expires in':<17} lifetime")
    for kind in report.kinds:
        click.echo(f"{kind.kind:<40} {kind.keys:>9,} {kind.bytes:>12,} {kind.without_ttl:>7,}  "
                   f"{_ttl_range(kind):<17} {kind.lifetime}{'  [trim]' if kind.expendable else ''}")
    total = sum(kind.bytes for kind in report.kinds)
    click.echo(f"{'total':<40} {sum(k.keys for k in report.kinds):>9,} {total:>12,}")


def _ttl_range(kind) -> str:
    """The measured keys' time to live, as a range of days (or hours)."""
    if kind.ttl_min_seconds is None:
        return "never" if kind.without_ttl else "-"
    low, high = _short(kind.ttl_min_seconds), _short(kind.ttl_max_seconds)
    text = low if low == high else f"{low}–{high}"
    return text + (" (some never)" if kind.without_ttl else "")


def _short(seconds: int) -> str:
    """A duration in days, hours or seconds."""
    if seconds >= 86400:
        return f"{seconds / 86400:.0f} d"
    if seconds >= 3600:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds} s"


@redis_group.command("trim")
@click.option("--dry-run", is_flag=True, help="Say what would be dropped; change nothing.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--story-days", type=click.IntRange(1), default=None, metavar="DAYS",
              help="Also drop stories whose newest entry is older than DAYS (default: BRIDGE_STORY_RETENTION_DAYS).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def trim_command(dry_run, yes, story_days, as_json):
    """Drop what is expendable, most expendable first, and never what the bridge needs.

    Drops, in order: intake entries already relayed; index entries of events gone; finished
    jobs and their results; job outcome stats; story detail and stories past their retention;
    delivered events (they can no longer be replayed). Never touches id maps, snapshots,
    effects, activity marks, LionDesk tokens, undelivered events, intake entries not yet
    relayed, or queued, retrying, running and failed jobs.
    """
    from bridge.storage import usage

    settings, conn = _open()
    plan = usage.trim(conn, dry_run=True, story_days=story_days)
    if dry_run:
        _report(plan, as_json, "would drop")
        return
    if not any(step.keys or step.entries for step in plan):
        _report(plan, as_json, "nothing to drop")
        return
    if not yes:
        _report(plan, False, "would drop")
        if not click.confirm("Drop all this?", default=False, err=True):
            click.echo("bridge redis trim: nothing changed", err=True)
            sys.exit(1)
    before = usage.memory_state(conn, settings.alert_redis_memory_percent)
    done = usage.trim(conn, story_days=story_days)
    after = usage.memory_state(conn, settings.alert_redis_memory_percent)
    if as_json:
        _echo_json({"dropped": [vars(step) for step in done], "memory_before": before.to_json(),
                    "memory_after": after.to_json()})
        return
    _report(done, False, "dropped")
    click.echo(f"memory: {before.headline()} → {after.headline()}")


def _report(steps, as_json: bool, verb: str) -> None:
    """Print a trim plan or result."""
    if as_json:
        _echo_json({verb.replace(" ", "_"): [vars(step) for step in steps]})
        return
    for step in steps:
        counts = ", ".join(part for part in (f"{step.keys:,} keys" if step.keys else "",
                                             f"{step.entries:,} entries" if step.entries else "") if part) or "none"
        click.echo(f"{verb}: {step.what}: {counts} (~{step.bytes:,} bytes)")
