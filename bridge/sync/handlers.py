"""Dispatch a stored event to the handler of its action, under the lead's lock."""

from __future__ import annotations

import logging

from bridge.exceptions import PermanentError
from bridge.storage import events, kinds, parked
from bridge.storage.locks import lead_lock
from bridge.sync import forward
from bridge.translate.realgeeks import DROPPED, load_event

log = logging.getLogger(__name__)

LEAD_HANDLERS = {
    "created": forward.upsert,
    "unknown": forward.upsert,  # "update, or create if missing" (docs/vendors/realgeeks-api.md §1.4)
    "updated": forward.update,
    "activity_added": forward.add_activities,
}


def handler_of(action: str):
    """The handler of a lead action; the potential-seller request type is a new lead (`created`)."""
    return LEAD_HANDLERS.get(action) or forward.upsert


def handle_event(context, event) -> str:
    """Process one event and return a one-line summary for the lead's history."""
    forward.expire_parked(context)
    lead = load_event(event.action, event.payload())
    if event.action == "user_updated":
        return refresh_agents(context, lead)
    job = forward.Job(context=context, lead=lead, event_id=event.id, received_ns=forward.received_ns(event))
    with context.telling(job.lead_id, event.id), lead_lock(context.redis, job.lead_id):
        if lead.get(DROPPED):
            job.note(kinds.FIELDS_DROPPED, fields=lead[DROPPED],
                     detail="unreadable values left out; the rest of the delivery is applied")
        handler_of(event.action)(job)
        apply_parked(job)
    return "; ".join(job.done) or "nothing to change"


def apply_parked(job: forward.Job) -> None:
    """Apply the lead's parked deliveries, oldest change first, once the lead is in LionDesk.

    Runs under the lead's lock right after the delivery that linked (or had linked) the
    lead, so nothing else of the lead runs between them. Each is taken off the parked
    list once applied, so a retry of this job (a LionDesk outage halfway) resumes with
    the rest. One that LionDesk refuses for good is noted in the story and dropped, as
    its own job would have been; it does not fail the delivery that identified the lead.
    """
    conn = job.conn
    if job.parked or not job.link.linked:
        return
    parked.done(conn, job.lead_id, job.event_id)  # this very delivery, if it was parked before (a replay)
    waiting = [event for event in (events.load(conn, event_id) for event_id in parked.waiting(conn, job.lead_id))
               if event is not None]
    for gone in set(parked.waiting(conn, job.lead_id)) - {event.id for event in waiting}:
        parked.done(conn, job.lead_id, gone)  # its event expired meanwhile: nothing left to apply
    applied = 0
    for event in sorted(waiting, key=forward.received_ns):
        later = forward.Job(context=job.context, lead=load_event(event.action, event.payload()), event_id=event.id,
                            received_ns=forward.received_ns(event))
        try:
            handler_of(event.action)(later)
        except PermanentError as exc:
            later.note(kinds.PARKED_FAILED, identified_by=job.event_id, error_class=exc.__class__.__name__,
                       error=str(exc)[:500])
        else:
            later.note(kinds.UNPARKED, identified_by=job.event_id, summary="; ".join(later.done) or "nothing to change",
                       detail="applied now that Real Geeks sent the lead's details")
            applied += 1
        parked.done(conn, job.lead_id, event.id)
    if waiting:
        job.did(f"applied {applied} of {len(waiting)} delivery(ies) that waited for the lead's details")


def refresh_agents(context, user: dict) -> str:
    """`user_updated`: forget cached agent lists so the next assignment sees the change."""
    clients = context.clients
    clients.liondesk.invalidate_reference("users")
    if clients.realgeeks is not None and user.get("site_uuid"):
        clients.realgeeks.invalidate_users(user["site_uuid"])
    return f"agent caches refreshed for Real Geeks user {user.get('id')}"
