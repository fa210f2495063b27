"""LionDesk → Real Geeks end to end: the Procfile's gunicorn `web` and `worker` processes, a
real Redis, and the sandbox (in this process) sending Real Geeks' webhooks to the web process.

Workers poll every second (LIONDESK_POLL_SECONDS=1) and retry after one second. Times are
never asserted: "within one poll interval" is checked as "by the end of the first poll that
started after the edit".
"""

from __future__ import annotations

import time

import pytest
import requests

from bridge.sandbox.sample import sample_lead
from bridge.storage import history, keys, mappings
from tests.support import ROOT, Processes, free_port, procfile_command, wait_until

pytestmark = pytest.mark.e2e

WRITES = ("POST", "PATCH", "PUT", "DELETE")


class Stack:
    """Web and worker processes of the bridge against the sandbox, and what they did."""

    def __init__(self, processes: Processes, sandbox, conn, env: dict):
        self.processes, self.sandbox, self.conn, self.env = processes, sandbox, conn, env
        self.workers = 0

    def start_worker(self):
        """Start one more Procfile `worker` and wait until it has polled at least once."""
        from rq import Worker

        self.workers += 1
        name = f"worker{self.workers}"
        before = {worker.name for worker in Worker.all(connection=self.conn)}
        process = self.processes.start(name, procfile_command("worker"), self.env)
        wait_until(lambda: {w.name for w in Worker.all(connection=self.conn)} - before or process.poll() is not None,
                   timeout=30, message=f"{name} to register")
        assert process.poll() is None, self.processes.log_of(name)

    def poll_state(self) -> dict:
        """The poll-state hash as text."""
        return {k.decode(): v.decode() for k, v in self.conn.hgetall(keys.poll_state()).items()}

    def runs(self) -> int:
        """How many polls have run so far."""
        return int(self.poll_state().get("runs") or 0)

    def wait_for_poll_started_after(self, moment: float) -> dict:
        """Wait until a poll that started after `moment` has finished; return the poll state it left."""
        def done():
            state = self.poll_state()
            started = float(state.get("last_run") or 0) - float(state.get("duration_ms") or 0) / 1000
            return state if started > moment else None

        return wait_until(done, timeout=20, message="a poll started after the edit")

    def realgeeks_writes(self, since: int) -> list[dict]:
        """Real Geeks Incoming writes with id above `since`."""
        return self.sandbox.control("GET", f"realgeeks/requests?since={since}")["data"]

    def last_realgeeks_write(self) -> int:
        """Id of the latest Real Geeks Incoming write (0 when none)."""
        writes = self.realgeeks_writes(0)
        return writes[-1]["id"] if writes else 0

    def liondesk_writes(self, since: int) -> list[tuple[str, str]]:
        """LionDesk writes since call sequence `since`."""
        return [(c["method"], c["template"]) for c in self.sandbox.calls(since, service="liondesk")
                if c["method"] in WRITES and "oauth2" not in c["path"]]

    def forward_calls(self, lead_id: str, after: int) -> list[dict]:
        """Calls the lead's deliveries made (history entries after index `after`; the poll's carry no event)."""
        return [entry for entry in history.read(self.conn, lead_id)[after:]
                if entry["kind"] == "call" and entry.get("event_id")]

    def processed(self, lead_id: str) -> int:
        """How many deliveries for the lead the bridge has finished."""
        return sum(1 for entry in history.read(self.conn, lead_id) if entry["kind"] == "processed")

    def echoes_handled(self, lead_id: str, before: int) -> None:
        """Wait until the sandbox sent every webhook and the bridge finished more deliveries than `before`."""
        assert self.sandbox.control("GET", "realgeeks/deliveries?wait=1")["idle"]
        failed = [d for d in self.sandbox.control("GET", "realgeeks/deliveries")["data"] if d["status"] != "delivered"]
        assert failed == [], failed
        wait_until(lambda: self.processed(lead_id) > before, timeout=20, message="the echo to be processed")


@pytest.fixture
def stack(tmp_path, redis_url, redis_conn, webhook_secret, sandbox):
    """Web and one worker, polling every second, with the sandbox's webhooks pointed at the web process."""
    processes = Processes(tmp_path)
    port = free_port()
    env = {**sandbox.environment(), "REDIS_URL": redis_url, "REALGEEKS_WEBHOOK_SECRET": webhook_secret,
           "PYTHONPATH": str(ROOT), "LIONDESK_MAX_REQUESTS_PER_SECOND": "1000", "LIONDESK_POLL_SECONDS": "1",
           "BRIDGE_RETRY_INTERVALS": "1,1,1"}
    try:
        web = processes.start("web", procfile_command("web"), {**env, "PORT": str(port), "WEB_CONCURRENCY": "1"})
        wait_until(lambda: _answers(f"http://127.0.0.1:{port}/healthz") or web.poll() is not None, timeout=30,
                   message="web up")
        assert web.poll() is None, processes.log_of("web")
        sandbox.control("POST", "realgeeks/destination", url=f"http://127.0.0.1:{port}/webhooks/realgeeks",
                        secret=webhook_secret)
        built = Stack(processes, sandbox, redis_conn, env)
        built.port = port
        built.start_worker()
        yield built
    finally:
        processes.stop_all()


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


def test_liondesk_edits_reach_real_geeks_once_and_nothing_bounces(stack):
    sandbox, conn = stack.sandbox, stack.conn
    payload = sample_lead()
    sandbox.control("POST", "realgeeks/leads", **payload)  # a website sign-up, sent to the bridge
    link = wait_until(lambda: mappings.load_link(conn, payload["id"]).contact_id and
                      mappings.load_link(conn, payload["id"]), message="the lead to reach LionDesk")
    wait_until(lambda: stack.processed(payload["id"]) == 1, message="the created delivery to finish")
    contact_id = link.contact_id

    # An agent fixes the phone: the next poll sends one PATCH, whose `updated` echo costs no LionDesk call.
    story = len(history.read(conn, payload["id"]))
    since_rg, since_ld, edited_at = stack.last_realgeeks_write(), sandbox.last_seq(), time.time()
    sandbox.control("PATCH", f"liondesk/contacts/{contact_id}", mobile_phone="808-555-0123")
    stack.wait_for_poll_started_after(edited_at)
    (patch,) = stack.realgeeks_writes(since_rg)
    assert (patch["method"], patch["body"], patch["status"]) == ("PATCH", {"phone": "(808) 555-0123"}, 200)
    stack.echoes_handled(payload["id"], before=1)
    stack.wait_for_poll_started_after(time.time())
    assert stack.forward_calls(payload["id"], story) == [] and stack.liondesk_writes(since_ld) == []
    assert len(stack.realgeeks_writes(since_rg)) == 1

    # Ten polls with nobody changing anything: no write on either side.
    since_rg, since_ld, runs = stack.last_realgeeks_write(), sandbox.last_seq(), stack.runs()
    wait_until(lambda: stack.runs() >= runs + 10, timeout=40, message="ten more polls")
    assert stack.realgeeks_writes(since_rg) == []
    calls = [(c["method"], c["template"]) for c in sandbox.calls(since_ld, service="liondesk")]
    assert len(calls) >= 10 and set(calls) == {("GET", "/liondesk/contacts")}  # one read per poll, nothing else

    # A reassignment in LionDesk: one was_assigned for the Real Geeks user with Casey's e-mail.
    processed, story = stack.processed(payload["id"]), len(history.read(conn, payload["id"]))
    since_rg, since_ld, edited_at = stack.last_realgeeks_write(), sandbox.last_seq(), time.time()
    sandbox.control("PATCH", f"liondesk/contacts/{contact_id}", assigned_user_id=2)
    stack.wait_for_poll_started_after(edited_at)
    (assigned,) = stack.realgeeks_writes(since_rg)
    assert [(a["type"], a["user"]["id"]) for a in assigned["body"]] == [("was_assigned", "14188")]
    stack.echoes_handled(payload["id"], before=processed)
    assert stack.forward_calls(payload["id"], story) == [] and stack.liondesk_writes(since_ld) == []

    health = requests.get(f"http://127.0.0.1:{stack.port}/healthz", timeout=5).json()["poll"]
    assert health["outcome"] == "ok" and health["cursor"] and health["last_run"] > edited_at


def test_two_workers_polling_at_once_make_one_poll_per_slot(stack):
    stack.start_worker()
    stack.start_worker()
    sandbox = stack.sandbox
    since, runs = sandbox.last_seq(), stack.runs()
    began = float(conn_time(stack.conn))
    wait_until(lambda: stack.runs() >= runs + 5, timeout=30, message="five more polls")
    slots = int(float(conn_time(stack.conn))) - int(began) + 1  # one-second slots begun meanwhile
    reads = [c for c in sandbox.calls(since, service="liondesk") if c["template"] == "/liondesk/contacts"]
    polled = stack.runs() - runs
    # +1: a poll of the slot before may finish in the window. Three workers each polling would be ~3x.
    assert polled <= slots + 1 and len(reads) <= slots + 1, (polled, len(reads), slots)
    assert stack.poll_state()["outcome"] == "ok"


def conn_time(conn) -> float:
    """Redis's clock, which cuts the poll slots."""
    seconds, micros = conn.time()
    return seconds + micros / 1e6
