"""How the log maskers' time grows with the length of one value: linear, or not.

Each masker runs over hostile values of growing length (long runs of the characters its
pattern starts with, with no match in them); the report gives the median time per size
and the ratio to the smallest size. Linear growth gives ratios close to the size ratio
(8 × the length, about 8 × the time); a pattern that rescans the run from every position
gives about 64 ×.

    python -m bench.masking [--sizes 1000,8000,64000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

from bridge.ops import logs

VALUES = {
    "letters": lambda n: "a" * n,
    "letters then @": lambda n: "a" * n + "@",
    "token-like words": lambda n: "token" * (n // 5),
    "digits then a letter": lambda n: "1" * n + "a",
    "spaced digits": lambda n: "1 " * (n // 2) + "x",
    "letters then a space": lambda n: "a" * n + " ",
}
MASKERS = (logs.mask_email, logs.mask_credentials, logs.mask_phone, logs.scrub)


def median_seconds(function, text: str, repeats: int) -> float:
    """Median wall time of `function(text)` over `repeats` runs."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function(text)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,8000,64000")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    print(f"{'value':22} {'masker':18} " + " ".join(f"{size:>10}" for size in sizes) + "   ratio last/first")
    for name, make in VALUES.items():
        for masker in MASKERS:
            times = [median_seconds(masker, make(size), args.repeats) for size in sizes]
            cells = " ".join(f"{t * 1000:8.2f}ms" for t in times)
            print(f"{name:22} {masker.__name__:18} {cells}   {times[-1] / max(times[0], 1e-9):8.0f}x")


if __name__ == "__main__":
    main()
