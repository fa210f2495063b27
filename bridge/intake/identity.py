"""Which delivery is which, and when its change happened (pure, no I/O).

Real Geeks' own receiver (RealGeeks/lead_router_receiver, `incoming_controller.rb`) keys a
message by its subject id plus the `X-Lead-Router-Timestamp` header: an `updated` body
carries nothing that changes per delivery, so a phone changed A→B→A arrives as the same
bytes twice, told apart only by that header (docs/vendors/realgeeks-api.md §7).

So a redelivery is the same bytes with the same timestamp header, or, without the
header, the same bytes within the dedupe window. The header also orders a lead's
changes, but it is not signed: it orders only while it lies within a tolerance of our
own receipt time (a little ahead for clock skew, up to the dedupe window behind for
Real Geeks' retries of a delivery it could not hand over); otherwise receipt time
orders, and the lead's story says why.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

from bridge import defaults
from bridge.translate.realgeeks import parse_instant

BY_TIMESTAMP, BY_RECEIPT = "timestamp", "receipt"
"""What ordered a delivery among its lead's changes: Real Geeks' header or our receipt time."""

QUOTED_CHARACTERS = 40
"""Most characters of an unusable timestamp header quoted in the story."""


@dataclass(frozen=True)
class Ordering:
    """When a delivery's change happened for ordering (unix ns), what decided it, and why not the header."""

    ns: int
    by: str
    note: str | None = None


def delivery_digest(body_sha256: str, stamp: str | None) -> str:
    """The digest naming a delivery for dedupe: its body's SHA-256, with its timestamp header when it has one.

    A header that parses is taken by its instant, so the same moment written with more or
    fewer fractional digits is one delivery; any other header text is taken as it is.
    """
    if stamp is None or not stamp.strip():
        return body_sha256
    instant = _instant_ns(stamp)
    moment = stamp.strip() if instant is None else str(instant)
    return hashlib.sha256(f"{body_sha256}|{moment}".encode("utf-8", "surrogateescape")).hexdigest()


def ordering(stamp: str | None, received_at: float, *,
             ahead_seconds: float = defaults.REALGEEKS_TIMESTAMP_MAX_AHEAD_SECONDS,
             behind_seconds: float = defaults.REALGEEKS_TIMESTAMP_MAX_BEHIND_SECONDS) -> Ordering:
    """Order a delivery received at `received_at` (unix seconds) by its timestamp header, or by receipt when unusable."""
    received_ns = int(received_at * 1_000_000_000)
    if stamp is None or not stamp.strip():
        return Ordering(received_ns, BY_RECEIPT, "no X-Lead-Router-Timestamp header")
    stamped = _instant_ns(stamp)
    if stamped is None:
        return Ordering(received_ns, BY_RECEIPT, f"X-Lead-Router-Timestamp {_quoted(stamp)} is not a timestamp")
    offset = (stamped - received_ns) / 1_000_000_000
    if offset > ahead_seconds:
        return Ordering(received_ns, BY_RECEIPT, f"X-Lead-Router-Timestamp {_quoted(stamp)} is {_span(offset)} "
                                                 f"ahead of receipt (more than {_span(ahead_seconds)})")
    if -offset > behind_seconds:
        return Ordering(received_ns, BY_RECEIPT, f"X-Lead-Router-Timestamp {_quoted(stamp)} is {_span(-offset)} "
                                                 f"before receipt (more than {_span(behind_seconds)})")
    return Ordering(stamped, BY_TIMESTAMP)


@functools.lru_cache(maxsize=256)
def _instant_ns(stamp: str) -> int | None:
    """The instant a timestamp header names (unix ns), None when it names none; cached, as the
    intake asks twice per delivery (its identity, its ordering)."""
    try:
        return parse_instant(stamp).ns
    except (ValueError, OverflowError):
        return None


def _quoted(stamp: str) -> str:
    """A header value as the story quotes it: stripped, cut to QUOTED_CHARACTERS."""
    text = stamp.strip()
    return repr(text if len(text) <= QUOTED_CHARACTERS else text[:QUOTED_CHARACTERS] + "…")


def _span(seconds: float) -> str:
    """A duration for people: seconds, minutes, hours or days."""
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.1f} s"
