"""The log of every delivery Real Geeks made: queued, ignored, rejected (and repeats of earlier ones),
newest first, filtered by outcome, action and time, for the console's Deliveries page.

Read from the stored events and their time index; a page reads each delivery's meta and
only small bodies (for the lead's name), so a list never loads a megabyte body to show one line.
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge import defaults
from bridge.ops import leads, present
from bridge.storage import events

OUTCOMES = (events.QUEUED, events.DUPLICATE, events.IGNORED, events.REJECTED)
"""What became of a delivery, as the filter offers it."""

SCAN_LIMIT = 5000
"""Most deliveries one page reads while looking for ones that match a filter (a count)."""


@dataclass(frozen=True)
class DeliveryFilter:
    """Which deliveries to list; each criterion left as None matches all."""

    outcome: str | None = None
    action: str | None = None
    since: float | None = None
    until: float | None = None


@dataclass
class Delivery:
    """One delivery as a row of the log."""

    event_id: str
    received_at: float
    outcome: str
    action: str | None
    lead_id: str | None
    lead_name: str | None
    errors: object
    body_bytes: int
    duplicate_of: str | None = None

    @property
    def error_text(self) -> str | None:
        """A rejected delivery's errors as plain sentences."""
        return present.errors_sentence(self.errors) if self.outcome in (events.REJECTED, events.UNREADABLE) else None


@dataclass
class Page:
    """One page of the log, and where the next (older) one starts."""

    deliveries: list[Delivery]
    older: float | None
    """Receipt time to pass as `before` for the next page; None when this is the last."""
    scanned: int


def page(conn, delivery_filter: DeliveryFilter = DeliveryFilter(), *, before: float | None = None,
         size: int = 50) -> Page:
    """Return up to `size` deliveries matching the filter, newest first, received before `before`.

    Stored deliveries and logged repeats are two time-ordered indexes, read side by side and
    merged by receipt time; a filter on one outcome reads only the index that holds it.
    """
    wanted = delivery_filter.outcome
    sources = [source for source, holds in ((_stored, wanted != events.DUPLICATE), (_repeats, wanted in (None, events.DUPLICATE)))
               if holds]
    found: list[Delivery] = []
    scanned, cursor, exhausted = 0, before if before is not None else _after(delivery_filter.until), False
    while len(found) < size and scanned < SCAN_LIMIT:
        batch = sorted((row for source in sources
                        for row in source(conn, cursor, delivery_filter.since, min(500, SCAN_LIMIT - scanned))),
                       key=lambda row: row.received_at, reverse=True)[:500]
        if not batch:
            exhausted = True
            break
        scanned += len(batch)
        for row in batch:
            cursor = row.received_at
            if row.outcome is not None and _matches(delivery_filter, row):
                found.append(row)
                if len(found) == size:
                    break
    for row in found:
        row.lead_name = _name(conn, row)
    more = not exhausted and any(source(conn, cursor, delivery_filter.since, 1) for source in sources)
    return Page(found, cursor if more else None, scanned)


def _stored(conn, before: float | None, since: float | None, count: int) -> list[Delivery]:
    """Stored deliveries before `before`, newest first, from their metas (an expired one has outcome None)."""
    batch = events.recent(conn, before=before, since=since, count=count)
    rows = []
    for (event_id, received_at), (meta, body_bytes) in zip(batch, events.metas(conn, [i for i, _ in batch])):
        meta = meta or {"status": None, "action": None, "lead_id": None, "errors": None}  # expired meanwhile
        rows.append(Delivery(event_id=event_id, received_at=received_at, outcome=meta["status"], action=meta["action"],
                             lead_id=meta["lead_id"], lead_name=None, errors=meta["errors"], body_bytes=body_bytes))
    return rows


def _repeats(conn, before: float | None, since: float | None, count: int) -> list[Delivery]:
    """Logged repeated deliveries before `before`, newest first."""
    return [Delivery(event_id=record["of"] or "", received_at=received_at, outcome=events.DUPLICATE,
                     action=record["action"], lead_id=record["lead_id"], lead_name=None, errors=None, body_bytes=0,
                     duplicate_of=record["of"])
            for record, received_at in events.duplicates(conn, before=before, since=since, count=count)]


def _after(until: float | None) -> float | None:
    """The exclusive upper bound that includes deliveries received at `until`."""
    return None if until is None else until + 1e-6


def _matches(delivery_filter: DeliveryFilter, row: Delivery) -> bool:
    """Whether a row meets the filter's outcome and action (its time is in the range read)."""
    return ((delivery_filter.outcome is None or row.outcome == delivery_filter.outcome)
            and (delivery_filter.action is None or row.action == delivery_filter.action))


def _name(conn, row: Delivery) -> str | None:
    """The lead's name from the delivery (a repeat's from the delivery it repeated), when its body is small."""
    return leads.name_of_event(conn, row.event_id) if row.event_id else None


PAGE_SIZE = min(50, defaults.CONSOLE_PAGE_SIZE)
"""Deliveries per page of the log."""
