"""A Redis outage under running workers: SIGKILL the real redis-server mid-run, start it again.

Every worker process must still be alive afterwards, every acknowledged lead must reach
LionDesk, and none twice.
"""

from __future__ import annotations

import secrets
import signal
import subprocess
import time
from pathlib import Path

import pytest
import redis
import requests

from bridge.sandbox.sample import sample_lead
from bridge.storage import history
from bridge.storage.redis import connect
from bridge.storage.embedded import redis_server_binary
from tests.support import Processes, free_port, procfile_command, signed_post, start_sandbox_process, wait_until

WORKERS = 2
OUTAGE_SECONDS = 8


def start_persistent_redis(directory: Path, port: int) -> subprocess.Popen:
    """A redis-server whose every acknowledged write survives SIGKILL (AOF, fsync always), like a managed Redis."""
    directory.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen([redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir",
                                str(directory), "--save", "", "--appendonly", "yes", "--appendfsync", "always",
                                "--logfile", str(directory / "redis.log")], stdin=subprocess.DEVNULL)

    wait_until(lambda: _pings(port) or process.poll() is not None, timeout=15, message="redis-server up")
    assert process.poll() is None, (directory / "redis.log").read_text()
    return process


def _pings(port: int) -> bool:
    """Whether a Redis on 127.0.0.1:`port` answers PING."""
    try:
        return bool(redis.Redis(port=port, socket_timeout=1).ping())
    except redis.RedisError:
        return False


@pytest.mark.e2e
def test_workers_survive_redis_killed_and_restarted_and_every_acknowledged_lead_syncs_once(tmp_path):
    redis_port, web_port = free_port(), free_port()
    redis_dir = tmp_path / "redis"
    server = start_persistent_redis(redis_dir, redis_port)
    processes = Processes(tmp_path)
    try:
        sandbox = start_sandbox_process(processes, latency_ms=50)
        secret = secrets.token_hex(16)
        env = {"REDIS_URL": f"redis://127.0.0.1:{redis_port}/0", "REALGEEKS_WEBHOOK_SECRET": secret,
               "LIONDESK_MAX_REQUESTS_PER_SECOND": "1000", "BRIDGE_RETRY_INTERVALS": "1,1,1,1,1,1",
               **{k: v for k, v in sandbox.environment().items() if not k.startswith("REALGEEKS_API_")}}
        web = processes.start("web", procfile_command("web"), {**env, "PORT": str(web_port), "WEB_CONCURRENCY": "1"})
        workers = [processes.start(f"worker{n}", procfile_command("worker"), env) for n in range(WORKERS)]
        url = f"http://127.0.0.1:{web_port}/webhooks/realgeeks"

        def web_up():
            try:
                return requests.get(f"http://127.0.0.1:{web_port}/livez", timeout=1).ok
            except requests.RequestException:
                return web.poll() is not None

        wait_until(web_up, timeout=60, message="web up")

        def deliver(count: int) -> list[dict]:
            leads = [sample_lead() for _ in range(count)]
            for lead in leads:
                answer = signed_post(requests, url, lead, secret, action="created")
                assert answer.status_code in (200, 202), answer.text
            return leads

        leads = deliver(12)
        time.sleep(0.3)  # jobs are running now (each LionDesk call takes 50 ms)
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=10)
        time.sleep(OUTAGE_SECONDS)
        server = start_persistent_redis(redis_dir, redis_port)
        leads += deliver(6)

        def emails_in_liondesk() -> list[str]:
            return [c["email"].casefold() for c in sandbox.control("GET", "liondesk/contacts")["data"] if c.get("email")]

        wanted = {lead["email"].casefold() for lead in leads}
        wait_until(lambda: wanted <= set(emails_in_liondesk()), timeout=240, interval=1,
                   message="every acknowledged lead in LionDesk after the outage")
        seen = emails_in_liondesk()
        assert sorted(e for e in seen if e in wanted) == sorted(wanted), "a lead was created twice"
        conn = connect(f"redis://127.0.0.1:{redis_port}/0")
        interrupted = [lead["id"] for lead in leads
                       if "attempt_interrupted" in {entry["kind"] for entry in history.read(conn, lead["id"])}]
        assert interrupted, "the story of a lead whose attempt Redis cut short says so"
        for n, worker in enumerate(workers):
            assert worker.poll() is None, f"worker{n} exited:\n" + processes.log_of(f"worker{n}")[-3000:]
        assert web.poll() is None
    finally:
        processes.stop_all()
        if server.poll() is None:
            server.terminate()
            server.wait(timeout=10)
