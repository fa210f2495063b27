"""`bridge alerts ...`: check that alerts reach people, and what the alerting sees now."""

from __future__ import annotations

import sys

import click

from bridge.cli.environment import redis_or_exit, say, settings_or_exit


@click.group()
def alerts():
    """Alerts to chat (ALERT_WEBHOOK_URL) and e-mail (SMTP_URL, ALERT_EMAIL_TO)."""


@alerts.command("test")
def alerts_test():
    """Send one test alert everywhere alerts go; exit 1 unless every destination took it."""
    from bridge.ops import alerts as alerting

    settings = settings_or_exit()
    places = alerting.destinations(settings)
    if not places:
        say("bridge: alerts go nowhere: set ALERT_WEBHOOK_URL, or SMTP_URL and ALERT_EMAIL_TO", err=True)
        sys.exit(2)
    problems = alerting.deliver(settings, alerting.test_message())
    failed = {problem.partition(":")[0] for problem in problems}
    for place, label in (("webhook", "webhook"), ("email", "e-mail")):
        if place in places and label not in failed:
            say(f"sent: test alert by {label}")
    for problem in problems:
        say(f"bridge: not sent by {problem}", err=True)
    sys.exit(1 if problems else 0)


@alerts.command("status")
def alerts_status():
    """Each alert condition: whether it is announced, since when it holds, the last send error."""
    from bridge.ops import alerts as alerting
    from bridge.ops.present import format_time
    from bridge.storage import alerts as store

    settings = settings_or_exit()
    conn = redis_or_exit(settings)
    say("alerts go to: " + (", ".join(alerting.destinations(settings)) or "nowhere (not configured)"))
    for condition in alerting.CONDITIONS:
        state = store.load(conn, condition.name)
        line = f"{condition.name:<17} {'ALERTED' if state.active else 'ok':<8}"
        if state.since is not None:
            line += f" holds since {format_time(state.since)}"
        if state.sent_at is not None:
            line += f", last alert {format_time(state.sent_at)}"
        if state.last_error:
            line += f", last send failed: {state.last_error}"
        say(line)
