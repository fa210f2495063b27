"""LionDesk → Real Geeks: the poll that carries agents' edits back, without echoes.

LionDesk has no webhooks, so the bridge polls (`workers/poll_trigger.py` decides when; one poll
at a time, under the poll lock). One poll:

1. Reads every contact with `modified_at` after the stored cursor minus
   POLL_OVERLAP_SECONDS, oldest change first. LionDesk stamps whole seconds and many
   contacts share a second, so pages are keyed on the last `modified_at` read
   (`$gte` it, skipping those of that second already read) rather than on one growing
   `$skip`, which a contact edited mid-poll would shift under our feet.
2. For each contact linked to a Real Geeks lead, compares the contact's snapshot with
   the last synced one (sync state, not events). Equal means nothing happened or it is
   the echo of our own LionDesk write: no call, and no lock either (links and
   snapshots are read per page, two Redis round trips). Otherwise, under the lead's
   lock (the lock the forward sync takes) and against the snapshot stored by then, it
   PATCHes Real Geeks with just the changed fields and sends a `was_assigned` /
   `was_unassigned` activity for a new agent. Each accepted call updates the snapshot
   at once, so Real Geeks' echo webhook (`updated`, `activity_added`) compares equal
   in the forward sync and costs no LionDesk call. A contact read again by the
   overlap, in a state already handled against the same snapshot, is skipped (a
   fingerprint of both is kept in the link): that keeps values Real Geeks cannot take
   from being noted twice. Not `(id, modified_at)`, the usual key: with whole seconds,
   an edit in the same second as the version handled carries the same `modified_at`.
3. Moves the cursor to the last `modified_at` handled. A failure that is the
   service's (Real Geeks or LionDesk unreachable, 429, bad credentials) stops the poll
   with the cursor before the contact, and the poll job retries; a failure that
   is the contact's own (Real Geeks refused its data, its lead is busy, a bug) hands
   the contact to a job of its own (`workers.jobs.sync_liondesk_contact`: retry ladder,
   failed store, `bridge jobs replay`) and the poll goes on, so one contact never
   blocks everyone's sync.

Conflicts (a field changed on both sides between syncs) are decided in `conflicts.py`.
Contacts not linked to a lead become Real Geeks leads only when
`reverse.create_leads_from_liondesk` is on, `reverse.site_uuid` names the site, and
the contact is not filed under the bridge's own contact source (those came from Real
Geeks: the link is being written by the forward sync).

The first poll ever starts at the current time: the bridge carries back what agents
change from then on, not years of history (`bridge poll --once --since` reads older
changes on purpose). LionDesk may not move `modified_at` for address edits (unknown);
such an edit travels with the contact's next change.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import redis
from marshmallow import ValidationError

from bridge import defaults
from bridge.exceptions import LionDeskAppConflict, LockTimeout, RealGeeksSiteUnknown, RetryableError, UpstreamError
from bridge.ops import logs
from bridge.queue import JobAlreadyQueued, JobTimedOut, contact_job_id, enqueue_contact_sync, poll_queue
from bridge.storage import events, history, kinds, mappings, pending, polls
from bridge.storage.locks import lead_lock, poll_lock
from bridge.sync import conflicts, forward, references
from bridge.translate.liondesk import liondesk_time
from bridge.translate.realgeeks import LEAD_ACTIONS, Instant, load_event, normalize_id, parse_instant
from bridge.translate.text import folded
from bridge.translate.snapshot import (diff, empty_snapshot, merge_snapshot, realgeeks_assignment,
                                       realgeeks_new_lead, realgeeks_patch, snapshot_from_liondesk,
                                       snapshot_from_realgeeks)

log = logging.getLogger("bridge.reverse")

PENDING, DONE = "pending", "done"
"""Link `created` states of a lead made from a LionDesk contact (origin `mappings.LIONDESK_ORIGIN`):
its create was sent (maybe not accepted), or accepted."""

UNCHANGED, SEEN, PUSHED, CREATED, UNLINKED, DEFERRED = "unchanged", "seen", "pushed", "created", "unlinked", "deferred"
"""What the poll did with one contact."""

OK, PARTIAL, SKIPPED, FAILED, OFF = "ok", "partial", "skipped", "failed", "off"
"""Outcomes of one poll: all read, stopped at the time budget, another poll was running, failed, reverse sync off."""

SERVICE_WIDE_STATUSES = frozenset({401, 403, 407, 408, 429})
"""4xx answers that say something about our access or pace, not about one contact."""

IDENTIFICATION_FIELDS = ("first_name", "last_name", "email", "phone")
"""Snapshot fields of which Real Geeks needs one to create a lead (docs/vendors/realgeeks-api.md §2.1; its fifth,
the one-line `address`, is not one the bridge writes)."""


# -- one run ---------------------------------------------------------------------------------


class Sync:
    """The collaborators of one reverse-sync run, with the reference data it looked up once."""

    def __init__(self, context):
        self.context = context
        self.conn = context.redis
        self.rules = context.settings.rules
        self.liondesk = context.clients.liondesk
        self.realgeeks = context.clients.realgeeks
        self.conflicts = 0
        self._user_emails: dict | None = None
        self._hotness_names: dict | None = None
        self._realgeeks_user_ids: dict[str, dict] = {}

    def user_emails(self, user_id) -> dict:
        """LionDesk user id → e-mail, fetched once more when `user_id` is not in the cached list."""
        if self._user_emails is None:
            self._user_emails = references.user_emails_by_id(self.liondesk)
        if str(user_id) not in self._user_emails:
            found = references.agent_by_id(self.liondesk, user_id)
            if found:
                self._user_emails[str(user_id)] = folded(found["email"])
        return self._user_emails

    def hotness_names(self) -> dict:
        """LionDesk hotness id → name."""
        if self._hotness_names is None:
            self._hotness_names = references.hotness_names_by_id(self.liondesk)
        return self._hotness_names

    def realgeeks_user_ids(self, site_uuid: str) -> dict:
        """Real Geeks user e-mail (casefolded) → user id on one site (the Users API, cached)."""
        if site_uuid not in self._realgeeks_user_ids:
            self._realgeeks_user_ids[site_uuid] = {
                folded(user.get("email")): str(user["id"])
                for user in self.realgeeks.list_users(site_uuid) if user.get("email") and user.get("id")}
        return self._realgeeks_user_ids[site_uuid]

    def snapshot_of(self, contact: Mapping) -> dict:
        """The contact's snapshot, naming its agent and hotness with LionDesk's reference data when needed."""
        user_id = contact.get("assigned_user_id")
        hotness = self.hotness_names() if "hotness" not in contact and contact.get("hotness_id") else None
        return snapshot_from_liondesk(contact, self.rules, user_emails=self.user_emails(user_id) if user_id else {},
                                      hotness_names=hotness)

    def note(self, lead_id: str, kind: str, **facts) -> None:
        """Write a fact into the lead's history, marked as the reverse direction's."""
        history.append(self.conn, lead_id, kind, direction="reverse", **facts)


@dataclass
class PollReport:
    """What one poll read, wrote and left behind; its `state()` is what /healthz and the console show."""

    cursor_before: str
    cursor: str
    started_at: float
    outcome: str = OK
    error: str | None = None
    finished_at: float | None = None
    counts: dict = field(default_factory=lambda: dict.fromkeys((UNCHANGED, SEEN, PUSHED, CREATED, UNLINKED,
                                                                 DEFERRED), 0))
    conflicts: int = 0

    @property
    def read(self) -> int:
        """How many contacts the poll read."""
        return sum(self.counts.values())

    def summary(self) -> str:
        """One line for logs, the CLI and the job's result."""
        done = ", ".join(f"{count} {name}" for name, count in self.counts.items() if count)
        text = f"{self.outcome}: read {self.read} contact(s)" + (f" ({done})" if done else "")
        if self.conflicts:
            text += f", {self.conflicts} conflict(s) resolved"
        if self.error:
            text += f"; {self.error}"
        return f"{text}; cursor {self.cursor}"

    def state(self) -> dict:
        """The poll-state hash fields (last_run, cursor, outcome are what the console reads)."""
        finished = self.finished_at or time.time()
        return {"last_run": round(finished, 3), "cursor": self.cursor, "outcome": self.outcome,
                "error": self.error or "", "read": self.read, "pushed": self.counts[PUSHED],
                "created": self.counts[CREATED], "deferred": self.counts[DEFERRED], "conflicts": self.conflicts,
                "duration_ms": round((finished - self.started_at) * 1000, 1)}


# -- times -----------------------------------------------------------------------------------


def instant_ns(text) -> int | None:
    """A LionDesk timestamp in unix nanoseconds, or None when it is missing or malformed."""
    try:
        return parse_instant(str(text)).ns if text else None
    except ValueError:
        return None


def shifted(text: str, seconds: float) -> str:
    """A LionDesk timestamp moved by `seconds`, in LionDesk's own format."""
    return liondesk_time(Instant(parse_instant(text).ns + int(seconds * 1_000_000_000), ""))


def now_text(clock: Callable[[], float] = time.time) -> str:
    """The current time as LionDesk writes it."""
    return liondesk_time(Instant(int(clock() * 1_000_000_000), ""))


def later(first: str, second: str) -> str:
    """The later of two LionDesk timestamps (an unreadable one loses)."""
    return second if (instant_ns(second) or 0) > (instant_ns(first) or 0) else first


# -- reading LionDesk ------------------------------------------------------------------------


def changed_pages(client, since: str, page_size: int = defaults.LIONDESK_PAGE_SIZE) -> Iterator[list[dict]]:
    """Yield pages of the contacts modified after `since`, oldest change first (ties by id).

    Each page after the first asks for `modified_at >= ` the last one read and skips the
    contacts of that second already read, so the skip never grows past one second's worth.
    """
    operator, bound, skip = "$gt", since, 0
    while True:
        page = client.request("GET", "/contacts", params=[
            (f"modified_at[{operator}]", bound), ("$sort[modified_at]", 1), ("$sort[id]", 1),
            ("$limit", page_size), ("$skip", skip)])
        records = page if isinstance(page, list) else (page or {}).get("data") or []
        if records:
            yield records
        total = page.get("total") if isinstance(page, dict) else None
        if not records or isinstance(page, list) or (
                skip + len(records) >= total if isinstance(total, int) else len(records) < page_size):
            return
        last = records[-1].get("modified_at")
        if not last:
            return  # LionDesk guarantees modified_at (docs/vendors/liondesk-api.md §1); without it there is no key to page on
        at_last = sum(1 for record in records if record.get("modified_at") == last)
        skip = skip + at_last if operator == "$gte" and last == bound else at_last
        operator, bound = "$gte", last


# -- the poll --------------------------------------------------------------------------------


def poll(context, *, since: str | None = None, budget_seconds: float = defaults.POLL_TIME_BUDGET_SECONDS,
         lock_wait: float = defaults.POLL_LEAD_LOCK_WAIT_SECONDS, clock: Callable[[], float] = time.time) -> PollReport:
    """Run one poll under the poll lock and record its outcome; `since` reads from that time instead of the cursor.

    Returns a report with outcome "skipped" (nothing read, nothing recorded) when another
    poll holds the lock, "off" when the Real Geeks Incoming API is not configured.
    Raises the service-wide failure that stopped it, after recording it.
    """
    conn = context.redis
    cursor = polls.cursor(conn)
    if context.clients.realgeeks is None:
        return PollReport(cursor or "", cursor or "", clock(), outcome=OFF,
                          error="REALGEEKS_API_USERNAME / REALGEEKS_API_PASSWORD are not set")
    with poll_lock(conn) as held:
        if not held:
            return PollReport(cursor or "", cursor or "", clock(), outcome=SKIPPED, error="another poll is running")
        return _poll_locked(context, since or cursor, cursor, budget_seconds, lock_wait, clock)


def _poll_locked(context, start: str | None, stored: str | None, budget_seconds: float, lock_wait: float,
                 clock: Callable[[], float]) -> PollReport:
    """Read and sync changed contacts from `start` until done, out of time, or stopped by a failure."""
    start = shifted(start, 0) if start else now_text(clock)  # LionDesk's own spelling of the time
    report = PollReport(cursor_before=start, cursor=start, started_at=clock())
    sync = Sync(context)
    deadline = time.monotonic() + budget_seconds
    first_seen: dict = {}
    floor = None
    try:
        for page in changed_pages(sync.liondesk, shifted(start, -defaults.POLL_OVERLAP_SECONDS)):
            known = mappings.links_of_contacts(sync.conn, [contact["id"] for contact in page])
            for contact, (lead_id, link, snapshot) in zip(page, known):
                if time.monotonic() > deadline:
                    report.outcome = PARTIAL
                    break
                modified = str(contact.get("modified_at") or "")
                earlier = first_seen.setdefault(contact["id"], modified)
                if earlier != modified:
                    # Edited while we paged: the pages after its old place may have shifted
                    # by one, so the next poll reads again from its old time.
                    floor = earlier if floor is None else min(floor, earlier, key=lambda text: instant_ns(text) or 0)
                report.counts[process_contact(sync, contact, lock_wait, lead_id, link, snapshot)] += 1
                report.cursor = later(report.cursor, modified)
            if report.outcome == PARTIAL:
                break
    except BaseException as exc:
        report.outcome, report.error = f"{FAILED}: {exc.__class__.__name__}", str(exc)[:300]
        raise
    finally:
        if floor is not None and (instant_ns(floor) or 0) < (instant_ns(report.cursor) or 0):
            report.cursor = floor
        if report.outcome == OK and stored:
            report.cursor = later(stored, report.cursor)  # a finished --since run never moves the cursor back
        report.conflicts, report.finished_at = sync.conflicts, clock()
        state = report.state()
        polls.record_run(context.redis, state)
        logs.event_line(log, "poll", **{name: value for name, value in state.items() if value not in ("", 0)})
    return report


def concerns_one_contact(exc: BaseException) -> bool:
    """Whether a failure is one contact's (its data, its lead, a busy lock, a bug) rather than a service's.

    The job's own time running out (RQ's timeout) is the poll's, never a contact's.
    """
    if isinstance(exc, (LockTimeout, LionDeskAppConflict)):
        # An app conflict is named once in /healthz; the contact gets a job of its own (recorded)
        # and the poll moves on instead of stalling on every poll.
        return True
    if isinstance(exc, UpstreamError):
        return exc.status is not None and 400 <= exc.status < 500 and exc.status not in SERVICE_WIDE_STATUSES
    return not isinstance(exc, (RetryableError, redis.RedisError, JobTimedOut))


def process_contact(sync: Sync, contact: Mapping, lock_wait: float, lead_id: str | None,
                    link: mappings.LeadLink | None, snapshot: Mapping | None) -> str:
    """Sync one polled contact (its link and snapshot as read with its page).

    A failure of its own hands it to a job of its own; a service's stops the poll.
    """
    try:
        return settled(sync, contact, lead_id, link, snapshot) or sync_contact(sync, contact, lock_wait=lock_wait)
    except Exception as exc:
        if not concerns_one_contact(exc):
            raise
        defer(sync, contact, exc)
        return DEFERRED


def defer(sync: Sync, contact: Mapping, exc: BaseException) -> None:
    """Give a contact that failed on its own a job of its own (retry ladder, failed store, replay)."""

    contact_id = contact.get("id")
    try:
        enqueue_contact_sync(poll_queue(sync.conn), contact_id, intervals=sync.context.settings.retry_intervals)
    except JobAlreadyQueued:
        pass  # its job exists (queued, retrying or failed): it reads the contact afresh when it runs
    facts = dict(contact_id=contact_id, job_id=contact_job_id(contact_id), error_class=exc.__class__.__name__,
                 error=str(exc)[:500])
    lead_id = mappings.lead_of_contact(sync.conn, contact_id)
    if lead_id:
        sync.note(lead_id, kinds.REVERSE_SYNC_DEFERRED, **facts)
    logs.event_line(log, "reverse_deferred", lead_id=lead_id, **facts)


def sync_one(context, contact_id: int | str) -> str:
    """Read one LionDesk contact and sync it to Real Geeks now (the job of a contact the poll handed over)."""
    sync = Sync(context)
    if sync.realgeeks is None:
        return "reverse sync is off: REALGEEKS_API_USERNAME / REALGEEKS_API_PASSWORD are not set"
    contact = sync.liondesk.get_contact(contact_id)
    outcome = sync_contact(sync, contact, lock_wait=defaults.LEAD_LOCK_WAIT_SECONDS)
    return f"contact {contact_id}: {outcome}"


# -- one contact -----------------------------------------------------------------------------


def settled(sync: Sync, contact: Mapping, lead_id: str | None, link: mappings.LeadLink | None,
            snapshot: Mapping | None) -> str | None:
    """SEEN, UNCHANGED or UNLINKED when the contact needs nothing, told without taking its lead's lock; else None.

    Most contacts a poll reads need nothing (the overlap, our own LionDesk writes), so
    this is decided from the link and snapshot read with the page. Anything else is
    decided again under the lock, from what is stored by then.
    """
    if lead_id is None:
        return None if sync.rules["reverse"]["create_leads_from_liondesk"] else UNLINKED
    if link.created == PENDING:
        return None
    snapshot = snapshot or empty_snapshot()
    current = sync.snapshot_of(contact)
    if link.liondesk_seen == handled_fingerprint(current, snapshot):
        return SEEN
    return None if diff(snapshot, current) else UNCHANGED



def sync_contact(sync: Sync, contact: Mapping, *, lock_wait: float) -> str:
    """Bring one LionDesk contact's changes to its Real Geeks lead (or create the lead); return what was done."""
    lead_id = mappings.lead_of_contact(sync.conn, contact["id"])
    if lead_id is None:
        return create_from_contact(sync, contact, lock_wait=lock_wait)
    with lead_lock(sync.conn, lead_id, wait=lock_wait):
        return _recording_calls(sync, lead_id, lambda: push_changes(sync, lead_id, contact))


def _recording_calls(sync: Sync, lead_id: str, work: Callable[[], str]) -> str:
    """Run `work` for one lead with the calls it makes written into the lead's history."""
    with sync.context.telling(lead_id, None):
        return work()


def push_changes(sync: Sync, lead_id: str, contact: Mapping) -> str:
    """PATCH the lead with the fields LionDesk changed since the last sync and assign its new agent.

    Runs under the lead's lock. The snapshot takes each field as soon as Real Geeks
    accepted it, so the echo webhook of that write finds nothing to do.
    """
    conn = sync.conn
    link = mappings.load_link(conn, lead_id)
    if link.origin == mappings.LIONDESK_ORIGIN and link.created == PENDING:
        return create_lead(sync, lead_id, link, contact)  # an earlier attempt died between create and record
    modified = str(contact.get("modified_at") or "")
    snapshot = mappings.get_snapshot(conn, lead_id) or empty_snapshot()
    current = sync.snapshot_of(contact)
    if link.liondesk_seen == handled_fingerprint(current, snapshot):
        return SEEN
    changed = diff(snapshot, current)
    if not changed:
        return UNCHANGED

    site_uuid, realgeeks_id = realgeeks_target(sync, link, lead_id)
    decision = conflicts.decide(changed, instant_ns(modified), pending_realgeeks_changes(sync, lead_id, snapshot, link))
    for resolution in decision.resolutions:
        sync.conflicts += 1
        sync.note(lead_id, kinds.CONFLICT_RESOLVED, field=resolution.field, winner=resolution.winner,
                  reason=resolution.reason, contact_id=contact["id"])
    if decision.agreed:
        snapshot = _accept(sync, link, snapshot, decision.agreed, pushed=False)
    written: dict = {}
    body = realgeeks_patch(decision.push, sync.rules)
    if body:
        sync.realgeeks.update_lead(site_uuid, realgeeks_id, body)
        accepted = patched_fields(decision.push, body)
        snapshot = _accept(sync, link, snapshot, accepted)
        written.update(accepted)
    if "agent_email" in decision.push:
        activity = assignment_activity(sync, decision.push, site_uuid, modified)
        if activity is not None:
            sync.realgeeks.add_activities(site_uuid, realgeeks_id, [activity])
            snapshot = _accept(sync, link, snapshot, {"agent_email": decision.push["agent_email"]})
            written["agent_email"] = decision.push["agent_email"]
    left = sorted(set(decision.push) - set(written))
    if left:
        sync.note(lead_id, kinds.NOT_SYNCED_BACK, fields=left, contact_id=contact["id"],
                  detail="Real Geeks has no counterpart for these LionDesk values (an unmapped hotness, "
                         "an agent who is no Real Geeks user of the site)")
    mappings.save_link(conn, link, liondesk_seen=handled_fingerprint(current, snapshot))
    if not written:
        return UNCHANGED
    sync.note(lead_id, kinds.REVERSE_SYNC, contact_id=contact["id"], fields=sorted(written), modified_at=modified)
    return PUSHED


def handled_fingerprint(liondesk_snapshot: Mapping, snapshot: Mapping) -> str:
    """A fingerprint of a contact's state and the snapshot it was handled against (32 hex digits)."""
    text = json.dumps([liondesk_snapshot, snapshot], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _accept(sync: Sync, link: mappings.LeadLink, snapshot: dict, fields: Mapping, *, pushed: bool = True) -> dict:
    """Record fields both sides now hold in the snapshot (and, for our writes, when Real Geeks took them)."""
    snapshot = merge_snapshot(snapshot, fields)
    mappings.save_snapshot(sync.conn, link.lead_id, snapshot)
    if pushed:
        mappings.save_link(sync.conn, link, pushed_ns=conflicts.push_marks(fields, time.time_ns()))
    return snapshot


def patched_fields(push: Mapping, body: Mapping) -> dict:
    """The snapshot fields a Real Geeks PATCH body carries (the hotness travels as `urgency`)."""
    return {name: value for name, value in push.items() if name in body or (name == "hotness" and "urgency" in body)}


def assignment_activity(sync: Sync, push: Mapping, site_uuid: str, modified: str) -> dict | None:
    """The was_assigned / was_unassigned activity for LionDesk's new agent, dated by the LionDesk change."""
    needs_users = bool(push["agent_email"])
    activity = realgeeks_assignment(push, sync.rules,
                                    realgeeks_user_ids=sync.realgeeks_user_ids(site_uuid) if needs_users else {})
    if activity is not None and modified:
        activity["created"] = modified
    return activity


def realgeeks_target(sync: Sync, link: mappings.LeadLink, lead_id: str) -> tuple[str, str]:
    """The site and the lead id (as Real Geeks spells it) to write to; raises RealGeeksSiteUnknown."""
    site_uuid = link.site_uuid or str(sync.rules["reverse"].get("site_uuid") or "").strip()
    if not site_uuid:
        raise RealGeeksSiteUnknown(f"lead {lead_id}: no webhook named its Real Geeks site and reverse.site_uuid is "
                                   "empty, so its LionDesk changes cannot be written back")
    return site_uuid, link.received_id or lead_id


def pending_realgeeks_changes(sync: Sync, lead_id: str, snapshot: Mapping, link: mappings.LeadLink) -> dict:
    """Fields Real Geeks changed in deliveries received but not yet applied: field → (latest value, its time ns).

    The waiting deliveries are the lead's pending events (`bridge.storage.pending`: queued
    and not yet processed or failed for good). Deliveries the forward sync will skip (older
    than the last applied, or than our push of a field) are left out, as it leaves them out.
    """
    applied = link.applied_ns
    changes = []
    for event_id in pending.waiting(sync.conn, lead_id):
        event = events.load(sync.conn, event_id)
        if event is None or event.action not in LEAD_ACTIONS:
            continue
        when = forward.received_ns(event)
        if when < applied:
            continue
        try:
            lead = load_event(event.action, event.payload())
        except (ValidationError, ValueError):
            continue
        changed = diff(snapshot, snapshot_from_realgeeks(lead, sync.rules))
        for name in conflicts.overruled_by_push(link, changed, when):
            del changed[name]
        changes.append((when, changed))
    return conflicts.latest_changes(changes)


# -- contacts created in LionDesk ------------------------------------------------------------


def came_from_realgeeks(sync: Sync, contact: Mapping) -> bool:
    """Whether the contact is filed under the bridge's own contact source (the forward sync made or linked it)."""
    wanted = folded(sync.rules["contact"]["source_name"])
    source = contact.get("source")
    if isinstance(source, Mapping) and source.get("name"):
        return folded(source["name"]) == wanted
    if contact.get("source_id") is None:
        return False
    found = sync.liondesk.find_reference("contact-sources",
                                         lambda record: folded(record.get("name")) == wanted)
    return found is not None and str(found.get("id")) == str(contact["source_id"])


def create_from_contact(sync: Sync, contact: Mapping, *, lock_wait: float) -> str:
    """Make a Real Geeks lead of a contact created in LionDesk, when the rules say so; link it first."""
    rules = sync.rules["reverse"]
    if not rules["create_leads_from_liondesk"] or came_from_realgeeks(sync, contact):
        return UNLINKED
    site_uuid = str(rules.get("site_uuid") or "").strip()
    if not site_uuid:
        log.warning("reverse.create_leads_from_liondesk is on but reverse.site_uuid is empty: "
                    "contact %s stays in LionDesk only", contact["id"])
        return UNLINKED
    if not any(sync.snapshot_of(contact).get(name) for name in IDENTIFICATION_FIELDS):
        return UNLINKED  # Real Geeks refuses a lead with no name, e-mail, phone or address
    realgeeks_id = str(uuid.uuid4())
    lead_id = normalize_id(realgeeks_id)
    with lead_lock(sync.conn, lead_id, wait=lock_wait):
        if not mappings.claim_contact(sync.conn, contact["id"], lead_id):
            return SEEN  # linked meanwhile (by a Real Geeks lead that matched it, or another run)
        # Linked BEFORE the create: a retry finds the id and sends the same create again,
        # which Real Geeks merges into the lead with that id instead of making a second.
        link = mappings.load_link(sync.conn, lead_id)
        mappings.save_link(sync.conn, link, contact_id=contact["id"], site_uuid=site_uuid,
                           received_id=realgeeks_id, origin=mappings.LIONDESK_ORIGIN, created=PENDING)
        return _recording_calls(sync, lead_id, lambda: create_lead(sync, lead_id, link, contact))


def create_lead(sync: Sync, lead_id: str, link: mappings.LeadLink, contact: Mapping) -> str:
    """POST the contact as a new Real Geeks lead (source `reverse.source_name`) and record the agreed snapshot."""
    site_uuid, realgeeks_id = realgeeks_target(sync, link, lead_id)
    snapshot = sync.snapshot_of(contact)
    filled = {name: value for name, value in snapshot.items() if value}
    body = realgeeks_new_lead(snapshot, sync.rules, lead_id=realgeeks_id)
    modified = str(contact.get("modified_at") or "")
    accepted = patched_fields(filled, body)
    if filled.get("agent_email"):
        activity = assignment_activity(sync, {"agent_email": filled["agent_email"]}, site_uuid, modified)
        if activity is not None:
            body["activities"] = [activity]
            accepted["agent_email"] = filled["agent_email"]
    sync.realgeeks.create_lead(site_uuid, body)
    agreed = merge_snapshot(empty_snapshot(), accepted)
    mappings.save_snapshot(sync.conn, lead_id, agreed)
    mappings.save_link(sync.conn, link, created=DONE, liondesk_seen=handled_fingerprint(snapshot, agreed),
                       pushed_ns=conflicts.push_marks(accepted, time.time_ns()))
    sync.note(lead_id, kinds.LEAD_CREATED_FROM_LIONDESK, contact_id=contact["id"], site_uuid=site_uuid,
              fields=sorted(accepted))
    return CREATED
