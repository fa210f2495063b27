"""Redis trouble under running workers, with a real redis-server of the test's own.

- SIGKILLed mid-run and started again (same port, same append-only file): every worker
  process is still alive afterwards, every acknowledged lead reaches LionDesk, none twice.
- Full (maxmemory, `noeviction`, as Heroku Redis runs): intake answers 503, the workers stay
  up, and once `CONFIG SET maxmemory` raises the limit everything acknowledged is processed
  without restarting anything.
"""

from __future__ import annotations

import secrets
import signal
import subprocess
import time
from contextlib import contextmanager
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


class Stack:
    """A web process, WORKERS worker processes and a sandbox over one private Redis."""

    def __init__(self, tmp_path, redis_port: int, **extra_env):
        self.processes = Processes(tmp_path)
        self.sandbox = start_sandbox_process(self.processes, latency_ms=50)
        self.secret = secrets.token_hex(16)
        self.port = free_port()
        env = {"REDIS_URL": f"redis://127.0.0.1:{redis_port}/0", "REALGEEKS_WEBHOOK_SECRET": self.secret,
               "LIONDESK_MAX_REQUESTS_PER_SECOND": "1000", "BRIDGE_RETRY_INTERVALS": "1,1,1,1,1,1",
               **{k: v for k, v in self.sandbox.environment().items() if not k.startswith("REALGEEKS_API_")},
               **extra_env}
        self.web = self.processes.start("web", procfile_command("web"),
                                        {**env, "PORT": str(self.port), "WEB_CONCURRENCY": "1"})
        self.env = env
        self.workers = []
        for _ in range(WORKERS):
            self.start_worker()
        self.url = f"http://127.0.0.1:{self.port}"
        wait_until(self._web_up, timeout=60, message="web up")

    def start_worker(self) -> subprocess.Popen:
        """Start one more worker process (the Procfile's command)."""
        worker = self.processes.start(f"worker{len(self.workers)}", procfile_command("worker"), self.env)
        self.workers.append(worker)
        return worker

    def _web_up(self):
        try:
            return requests.get(f"{self.url}/livez", timeout=1).ok
        except requests.RequestException:
            return self.web.poll() is not None

    def post(self, lead: dict) -> requests.Response:
        """Deliver one lead as Real Geeks would."""
        return signed_post(requests, f"{self.url}/webhooks/realgeeks", lead, self.secret, action="created")

    def deliver(self, count: int) -> list[dict]:
        """Deliver `count` new leads, each acknowledged."""
        leads = [sample_lead() for _ in range(count)]
        for lead in leads:
            answer = self.post(lead)
            assert answer.status_code == 200, answer.text
        return leads

    def emails_in_liondesk(self) -> list[str]:
        """The e-mail of every contact in the sandbox's LionDesk, one per contact."""
        return [c["email"].casefold() for c in self.sandbox.control("GET", "liondesk/contacts")["data"]
                if c.get("email")]

    def wait_synced_once(self, leads: list[dict], timeout: float = 240) -> None:
        """Wait until every lead is in LionDesk, then check none is there twice."""
        wanted = {lead["email"].casefold() for lead in leads}
        wait_until(lambda: wanted <= set(self.emails_in_liondesk()), timeout=timeout, interval=1,
                   message="every acknowledged lead in LionDesk")
        seen = self.emails_in_liondesk()
        assert sorted(e for e in seen if e in wanted) == sorted(wanted), "a lead was created twice"

    def assert_all_alive(self) -> None:
        """Every worker and the web process still run (none exited and none was restarted)."""
        for n, worker in enumerate(self.workers):
            assert worker.poll() is None, f"worker{n} exited:\n" + self.processes.log_of(f"worker{n}")[-3000:]
        assert self.web.poll() is None

    def health(self) -> dict:
        """The /healthz answer's body."""
        return requests.get(f"{self.url}/healthz", timeout=5).json()


class PersistentRedis:
    """The test's own redis-server (append-only, fsync always), which a test may kill and start again."""

    def __init__(self, directory: Path):
        self.directory, self.port = directory, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = start_persistent_redis(directory, self.port)

    def kill(self) -> None:
        """SIGKILL the server, as a crashed or failed-over managed Redis goes."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def start(self) -> None:
        """Start it again on the same port over the same data."""
        self.process = start_persistent_redis(self.directory, self.port)

    def stop(self) -> None:
        """Stop it if it runs."""
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@contextmanager
def stack_over_persistent_redis(tmp_path):
    """A Stack over a PersistentRedis of its own, both workers beating; everything stopped afterwards."""
    server = PersistentRedis(tmp_path / "redis")
    stack = None
    try:
        stack = Stack(tmp_path, server.port)
        wait_until(lambda: stack.health()["workers"]["live"] == WORKERS, timeout=60, message="both workers beating")
        yield server, stack
    finally:
        if stack is not None:
            stack.processes.stop_all()
        server.stop()


@pytest.mark.e2e
def test_workers_survive_redis_killed_and_restarted_and_every_acknowledged_lead_syncs_once(tmp_path):
    with stack_over_persistent_redis(tmp_path) as (server, stack):
        leads = stack.deliver(12)
        time.sleep(0.3)  # jobs are running now (each LionDesk call takes 50 ms)
        server.kill()
        time.sleep(OUTAGE_SECONDS)
        assert stack.health()["redis"] == "unreachable"
        server.start()
        leads += stack.deliver(6)
        stack.wait_synced_once(leads)
        conn = connect(server.url)
        interrupted = [lead["id"] for lead in leads
                       if "attempt_interrupted" in {entry["kind"] for entry in history.read(conn, lead["id"])}]
        assert interrupted, "the story of a lead whose attempt Redis cut short says so"
        stack.assert_all_alive()
        wait_until(lambda: stack.health()["workers"]["live"] == WORKERS, timeout=60,
                   message="both workers counted again after the outage")


def fill_redis(conn: redis.Redis) -> None:
    """Fill Redis to its maxmemory (noeviction), then hold it there.

    Ballast up to a limit just above what Redis held, as growth fills a real one; then the limit
    goes to 95 % of what is in use, because at the very edge every DEL a worker still runs (a
    lock released, a job cleaned up) frees room for the next small write, and this test wants
    every delivery refused.
    """
    conn.config_set("maxmemory-policy", "noeviction")
    conn.config_set("maxmemory", int(conn.info("memory")["used_memory"]) + 256 * 1024)
    for n in range(1_000_000):  # small values: the last one accepted leaves Redis past the limit
        try:
            conn.set(f"ballast:{n}", "x" * 100)
        except redis.OutOfMemoryError:
            break
    else:
        raise AssertionError("Redis never refused a write")
    conn.config_set("maxmemory", int(int(conn.info("memory")["used_memory"]) * 0.95))


@pytest.mark.e2e
def test_full_redis_refuses_deliveries_keeps_workers_up_and_resumes_when_the_limit_is_raised(tmp_path):
    with stack_over_persistent_redis(tmp_path) as (server, stack):
        conn = connect(server.url)
        stack.sandbox.control("POST", "faults", service="liondesk", latency_ms=300)
        leads = stack.deliver(8)  # being processed (each LionDesk call takes 300 ms) as Redis fills up
        time.sleep(1.0)
        fill_redis(conn)
        refused = [stack.post(lead) for lead in [sample_lead() for _ in range(3)]]
        assert [answer.status_code for answer in refused] == [503] * 3, [answer.text for answer in refused]
        health = stack.health()
        assert health["status"] == "redis_full" and health["redis_message"] == "Redis full"
        stack.start_worker()  # a worker (re)started while Redis is full waits too, instead of dying at start-up
        # The workers meet the refusals in their jobs, relay, heartbeat and scheduler; they wait, they do not exit.
        time.sleep(15)
        stack.assert_all_alive()
        # The running workers' beats keep their records alive (the one started while full may get a beat
        # in too, when a worker's DEL frees a little room: so at least, not exactly, the two).
        assert stack.health()["workers"]["live"] >= WORKERS, "beats keep their records alive while Redis is full"

        conn.config_set("maxmemory", 0)  # the operator raises the limit (here: removes it); nothing is restarted
        leads += stack.deliver(4)
        stack.wait_synced_once(leads)
        stack.assert_all_alive()
        assert stack.health()["status"] == "ok"
        wait_until(lambda: stack.health()["workers"]["live"] == WORKERS + 1, timeout=60,
                   message="the worker started while Redis was full beating too")
