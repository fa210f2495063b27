"""The relay: turns intake stream entries into RQ jobs, checking each payload's schema first.

Every worker process runs one relay thread, each a consumer of one Redis consumer group,
so an entry goes to exactly one of them. An entry is acknowledged only after its job
exists (or its event was marked rejected); an entry whose worker died before that is
claimed by another relay after RELAY_CLAIM_IDLE_MILLISECONDS. Job ids derive from event
ids and are enqueued as unique, so relaying an entry twice still yields one job.
"""

from __future__ import annotations

import logging
import threading
import time

import redis

from bridge import defaults
from bridge.intake.classify import schema_errors
from bridge.jsonlimits import parse
from bridge.intake.store import received_entry
from bridge.storage import events, history, keys, kinds, pending, search
from bridge.queue import JobAlreadyQueued, enqueue_event, event_queue
from bridge.storage.redis import text

log = logging.getLogger("bridge.relay")


class Relay:
    """Moves accepted events from the intake stream onto the RQ event queue."""

    def __init__(self, conn: redis.Redis, consumer: str, intervals=defaults.RETRY_INTERVALS_SECONDS):
        self.conn = conn
        self.consumer = consumer
        self.intervals = intervals
        self.queue = event_queue(conn)
        self._last_claim = 0.0
        self._ensure_group()

    def _ensure_group(self) -> None:
        """Create the consumer group (reading from the stream's start) unless it exists."""
        try:
            self.conn.xgroup_create(keys.intake_stream(), defaults.RELAY_GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):  # the one error Redis reports only as text
                raise

    def relay_once(self, block_ms: int | None = None) -> int:
        """Relay one batch: entries abandoned by dead workers first, then new ones; return how many."""
        entries = []
        if time.monotonic() - self._last_claim > defaults.RELAY_CLAIM_IDLE_MILLISECONDS / 1000 / 3:
            self._last_claim = time.monotonic()
            _, claimed, *_ = self.conn.xautoclaim(
                keys.intake_stream(), defaults.RELAY_GROUP, self.consumer,
                min_idle_time=defaults.RELAY_CLAIM_IDLE_MILLISECONDS, count=defaults.RELAY_BATCH)
            entries.extend(claimed)
        if not entries:
            for _, batch in self.conn.xreadgroup(defaults.RELAY_GROUP, self.consumer, {keys.intake_stream(): ">"},
                                                 count=defaults.RELAY_BATCH, block=block_ms) or []:
                entries.extend(batch)
        for entry_id, fields in entries:
            if fields:  # a claimed entry trimmed from the stream meanwhile comes back empty
                self.dispatch(text(fields[b"event"]))
            self.conn.xack(keys.intake_stream(), defaults.RELAY_GROUP, entry_id)
        return len(entries)

    def drain(self) -> int:
        """Relay until nothing is waiting (tests and `bridge` commands); return how many."""
        total = 0
        while count := self.relay_once():
            total += count
        return total

    def dispatch(self, event_id: str) -> None:
        """Check one event's payload against its schema, then queue its job or mark it rejected.

        The payload is parsed once; what the relay records about the event goes to Redis in
        one pipeline, before the job is queued (so a job never runs ahead of its records).
        """
        event = events.load(self.conn, event_id)
        if event is None:
            log.warning("intake entry for event %s, which is no longer stored", event_id)
            return
        # Within the intake's JSON limits: an event queued before those limits existed (or
        # written by hand) is rejected here instead of failing every later reader.
        parsed = parse(event.body)
        payload = parsed.value if parsed.problem is None and isinstance(parsed.value, dict) else None
        if payload is None:
            errors = {"body": [parsed.problem or "JSON body must be an object"]}
        else:
            errors = schema_errors(event.action, payload)
        with self.conn.pipeline(transaction=False) as pipe:
            if event.lead_id and event.order_ns is None:
                # Stored by an intake from before it wrote the story and the index itself.
                history.append_entry(pipe, event.lead_id, received_entry(event))
                if payload is not None:
                    search.add(pipe, event.lead_id, payload)
            if errors:
                events.mark_rejected(pipe, event, errors)
                if event.lead_id:
                    history.append(pipe, event.lead_id, kinds.REJECTED, event_id=event.id, action=event.action,
                                   errors=errors)
            if len(pipe):
                pipe.execute()
        if errors:
            return
        added = bool(event.lead_id) and pending.add(self.conn, event.lead_id, event.id)  # before: see pending.add
        try:
            enqueue_event(self.queue, event.id, intervals=self.intervals, unique=True,
                          description=f"{event.action} lead {event.lead_id or '-'}")
        except JobAlreadyQueued:
            # Relayed before by a relay that died before acknowledging: one job is enough. That
            # relay marked the event waiting first, so finding it unmarked means its job settled.
            if added:
                pending.remove(self.conn, event.lead_id, event.id)

    def run(self, stop: threading.Event) -> None:
        """Relay until `stop` is set, surviving Redis hiccups."""
        while not stop.is_set():
            try:
                self.relay_once(block_ms=defaults.RELAY_BLOCK_MILLISECONDS)
            except redis.RedisError as exc:
                log.error("relay paused: redis error %s", exc.__class__.__name__)
                stop.wait(1.0)


def start_relay_thread(conn: redis.Redis, consumer: str, intervals) -> tuple[threading.Thread, threading.Event]:
    """Start a daemon thread running a relay; set the returned event to stop it."""
    stop = threading.Event()
    relay = Relay(conn, consumer, intervals)
    thread = threading.Thread(target=relay.run, args=(stop,), name="intake-relay", daemon=True)
    thread.start()
    return thread, stop
