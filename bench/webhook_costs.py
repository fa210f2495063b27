"""Where the webhook intake's CPU goes under load: the bridge with parts swapped out.

Each variant runs under the project's gunicorn.conf.py against a private redis-server,
loaded by wrk exactly as in bench/webhook.py (32 connections, distinct signed bodies).
For each, the report gives throughput and, per request, the CPU time of the gunicorn
processes, of redis-server and of wrk (utime + stime from /proc) and the context
switches of every gunicorn thread. Variants run one after another, so compare figures
of one run only.

    python -m bench.webhook_costs [--seconds 6] [--rounds 1]
    python -m bench.webhook_costs --loop     # the request path's parts, timed in one thread, no server

The variants are measurement tools, not configurations: they patch a built app.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

from bench.webhook import load_test_setup, run_wrk, start_gunicorn, write_deliveries
from bridge.storage.redis import connect
from tests.support import free_port


def _silence_webhook_log():
    """Drop the one JSON line per webhook (the rest of the request path is unchanged)."""
    logging.getLogger("bridge.webhook").disabled = True


def _store_with_one_set(app):
    """Replace the store's Lua script by one Redis SET of the body (no dedupe, no index, no queue)."""
    from bridge.intake.store import Receipt

    store = app.extensions["bridge.store"]

    def one_set(body, headers, verdict, received_at):
        store.conn.set(f"costs:{uuid.uuid4().hex}", body, ex=600)
        return Receipt(uuid.uuid4().hex, verdict.status)

    store.store = one_set


def without_intake_records():
    """The bridge storing deliveries without the lead's received entry and search index (what issue 15 added)."""
    from dataclasses import replace

    from bridge.web import create_app

    app = create_app()
    store = app.extensions["bridge.store"]
    full = store.store

    def without_records(body, headers, verdict, received_at):
        return full(body, headers, replace(verdict, lead_id=None, payload=None), received_at)

    store.store = without_records
    return app


def without_log_line():
    """The bridge without its per-webhook log line."""
    from bridge.web import create_app

    app = create_app()
    _silence_webhook_log()
    return app


def with_set_store():
    """The bridge storing each delivery with one SET instead of its script."""
    from bridge.web import create_app

    app = create_app()
    _store_with_one_set(app)
    return app


def with_set_store_without_log_line():
    """The bridge with both of the above: what is left is its request handling in Python."""
    app = with_set_store()
    _silence_webhook_log()
    return app


VARIANTS = {
    "bridge": "bridge.web:create_app()",
    "bridge on gunicorn's own gthread": "bridge.web:create_app()",
    "bridge, no story entry or search index": "bench.webhook_costs:without_intake_records()",
    "bridge, no log line": "bench.webhook_costs:without_log_line()",
    "bridge, SET instead of script": "bench.webhook_costs:with_set_store()",
    "bridge, SET, no log line": "bench.webhook_costs:with_set_store_without_log_line()",
    "floor (Flask + one SET)": "bench.bare_app:create_floor_app()",
    "bare (Flask, answers 200)": "bench.bare_app:create_app()",
}

VARIANT_ENVIRONMENT = {"bridge on gunicorn's own gthread": {"GUNICORN_CMD_ARGS": "--worker-class gthread"}}
"""Variants that differ in how gunicorn runs, not in the app."""

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_tree(root_pid: int) -> list[int]:
    """The pid of a gunicorn master and of its workers, once all of them have started.

    The server answers as soon as its first worker does; the others fork a moment
    later, so wait until the list has not changed for a second.
    """
    def listing():
        out = subprocess.run(["pgrep", "-P", str(root_pid)], capture_output=True, text=True).stdout
        return sorted(map(int, out.split()))

    seen = listing()
    while True:
        time.sleep(1)
        now = listing()
        if now == seen:
            return [root_pid, *now]
        seen = now


def cpu_and_switches(pids: list[int]) -> tuple[float, int]:
    """CPU seconds (user + system) of `pids` and the context switches of all their threads."""
    seconds, switches = 0.0, 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            seconds += (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
            for task in os.listdir(f"/proc/{pid}/task"):
                for line in Path(f"/proc/{pid}/task/{task}/status").read_text().splitlines():
                    if "ctxt_switches:" in line:  # voluntary and involuntary
                        switches += int(line.split()[-1])
        except (FileNotFoundError, ProcessLookupError):
            continue  # a worker that exited between listing and reading
    return seconds, switches


def measure(app: str, port: int, env: dict, redis_pid: int, work: Path, deliveries: Path, seconds: int) -> dict:
    """Start one variant, load it with wrk, and return its per-request costs."""
    server = start_gunicorn(app, port, env, work / f"{port}.log")
    try:
        pids = process_tree(server.pid)
        before, redis_before, wrk_before = cpu_and_switches(pids), cpu_and_switches([redis_pid]), os.times()
        result = run_wrk(port, deliveries, seconds, 32, 2)
        after, redis_after, wrk_after = cpu_and_switches(pids), cpu_and_switches([redis_pid]), os.times()
    finally:
        server.terminate()
        server.wait(timeout=30)
    count = result["requests"]
    wrk_cpu = (wrk_after.children_user + wrk_after.children_system
               - wrk_before.children_user - wrk_before.children_system)
    return {
        "rps": result["rps"],
        "gunicorn_us": (after[0] - before[0]) / count * 1e6,
        "switches": (after[1] - before[1]) / count,
        "redis_us": (redis_after[0] - redis_before[0]) / count * 1e6,
        "wrk_us": wrk_cpu / count * 1e6,
    }


def loop_breakdown(count: int = 5000) -> None:
    """Time the intake's parts in one thread (CPU µs per call, median of 5 passes): no server, no contention."""
    import io
    import json
    import logging

    from bridge.intake import identity
    from bridge.intake.classify import classify
    from bridge.intake.signature import Verifier, sign
    from bridge.intake.store import received_entry
    from bridge.jsonlimits import parse
    from bridge.sandbox.sample import body_of, sample_lead
    from bridge.sandbox.webhooks import timestamp_header
    from bridge.storage import events, search
    from bridge.web import create_app

    secret = os.environ["REALGEEKS_WEBHOOK_SECRET"]
    app = create_app()
    for handler in logging.getLogger().handlers:  # the log line's cost without the terminal's
        handler.stream = open(os.devnull, "w")
    bodies = [body_of(sample_lead()) for _ in range(count)]
    body, stamp = bodies[0], timestamp_header(time.time_ns())
    parsed, verifier, signature = parse(body), Verifier(secret), sign(body, secret)
    event = events.Event(id=events.new_event_id(), body=body, headers={"X-Lead-Router-Timestamp": stamp},
                         received_at=time.time(), status=events.QUEUED, action="created", lead_id="a" * 32)

    def environ(n, repeat):
        """The WSGI environ of delivery n, stamped apart in every pass (so that no pass meets a duplicate)."""
        stamped = timestamp_header(time.time_ns() - 1000 * (n + repeat * count))
        return {"REQUEST_METHOD": "POST", "PATH_INFO": "/webhooks/realgeeks", "wsgi.input": io.BytesIO(bodies[n]),
                "CONTENT_LENGTH": str(len(bodies[n])), "CONTENT_TYPE": "application/json",
                "HTTP_X_LEAD_ROUTER_SIGNATURE": sign(bodies[n], secret), "HTTP_X_LEAD_ROUTER_ACTION": "created",
                "HTTP_X_LEAD_ROUTER_TIMESTAMP": stamped, "HTTP_USER_AGENT": "wrk"}

    parts = {
        "signature (HMAC-SHA256, key prepared once)": lambda: verifier.ok(body, signature),
        "JSON parse within the limits": lambda: parse(body),
        "classify": lambda: classify(parsed, {"X-Lead-Router-Action": "created"}, None),
        "identity + ordering (timestamp header)": lambda: (identity.delivery_digest("ab" * 32, stamp),
                                                          identity.ordering(stamp, time.time())),
        "search-index members": lambda: search.entries("a" * 32, parsed.value),
        "event meta + received entry (JSON)": lambda: (event.meta(),
                                                       json.dumps(received_entry(event), separators=(",", ":"))),
    }
    print("| part | CPU µs per delivery |\n|---|---|")
    for name, call in parts.items():
        print(f"| {name} | {_per_call(call, count):.1f} |")
    store = app.extensions["bridge.store"]
    real_run = store._run
    for name, redis_too, logged in (("whole webhook, store call stubbed, no log line", False, False),
                                    ("whole webhook, store call stubbed", False, True),
                                    ("whole webhook with the store call (Redis on this machine)", True, True)):
        store._run = real_run if redis_too else (lambda keys_, args: [1, args[0]])
        logging.getLogger("bridge.webhook").disabled = not logged
        samples = []
        for repeat in range(5):
            prepared = [environ(n, repeat) for n in range(count)]
            started = time.process_time()
            for one in prepared:
                b"".join(app(one, lambda status, headers: None))
            samples.append((time.process_time() - started) / count * 1e6)
        print(f"| {name} | {statistics.median(samples):.1f} |")
    store._run = real_run
    logging.getLogger("bridge.webhook").disabled = False


def _per_call(call, count: int) -> float:
    """Median over 5 passes of the CPU µs one call of `call` takes."""
    samples = []
    for _ in range(5):
        started = time.process_time()
        for _ in range(count):
            call()
        samples.append((time.process_time() - started) / count * 1e6)
    return statistics.median(samples)


def main() -> None:
    """Measure every variant and print a Markdown table of medians over rounds."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--loop", action="store_true", help="time the request path's parts in one thread instead")
    args = parser.parse_args()
    if args.loop:
        with load_test_setup("bench-costs-") as (_, env, _redis):
            os.environ.update(env)
            loop_breakdown()
        return
    results = {name: [] for name in VARIANTS}
    with load_test_setup("bench-costs-") as (work, env, redis_process):
        deliveries = work / "deliveries.tsv"
        write_deliveries(deliveries, 60000)
        conn = connect(env["REDIS_URL"])
        for _ in range(args.rounds):
            for name, app in VARIANTS.items():
                conn.flushdb()  # our private server: no run may find the last run's dedupe keys
                results[name].append(measure(app, free_port(), {**env, **VARIANT_ENVIRONMENT.get(name, {})},
                                             redis_process.pid, work, deliveries, args.seconds))
                print(f"{name}: {results[name][-1]}", file=sys.stderr)

    print("| variant | req/s | gunicorn CPU µs/req | context switches/req | redis CPU µs/req | wrk CPU µs/req |")
    print("|---|---|---|---|---|---|")
    for name, runs in results.items():
        cell = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        print(f"| {name} | {cell['rps']:.0f} | {cell['gunicorn_us']:.0f} | {cell['switches']:.1f} | "
              f"{cell['redis_us']:.0f} | {cell['wrk_us']:.0f} |")
    print(f"\n32 connections, {args.seconds} s per run, median of {args.rounds} round(s)")


if __name__ == "__main__":
    main()
