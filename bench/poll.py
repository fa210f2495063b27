"""LionDesk → Real Geeks poll: calls per idle poll, calls per changed contact, time for one poll.

Runs against `bridge sandbox` started as a child process and a private redis-server,
both on 127.0.0.1. Each run seeds N contacts, each linked to a Real Geeks lead with
the snapshot the bridge would have stored after syncing it, then measures:

- an idle poll (nothing changed since the cursor): its LionDesk and Real Geeks requests;
- an incremental poll after agents changed C of the contacts: its requests per changed
  contact and its time;
- one poll over all N contacts of which C changed (cursor before the seeding): its time.

Counts come from the sandbox's call log. LionDesk requests go through the bridge's
shared rate ceiling (LIONDESK_MAX_REQUESTS_PER_SECOND, production default unless
--rate is given), which bounds any poll that reads many pages. Medians of --runs runs.

    python -m bench.poll [--contacts 10000] [--changed 100] [--runs 3] [--rate 10]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from bridge import defaults
from tests.support import link_bulk_contacts

ROOT = Path(__file__).resolve().parents[1]


class Sandbox:
    """`bridge sandbox` in a child process, driven through its control API."""

    def __init__(self, work: Path):
        import requests

        from tests.support import free_port, wait_until

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.session = requests.Session()
        self.process = subprocess.Popen([sys.executable, "-m", "bridge.cli", "sandbox", "--port", str(self.port)],
                                        cwd=ROOT, stdout=(work / "sandbox.log").open("wb"), stderr=subprocess.STDOUT)

        def up():
            try:
                return self.session.get(f"{self.url}/_sandbox/state", timeout=1).ok
            except requests.RequestException:
                return self.process.poll() is not None

        wait_until(up, timeout=30, message="the sandbox")
        if self.process.poll() is not None:
            raise SystemExit(f"the sandbox exited: {(work / 'sandbox.log').read_text()}")

    def control(self, method: str, path: str, **body):
        """Call the control API; stop on a refusal."""
        response = self.session.request(method, f"{self.url}/_sandbox/{path}", json=body or None, timeout=120)
        if not response.ok:
            raise SystemExit(f"sandbox {method} {path}: {response.status_code} {response.text}")
        return response.json()

    def last_seq(self) -> int:
        """Sequence number of the latest API call logged."""
        return self.control("GET", "state")["last_call_seq"]

    def requests_since(self, seq: int, service: str) -> int:
        """API requests to `service` after `seq` (LionDesk token requests left out)."""
        calls = self.control("GET", f"calls?since={seq}&service={service}")["calls"]
        return sum(1 for call in calls if "oauth2" not in call["path"])

    def stop(self) -> None:
        """Stop the child process."""
        self.process.terminate()
        self.process.wait(timeout=30)


def iso(moment: datetime) -> str:
    """A time as LionDesk writes it."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def one_run(sandbox: Sandbox, context, count: int, changed: int) -> dict:
    """Seed, poll idle, change `changed` contacts, poll incrementally, then poll over everything; return figures."""
    from bridge.sync import reverse

    conn = context.redis
    conn.flushdb()
    sandbox.control("POST", "reset")
    before_seed = datetime.now(timezone.utc) - timedelta(seconds=2)
    seeded = sandbox.control("POST", "liondesk/bulk-contacts", count=count, linked=True)
    contacts = sandbox.control("GET", "liondesk/contacts")["data"]
    link_bulk_contacts(conn, context.settings.rules, seeded["links"], contacts)
    context.clients.liondesk.get_me()  # the OAuth token, once: not what a poll costs
    time.sleep(defaults.POLL_OVERLAP_SECONDS + 1.1)  # the seeding falls out of the overlap window

    figures = {}
    start = iso(datetime.now(timezone.utc))
    reverse.poll(context, since=start)  # sets the cursor after the seeding; reads nothing
    seq = sandbox.last_seq()
    report = reverse.poll(context)
    assert report.read == 0, report.summary()
    figures["idle_liondesk"] = sandbox.requests_since(seq, "liondesk")
    figures["idle_realgeeks"] = sandbox.requests_since(seq, "realgeeks")

    step = max(count // changed, 1)
    edited = [seeded["first_id"] + index * step for index in range(changed)]
    for contact_id in edited:
        sandbox.control("PATCH", f"liondesk/contacts/{contact_id}", last_name=f"Edited {contact_id}")
    seq = sandbox.last_seq()
    began = time.perf_counter()
    report = reverse.poll(context, budget_seconds=3600)
    figures["incremental_seconds"] = time.perf_counter() - began
    assert report.counts[reverse.PUSHED] == changed, report.summary()
    figures["incremental_liondesk"] = sandbox.requests_since(seq, "liondesk")
    figures["realgeeks_per_changed"] = sandbox.requests_since(seq, "realgeeks") / changed

    for contact_id in edited:  # a second round of edits, for the poll over every contact
        sandbox.control("PATCH", f"liondesk/contacts/{contact_id}", last_name=f"Again {contact_id}")
    seq = sandbox.last_seq()
    began = time.perf_counter()
    report = reverse.poll(context, since=iso(before_seed), budget_seconds=3600)
    figures["full_seconds"] = time.perf_counter() - began
    assert report.read == count and report.counts[reverse.PUSHED] == changed, report.summary()
    figures["full_liondesk"] = sandbox.requests_since(seq, "liondesk")
    figures["full_realgeeks"] = sandbox.requests_since(seq, "realgeeks")
    return figures


ROWS = (
    ("idle_liondesk", "LionDesk requests per idle poll", "1", "{:.0f}"),
    ("idle_realgeeks", "Real Geeks requests per idle poll", "0", "{:.0f}"),
    ("realgeeks_per_changed", "Real Geeks requests per changed contact", "1", "{:.2f}"),
    ("incremental_liondesk", "LionDesk requests, poll after {changed} changes", "-", "{:.0f}"),
    ("incremental_seconds", "seconds, poll after {changed} changes", "-", "{:.2f}"),
    ("full_liondesk", "LionDesk requests, one poll over {count} contacts ({changed} changed)", "-", "{:.0f}"),
    ("full_realgeeks", "Real Geeks requests, same poll", "{changed}", "{:.0f}"),
    ("full_seconds", "seconds, one poll over {count} contacts ({changed} changed)", "-", "{:.2f}"),
)


def main() -> None:
    """Run the measurements and print a Markdown table of medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=10_000)
    parser.add_argument("--changed", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rate", type=float, default=defaults.LIONDESK_MAX_REQUESTS_PER_SECOND,
                        help="LIONDESK_MAX_REQUESTS_PER_SECOND for the poll")
    args = parser.parse_args()

    from bridge.config import load_settings
    from bridge.cli.dev import sandbox_environment
    from bridge.ops import logs
    from bridge.storage.embedded import start_server
    from bridge.storage.redis import connect
    from tests.support import free_port
    from bridge.context import Context

    work = Path(tempfile.mkdtemp(prefix="bench-poll-"))
    redis_port = free_port()
    redis_process = start_server(work / "redis", port=redis_port, persist=False)
    sandbox = Sandbox(work)
    results = []
    try:
        env = {**sandbox_environment(sandbox.url), "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
               "LIONDESK_MAX_REQUESTS_PER_SECOND": str(args.rate)}
        settings = load_settings(env)
        logs.configure("WARNING")
        for number in range(args.runs):
            context = Context(settings=settings, redis=connect(settings.redis_url))
            figures = one_run(sandbox, context, args.contacts, args.changed)
            results.append(figures)
            print(f"run {number + 1}: {figures}", file=sys.stderr)
    finally:
        sandbox.stop()
        redis_process.terminate()
        redis_process.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)

    names = {"count": f"{args.contacts:,}", "changed": args.changed}
    print(f"\n| measure | target | {' | '.join(f'run {n + 1}' for n in range(args.runs))} | median |")
    print(f"|---|---|{'---|' * args.runs}---|")
    for key, label, target, form in ROWS:
        values = [run[key] for run in results]
        cells = " | ".join(form.format(value) for value in values)
        print(f"| {label.format(**names)} | {target.format(**names)} | {cells} | "
              f"{form.format(statistics.median(values))} |")
    print(f"\nLionDesk rate ceiling {args.rate:g} requests/s, page size {defaults.LIONDESK_PAGE_SIZE}, "
          f"overlap {defaults.POLL_OVERLAP_SECONDS} s; sandbox and Redis on 127.0.0.1; {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
