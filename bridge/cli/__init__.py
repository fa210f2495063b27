"""The `bridge` command line: run the processes, and the tools support staff use.

Each command imports what it runs when it runs (inside its function), so that `bridge --version`,
`bridge lead` or `bridge webhook send` do not load the web app, RQ and the sandbox first. These
imports point down the stack like any other (tests/test_layers.py reads them too).
"""

from __future__ import annotations

import sys

import click

from bridge.cli.environment import connection_reason, redis_location, redis_or_exit, say, settings_or_exit
from bridge.exceptions import ConfigError


class BridgeGroup(click.Group):
    """The `bridge` group: every command's unreachable Redis or server ends in one line, not a traceback."""

    def invoke(self, ctx):
        import redis
        import requests

        try:
            return super().invoke(ctx)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            say(f"bridge: cannot reach Redis at {redis_location()}: {connection_reason(exc)}", err=True)
            sys.exit(1)
        except (requests.ConnectionError, requests.Timeout) as exc:
            url = getattr(getattr(exc, "request", None), "url", None) or "the server"
            say(f"bridge: cannot reach {url}: {connection_reason(exc)}", err=True)
            sys.exit(1)
        except ConfigError as exc:  # met after start-up, e.g. no REDIS_URL and no embedded Redis installed
            click.echo(f"bridge: configuration error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=BridgeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="realgeeks-liondesk-bridge", prog_name="bridge",
                      message="%(prog)s %(version)s")
@click.pass_context
def main(ctx):
    """Real Geeks ⇄ LionDesk bridge."""
    if ctx.invoked_subcommand not in (None, "dev"):
        # Another terminal's `bridge dev`: its Redis, port, secret and sandbox, for the variables left unset.
        from bridge.cli.dev import load_dev_environment

        load_dev_environment()


@main.command("check-config")
def check_config():
    """Validate the configuration and reach Redis; exit 2 on what would lose leads (the release step)."""
    import os

    from bridge.cli import preflight

    report = preflight.check(os.environ)
    for problem in report.problems:
        click.echo(f"bridge: configuration error: {problem}", err=True)
    for warning in report.warnings:
        click.echo(f"bridge: warning: {warning}", err=True)
    if not report.ok:
        sys.exit(2)
    click.echo(preflight.summary(report.settings))


@main.command()
@click.option("--burst", is_flag=True, help="Stop when the queues are empty.")
def worker(burst):
    """Run an RQ worker (with its scheduler) for event and poll jobs."""
    from bridge.context import Context
    from workers.worker import run

    settings = settings_or_exit()
    run(Context(settings=settings, redis=redis_or_exit(settings)), burst=burst)


@main.command()
@click.option("--port", type=int, default=None, help="Web port (default: PORT or 5000).")
def dev(port):
    """Run everything locally: embedded Redis, web, worker, and the sandbox if LionDesk is not configured."""
    from bridge.cli.dev import run_dev

    sys.exit(run_dev(settings_or_exit(), port))


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=5099, show_default=True)
@click.option("--latency-ms", type=float, default=0.0, help="Delay added to every answer.")
@click.option("--state-file", type=click.Path(dir_okay=False), default=None,
              help="Keep the records and tokens in this file too (loaded at start, saved on every change).")
def sandbox(host, port, latency_ms, state_file):
    """Run the LionDesk / Real Geeks simulator on HOST:PORT (threaded, state in memory)."""
    from bridge.sandbox.server import serve

    serve(host, port, latency_ms=latency_ms, state_file=state_file)


@main.group()
def webhook():
    """Send signed test deliveries."""


@webhook.command("send")
@click.argument("payload", type=click.File("rb"), required=False)
@click.option("--url", default=None, help="Webhook URL (default: http://127.0.0.1:$PORT/webhooks/realgeeks).")
@click.option("--secret", envvar="REALGEEKS_WEBHOOK_SECRET", required=True, help="The destination Secret.")
@click.option("--action", default=None, help="X-Lead-Router-Action (default: the body's action).")
def webhook_send(payload, url, secret, action):
    """Sign PAYLOAD (a JSON file, default: a sample new lead) and POST it like Real Geeks does."""
    import requests

    from bridge.intake.signature import ACTION_HEADER, SIGNATURE_HEADER, sign
    from bridge.sandbox.sample import sample_lead_body

    settings = settings_or_exit()
    body = payload.read() if payload else sample_lead_body()
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, secret)}
    if action:
        headers[ACTION_HEADER] = action
    url = url or f"http://127.0.0.1:{settings.port}/webhooks/realgeeks"
    response = requests.post(url, data=body, headers=headers, timeout=10)
    say(f"{response.status_code} {response.text.strip()}")
    sys.exit(0 if response.ok else 1)


@main.group()
def liondesk():
    """LionDesk authorisation: grant the bridge access, see whether it still has it."""


@liondesk.command("authorize")
@click.option("--code", required=True, help="The code LionDesk appended to the redirect URI after approval.")
@click.option("--redirect-uri", default=None,
              help="The redirect URI the code was issued for (default: LIONDESK_REDIRECT_URI).")
def liondesk_authorize(code, redirect_uri):
    """Exchange an authorisation CODE for tokens, store them and clear any needs-reauthorisation state."""
    from bridge.clients.liondesk import LionDeskClient
    from bridge.exceptions import BridgeError

    settings = settings_or_exit()
    client = LionDeskClient(settings, redis_or_exit(settings))
    try:
        client.auth.exchange_authorization_code(code, redirect_uri)
    except BridgeError as exc:
        say(f"bridge: LionDesk authorisation failed: {exc}", err=True)
        sys.exit(1)
    try:
        me = client.get_me() or {}
    except BridgeError as exc:  # the tokens are stored; only the check that they work failed
        say(f"bridge: tokens stored, but GET /me failed: {exc}", err=True)
        sys.exit(1)
    say(f"authorised: LionDesk user {me.get('id')} ({me.get('email')})")


@liondesk.command("status")
def liondesk_status():
    """Print the LionDesk authorisation state (never any token); exit 1 unless it is usable."""
    from bridge.clients.oauth import NEEDS_REAUTHORIZATION, NOT_CONFIGURED, auth_state
    from bridge.ops.status import liondesk_channels

    settings = settings_or_exit()
    conn = redis_or_exit(settings)
    state = auth_state(conn, settings)
    conflict = state.pop("app_conflict", None)
    for name, value in state.items():
        say(f"{name}: {value if value is not None else '-'}")  # the reason quotes LionDesk's answer
    if conflict:
        say(f"problem: {conflict['problem']} (LionDesk refuses {', '.join(conflict['scopes'])} since "
            f"{conflict['since']}: {conflict['reason']})")
    channels = liondesk_channels(conn, settings)
    say(f"tasks channel: {channels['tasks']['channel']}"
        + (f" ({channels['tasks']['reason']})" if channels['tasks']['reason'] else ""))
    say(f"v1 channel: {channels['v1']['state'] or 'not checked yet'}")
    sys.exit(1 if state["state"] in (NEEDS_REAUTHORIZATION, NOT_CONFIGURED) else 0)


@main.command()
@click.option("--once", is_flag=True, help="Run one poll now, in this process (workers poll on their own).")
@click.option("--since", default=None, metavar="ISO_TIME",
              help="Read LionDesk changes made after this time instead of after the stored cursor.")
def poll(once, since):
    """Poll LionDesk for changed contacts and write them back to Real Geeks (one poll, under the poll lock)."""
    from bridge.exceptions import BridgeError
    from bridge.sync import reverse
    from bridge.translate.realgeeks import parse_instant
    from bridge.context import Context

    if not once:
        click.echo("bridge poll: pass --once to run one poll now; workers poll every LIONDESK_POLL_SECONDS "
                   "on their own", err=True)
        sys.exit(2)
    if since is not None:
        try:
            parse_instant(since)
        except ValueError:
            click.echo(f"bridge poll: --since {since!r} is not an ISO 8601 time", err=True)
            sys.exit(2)
    settings = settings_or_exit()
    try:
        report = reverse.poll(Context(settings=settings, redis=redis_or_exit(settings)), since=since)
    except BridgeError as exc:
        say(f"bridge poll: failed: {exc.__class__.__name__}: {exc}", err=True)
        sys.exit(1)
    say(report.summary())
    sys.exit(0 if report.outcome in (reverse.OK, reverse.PARTIAL) else 1)


from bridge.cli.commands import find as _find_command, jobs as _jobs_commands, lead as _lead_command  # noqa: E402

main.add_command(_jobs_commands)
main.add_command(_lead_command)
main.add_command(_find_command)

from bridge.cli.admin import admin as _admin_commands  # noqa: E402  (console users and sessions)
from bridge.cli.alerts import alerts as _alerts_commands  # noqa: E402

main.add_command(_admin_commands)
main.add_command(_alerts_commands)
