"""Real Geeks → LionDesk sync: LionDesk calls per event, and how fast real workers drain a backlog.

(a) `calls`: with warm caches (token, contact source, lead sources, routes), the LionDesk
    calls one event costs, read from the sandbox's call log: a new lead (one e-mail, one
    phone, no activities) on a "Myself" route and on a "Team Rollout" route, a redelivery
    (the same bytes, and the same lead in other bytes), and an `updated` changing one field.
    Every LionDesk v2 call counts, the token endpoint included (with a warm token it gets none).
    `--or-operator` sets the sandbox's reading of Feathers `$or` (honoured, refused, ignored):
    the duplicate search is one `$or` query where LionDesk honours it, one query per field otherwise.
(b) `drain`: LEADS new leads are stored through the real web process (gunicorn) while no
    worker runs, W real `bridge worker` processes start and relay them into RQ jobs while
    RQ is suspended; the clock starts when RQ resumes and stops when the last job ends
    (the end time RQ records with each job's result). The sandbox answers every call after LATENCY ms, so the lower
    bound is (LionDesk calls made) × LATENCY ÷ W; the report gives measured / bound.

Everything runs on 127.0.0.1 against a private redis-server and a `bridge sandbox`
process this script starts; the LionDesk request ceiling is lifted (1000/s) so that only
latency and the bridge's own overhead count.

    python -m bench.sync calls [--or-operator honoured|refused|ignored]
    python -m bench.sync drain [--leads 1000] [--workers 1 4 8] [--latency-ms 50] [--rounds 1]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qsl

import requests
from rq import Worker
from rq.job import Job
from rq.registry import FailedJobRegistry, FinishedJobRegistry
from rq.suspension import resume, suspend

from bridge.sandbox.sample import body_of, sample_lead
from bridge.storage.embedded import start_server
from bridge.storage.redis import connect
from tests.support import (Processes, free_port, procfile_command, signed_post, start_sandbox_process,
                           wait_until)
from bridge.queue import event_job_id, event_queue

ROOT = Path(__file__).resolve().parents[1]

MYSELF, TEAM_ROLLOUT = "Website Property Valuation", "Website Property Search"
"""Lead sources of the sandbox demo preset's two routes (Seller Drip / Buyer Drip campaigns)."""

TARGETS = {"new lead, Myself route": 6, "new lead, Team Rollout route": 7, "redelivery, same bytes": 0,
           "redelivery, other bytes": 0, "updated, one field changed": 1,
           "new lead, two e-mails and two phones, Myself route": 6}
"""The issue's ceiling on LionDesk calls per event (the last row, not in the issue, held to the Myself one)."""

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class Stack:
    """A private Redis and a sandbox process, with the environment bridge processes need to use them."""

    def __init__(self, work: Path, latency_ms: float):
        work.mkdir(parents=True, exist_ok=True)
        self.processes = Processes(work)
        self.redis_port = free_port()
        self.redis = start_server(work / "redis", port=self.redis_port, persist=False)
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        self.conn = connect(self.redis_url)
        self.sandbox = start_sandbox_process(self.processes, latency_ms=latency_ms)
        self.secret = secrets.token_hex(16)
        # Forward sync only: without Real Geeks credentials no worker polls LionDesk.
        sandbox_env = {k: v for k, v in self.sandbox.environment().items() if not k.startswith("REALGEEKS_API_")}
        self.env = {"REDIS_URL": self.redis_url, "REALGEEKS_WEBHOOK_SECRET": self.secret, "PYTHONPATH": str(ROOT),
                    "LIONDESK_MAX_REQUESTS_PER_SECOND": "1000", **sandbox_env}

    def fresh(self) -> None:
        """An empty Redis and a fresh sandbox with the demo preset's routes."""
        self.conn.flushdb()
        self.sandbox.control("POST", "reset")
        self.sandbox.control("POST", "liondesk/preset/demo")

    def in_process(self):
        """The web app's test client and a worker context of this process, over the stack."""
        from bridge.web import create_app
        from bridge.config import load_settings
        from bridge.context import Context

        settings = load_settings(self.env)
        return create_app(settings).test_client(), Context(settings=settings, redis=self.conn)

    def close(self) -> None:
        """Stop every process this stack started."""
        self.processes.stop_all()
        self.redis.terminate()
        self.redis.wait(timeout=10)


# -- (a) calls per event ------------------------------------------------------------------------------


def measure_calls(stack: Stack, or_operator: str = "honoured") -> list[dict]:
    """Deliver each kind of event once with warm caches; return the LionDesk calls each cost."""
    from workers.worker import run

    stack.fresh()
    stack.sandbox.control("POST", "settings", or_operator=or_operator)
    client, context = stack.in_process()
    rng = random.Random(7)

    def deliver(payload=None, body=None, headers=None):
        since = stack.sandbox.last_seq()
        response = signed_post(client, "/webhooks/realgeeks", payload, stack.secret, body=body, headers=headers)
        assert response.status_code == 200, response.get_data(as_text=True)
        run(context, burst=True)
        return stack.sandbox.calls(since, service="liondesk")

    for source in (MYSELF, TEAM_ROLLOUT):  # warm-up: token, contact source, lead sources, routes
        deliver(sample_lead(rng=rng, source=source, activities=[]))
    myself = sample_lead(rng=rng, source=MYSELF, activities=[])
    rows = [("new lead, Myself route", deliver(myself)),
            ("new lead, Team Rollout route", deliver(sample_lead(rng=rng, source=TEAM_ROLLOUT, activities=[]))),
            ("redelivery, same bytes", deliver(body=body_of(myself))),
            ("redelivery, other bytes", deliver(body=json.dumps(myself, indent=1).encode())),
            ("updated, one field changed", deliver({**myself, "action": "updated", "last_name": "Changed"})),
            ("new lead, two e-mails and two phones, Myself route",
             deliver(sample_lead(rng=rng, source=MYSELF, activities=[], second_email="other.address@example.com",
                                 phone2="(415) 555-0101")))]
    results = []
    for name, calls in rows:
        breakdown = Counter(f"{c['method']} {c['template'].removeprefix('/liondesk')}" for c in calls)
        searches = [(c["query"], c["status"]) for c in calls
                    if c["template"] == "/liondesk/contacts" and c["method"] == "GET"]
        results.append({"event": name, "calls": len(calls), "target": TARGETS[name], "breakdown": dict(breakdown),
                        "searches": searches})
    return results


def describe_search(query: str, status: int) -> str:
    """One search of (a) in words: its filters (clauses of an `$or`), values, length and answer."""
    pairs = parse_qsl(query, keep_blank_values=True)
    keys = list(dict.fromkeys(key.split("[$in]")[0] for key, _ in pairs if not key.startswith("$limit")))
    return f"{', '.join(keys)} ({len(pairs)} values, {len(query)} characters, answered {status})"


def print_calls(results: list[dict]) -> None:
    """Print (a) as a Markdown table."""
    print("| event | LionDesk calls | target | met | calls |")
    print("|---|---|---|---|---|")
    for r in results:
        calls = ", ".join(f"{what} ×{n}" if n > 1 else what for what, n in r["breakdown"].items()) or "none"
        print(f"| {r['event']} | {r['calls']} | ≤ {r['target']} | {'yes' if r['calls'] <= r['target'] else 'NO'} "
              f"| {calls} |")
    new_lead = next(r for r in results if r["event"].startswith("new lead"))
    print(f"\nthe duplicate search of a new lead ({len(new_lead['searches'])} GET /contacts):")
    for query, status in new_lead["searches"]:
        print(f"    {describe_search(query, status)}")


# -- (b) drain time -----------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def drain_round(stack: Stack, web_url: str, workers: int, leads: int,
                latency_ms: float, rng: random.Random) -> dict:
    """Store `leads` new leads, then time `workers` worker processes draining them."""
    from workers.worker import run

    stack.fresh()
    client, context = stack.in_process()
    for source in (MYSELF, TEAM_ROLLOUT):  # warm caches, as in production after the first leads
        signed_post(client, "/webhooks/realgeeks", sample_lead(rng=rng, source=source, activities=[]), stack.secret)
    run(context, burst=True)

    suspend(stack.conn)
    payloads = [sample_lead(rng=rng, source=(MYSELF, TEAM_ROLLOUT)[n % 2], activities=[]) for n in range(leads)]
    with ThreadPoolExecutor(8) as pool:
        sessions = {}

        def post(payload):
            session = sessions.setdefault(threading.get_ident(), requests.Session())
            answer = signed_post(session, f"{web_url}/webhooks/realgeeks", payload, stack.secret)
            assert answer.status_code == 200, answer.text
            return answer.json()["event_id"]

        event_ids = list(pool.map(post, payloads))

    before = {w.name for w in Worker.all(connection=stack.conn)}
    spawned = time.time()
    children = [stack.processes.start(f"worker-w{workers}-{n}", procfile_command("worker"), stack.env)
                for n in range(workers)]
    queue = event_queue(stack.conn)
    wait_until(lambda: len({w.name for w in Worker.all(connection=stack.conn)} - before) == workers
               and queue.count == leads, timeout=120, interval=0.1, message="workers up and every event relayed")
    ready = time.time()
    seq = stack.sandbox.last_seq()
    sandbox_pid = next(p.pid for name, p in stack.processes.children if name == "sandbox")
    cpu_before = {pid: cpu_seconds(pid) for pid in [c.pid for c in children] + [stack.redis.pid, sandbox_pid]}

    finished, failed = FinishedJobRegistry(queue=queue), FailedJobRegistry(queue=queue)
    done_before = finished.count + failed.count  # the warm-up's jobs
    started = time.time()
    resume(stack.conn)
    wait_until(lambda: finished.count + failed.count - done_before >= leads, timeout=3600, interval=0.2,
               message="every job to finish")
    cpu = {pid: cpu_seconds(pid) - used for pid, used in cpu_before.items()}
    assert failed.count == 0, f"{failed.count} jobs failed"
    jobs = Job.fetch_many([event_job_id(event_id) for event_id in event_ids], connection=stack.conn)
    results = [job.latest_result() for job in jobs]
    ended = max(result.execution_ended_at.timestamp() for result in results)
    first = min(result.execution_started_at.timestamp() for result in results)
    calls = stack.sandbox.calls(seq, service="liondesk")
    for child in children:
        child.terminate()
    for child in children:
        child.wait(timeout=60)

    contacts = stack.sandbox.control("GET", "liondesk/contacts")["total"]
    assert contacts == leads + 2, f"{contacts} contacts for {leads} leads (+2 warm-up)"
    seconds = ended - started
    bound = len(calls) * latency_ms / 1000 / workers
    worker_cpu = sum(cpu[c.pid] for c in children)
    return {"workers": workers, "leads": leads, "calls": len(calls), "seconds": seconds, "bound": bound,
            "ratio": seconds / bound, "first_job_after": first - started, "startup": ready - spawned,
            "faults": sum(1 for c in calls if c["status"] >= 400),
            "cpu_ms_per_job": {"workers": round(1000 * worker_cpu / leads, 1),
                               "redis": round(1000 * cpu[stack.redis.pid] / leads, 1),
                               "sandbox": round(1000 * cpu[sandbox_pid] / leads, 1)}}


def print_drain(rounds: list[dict]) -> None:
    """Print (b) as a Markdown table of medians per worker count."""
    print("| W | leads | LionDesk calls | lower bound (s) | drain, median (s) | ratio, median | rounds (ratio) | met (≤ 1.25) |")
    print("|---|---|---|---|---|---|---|---|")
    for workers in sorted({r["workers"] for r in rounds}):
        mine = [r for r in rounds if r["workers"] == workers]
        ratio = statistics.median(r["ratio"] for r in mine)
        each = ", ".join(f"{r['ratio']:.3f}" for r in mine)
        print(f"| {workers} | {mine[0]['leads']} | {statistics.median(r['calls'] for r in mine):.0f} "
              f"| {statistics.median(r['bound'] for r in mine):.1f} "
              f"| {statistics.median(r['seconds'] for r in mine):.1f} | {ratio:.3f} "
              f"| {each} | {'yes' if ratio <= 1.25 else 'NO'} |")
    print("\n| W | CPU ms per job: workers | sandbox | redis | first job after resume (s) | worker start-up (s) |")
    print("|---|---|---|---|---|---|")
    for workers in sorted({r["workers"] for r in rounds}):
        mine = [r for r in rounds if r["workers"] == workers]
        cpu = {part: statistics.median(r["cpu_ms_per_job"][part] for r in mine) for part in mine[0]["cpu_ms_per_job"]}
        print(f"| {workers} | {cpu['workers']:.1f} | {cpu['sandbox']:.1f} | {cpu['redis']:.1f} "
              f"| {statistics.median(r['first_job_after'] for r in mine):.2f} "
              f"| {statistics.median(r['startup'] for r in mine):.1f} |")


def main() -> None:
    """Run (a), (b) or both and print Markdown."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=("calls", "drain", "all"))
    parser.add_argument("--leads", type=int, default=1000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--or-operator", choices=("honoured", "refused", "ignored"), default="honoured",
                        help="the sandbox's reading of Feathers $or, for (a)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-sync-"))
    try:
        if args.part in ("calls", "all"):
            stack = Stack(work / "calls", latency_ms=0)
            try:
                print_calls(measure_calls(stack, args.or_operator))
            finally:
                stack.close()
        if args.part in ("drain", "all"):
            stack = Stack(work / "drain", latency_ms=args.latency_ms)
            try:
                port = free_port()
                web = stack.processes.start("web", procfile_command("web"),
                                            {**stack.env, "PORT": str(port), "WEB_CONCURRENCY": "2"})
                web_url = f"http://127.0.0.1:{port}"
                wait_until(lambda: _answers(f"{web_url}/healthz") or web.poll() is not None, timeout=60,
                           message="web up")
                rng = random.Random(args.seed)
                rounds = []
                for _ in range(args.rounds):
                    for workers in args.workers:
                        result = drain_round(stack, web_url, workers, args.leads, args.latency_ms, rng)
                        print(f"W={workers}: {result}", file=sys.stderr, flush=True)
                        rounds.append(result)
                print_drain(rounds)
            finally:
                stack.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _answers(url: str) -> bool:
    """Whether `url` answers 200."""
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


if __name__ == "__main__":
    main()
