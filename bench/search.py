"""The lead search index at size: memory per lead and the time one support query takes.

Indexes N synthetic leads (a name of two words, an e-mail, a phone) the way the intake does,
spread over the buckets of a year, into a private redis-server; then times queries of each
kind (a whole e-mail, an e-mail's start, a phone's last 7 digits, a name's start, no match)
through bridge.ops.leads.search, and reports the index's memory per lead.

    python -m bench.search [--leads 20000] [--repeats 50]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from bridge import defaults
from bridge.ops import leads
from bridge.storage import keys, search
from bridge.storage.embedded import start_server
from bridge.storage.redis import connect

FIRST = ["Mei", "Ana", "Kai", "Zoë", "Noah", "Liam", "Ava", "José", "Keoni", "Sofia", "Ivan", "Leilani"]
LAST = ["Wong", "Silva", "Akana", "Tanaka-Åberg", "Lee", "Brown", "Nakamura", "Núñez", "Smith", "Kalani"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--leads", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as directory:
        port = rng.randrange(20000, 30000)
        server = start_server(Path(directory), port=port, persist=False)
        try:
            conn = connect(f"redis://127.0.0.1:{port}/0")
            before = int(conn.info("memory")["used_memory"])
            now = time.time()
            pipe, sample = conn.pipeline(transaction=False), {}
            for number in range(args.leads):
                first, last = rng.choice(FIRST), rng.choice(LAST)
                payload = {"first_name": first, "last_name": f"{last}{number % 97}",
                           "email": f"{first.lower()}.{last.lower()}{number}@example.com",
                           "phone": f"808-{rng.randrange(200, 999)}-{number % 10000:04d}"}
                search.add(pipe, f"{number:032x}", payload, now=now - rng.random() * defaults.HISTORY_TTL_SECONDS)
                if number == args.leads // 2:
                    sample = payload
                if len(pipe) > 2000:
                    pipe.execute()
            pipe.execute()
            used = int(conn.info("memory")["used_memory"]) - before
            buckets = len(conn.keys(keys.lead_search_bucket("*")))
            print(f"{args.leads} leads in {buckets} buckets: {used / args.leads:.0f} bytes of Redis memory per lead")
            queries = {"whole e-mail": sample["email"], "e-mail start": sample["email"][:8],
                       "whole phone": sample["phone"], "phone, last 7 digits": sample["phone"][-8:],
                       "name start": "tanaka", "two name words": "zoe tanaka", "no match": "nobody@nowhere.example"}
            for label, query in queries.items():
                times, found = [], 0
                for _ in range(args.repeats):
                    started = time.perf_counter()
                    found = len(leads.search(conn, query))
                    times.append(time.perf_counter() - started)
                print(f"  {label:<22} {statistics.median(times) * 1000:7.2f} ms median, {found} leads found")
        finally:
            server.terminate()
            server.wait(timeout=10)


if __name__ == "__main__":
    main()
