"""Sustained signed-webhook throughput and latency: the bridge beside two yardsticks.

Three apps run under the project's own gunicorn.conf.py, on 127.0.0.1, against a private
redis-server this script starts: the bridge; `bare`, a Flask endpoint that only answers
200 (the issue's yardstick); and `floor`, a Flask endpoint that stores the body with one
Redis SET and answers (the least any persist-then-acknowledge endpoint can do, see
bench/bare_app.py). wrk sends distinct, correctly signed deliveries over 32 keep-alive
connections; each round measures the three in turn so that machine noise hits all alike,
and the report gives medians and the ratios of each round. A second, paced run per round
measures latency at a fixed offered load (--paced-rate) rather than at saturation.

    python -m bench.webhook [--rounds 3] [--seconds 10] [--connections 32] [--paced-rate 1000]

Needs `wrk` (Debian package `wrk`).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from bridge.intake.signature import sign
from bridge.sandbox.sample import body_of, sample_lead
from bridge.sandbox.webhooks import timestamp_header
from bridge.storage.embedded import start_server
from bridge.storage.redis import connect
from tests.support import free_port, wait_until

ROOT = Path(__file__).resolve().parents[1]

SECRET = "bench-secret-" + os.urandom(8).hex()


def write_deliveries(path: Path, count: int) -> None:
    """Write `count` distinct signed deliveries, one 'signature<TAB>X-Lead-Router-Timestamp<TAB>body' per line.

    The stamps are a minute old or less at the start of a run, as Real Geeks' are: within the
    intake's tolerance, so each delivery is ordered by its stamp, the path every real one takes.
    """
    now_ns = time.time_ns()
    with path.open("w") as out:
        for n in range(count):
            body = body_of(sample_lead())
            out.write(f"{sign(body, SECRET)}\t{timestamp_header(now_ns - 60_000_000_000 + n * 1000)}\t"
                      f"{body.decode()}\n")


def start_gunicorn(app: str, port: int, env: dict, log: Path) -> subprocess.Popen:
    """Start gunicorn with the project's configuration and wait until it accepts connections."""
    import requests

    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", app],
        cwd=ROOT, env={**os.environ, **env, "PORT": str(port)}, stdout=log.open("wb"), stderr=subprocess.STDOUT)

    def up():
        try:
            requests.get(f"http://127.0.0.1:{port}/", timeout=1)
            return True
        except requests.RequestException:
            return process.poll() is not None

    wait_until(up, timeout=30, message=f"gunicorn for {app}")
    if process.poll() is not None:
        raise SystemExit(f"gunicorn for {app} exited: {log.read_text()}")
    return process


# name → gunicorn app spec, in the order each round measures them
APPS = {
    "bridge": "bridge.web:create_app()",
    "floor": "bench.bare_app:create_floor_app()",
    "bare": "bench.bare_app:create_app()",
}

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def paced_script(work: Path, rate: float, connections: int) -> Path:
    """Write webhook.lua plus a delay() hook that paces each connection to `rate` requests/s in all.

    Each connection waits connections/rate seconds between requests (less the ~1 ms a
    request takes), so the offered load is close to `rate`; the report gives what was
    achieved. A closed loop like this under-reports latency only when the server falls
    behind, which the achieved rate shows.
    """
    pause_ms = max(1, round(connections / rate * 1000) - 1)
    script = work / "webhook_paced.lua"
    script.write_text((ROOT / "bench" / "webhook.lua").read_text()
                      + f"\nfunction delay()\n  return {pause_ms}\nend\n")
    return script


def run_wrk(port: int, deliveries: Path, seconds: int, connections: int, threads: int,
            script: Path = ROOT / "bench" / "webhook.lua") -> dict:
    """Run wrk against one server; return requests/s, p50/p99 in ms and non-2xx count."""
    result = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency",
         "-s", str(script), f"http://127.0.0.1:{port}", "--", str(deliveries), str(threads)],
        capture_output=True, text=True, check=True)
    text = result.stdout

    def latency(percent):
        value, unit = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M).groups()
        return float(value) * _UNITS[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)),
        "requests": int(re.search(r"(\d+) requests in", text).group(1)),
        "p50_ms": latency(50), "p99_ms": latency(99),
        "non_2xx": int(errors.group(1)) if errors else 0,
    }


def check_all_stored(conn, measured: dict, connections: int) -> None:
    """Stop the benchmark if the bridge acknowledged deliveries it did not store."""
    stored = conn.zcard(f"{os.environ.get('BRIDGE_KEY_PREFIX', 'bridge:')}events")
    measured["stored"] = stored
    if stored < measured["requests"] - measured["non_2xx"] - connections:
        raise SystemExit(f"only {stored} events stored for {measured['requests']} requests")


def print_table(title: str, results: dict, ratios: bool = True) -> None:
    """Print one Markdown table of medians and, for saturated runs, the per-round throughput ratios."""
    def median(name, key):
        return statistics.median(r[key] for r in results[name])

    print(f"\n{title}\n")
    print("| server | median req/s | median p50 (ms) | median p99 (ms) | non-2xx |")
    print("|---|---|---|---|---|")
    for name in APPS:
        print(f"| {name} | {median(name, 'rps'):.0f} | {median(name, 'p50_ms'):.2f} | "
              f"{median(name, 'p99_ms'):.2f} | {sum(r['non_2xx'] for r in results[name])} |")
    if not ratios:  # a paced run's throughput is the offered load, not what a server can do
        return
    print()
    for top, bottom in (("bridge", "bare"), ("bridge", "floor"), ("floor", "bare")):
        ratios = [t["rps"] / b["rps"] for t, b in zip(results[top], results[bottom])]
        print(f"- {top} / {bottom} throughput: median {statistics.median(ratios):.2f} "
              f"(per round: {', '.join(f'{r:.2f}' for r in ratios)})")


def measure_rounds(args, work: Path, env: dict) -> dict:
    """Run every round, saturated then paced, against the three servers; return results by mode and server."""
    ports = {name: free_port() for name in APPS}
    servers = [start_gunicorn(app, ports[name], env, work / f"{name}.log") for name, app in APPS.items()]
    deliveries = work / "deliveries.tsv"
    write_deliveries(deliveries, args.deliveries)
    scripts = {"saturated": ROOT / "bench" / "webhook.lua"}
    if args.paced_rate:
        scripts["paced"] = paced_script(work, args.paced_rate, args.connections)
    conn = connect(env["REDIS_URL"])
    results = {mode: {name: [] for name in APPS} for mode in scripts}
    try:
        for round_number in range(args.rounds):
            # Every other round in reverse order: on a shared machine, load that comes and goes
            # would otherwise always fall on the same server of a round.
            order = list(ports.items())[::-1 if round_number % 2 else 1]
            for mode, script in scripts.items():
                for name, port in order:
                    conn.flushdb()  # our private server: every run starts with no dedupe keys
                    measured = run_wrk(port, deliveries, args.seconds, args.connections, args.threads, script)
                    if name == "bridge":
                        check_all_stored(conn, measured, args.connections)
                    results[mode][name].append(measured)
                    print(f"round {round_number + 1} {mode:9s} {name:6s} {measured}", file=sys.stderr)
                    time.sleep(1)
    finally:
        for process in servers:
            process.terminate()
            process.wait(timeout=30)
    return results


@contextmanager
def load_test_setup(prefix: str):
    """Check for wrk, start a private redis-server, yield (work folder, environment, redis process); clean up."""
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    work = Path(tempfile.mkdtemp(prefix=prefix))
    redis_port = free_port()
    redis_process = start_server(work / "redis", port=redis_port, persist=False)
    env = {"REDIS_URL": f"redis://127.0.0.1:{redis_port}/0", "REALGEEKS_WEBHOOK_SECRET": SECRET}
    try:
        yield work, env, redis_process
    finally:
        redis_process.terminate()
        redis_process.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    """Measure the three servers in rounds, saturated then paced, and print a Markdown report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--deliveries", type=int, default=60000, help="distinct signed bodies per round")
    parser.add_argument("--paced-rate", type=float, default=1000,
                        help="also measure latency at this offered load, requests/s in all (0: skip)")
    args = parser.parse_args()
    with load_test_setup("bench-webhook-") as (work, env, _):
        results = measure_rounds(args, work, env)
    print_table(f"Saturated: {args.connections} connections, each sending its next request as soon as "
                f"the answer arrives", results["saturated"])
    if "paced" in results:
        print_table(f"Paced: {args.connections} connections offering about {args.paced_rate:.0f} "
                    f"requests/s in all", results["paced"], ratios=False)
    print(f"\n{args.rounds} rounds × {args.seconds} s per run, wrk -t{args.threads}")


if __name__ == "__main__":
    main()
