"""`bridge dev`: embedded Redis, the sandbox when LionDesk is not configured, web and worker."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import click

from bridge.storage import keys
from bridge.storage.embedded import start_server, state_dir
from bridge.storage.redis import connect

ROOT = Path(__file__).resolve().parents[1]

SANDBOX_CREDENTIALS = {
    "LIONDESK_CLIENT_ID": "sandbox-client",
    "LIONDESK_CLIENT_SECRET": "sandbox-secret",
    "LIONDESK_REFRESH_TOKEN": "sandbox-refresh-token",
    "REALGEEKS_API_USERNAME": "sandbox",
    "REALGEEKS_API_PASSWORD": "sandbox",
}
"""Credentials the sandbox accepts; `bridge dev` hands them to web and worker."""


def sandbox_environment(sandbox_url: str) -> dict:
    """Environment that points every API client of the bridge at a sandbox."""
    return {
        **SANDBOX_CREDENTIALS,
        "LIONDESK_API_URL": f"{sandbox_url}/liondesk",
        "LIONDESK_V1_URL": f"{sandbox_url}/liondesk-v1",
        "REALGEEKS_API_URL": f"{sandbox_url}/realgeeks/rest",
    }


def _wait_for_http(url: str, process: subprocess.Popen, timeout: float = 30.0) -> None:
    """Block until `url` answers, or fail if `process` died first."""
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise click.ClickException(f"{url} did not come up: its process exited with {process.returncode}")
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise click.ClickException(f"{url} did not answer within {timeout} s")


def run_dev(settings, port: int | None) -> int:
    """Start every local process, print how to use them, and supervise until Ctrl-C."""
    port = port or settings.port
    env = dict(os.environ, PORT=str(port), PYTHONUNBUFFERED="1")
    children: list[tuple[str, subprocess.Popen]] = []
    try:
        if not settings.redis_url:
            directory = state_dir()
            click.secho(f"REDIS_URL is not set: starting an embedded Redis in {directory} "
                        "(local use only, never in production)", fg="yellow", err=True)
            children.append(("redis", start_server(directory)))
            env["REDIS_URL"] = f"unix://{directory / 'redis.sock'}"
        conn = connect(env["REDIS_URL"])

        if not settings.liondesk_configured:
            sandbox_url = f"http://127.0.0.1:{port + 1}"
            sandbox = subprocess.Popen([sys.executable, "-m", "bridge.cli", "sandbox", "--port", str(port + 1)],
                                       env=env, cwd=ROOT)
            children.append(("sandbox", sandbox))
            _wait_for_http(f"{sandbox_url}/_sandbox/state", sandbox)
            env.update(sandbox_environment(sandbox_url))
            click.secho(f"LionDesk is not configured: using the sandbox at {sandbox_url}", fg="yellow", err=True)

        secret = settings.realgeeks_webhook_secret
        if not secret:
            stored = conn.get(keys.webhook_secret_dev())
            secret = stored.decode() if stored else secrets.token_hex(16)
            conn.set(keys.webhook_secret_dev(), secret)
            env["REALGEEKS_WEBHOOK_SECRET"] = secret

        web = subprocess.Popen([sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py",
                                "--workers", "2", "bridge.app:create_app()"], env=env, cwd=ROOT)
        children.append(("web", web))
        children.append(("worker", subprocess.Popen([sys.executable, "-m", "bridge.cli", "worker"],
                                                     env=env, cwd=ROOT)))
        _wait_for_http(f"http://127.0.0.1:{port}/healthz", web)
        click.echo("")
        click.secho("The bridge is running.", fg="green", bold=True)
        click.echo(f"  Webhook URL: http://127.0.0.1:{port}/webhooks/realgeeks")
        click.echo(f"  Secret:      {secret}")
        click.echo(f"  Health:      http://127.0.0.1:{port}/healthz")
        if settings.admin_enabled:
            click.echo(f"  Console:     http://127.0.0.1:{port}/admin/")
        click.echo(f"  Try it:      REALGEEKS_WEBHOOK_SECRET={secret} PORT={port} bridge webhook send")
        click.echo("Press Ctrl-C to stop.")
        return _supervise(children)
    except KeyboardInterrupt:
        return 0
    finally:
        _stop(children)


def _interrupt(signum, frame):
    """Treat SIGTERM like Ctrl-C: stop every child, then exit."""
    raise KeyboardInterrupt


def _supervise(children) -> int:
    """Wait until a child exits (then report it) or the user presses Ctrl-C."""
    signal.signal(signal.SIGTERM, _interrupt)
    while True:
        for name, process in children:
            if process.poll() is not None:
                click.secho(f"{name} exited with code {process.returncode}; stopping.", fg="red", err=True)
                return 1
        time.sleep(0.5)


def _stop(children) -> None:
    """Stop children in reverse start order: SIGTERM, then SIGKILL after a grace period."""
    for _, process in reversed(children):
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + 25
    for _, process in reversed(children):
        try:
            process.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            process.kill()
