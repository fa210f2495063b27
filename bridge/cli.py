"""The `bridge` command line: run the processes, and the tools support staff use."""

from __future__ import annotations

import sys

import click

from bridge.exceptions import ConfigError


def settings_or_exit():
    """Load settings, or stop with one message naming the offending variable."""
    from bridge.config import load_settings

    try:
        return load_settings()
    except ConfigError as exc:
        click.echo(f"bridge: configuration error: {exc}", err=True)
        sys.exit(2)


def redis_or_exit(settings):
    """Connect to the configured (or embedded) Redis."""
    from bridge.storage.redis import connect, redis_url

    return connect(redis_url(settings))


@click.group()
def main():
    """Real Geeks ⇄ LionDesk bridge."""


@main.command("check-config")
def check_config():
    """Validate the configuration from the environment and exit (the Procfile's release step)."""
    settings = settings_or_exit()
    click.echo("configuration ok: "
               f"redis={'REDIS_URL' if settings.redis_url else 'embedded (local only)'}, "
               f"liondesk={'configured' if settings.liondesk_configured else 'not configured'}, "
               f"reverse sync={'on' if settings.reverse_sync_enabled else 'off'}, "
               f"console={'on' if settings.admin_enabled else 'off'}")


@main.command()
@click.option("--burst", is_flag=True, help="Stop when the queues are empty.")
def worker(burst):
    """Run an RQ worker (with its scheduler) for event and poll jobs."""
    from workers.context import Context
    from workers.worker import run

    settings = settings_or_exit()
    run(Context(settings=settings, redis=redis_or_exit(settings)), burst=burst)


@main.command()
@click.option("--port", type=int, default=None, help="Web port (default: PORT or 5000).")
def dev(port):
    """Run everything locally: embedded Redis, web, worker, and the sandbox if LionDesk is not configured."""
    from bridge.devrun import run_dev

    sys.exit(run_dev(settings_or_exit(), port))


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=5099, show_default=True)
@click.option("--latency-ms", type=float, default=0.0, help="Delay added to every answer.")
def sandbox(host, port, latency_ms):
    """Run the LionDesk / Real Geeks simulator on HOST:PORT (threaded, state in memory)."""
    from bridge.sandbox.server import serve

    serve(host, port, latency_ms=latency_ms)


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
    from bridge.sample import sample_lead_body

    settings = settings_or_exit()
    body = payload.read() if payload else sample_lead_body()
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, secret)}
    if action:
        headers[ACTION_HEADER] = action
    url = url or f"http://127.0.0.1:{settings.port}/webhooks/realgeeks"
    response = requests.post(url, data=body, headers=headers, timeout=10)
    click.echo(f"{response.status_code} {response.text.strip()}")
    sys.exit(0 if response.ok else 1)


if __name__ == "__main__":
    main()
