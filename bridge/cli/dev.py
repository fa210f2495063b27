"""`bridge dev`: embedded Redis, the sandbox when LionDesk is not configured, web and worker.

One run, as a person uses it:

- Ports are checked before anything starts (the web port, and the next one for the
  sandbox); a busy one is reported with a free port to use instead.
- State lives in the state folder (`.bridge` under the project root, or
  BRIDGE_STATE_DIR): the embedded Redis, the sandbox's records and tokens, the console
  credentials, and `dev.env`, which tells the `bridge` commands of another terminal
  where this stack is (Redis, ports, secrets) while it runs.
- The sandbox's state is kept beside the embedded Redis, so a second run is the same
  LionDesk the bridge's Redis remembers: the rotated refresh token still works and the
  stored contact ids still exist. Redis and the sandbox file are paired by an epoch
  (a Redis key naming the file): when they do not match (the Redis or the file was
  deleted, or a sandbox file from another Redis), the sandbox starts fresh and the
  bridge forgets its LionDesk tokens and cached reference data, so both start fresh
  together instead of the bridge waiting forever for re-authorisation.
- Each child runs in a process group of its own, so the terminal's Ctrl-C reaches only
  this supervisor, which stops them in order (web, worker, sandbox, Redis) with SIGTERM,
  each within a short grace, all within 3 seconds.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import click

from bridge.storage import keys
from bridge.storage.embedded import start_server, state_dir
from bridge.storage.redis import connect
from bridge.storage.redis import text

ROOT = Path(__file__).resolve().parents[2]

SANDBOX_CREDENTIALS = {
    "LIONDESK_CLIENT_ID": "sandbox-client",
    "LIONDESK_CLIENT_SECRET": "sandbox-secret",
    "LIONDESK_REFRESH_TOKEN": "sandbox-refresh-token",
    "REALGEEKS_API_USERNAME": "sandbox",
    "REALGEEKS_API_PASSWORD": "sandbox",
}
"""Credentials the sandbox accepts; `bridge dev` hands them to web and worker."""

DEV_ENV_FILE = "dev.env"
"""In the state folder while `bridge dev` runs: JSON {pid, env}, mode 0600."""

DEV_ENV_NAMES = ("REDIS_URL", "REALGEEKS_WEBHOOK_SECRET", "PORT", "ADMIN_USERNAME", "ADMIN_PASSWORD",
                 "SECRET_KEY", "LIONDESK_API_URL", "LIONDESK_V1_URL", "LIONDESK_COMMUNICATIONS_URL", "REALGEEKS_API_URL", *SANDBOX_CREDENTIALS)
"""The variables `dev.env` hands to the commands of another terminal."""

CREDENTIALS_FILE = "dev-credentials.json"
"""Console user, password and session key generated for local runs, kept across runs (0600)."""

STOP_ORDER = ("web", "worker", "sandbox", "redis")
STOP_BUDGET_SECONDS = 2.9
"""Ctrl-C to the last child gone: within 3 s."""
STOP_GRACE_SECONDS = {"web": (0.3, 1.3), "worker": (0.8, 2.0), "sandbox": (0.25, 0.6), "redis": (0.25, 0.6)}
"""(least, most) seconds each child may take to stop after SIGTERM before SIGKILL. A child
gets at most its `most`, and never so much that the ones after it get less than their
`least`. Gunicorn's threads stop within about a second; the worker's warm stop (the job in
hand finishes; a sandbox job takes milliseconds) and its relay thread take about as long."""


def sandbox_epoch_key() -> str:
    """Redis key naming the sandbox state file that belongs with this Redis's data."""
    return f"{keys.PREFIX}dev:sandbox-epoch"


def sandbox_environment(sandbox_url: str) -> dict:
    """Environment that points every API client of the bridge at a sandbox."""
    return {
        **SANDBOX_CREDENTIALS,
        "LIONDESK_API_URL": f"{sandbox_url}/liondesk",
        "LIONDESK_V1_URL": f"{sandbox_url}/liondesk-v1",
        "LIONDESK_COMMUNICATIONS_URL": f"{sandbox_url}/liondesk-communications/api/v1",
        "REALGEEKS_API_URL": f"{sandbox_url}/realgeeks/rest",
    }


def bridge_command() -> str:
    """The absolute path of this venv's `bridge` (a bare `bridge` is iproute2's tool on Debian)."""
    beside = os.path.join(os.path.dirname(sys.executable), "bridge")
    if os.access(beside, os.X_OK):
        return beside
    return str(Path(sys.argv[0]).resolve())


# ---- ports -------------------------------------------------------------------------


def port_free(port: int) -> bool:
    """Whether nothing listens on `port` (on any address: gunicorn binds 0.0.0.0)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def suggest_port(needed: int, avoid: int, first: int = 5400) -> int:
    """A port P, other than `avoid`, with P .. P+needed-1 all free right now."""
    for port in range(first, 65535 - needed):
        if port != avoid and all(port_free(port + offset) for offset in range(needed)):
            return port
    with socket.socket() as sock:  # every port of the range is busy: let the system pick one
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def busy_port(port: int, with_sandbox: bool) -> int | None:
    """The first port `bridge dev --port port` needs that is in use, or None."""
    for candidate in (port, port + 1) if with_sandbox else (port,):
        if not port_free(candidate):
            return candidate
    return None


# ---- state shared with other terminals ----------------------------------------------


def _write_private(path: Path, text: str) -> None:
    """Write `text` to `path`, readable by this user only, replacing it whole."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(text)
    os.replace(temporary, path)


def dev_credentials(directory: Path, environ) -> dict:
    """Console credentials and session key for this run: the environment's, else generated
    once and kept in the state folder so they stay the same across runs."""
    path = directory / CREDENTIALS_FILE
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError):
        stored = {}
    if not (stored.get("ADMIN_USERNAME") and stored.get("ADMIN_PASSWORD") and stored.get("SECRET_KEY")):
        stored = {"ADMIN_USERNAME": "admin", "ADMIN_PASSWORD": secrets.token_urlsafe(12),
                  "SECRET_KEY": secrets.token_hex(32)}
        _write_private(path, json.dumps(stored))
    if environ.get("ADMIN_USERNAME") or environ.get("ADMIN_PASSWORD"):  # the person's own (a pair, checked)
        stored = {**stored, "ADMIN_USERNAME": environ.get("ADMIN_USERNAME"),
                  "ADMIN_PASSWORD": environ.get("ADMIN_PASSWORD")}
    if environ.get("SECRET_KEY"):
        stored["SECRET_KEY"] = environ["SECRET_KEY"]
    return stored


def _is_dev_process(pid: int) -> bool:
    """Whether `pid` is alive and (where /proc tells) a `bridge dev`."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # another user's process: not our dev stack
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True
    return b"dev" in argv


def running_dev_environment(directory: Path | None = None) -> dict:
    """The environment of the `bridge dev` running on this state folder, or {} when none runs."""
    path = (directory or state_dir()) / DEV_ENV_FILE
    try:
        recorded = json.loads(path.read_text())
        pid, env = int(recorded["pid"]), dict(recorded["env"])
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return env if _is_dev_process(pid) else {}


def load_dev_environment(environ=None) -> list[str]:
    """Fill the unset variables of `environ` (os.environ) from a running `bridge dev`; return their names."""
    environ = os.environ if environ is None else environ
    filled = []
    for name, value in running_dev_environment().items():
        if name in DEV_ENV_NAMES and value and not environ.get(name):
            environ[name] = value
            filled.append(name)
    return filled


def _write_dev_env(directory: Path, env: dict) -> Path:
    path = directory / DEV_ENV_FILE
    _write_private(path, json.dumps({"pid": os.getpid(),
                                     "env": {name: env[name] for name in DEV_ENV_NAMES if env.get(name)}}))
    return path


def _remove_dev_env(directory: Path) -> None:
    """Remove dev.env if this process wrote it."""
    path = directory / DEV_ENV_FILE
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


# ---- sandbox state ------------------------------------------------------------------


def sandbox_state_file(conn, directory: Path) -> tuple[Path, bool]:
    """The sandbox state file that goes with this Redis, and whether it already exists.

    When none does, the bridge's stored LionDesk tokens, authorisation state and
    cached LionDesk reference data are deleted (they describe a sandbox that is gone)
    and a new epoch names the file the fresh sandbox will write.
    """
    epoch = conn.get(sandbox_epoch_key())
    if epoch:
        path = directory / f"sandbox-{epoch.decode()}.pickle"
        if path.exists():
            return path, True
    for stale in directory.glob("sandbox-*.pickle"):
        stale.unlink()
    epoch = secrets.token_hex(8)
    pipe = conn.pipeline(transaction=True)
    pipe.delete(keys.liondesk_tokens(), keys.liondesk_auth_state())
    for pattern in (keys.liondesk_reference("*"), keys.liondesk_reference_fresh("*")):
        for key in conn.scan_iter(match=pattern, count=500):
            pipe.delete(key)
    pipe.set(sandbox_epoch_key(), epoch)
    pipe.execute()
    return directory / f"sandbox-{epoch}.pickle", False


# ---- processes ----------------------------------------------------------------------


def _own_group_options() -> dict:
    """Popen options: a process group of its own (the terminal's Ctrl-C is for the
    supervisor alone) and, on Linux, SIGTERM when the supervisor dies."""
    options: dict = {"process_group": 0}
    if sys.platform.startswith("linux"):
        options["preexec_fn"] = _die_with_parent
    return options


def _die_with_parent() -> None:
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


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


def _interrupt(signum, frame):
    """Treat SIGTERM like Ctrl-C: stop every child, then exit."""
    raise KeyboardInterrupt


def run_dev(settings, port: int | None) -> int:
    """Start every local process, print how to use them, and supervise until Ctrl-C."""
    port = port or settings.port
    with_sandbox = not settings.liondesk_configured
    busy = busy_port(port, with_sandbox)
    if busy is not None:
        what = "" if busy == port else " (the sandbox's, the web port + 1)"
        click.secho(f"bridge: port {busy} is in use{what}; try `bridge dev --port "
                    f"{suggest_port(2 if with_sandbox else 1, port)}`", fg="red", err=True)
        return 1

    directory = state_dir()
    directory.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PORT=str(port), PYTHONUNBUFFERED="1")
    env.update(dev_credentials(directory, os.environ))
    children: list[tuple[str, subprocess.Popen]] = []
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        if not settings.redis_url:
            click.secho(f"REDIS_URL is not set: starting an embedded Redis in {directory} "
                        "(local use only, never in production)", fg="yellow", err=True)
            children.append(("redis", start_server(directory, **_own_group_options())))
            env["REDIS_URL"] = f"unix://{directory / 'redis.sock'}"
        conn = connect(env["REDIS_URL"])

        if with_sandbox:
            sandbox_url = f"http://127.0.0.1:{port + 1}"
            state_file, restored = sandbox_state_file(conn, directory)
            sandbox = subprocess.Popen([sys.executable, "-m", "bridge.cli", "sandbox", "--port", str(port + 1),
                                        "--state-file", str(state_file)],
                                       env=env, cwd=ROOT, **_own_group_options())
            children.append(("sandbox", sandbox))
            _wait_for_http(f"{sandbox_url}/_sandbox/state", sandbox)
            env.update(sandbox_environment(sandbox_url))
            click.secho(f"LionDesk is not configured: using the sandbox at {sandbox_url} "
                        f"({'its state restored from' if restored else 'fresh, its state kept in'} {state_file.name})",
                        fg="yellow", err=True)

        secret = settings.realgeeks_webhook_secret
        if not secret:
            stored = conn.get(keys.webhook_secret_dev())
            secret = text(stored) or secrets.token_hex(16)
            conn.set(keys.webhook_secret_dev(), secret)
            env["REALGEEKS_WEBHOOK_SECRET"] = secret

        web = subprocess.Popen([sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py",
                                "--workers", "2", "bridge.web:create_app()"], env=env, cwd=ROOT,
                               **_own_group_options())
        children.append(("web", web))
        children.append(("worker", subprocess.Popen([sys.executable, "-m", "bridge.cli", "worker"],
                                                     env=env, cwd=ROOT, **_own_group_options())))
        _wait_for_http(f"http://127.0.0.1:{port}/healthz", web)
        _write_dev_env(directory, env)
        command = bridge_command()
        click.echo("")
        click.secho("The bridge is running.", fg="green", bold=True)
        click.echo(f"  Webhook URL: http://127.0.0.1:{port}/webhooks/realgeeks")
        click.echo(f"  Secret:      {secret}")
        click.echo(f"  Health:      http://127.0.0.1:{port}/healthz")
        click.echo(f"  Console:     http://127.0.0.1:{port}/admin/  "
                   f"(user {env['ADMIN_USERNAME']}, password {env['ADMIN_PASSWORD']})")
        click.echo(f"  State:       {directory}")
        click.echo(f"  Try it:      {command} webhook send")
        click.echo(f"               (any `{command} …` finds this stack, from any folder, while it runs)")
        click.echo("Press Ctrl-C to stop.")
        return _supervise(children)
    except KeyboardInterrupt:
        return 0
    except click.ClickException as exc:
        click.secho(f"bridge: {exc.format_message()}", fg="red", err=True)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the stop short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _remove_dev_env(directory)
        _stop(children)


def _supervise(children) -> int:
    """Wait until a child exits (then report it) or the user presses Ctrl-C."""
    while True:
        for name, process in children:
            if process.poll() is not None:
                click.secho(f"{name} exited with code {process.returncode}; stopping.", fg="red", err=True)
                return 1
        time.sleep(0.2)


def _stop(children) -> None:
    """Stop children one after another (web, worker, sandbox, Redis): SIGTERM, then
    SIGKILL once its grace is over, so that each stops while what it needs still runs."""
    if not children:
        return
    by_name = dict(children)
    click.echo("Stopping: " + ", ".join(name for name in STOP_ORDER if name in by_name) + " …", err=True)
    started = time.monotonic()
    names = [name for name in STOP_ORDER if name in by_name]
    for index, name in enumerate(names):
        process = by_name[name]
        later = sum(STOP_GRACE_SECONDS[other][0] for other in names[index + 1:])
        grace = max(min(STOP_GRACE_SECONDS[name][1], started + STOP_BUDGET_SECONDS - later - time.monotonic()),
                    STOP_GRACE_SECONDS[name][0])
        if process.poll() is None:
            process.terminate()
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            click.secho(f"{name} did not stop within {grace:.1f} s: killed", fg="yellow", err=True)
            try:
                os.killpg(process.pid, signal.SIGKILL)  # its group: gunicorn's workers too
            except ProcessLookupError:
                pass
            process.wait()
    click.echo(f"Stopped in {time.monotonic() - started:.1f} s.", err=True)
